"""The paper's real datasets as random-access image sources, with seeded splits and numpy batching.

Datasets (`DATASETS`):
  * cifar10, cars196: tensorflow-datasets from a user-given `data_dir`. Without TensorFlow the
    data must be prepared as array_record and is read with `tfds.data_source` (random access,
    lazy); with TensorFlow installed, other formats are read once with `tfds.load` (images kept
    encoded, decoded on access). Official splits: "train", "test".
  * utkface: a folder of `{age}_{gender}_{race}_{date}.jpg` files (also the `.jpg.chip.jpg`
    names of the aligned & cropped release); label = age (regression). Malformed names are
    collected in `source.skipped` and logged, never fatal.
  * digits: sklearn's 8x8 digits (bundled with scikit-learn, offline), grey -> uint8 0..255.
  UTKFace and digits have no official test split: "test" is a fixed 20% carved with
  `FIXED_TEST_SEED`, "train" is the rest, so both are stable across experiments.

Validation data is always carved from the "train" pool by seed (`train_val_indices`), never
from the test split. An `ImageSource` has `len(source)` and `source[i] -> (uint8 (H, W, 3|1)
image, label)`; `Subset` views a source through an index array.

Example:
  >>> from skmm_jax.data import vision
  >>> train = vision.load_split("digits", "train")
  >>> image, label = train[0]
  >>> image.dtype, image.shape, len(train) + len(vision.load_split("digits", "test"))
  (dtype('uint8'), (8, 8), 1797)
  >>> tr, va = vision.train_val_indices(len(train), val_fraction=0.1, seed=0)
"""
from __future__ import annotations

import io
import logging
import os
import re
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from skmm_jax.validation import SkmmError, check_choice

FIXED_TEST_SEED = 20240710
FIXED_TEST_FRACTION = 0.2


class DatasetInfo(NamedTuple):
  """Attributes: task ("classification" | "regression"), num_classes (0 for regression),
  splits (official split names), source ("tfds" | "folder" | "sklearn")."""
  task: str
  num_classes: int
  splits: Tuple[str, ...]
  source: str


DATASETS = {
    "cifar10": DatasetInfo("classification", 10, ("train", "test"), "tfds"),
    "cars196": DatasetInfo("classification", 196, ("train", "test"), "tfds"),
    "utkface": DatasetInfo("regression", 0, ("train", "test"), "folder"),
    "digits": DatasetInfo("classification", 10, ("train", "test"), "sklearn"),
}


class DataNotFoundError(SkmmError):
  """The dataset is not where it was looked for (the message says where and what to run)."""


# --------------------------------------------------------------------------- sources


class ArraySource:
  """In-memory images (N, H, W[, C]) uint8 and labels."""

  def __init__(self, images: np.ndarray, labels: np.ndarray, name: str = "array"):
    if len(images) != len(labels):
      raise SkmmError(f"{name}: {len(images)} images but {len(labels)} labels")
    self.images, self.labels, self.name = images, np.asarray(labels), name

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, i):
    return self.images[int(i)], self.labels[int(i)]


class TfdsSource:
  """A `tfds.data_source` split (array_record, random access; decodes on access)."""

  def __init__(self, source, name: str):
    self.source, self.name = source, name

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, i):
    ex = self.source[int(i)]
    return np.asarray(ex["image"]), np.asarray(ex["label"]).astype(np.int64)[()]


class EncodedSource:
  """Encoded images (PNG/JPEG bytes) decoded with PIL on access."""

  def __init__(self, encoded: Sequence[bytes], labels: np.ndarray, name: str):
    self.encoded, self.labels, self.name = list(encoded), np.asarray(labels), name

  def __len__(self) -> int:
    return len(self.encoded)

  def __getitem__(self, i):
    from PIL import Image
    with Image.open(io.BytesIO(self.encoded[int(i)])) as im:
      return np.asarray(im.convert("RGB")), self.labels[int(i)]


class FileSource:
  """Image files decoded with PIL on access, with per-file labels and metadata."""

  def __init__(self, paths: Sequence[str], labels: np.ndarray, name: str, meta=None,
               skipped: Sequence[Tuple[str, str]] = ()):
    self.paths, self.labels, self.name = list(paths), np.asarray(labels), name
    self.meta = meta or {}
    self.skipped = list(skipped)

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, i):
    from PIL import Image
    with Image.open(self.paths[int(i)]) as im:
      return np.asarray(im.convert("RGB")), self.labels[int(i)]


class Subset:
  """A view of `source` through `indices` (e.g. a seeded validation split)."""

  def __init__(self, source, indices):
    self.source, self.indices = source, np.asarray(indices, dtype=np.int64)
    self.name = getattr(source, "name", "subset")
    if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(source)):
      raise SkmmError(f"subset indices out of range for a source of {len(source)} examples")

  def __len__(self) -> int:
    return int(self.indices.size)

  def __getitem__(self, i):
    return self.source[self.indices[int(i)]]


# --------------------------------------------------------------------------- tfds


def _prepare_hint(name: str, data_dir: str) -> str:
  extra = (" StanfordCars' original download links are gone: place the archives as the tfds "
           "cars196 documentation says (manual_dir) before building." if name == "cars196" else "")
  return (f"Prepare it once, on a machine with TensorFlow and internet: "
          f"`tfds build {name} --data_dir={data_dir} --file_format=array_record` "
          f"(array_record is readable here without TensorFlow).{extra}")


def _tf_available() -> bool:
  try:
    import tensorflow  # noqa: F401
    return True
  except ImportError:
    return False


def tfds_source(name: str, split: str, data_dir: Optional[str]):
  """A random-access source for a tfds split, without downloading anything.

  Tries `tfds.data_source` (array_record; no TensorFlow needed), then, when TensorFlow is
  importable, `tfds.load` (any prepared format; images kept encoded). Raises DataNotFoundError
  naming the dataset, the directory and the prepare command when neither works.
  """
  import tensorflow_datasets as tfds
  if data_dir is None:
    data_dir = os.environ.get("TFDS_DATA_DIR", os.path.expanduser("~/tensorflow_datasets"))
  data_dir = os.path.expanduser(str(data_dir))
  try:
    src = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    return TfdsSource(src, f"{name}/{split}")
  except Exception as e:  # absent, wrong format, missing split
    first_error = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  if _tf_available():
    try:
      ds = tfds.load(name, split=split, data_dir=data_dir, download=False,
                     decoders={"image": tfds.decode.SkipDecoding()})
      encoded, labels = [], []
      for ex in tfds.as_numpy(ds):
        encoded.append(bytes(ex["image"]))
        labels.append(int(ex["label"]))
      return EncodedSource(encoded, np.asarray(labels, np.int64), f"{name}/{split}")
    except Exception as e:
      first_error += f"; tfds.load: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
  raise DataNotFoundError(
      f"dataset {name!r} (split {split!r}) is not available in data_dir {data_dir!r}: "
      f"{_absent_reason(name, data_dir, first_error)}. {_prepare_hint(name, data_dir)}")


def _absent_reason(name: str, data_dir: str, error: str) -> str:
  """Why a tfds dataset could not be read, in words (tfds' own message is often misleading)."""
  root = os.path.join(data_dir, name)
  if not os.path.isdir(data_dir):
    return "the directory does not exist"
  if not os.path.isdir(root):
    return f"there is no {name}/ folder in it"
  files = [f for _, _, fs in os.walk(root) for f in fs]
  if not any(".array_record" in f for f in files) and any(".tfrecord" in f for f in files):
    if not _tf_available():
      return ("it is prepared as TFRecord, which needs TensorFlow (not installed) to read; "
              "re-prepare it as array_record or install tensorflow")
  if not any(f == "dataset_info.json" for f in files):
    return f"{root} holds no prepared version (no dataset_info.json)"
  return error


# --------------------------------------------------------------------------- folders / sklearn

_UTK_RE = re.compile(r"^(\d{1,3})_([01])_([0-4])_(\d+)\.jpg(\.chip\.jpg)?$", re.IGNORECASE)


def parse_utkface_name(filename: str):
  """`{age}_{gender}_{race}_{date}.jpg[.chip.jpg]` -> (age, gender, race); None if malformed."""
  m = _UTK_RE.match(os.path.basename(filename))
  if not m:
    return None
  return int(m.group(1)), int(m.group(2)), int(m.group(3))


def utkface_source(directory: str) -> FileSource:
  """All UTKFace images in `directory` (sorted by name); labels = age (float32).

  Malformed names (e.g. the release's few files without a race field) are skipped and listed
  in `source.skipped` as (name, reason), with one warning; non-image files are ignored.
  """
  if directory is None or not os.path.isdir(directory):
    raise DataNotFoundError(
        f"dataset 'utkface': directory {directory!r} does not exist. Put the UTKFace images "
        "(`{age}_{gender}_{race}_{date}.jpg`, e.g. the aligned & cropped 'UTKFace' folder) "
        "in one folder and pass it as data_dir.")
  paths, ages, genders, races, skipped = [], [], [], [], []
  for name in sorted(os.listdir(directory)):
    if not name.lower().endswith((".jpg", ".jpeg", ".png")):
      continue
    parsed = parse_utkface_name(name)
    if parsed is None:
      skipped.append((name, "name is not {age}_{gender}_{race}_{date}.jpg"))
      continue
    paths.append(os.path.join(directory, name))
    ages.append(parsed[0])
    genders.append(parsed[1])
    races.append(parsed[2])
  if skipped:
    logging.warning("utkface: skipped %d malformed file name(s) in %s, e.g. %s", len(skipped),
                    directory, [s[0] for s in skipped[:5]])
  if not paths:
    raise DataNotFoundError(f"dataset 'utkface': no well-formed image in {directory!r} "
                            f"({len(skipped)} malformed name(s)).")
  meta = {"gender": np.asarray(genders, np.int64), "race": np.asarray(races, np.int64)}
  return FileSource(paths, np.asarray(ages, np.float32), f"utkface", meta, skipped)


def digits_source() -> ArraySource:
  """sklearn's digits (1797 8x8 images, 10 classes) as uint8 0..255 grey images."""
  from sklearn.datasets import load_digits
  d = load_digits()
  images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
  return ArraySource(images, d.target.astype(np.int64), "digits")


def fixed_test_indices(n: int) -> Tuple[np.ndarray, np.ndarray]:
  """(train, test) index arrays of a fixed 80/20 split for datasets without a test split."""
  perm = np.random.default_rng(FIXED_TEST_SEED).permutation(n)
  n_test = int(round(FIXED_TEST_FRACTION * n))
  return np.sort(perm[n_test:]), np.sort(perm[:n_test])


# --------------------------------------------------------------------------- public API


def load_split(dataset: str, split: str, data_dir: Optional[str] = None):
  """A random-access source for one official split ("train" or "test").

  Args:
    dataset: "cifar10", "cars196", "utkface" or "digits".
    split: "train" (the pool selection and validation come from) or "test".
    data_dir: tfds data directory (cifar10, cars196; default $TFDS_DATA_DIR or
      ~/tensorflow_datasets) or the UTKFace image folder; unused for digits.
  """
  check_choice(dataset, DATASETS, "dataset")
  info = DATASETS[dataset]
  check_choice(split, info.splits, f"split of {dataset}")
  if info.source == "tfds":
    return tfds_source(dataset, split, data_dir)
  full = utkface_source(data_dir) if dataset == "utkface" else digits_source()
  train, test = fixed_test_indices(len(full))
  sub = Subset(full, train if split == "train" else test)
  sub.name = f"{dataset}/{split}"
  return sub


def train_val_indices(n_pool: int, val_fraction: float = 0.1, seed: int = 0,
                      n_val: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
  """Splits the training pool 0..n_pool-1 into (train, validation) index arrays by seed.

  Args:
    n_pool: size of the "train" split.
    val_fraction: fraction held out for validation (ignored when `n_val` is given).
    seed: the split seed.
  Returns:
    sorted int64 arrays (train_idx, val_idx), disjoint, covering the pool.
  """
  if n_val is None:
    if not 0.0 <= val_fraction < 1.0:
      raise SkmmError(f"val_fraction must be in [0, 1); got {val_fraction}")
    n_val = int(round(val_fraction * n_pool))
  if not 0 <= n_val < n_pool:
    raise SkmmError(f"n_val={n_val} must be in [0, {n_pool}) for a pool of {n_pool}")
  perm = np.random.default_rng(seed).permutation(n_pool)
  return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def batch_indices(n: int, batch_size: int, start: int = 0) -> Iterator[np.ndarray]:
  """Consecutive index batches [start, start+b), ...; the last one may be short."""
  if batch_size <= 0:
    raise SkmmError(f"batch_size must be positive; got {batch_size}")
  for lo in range(start, n, batch_size):
    yield np.arange(lo, min(lo + batch_size, n))


def load_images(source, indices, preprocess=None) -> Tuple[np.ndarray, np.ndarray]:
  """Reads `source[i]` for i in `indices`: (uint8 (B, crop, crop, 3) after resize+crop, labels).

  With `preprocess=None` the images must share one shape and are stacked as they are.
  """
  from skmm_jax.data import preprocess as pp
  images, labels = [], []
  for i in indices:
    image, label = source[i]
    images.append(pp.resize_crop(image, preprocess) if preprocess is not None else image)
    labels.append(label)
  if not images:
    size = preprocess.crop if preprocess is not None else 0
    return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), np.int64)
  return np.stack(images), np.asarray(labels)


def numpy_batches(arrays: Sequence[np.ndarray], batch_size: int, seed: Optional[int] = None,
                  drop_remainder: bool = False) -> Iterator[List[np.ndarray]]:
  """Plain numpy mini-batches over aligned arrays; shuffled by `seed` when given.

  Example:
    >>> import numpy as np
    >>> [b[0].tolist() for b in numpy_batches([np.arange(5)], 2)]
    [[0, 1], [2, 3], [4]]
  """
  n = len(arrays[0])
  if any(len(a) != n for a in arrays):
    raise SkmmError(f"arrays must have the same length; got {[len(a) for a in arrays]}")
  order = np.random.default_rng(seed).permutation(n) if seed is not None else np.arange(n)
  stop = n - n % batch_size if drop_remainder else n
  for idx in batch_indices(stop, batch_size):
    yield [a[order[idx]] for a in arrays]
