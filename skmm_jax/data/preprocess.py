"""Image preprocessing as in the paper: resize (bicubic), centre crop, the model's normalisation.

Resizing and cropping run on the host (PIL, per image, any input size) and give uint8
(H, W, 3) crops; normalisation runs on device inside the jitted feature function
(`normalize`), so the host-to-device transfer stays uint8.

A `Preprocess` is a small NamedTuple that is part of every feature-cache key.

Example:
  >>> import numpy as np
  >>> from skmm_jax.data import preprocess as pp
  >>> spec = pp.IMAGENET._replace(resize=64, crop=56)
  >>> pp.resize_crop(np.zeros((32, 48, 3), np.uint8), spec).shape
  (56, 56, 3)
"""
from __future__ import annotations

from typing import NamedTuple, Sequence, Tuple

import jax.numpy as jnp
import numpy as np


class Preprocess(NamedTuple):
  """Attributes:
    resize: the shorter side is resized to this (bicubic, antialiased like PIL).
    crop: centre crop size (square).
    mean, std: per-channel normalisation on [0, 1] pixel values.
    resample: PIL filter name ("bicubic" or "bilinear").
  """
  resize: int = 224
  crop: int = 224
  mean: Tuple[float, float, float] = (0.485, 0.456, 0.406)
  std: Tuple[float, float, float] = (0.229, 0.224, 0.225)
  resample: str = "bicubic"


IMAGENET = Preprocess(224, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), "bicubic")
CLIP = Preprocess(224, 224, (0.48145466, 0.4578275, 0.40821073),
                  (0.26862954, 0.26130258, 0.27577711), "bicubic")


def to_rgb_uint8(image) -> np.ndarray:
  """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 -> (H, W, 3) uint8."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f"images must be uint8 (0..255); got dtype {image.dtype}")
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"images must be (H, W[, 1|3|4]); got shape {image.shape}")
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return image[..., :3]


def resize_crop(image, spec: Preprocess) -> np.ndarray:
  """Resizes the shorter side to `spec.resize` and centre-crops `spec.crop` (uint8 in and out)."""
  from PIL import Image
  image = to_rgb_uint8(image)
  h, w = image.shape[:2]
  scale = spec.resize / min(h, w)
  nh, nw = max(spec.crop, round(h * scale)), max(spec.crop, round(w * scale))
  if (nh, nw) != (h, w):
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[spec.resample]
    image = np.asarray(Image.fromarray(image).resize((nw, nh), resample=resample))
  top, left = (nh - spec.crop) // 2, (nw - spec.crop) // 2
  return np.ascontiguousarray(image[top: top + spec.crop, left: left + spec.crop])


def resize_crop_batch(images: Sequence, spec: Preprocess) -> np.ndarray:
  """Stacks `resize_crop` over a list of images: (B, crop, crop, 3) uint8."""
  return np.stack([resize_crop(im, spec) for im in images]) if len(images) else np.zeros(
      (0, spec.crop, spec.crop, 3), np.uint8)


def normalize(images_uint8, spec: Preprocess, dtype=jnp.float32):
  """uint8 (B, H, W, 3) -> float (x / 255 - mean) / std; jit-friendly."""
  x = images_uint8.astype(dtype) / 255.0
  return (x - jnp.asarray(spec.mean, dtype)) / jnp.asarray(spec.std, dtype)
