"""StanfordCars FT-2: CLIP's visual projection + head (Adam lr 1e-2, 50 epochs); selection on
sketched gradients (random targets).

Set DATAROOT (tfds data directory / UTKFace folder) and LABROOT (work root), or pass
--config.data_dir and --workdir. The paper's grid of n and seeds at the default m and c:
  python experiments/main.py --config=configs/stanfordcars_clip_ft2.py \
      --workdir=$LABROOT/skmm/stanfordcars_clip_ft2
Also every sketch dimension m and moment constant c of the paper:
  python experiments/main.py --config=configs/stanfordcars_clip_ft2.py:sweep \
      --workdir=$LABROOT/skmm/stanfordcars_clip_ft2_sweep
Mock data and a tiny random backbone, one epoch (the tests; seconds):
  python experiments/main.py --config=configs/stanfordcars_clip_ft2.py:runlocal --workdir=/tmp/stanfordcars_clip_ft2
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(
      name="stanfordcars_clip_ft2", dataset="cars196", backbone="clip_vit_b32", setting="ft2",
      train_setting="stanfordcars_ft2", task="classification", features="grad", m=128, arg=arg)
