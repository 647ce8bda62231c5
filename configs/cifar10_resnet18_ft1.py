"""CIFAR-10 FT-1: the linear head of an ImageNet ResNet18 (Adam lr 1e-2, batch 512, 200 epochs);
selection on the features.

Set DATAROOT (tfds data directory / UTKFace folder) and LABROOT (work root), or pass
--config.data_dir and --workdir. The paper's grid of n and seeds at the default m and c:
  python experiments/main.py --config=configs/cifar10_resnet18_ft1.py \
      --workdir=$LABROOT/skmm/cifar10_resnet18_ft1
Also every sketch dimension m and moment constant c of the paper:
  python experiments/main.py --config=configs/cifar10_resnet18_ft1.py:sweep \
      --workdir=$LABROOT/skmm/cifar10_resnet18_ft1_sweep
Mock data and a tiny random backbone, one epoch (the tests; seconds):
  python experiments/main.py --config=configs/cifar10_resnet18_ft1.py:runlocal --workdir=/tmp/cifar10_resnet18_ft1
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(
      name="cifar10_resnet18_ft1", dataset="cifar10", backbone="resnet18", setting="ft1",
      train_setting="cifar10_ft1", task="classification", features="features", m=None, arg=arg)
