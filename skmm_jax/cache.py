"""Content-keyed, atomic on-disk caches shared by every stage.

A cache entry is keyed by a hash of everything that determines it (`fingerprint`), written
to a temporary file in the same directory and renamed into place (`atomic_*`), so that an
interrupted run never leaves a corrupt or stale result. Only formats that cannot execute
code are read: npz with `allow_pickle=False`, and JSON.

Example:
  >>> import tempfile, os, numpy as np
  >>> from skmm_jax import cache
  >>> key = cache.fingerprint({"method": "skmm", "n": 10}, np.arange(3))
  >>> d = tempfile.mkdtemp()
  >>> cache.atomic_save_npz(os.path.join(d, key + ".npz"), idx=np.arange(3))
  >>> cache.load_npz(os.path.join(d, key + ".npz"))["idx"].tolist()
  [0, 1, 2]
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Mapping

import numpy as np


def _canonical(obj: Any):
  """JSON-able canonical form of configs, dataclasses and small containers."""
  if hasattr(obj, "to_dict"):  # ml_collections.ConfigDict
    obj = obj.to_dict()
  if isinstance(obj, Mapping):
    return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
  if isinstance(obj, (list, tuple)):
    return [_canonical(v) for v in obj]
  if isinstance(obj, (np.integer,)):
    return int(obj)
  if isinstance(obj, (np.floating,)):
    return float(obj)
  if isinstance(obj, (str, int, float, bool)) or obj is None:
    return obj
  return repr(obj)


def array_fingerprint(x) -> str:
  """sha256 of an array's dtype, shape and bytes."""
  x = np.ascontiguousarray(np.asarray(x))
  h = hashlib.sha256()
  h.update(str(x.dtype).encode())
  h.update(str(x.shape).encode())
  h.update(x.tobytes())
  return h.hexdigest()


def fingerprint(*parts: Any, length: int = 16) -> str:
  """A short hex key over configs (canonical JSON) and arrays (their bytes)."""
  h = hashlib.sha256()
  for p in parts:
    if isinstance(p, (np.ndarray,)) or hasattr(p, "__array__") and not isinstance(p, (list, tuple, dict)):
      h.update(b"array:" + array_fingerprint(p).encode())
    else:
      h.update(b"json:" + json.dumps(_canonical(p), sort_keys=True).encode())
  return h.hexdigest()[:length]


_UMASK = os.umask(0)
os.umask(_UMASK)


def _atomic_write(path: str, write_fn, mode: str = "wb") -> str:
  directory = os.path.dirname(os.path.abspath(path)) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-" + os.path.basename(path) + "-")
  try:
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results follow the umask
    with os.fdopen(fd, mode) as f:
      write_fn(f)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def atomic_save_npz(path: str, **arrays) -> str:
  """Writes arrays to `path` (.npz) atomically."""
  return _atomic_write(path, lambda f: np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()}))


def load_npz(path: str) -> dict:
  """Loads an npz written by `atomic_save_npz` (never unpickles)."""
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


def atomic_write_json(path: str, obj: Any) -> str:
  return _atomic_write(path, lambda f: f.write(json.dumps(_canonical(obj), indent=2, sort_keys=True)),
                       mode="w")


def atomic_write_text(path: str, text: str) -> str:
  return _atomic_write(path, lambda f: f.write(text), mode="w")


def read_json(path: str):
  with open(path) as f:
    return json.load(f)
