"""StanfordCars FT-2: CLIP's visual projection + head (Adam lr 1e-2, 50 epochs); selection on sketched gradients (random targets).

Launch (set DATAROOT to the tensorflow-datasets / UTKFace data directory and LABROOT to the
work root, or pass --config.data_dir and --workdir):
  python -m experiments.main --config=configs/stanfordcars_clip_ft2.py --workdir=$LABROOT/skmm/stanfordcars_clip_ft2
The paper's full grid over sketch dimensions and moment constants:
  python -m experiments.main --config=configs/stanfordcars_clip_ft2.py:sweep --workdir=$LABROOT/skmm/stanfordcars_clip_ft2
Mock data and a tiny random backbone (tests, seconds):
  python -m experiments.main --config=configs/stanfordcars_clip_ft2.py:runlocal --workdir=/tmp/stanfordcars_clip_ft2
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(name="stanfordcars_clip_ft2", dataset="cars196", backbone="clip_vit_b32", setting="ft2",
                            train_setting="stanfordcars_ft2", task="classification", features="grad", m=128, arg=arg)
