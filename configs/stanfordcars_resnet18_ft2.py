"""StanfordCars FT-2: ResNet18's last 3x3 conv + head (Adam lr 1e-2, 50 epochs); selection on
sketched gradients (random targets).

Set DATAROOT (tfds data directory / UTKFace folder) and LABROOT (work root), or pass
--config.data_dir and --workdir. The paper's grid of n and seeds at the default m and c:
  python experiments/main.py --config=configs/stanfordcars_resnet18_ft2.py \
      --workdir=$LABROOT/skmm/stanfordcars_resnet18_ft2
Also every sketch dimension m and moment constant c of the paper:
  python experiments/main.py --config=configs/stanfordcars_resnet18_ft2.py:sweep \
      --workdir=$LABROOT/skmm/stanfordcars_resnet18_ft2_sweep
Mock data and a tiny random backbone, one epoch (the tests; seconds):
  python experiments/main.py --config=configs/stanfordcars_resnet18_ft2.py:runlocal --workdir=/tmp/stanfordcars_resnet18_ft2
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(
      name="stanfordcars_resnet18_ft2", dataset="cars196", backbone="resnet18", setting="ft2",
      train_setting="stanfordcars_ft2", task="classification", features="grad", m=128, arg=arg)
