"""UTKFace age regression: CLIP ViT-B/32 L2-normalised features, linear regression (MSE, Adam);
MAE.

Set DATAROOT (tfds data directory / UTKFace folder) and LABROOT (work root), or pass
--config.data_dir and --workdir. The paper's grid of n and seeds at the default m and c:
  python experiments/main.py --config=configs/utkface_clip_regression.py \
      --workdir=$LABROOT/skmm/utkface_clip_regression
Also every sketch dimension m and moment constant c of the paper:
  python experiments/main.py --config=configs/utkface_clip_regression.py:sweep \
      --workdir=$LABROOT/skmm/utkface_clip_regression_sweep
Mock data and a tiny random backbone, one epoch (the tests; seconds):
  python experiments/main.py --config=configs/utkface_clip_regression.py:runlocal --workdir=/tmp/utkface_clip_regression
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(
      name="utkface_clip_regression", dataset="utkface", backbone="clip_vit_b32", setting="lp",
      train_setting="lp_regression", task="regression", features="features", m=None, arg=arg)
