"""CIFAR-10 FT-1: the linear head of an ImageNet ResNet18 (Adam lr 1e-2, batch 512, 200 epochs); selection on the features.

Launch (set DATAROOT to the tensorflow-datasets / UTKFace data directory and LABROOT to the
work root, or pass --config.data_dir and --workdir):
  python -m experiments.main --config=configs/cifar10_resnet18_ft1.py --workdir=$LABROOT/skmm/cifar10_resnet18_ft1
The paper's full grid over sketch dimensions and moment constants:
  python -m experiments.main --config=configs/cifar10_resnet18_ft1.py:sweep --workdir=$LABROOT/skmm/cifar10_resnet18_ft1
Mock data and a tiny random backbone (tests, seconds):
  python -m experiments.main --config=configs/cifar10_resnet18_ft1.py:runlocal --workdir=/tmp/cifar10_resnet18_ft1
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(name="cifar10_resnet18_ft1", dataset="cifar10", backbone="resnet18", setting="ft1",
                            train_setting="cifar10_ft1", task="classification", features="features", m=None, arg=arg)
