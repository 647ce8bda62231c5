"""CIFAR-10 FT-2: ResNet18's last 3x3 conv + head (Adam lr 1e-2, batch 512, 50 epochs); selection on sketched gradients (random targets).

Launch (set DATAROOT to the tensorflow-datasets / UTKFace data directory and LABROOT to the
work root, or pass --config.data_dir and --workdir):
  python -m experiments.main --config=configs/cifar10_resnet18_ft2.py --workdir=$LABROOT/skmm/cifar10_resnet18_ft2
The paper's full grid over sketch dimensions and moment constants:
  python -m experiments.main --config=configs/cifar10_resnet18_ft2.py:sweep --workdir=$LABROOT/skmm/cifar10_resnet18_ft2
Mock data and a tiny random backbone (tests, seconds):
  python -m experiments.main --config=configs/cifar10_resnet18_ft2.py:runlocal --workdir=/tmp/cifar10_resnet18_ft2
"""
from skmm_jax.pipelines import vision


def get_config(arg: str = ""):
  return vision.base_config(name="cifar10_resnet18_ft2", dataset="cifar10", backbone="resnet18", setting="ft2",
                            train_setting="cifar10_ft2", task="classification", features="grad", m=128, arg=arg)
