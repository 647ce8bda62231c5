"""StanfordCars linear probe: logistic regression on standardised CLIP ViT-B/32 features; accuracy, macro F1.

Launch (set DATAROOT to the tensorflow-datasets / UTKFace data directory and LABROOT to the
work root, or pass --config.data_dir and --workdir):
  python -m experiments.main --config=configs/stanfordcars_clip_lp.py --workdir=$LABROOT/skmm/stanfordcars_clip_lp
The paper's full grid over sketch dimensions and moment constants:
  python -m experiments.main --config=configs/stanfordcars_clip_lp.py:sweep --workdir=$LABROOT/skmm/stanfordcars_clip_lp
Mock data and a tiny random backbone (tests, seconds):
  python -m experiments.main --config=configs/stanfordcars_clip_lp.py:runlocal --workdir=/tmp/stanfordcars_clip_lp
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(name="stanfordcars_clip_lp", dataset="cars196", backbone="clip_vit_b32", setting="lp",
                            train_setting="lp_classification", task="classification", features="features", m=None, arg=arg)
