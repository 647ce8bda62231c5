"""Feature extraction for the paper's datasets (spec section 5): one npz per split.

Variants (`--config=configs/extract_features.py:<variant>`):
  cifar10   ResNet18 (microsoft/resnet-18), CIFAR-10 from tfds (--config.data_dir, or $DATAROOT)
  cars196   CLIP ViT-B/32 (openai/clip-vit-base-patch32), StanfordCars (tfds cars196)
  utkface   CLIP ViT-B/32, UTKFace image folder (--config.data_dir=/path/to/UTKFace)
  digits    ResNet18, sklearn digits (offline)
  runlocal  a tiny random ResNet on 64 digits (seconds; the smoke test)
Example:
  python experiments/main.py --config=configs/extract_features.py:cifar10 \
      --config.data_dir=$DATAROOT/tensorflow_datasets --workdir=/tmp/skmm/features
"""
import os

import ml_collections

VARIANTS = {
    "cifar10": ("cifar10", "resnet18"),
    "cars196": ("cars196", "clip_vit_b32"),
    "utkface": ("utkface", "clip_vit_b32"),
    "digits": ("digits", "resnet18"),
    "runlocal": ("digits", "resnet_tiny"),
}


def get_config(arg: str = "cifar10"):
  arg = arg or "cifar10"
  if arg not in VARIANTS:
    raise ValueError(f"unknown variant {arg!r}; choose one of {sorted(VARIANTS)}")
  dataset, backbone = VARIANTS[arg]
  c = ml_collections.ConfigDict()
  c.pipeline = "extract_features"
  c.dataset = dataset
  c.backbone = backbone
  c.weights = ml_collections.FieldReference(None, field_type=str)
  c.model_seed = 0
  c.data_dir = os.environ.get("DATAROOT", "")
  c.splits = ("train", "test")
  c.batch_size = 256
  c.chunk_batches = 8
  c.cache_dir = ""
  c.limit = 0
  c.progress = True
  if arg == "runlocal":
    c.batch_size = 16
    c.chunk_batches = 2
    c.limit = 64
    c.progress = False
  return c
