"""StanfordCars FT-1: the linear head on CLIP ViT-B/32 features (Adam lr 1e-1, 50 epochs);
selection on the features.

Set DATAROOT (tfds data directory / UTKFace folder) and LABROOT (work root), or pass
--config.data_dir and --workdir. The paper's grid of n and seeds at the default m and c:
  python experiments/main.py --config=configs/stanfordcars_clip_ft1.py \
      --workdir=$LABROOT/skmm/stanfordcars_clip_ft1
Also every sketch dimension m and moment constant c of the paper:
  python experiments/main.py --config=configs/stanfordcars_clip_ft1.py:sweep \
      --workdir=$LABROOT/skmm/stanfordcars_clip_ft1_sweep
Mock data and a tiny random backbone, one epoch (the tests; seconds):
  python experiments/main.py --config=configs/stanfordcars_clip_ft1.py:runlocal --workdir=/tmp/stanfordcars_clip_ft1
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(
      name="stanfordcars_clip_ft1", dataset="cars196", backbone="clip_vit_b32", setting="ft1",
      train_setting="stanfordcars_ft1", task="classification", features="features", m=None, arg=arg)
