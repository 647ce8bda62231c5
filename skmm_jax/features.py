"""Feature extraction stage: frozen-backbone features for every example of a split, cached.

Images are read and resized/cropped on the host (uint8), batched to a fixed size (the last
batch padded, so one compilation), sharded by rows over the `data` mesh and passed through a
jitted `normalize -> bundle.apply_features`. Every `chunk_batches` batches the rows computed so
far are written atomically to a part file; an interrupted run resumes from the last complete
part. When all parts exist they are concatenated into one npz, written atomically under a key
hashed from (backbone, weights fingerprint, dataset, split, preprocessing), and the parts are
removed. The per-example computation does not depend on the batch composition (inference-mode
batch norm), so the features do not depend on the number of devices (up to float32
rounding: the per-device batch size changes how XLA blocks the convolutions).

Store layout (`cache_dir`):
  {backbone}-{dataset}-{split}-{key}.npz   features (N, d) float32, labels (N,), meta (JSON str)
  {backbone}-{dataset}-{split}-{key}.json  the same meta, human-readable
  .parts-{key}/part-{c:06d}.npz            in-progress chunks (removed when complete)

Example:
  >>> import tempfile
  >>> from skmm_jax import features, models
  >>> from skmm_jax.data import vision
  >>> bundle = models.resnet_tiny_bundle(num_classes=10)
  >>> src = vision.load_split("digits", "test")
  >>> out = features.extract_features(bundle, src, dataset="digits", split="test",
  ...                                 cache_dir=tempfile.mkdtemp(), batch_size=64, progress=False)
  >>> out.features.shape, out.labels.shape
  ((359, 16), (359,))
"""
from __future__ import annotations

import json
import os
import shutil
from typing import NamedTuple, Optional

import jax
import numpy as np

from skmm_jax import cache, parallel
from skmm_jax.data import preprocess as pp
from skmm_jax.data import vision
from skmm_jax.validation import SkmmError

FORMAT_VERSION = 1


class Features(NamedTuple):
  """Attributes: features (N, d) float32; labels (N,); key (cache key); path (the npz);
  meta (dict: backbone, weights, dataset, split, preprocess, n, dim)."""
  features: np.ndarray
  labels: np.ndarray
  key: str
  path: str
  meta: dict


def feature_key(backbone: str, weights_fingerprint: str, dataset: str, split: str,
                preprocess: pp.Preprocess) -> str:
  """The cache key of one (backbone, weights, dataset, split, preprocessing) combination."""
  return cache.fingerprint({"format": FORMAT_VERSION, "backbone": backbone,
                            "weights": weights_fingerprint, "dataset": dataset, "split": split,
                            "preprocess": dict(preprocess._asdict())})


def feature_path(cache_dir: str, backbone: str, dataset: str, split: str, key: str) -> str:
  return os.path.join(cache_dir, f"{backbone}-{dataset}-{split}-{key}.npz")


def make_feature_fn(bundle, mesh):
  """jit(uint8 (B, H, W, 3) -> (B, d) float32), rows sharded over `data`, weights replicated."""
  spec = bundle.preprocess
  img_sharding = parallel.row_sharding(mesh, 4)

  def fn(variables, images):
    return bundle.apply_features(variables, pp.normalize(images, spec)).astype(np.float32)

  jitted = jax.jit(fn, in_shardings=(parallel.replicated(mesh), img_sharding),
                   out_shardings=parallel.row_sharding(mesh, 2))
  variables = jax.device_put(bundle.variables, parallel.replicated(mesh))

  def run(images: np.ndarray) -> np.ndarray:
    return np.asarray(jitted(variables, jax.device_put(images, img_sharding)))

  return run


def load_features(path: str) -> Features:
  """Reads a feature npz written by `extract_features` (no pickle)."""
  z = cache.load_npz(path)
  meta = json.loads(str(z["meta"]))
  return Features(z["features"], z["labels"], meta["key"], path, meta)


def extract_features(bundle, source, *, dataset: str, split: str, cache_dir: str,
                     batch_size: int = 256, chunk_batches: int = 8, mesh=None,
                     progress: bool = True) -> Features:
  """Features of every example of `source` through `bundle`, cached and resumable.

  Args:
    bundle: a `skmm_jax.models.ModelBundle`.
    source: a random-access image source (`skmm_jax.data.vision`), `source[i] -> (image, label)`.
    dataset, split: names that enter the cache key.
    cache_dir: where the store lives.
    batch_size: global batch (rounded up to a multiple of the device count).
    chunk_batches: batches per resumable part file.
    mesh: the `data` mesh (default: all local devices).
    progress: show a tqdm progress bar.
  Returns:
    `Features` (loaded from the store when it already exists).
  """
  mesh = mesh if mesh is not None else parallel.data_mesh()
  n = len(source)
  if n == 0:
    raise SkmmError(f"{dataset}/{split}: the source is empty")
  if batch_size <= 0 or chunk_batches <= 0:
    raise SkmmError(f"batch_size and chunk_batches must be positive; got {batch_size}, "
                    f"{chunk_batches}")
  key = feature_key(bundle.name, bundle.weights_fingerprint, dataset, split, bundle.preprocess)
  path = feature_path(cache_dir, bundle.name, dataset, split, key)
  if os.path.exists(path):
    return load_features(path)

  batch_size = parallel.padded_size(batch_size, mesh)
  chunk = batch_size * chunk_batches
  n_chunks = (n + chunk - 1) // chunk
  parts_dir = os.path.join(cache_dir, f".parts-{key}")
  os.makedirs(parts_dir, exist_ok=True)
  part = lambda c: os.path.join(parts_dir, f"part-{c:06d}.npz")
  done = [c for c in range(n_chunks) if os.path.exists(part(c))]
  n_batches = (n + batch_size - 1) // batch_size
  done_batches = sum((min(chunk, n - c * chunk) + batch_size - 1) // batch_size for c in done)

  feature_fn = None
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=n_batches, initial=done_batches, unit="batch",
               desc=f"features {bundle.name}/{dataset}/{split}")
  try:
    for c in range(n_chunks):
      if os.path.exists(part(c)):
        continue
      feature_fn = feature_fn or make_feature_fn(bundle, mesh)
      lo, hi = c * chunk, min((c + 1) * chunk, n)
      feats, labels = [], []
      for idx in vision.batch_indices(hi, batch_size, start=lo):
        images, y = vision.load_images(source, idx, bundle.preprocess)
        pad = batch_size - len(idx)
        if pad:
          images = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
        feats.append(feature_fn(images)[: len(idx)])
        labels.append(y)
        if bar is not None:
          bar.update(1)
      cache.atomic_save_npz(part(c), features=np.concatenate(feats),
                            labels=np.concatenate(labels))
  finally:
    if bar is not None:
      bar.close()

  parts = [cache.load_npz(part(c)) for c in range(n_chunks)]
  feats = np.concatenate([p["features"] for p in parts])
  labels = np.concatenate([p["labels"] for p in parts])
  if feats.shape[0] != n:
    raise SkmmError(f"{dataset}/{split}: the part files hold {feats.shape[0]} rows, expected {n}; "
                    f"delete {parts_dir} and rerun")
  meta = {"key": key, "backbone": bundle.name, "weights": bundle.weights_fingerprint,
          "dataset": dataset, "split": split, "preprocess": dict(bundle.preprocess._asdict()),
          "n": int(n), "dim": int(feats.shape[1]), "format": FORMAT_VERSION}
  cache.atomic_save_npz(path, features=feats, labels=labels, meta=np.asarray(json.dumps(meta)))
  cache.atomic_write_json(path[:-4] + ".json", meta)
  shutil.rmtree(parts_dir, ignore_errors=True)
  return Features(feats, labels, key, path, meta)
