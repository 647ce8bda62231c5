"""UTKFace age regression: CLIP ViT-B/32 L2-normalised features, linear regression (MSE, Adam), MAE.

Launch (set DATAROOT to the tensorflow-datasets / UTKFace data directory and LABROOT to the
work root, or pass --config.data_dir and --workdir):
  python -m experiments.main --config=configs/utkface_clip_regression.py --workdir=$LABROOT/skmm/utkface_clip_regression
The paper's full grid over sketch dimensions and moment constants:
  python -m experiments.main --config=configs/utkface_clip_regression.py:sweep --workdir=$LABROOT/skmm/utkface_clip_regression
Mock data and a tiny random backbone (tests, seconds):
  python -m experiments.main --config=configs/utkface_clip_regression.py:runlocal --workdir=/tmp/utkface_clip_regression
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(name="utkface_clip_regression", dataset="utkface", backbone="clip_vit_b32", setting="lp",
                            train_setting="lp_regression", task="regression", features="features", m=None, arg=arg)
