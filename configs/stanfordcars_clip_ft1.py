"""StanfordCars FT-1: the linear head on CLIP ViT-B/32 features (Adam lr 1e-1, 50 epochs); selection on the features.

Launch (set DATAROOT to the tensorflow-datasets / UTKFace data directory and LABROOT to the
work root, or pass --config.data_dir and --workdir):
  python -m experiments.main --config=configs/stanfordcars_clip_ft1.py --workdir=$LABROOT/skmm/stanfordcars_clip_ft1
The paper's full grid over sketch dimensions and moment constants:
  python -m experiments.main --config=configs/stanfordcars_clip_ft1.py:sweep --workdir=$LABROOT/skmm/stanfordcars_clip_ft1
Mock data and a tiny random backbone (tests, seconds):
  python -m experiments.main --config=configs/stanfordcars_clip_ft1.py:runlocal --workdir=/tmp/stanfordcars_clip_ft1
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(name="stanfordcars_clip_ft1", dataset="cars196", backbone="clip_vit_b32", setting="ft1",
                            train_setting="stanfordcars_ft1", task="classification", features="features", m=None, arg=arg)
