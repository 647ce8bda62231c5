"""StanfordCars linear probe: logistic regression on standardised CLIP ViT-B/32 features; accuracy,
macro F1.

Set DATAROOT (tfds data directory / UTKFace folder) and LABROOT (work root), or pass
--config.data_dir and --workdir. The paper's grid of n and seeds at the default m and c:
  python experiments/main.py --config=configs/stanfordcars_clip_lp.py \
      --workdir=$LABROOT/skmm/stanfordcars_clip_lp
Also every sketch dimension m and moment constant c of the paper:
  python experiments/main.py --config=configs/stanfordcars_clip_lp.py:sweep \
      --workdir=$LABROOT/skmm/stanfordcars_clip_lp_sweep
Mock data and a tiny random backbone, one epoch (the tests; seconds):
  python experiments/main.py --config=configs/stanfordcars_clip_lp.py:runlocal --workdir=/tmp/stanfordcars_clip_lp
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(
      name="stanfordcars_clip_lp", dataset="cars196", backbone="clip_vit_b32", setting="lp",
      train_setting="lp_classification", task="classification", features="features", m=None,
      arg=arg)
