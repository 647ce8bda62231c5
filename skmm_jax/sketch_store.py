"""Streaming driver and on-disk store of sketched per-example features (spec sections 2.1, 3).

`sketch_dataset` iterates a data source in fixed-size batches, runs one jit-compiled step per
batch with the batch sharded over the `data` mesh axis of all local devices, and writes each
batch's (B, m) rows into an on-disk N x m store next to the example ids. The host never holds
N x r numbers; on the device, the gaussian backend's default captured path needs O(batch x m)
plus the layers' captured activations (vmap(grad): O(batch x r)), plus the r x m Gamma when it
is cached (`gamma_cache`, on by default when it fits).

Store layout, one directory per key (a hash of model name, params fingerprint, parameter
subset, feature mode, target mode, backend and its options, m, seed, data fingerprint):

  <root>/<key>/rows.npy    (N, m) float32, written in place through a memmap
  <root>/<key>/ids.npy     (N,) int64 example ids
  <root>/<key>/meta.json   the full config, N, m, n_done, complete, non-finite ids

Rows [0, n_done) are committed: every `checkpoint_every` batches the memmaps are flushed and
then meta.json is replaced atomically. A killed run resumes at n_done (recomputing at most the
uncommitted batches, never duplicating a row: a row's place is its position in the source);
any change of the config gives a different key, so a stale store is never reused. Results do
not depend on the batch size or on the number of devices.

Example:
  >>> import functools, tempfile, numpy as np, jax, jax.numpy as jnp, flax.linen as nn
  >>> from skmm_jax import sketch_store
  >>> model = nn.Dense(3); v = model.init(jax.random.key(0), jnp.ones((1, 4)))
  >>> src = sketch_store.ArraySource(np.ones((10, 4), np.float32))
  >>> st = sketch_store.sketch_dataset(src, model.apply, v, subset=["params"], m=8,
  ...                                  batch_size=4, root=tempfile.mkdtemp(), progress=False)
  >>> st.rows.shape, st.ids[:3].tolist()
  ((10, 8), [0, 1, 2])
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import jax
import numpy as np
import tqdm
from jax.sharding import PartitionSpec as P

from skmm_jax import cache
from skmm_jax import gradients
from skmm_jax import parallel
from skmm_jax import sketching
from skmm_jax import validation

STORE_VERSION = 2  # 2: gaussian backend's per_example='auto' default
_log = logging.getLogger(__name__)


class ArraySource:
  """A data source over in-memory (or memmapped) arrays.

  Any object with `__len__`, `batch(start, stop) -> (inputs, labels | None, ids)` and
  `fingerprint() -> str` can be used as a source instead.

  Args:
    inputs: (N, ...) array (or a dict of such arrays).
    labels: optional (N,) int labels (needed for the 'true' target).
    ids: optional (N,) int example ids (default 0..N-1).
  """

  def __init__(self, inputs, labels=None, ids=None):
    self.inputs = inputs
    leaves = jax.tree.leaves(inputs)
    if not leaves:
      raise validation.SkmmError("the data source has no inputs.")
    self.n = int(leaves[0].shape[0])
    if any(int(l.shape[0]) != self.n for l in leaves):
      raise validation.SkmmError("all input arrays must have the same number of rows.")
    if self.n == 0:
      raise validation.SkmmError("the data source is empty.")
    self.labels = validation.check_labels(labels, self.n)
    ids = np.arange(self.n, dtype=np.int64) if ids is None else np.asarray(ids)
    if ids.shape != (self.n,) or not np.issubdtype(ids.dtype, np.integer):
      raise validation.SkmmError(f"ids must be ({self.n},) integers; got {ids.shape} {ids.dtype}.")
    if np.unique(ids).size != self.n:
      raise validation.SkmmError("example ids must be distinct.")
    if ids.min() < 0 or ids.max() >= 2**31:
      raise validation.SkmmError("example ids must lie in [0, 2**31).")
    self.ids = ids.astype(np.int64)
    self._fp = None

  def __len__(self):
    return self.n

  def batch(self, start: int, stop: int):
    inputs = jax.tree.map(lambda a: np.asarray(a[start:stop]), self.inputs)
    labels = None if self.labels is None else self.labels[start:stop]
    return inputs, labels, self.ids[start:stop]

  def fingerprint(self) -> str:
    if self._fp is None:
      parts = [cache.array_fingerprint(np.asarray(a)) for a in jax.tree.leaves(self.inputs)]
      parts.append(cache.array_fingerprint(self.ids))
      parts.append(None if self.labels is None else cache.array_fingerprint(self.labels))
      self._fp = cache.fingerprint(parts)
    return self._fp


class SketchStore(NamedTuple):
  """A finished (or partial) store.

  Attributes:
    rows: (N, m) float32 (read-only memmap) — the sketch the selector consumes.
    ids: (N,) int64 example ids, row-aligned.
    meta: the config and bookkeeping from meta.json.
    path: the store directory.
  """
  rows: np.ndarray
  ids: np.ndarray
  meta: Dict[str, Any]
  path: str


def store_key(config: Dict[str, Any]) -> str:
  """The store directory name: a fingerprint of everything that determines the rows."""
  return cache.fingerprint(dict(config, store_version=STORE_VERSION,
                                gamma_block_rows=sketching.GAMMA_BLOCK_ROWS))


def load_store(path: str, allow_partial: bool = False) -> SketchStore:
  """Opens a store directory (rows memory-mapped read-only; no pickle).

  Raises:
    SkmmError: if the store is incomplete and `allow_partial` is False.
  """
  meta_path = os.path.join(path, "meta.json")
  if not os.path.exists(meta_path):
    raise validation.SkmmError(f"no sketch store at {path!r} (meta.json missing).")
  meta = cache.read_json(meta_path)
  if not meta.get("complete") and not allow_partial:
    raise validation.SkmmError(
        f"the sketch store at {path!r} is incomplete ({meta['n_done']}/{meta['n']} rows); "
        f"rerun sketch_dataset to resume it.")
  rows = np.load(os.path.join(path, "rows.npy"), mmap_mode="r", allow_pickle=False)
  ids = np.load(os.path.join(path, "ids.npy"), mmap_mode="r", allow_pickle=False)
  k = meta["n"] if meta.get("complete") else meta["n_done"]
  return SketchStore(rows[:k], np.asarray(ids[:k]), meta, path)


def gamma_cache_budget(mesh) -> int:
  """Default bytes a Gamma cache may take per device: a quarter of its memory.

  On CPU the devices share the host's RAM, so the host's quarter is split between them.
  """
  devices = list(mesh.devices.flat)
  if devices[0].platform == "cpu":
    try:
      ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
      ram = 8 << 30
    return int(ram // 4 // len(devices))
  stats = devices[0].memory_stats() or {}
  return int(stats.get("bytes_limit", 4 << 30) // 4)


def _gamma_cache_plan(gamma_cache, gamma_cache_mb, requests, m, mesh, batches_left):
  """None (no cache), or the byte budget to build it with (None inside: everything)."""
  if not requests or gamma_cache is False:
    return None
  if gamma_cache is True:
    return (None,)
  need = sketching.gamma_cache_bytes(requests, m)
  budget = gamma_cache_budget(mesh) if gamma_cache_mb is None else int(gamma_cache_mb * 2**20)
  chunk = sketching.GAMMA_BLOCK_ROWS * int(m) * 4
  use = batches_left > 1 and budget >= chunk
  _log.info("Gamma cache: %s of %.1f MB per device (budget %.1f MB, %d batches to go)",
            ("all" if need <= budget else "part") if use else "none", need / 2**20,
            budget / 2**20, batches_left)
  return ((None if need <= budget else budget),) if use else None


def _pad_batch(x, size: int):
  pad = size - x.shape[0]
  return x if pad == 0 else np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))


def sketch_dataset(source, apply_fn: Callable, variables, *, root: str,
                   subset: Sequence[str] = (), m: Optional[int] = None, seed: int = 0,
                   mode: str = "grad", target: str = "random", backend: str = "gaussian",
                   backend_options: Optional[Dict[str, Any]] = None,
                   head_path: str = "params/head", batch_size: int = 64,
                   checkpoint_every: int = 10, model_name: str = "model",
                   params_fingerprint: Optional[str] = None, mesh=None,
                   on_nonfinite: str = "raise", progress: bool = True,
                   gamma_cache="auto", gamma_cache_mb: Optional[float] = None) -> SketchStore:
  """Sketches every example of `source` into an on-disk N x m store; resumes if interrupted.

  Args:
    source: an `ArraySource` (or any object with len / batch / fingerprint).
    apply_fn: (variables, inputs) -> logits (mode 'grad') or features ('head_grad',
      'features'); use `functools.partial(module.apply, train=False)` for batch norm in
      inference mode. The 'kronecker' backend needs a flax `Module.apply`.
    variables: the model variables (replicated over the mesh).
    root: directory holding stores; the store is `root/<key>`.
    subset: parameter path prefixes differentiated in mode 'grad' (e.g. the FT-2 layers).
    m: sketch dimension (None keeps raw features / head gradients in the other modes).
    seed: seeds Gamma and the random targets.
    mode, target, backend, backend_options, head_path: see `sketching.make_row_fn`.
    batch_size: examples per step (padded to a multiple of the device count).
    checkpoint_every: commit the store every this many batches.
    model_name: part of the key (e.g. 'resnet18').
    params_fingerprint: precomputed hash of `variables` (default: hashed here).
    mesh: the `data` mesh (default: all local devices).
    on_nonfinite: 'raise' (SkmmError naming the example ids with NaN/Inf rows; nothing of
      that batch is committed) or 'warn' (log, record the ids in meta.json, keep the rows).
    progress: show a tqdm bar with examples/s.
    gamma_cache: keep the seed's Gamma (r x m float32 per sketched leaf, replicated on each
      device) in memory for the whole run instead of regenerating its r m Gaussians for every
      batch. 'auto' (default): when more than one batch is left, as much of it as fits in
      `gamma_cache_mb` (all of it, or the first chunks; the rest is generated per batch);
      True / False: all of it / none. The rows are identical either way.
    gamma_cache_mb: the 'auto' budget per device (default: a quarter of device memory; on CPU a
      quarter of the host's RAM split between the local devices).

  Returns:
    The complete `SketchStore`.
  """
  validation.check_choice(on_nonfinite, ("raise", "warn"), "on_nonfinite policy")
  if not (gamma_cache is True or gamma_cache is False or gamma_cache == "auto"):
    raise validation.SkmmError(f"gamma_cache must be 'auto', True or False; got {gamma_cache!r}.")
  if gamma_cache_mb is not None and (isinstance(gamma_cache_mb, bool) or not (
      isinstance(gamma_cache_mb, (int, float)) and gamma_cache_mb >= 0)):
    raise validation.SkmmError(f"gamma_cache_mb must be a number >= 0; got {gamma_cache_mb!r}.")
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
    raise validation.SkmmError(f"batch_size must be a positive integer; got {batch_size!r}.")
  if not isinstance(checkpoint_every, (int, np.integer)) or checkpoint_every < 1:
    raise validation.SkmmError(f"checkpoint_every must be a positive integer; got {checkpoint_every!r}.")
  backend_options = dict(backend_options or {})
  paths = gradients.subset_paths(variables, subset) if mode == "grad" else ()
  row_fn = sketching.make_row_fn(apply_fn, paths, m=m, seed=seed, mode=mode, target=target,
                                 backend=backend, head_path=head_path, **backend_options)
  n = len(source)
  mesh = mesh if mesh is not None else parallel.data_mesh()
  bsz = parallel.padded_size(int(batch_size), mesh)
  config = dict(model=model_name,
                params=params_fingerprint or gradients.params_fingerprint(variables),
                layers=list(paths), mode=mode,
                target=target if mode != "features" else None,
                backend=backend if mode == "grad" else ("gaussian" if m else None),
                backend_options=backend_options if mode == "grad" else {},
                head_path=head_path if mode == "head_grad" else None,
                m=m, seed=seed, data=source.fingerprint(), n=n)
  path = os.path.join(root, store_key(config))
  meta_path = os.path.join(path, "meta.json")

  variables = jax.device_put(variables, parallel.replicated(mesh))
  # Every row depends on its own example only, so each device runs the row function on its
  # local slice of the batch (shard_map, no collectives). Leaving the batch to jit's SPMD
  # partitioner instead gives WRONG per-example conv-kernel gradients on all but the first
  # shard (vmap(grad) of a conv -> a batch-grouped conv, mis-partitioned in jax 0.10.2 on CPU;
  # tests/test_sketch_store.py checks 1 vs 4 devices).
  step = jax.jit(jax.shard_map(
      lambda v, x, l, i, g: row_fn(v, x, l, i, g), mesh=mesh,
      in_specs=(P(), P(parallel.DATA_AXIS), P(parallel.DATA_AXIS), P(parallel.DATA_AXIS), P()),
      out_specs=P(parallel.DATA_AXIS), check_vma=False))
  gammas, cache_resolved, requests = None, False, None

  def shard(x):
    return jax.device_put(x, parallel.row_sharding(mesh, x.ndim))

  def run_step(start, stop):
    nonlocal gammas, cache_resolved, requests
    inputs, labels, ids = source.batch(start, stop)
    if not cache_resolved:  # from the first batch this run computes (shapes only)
      cache_resolved = True
      if requests is None:  # a resumed run: not recorded when the store was created
        requests = row_fn.gamma_requests(variables, *padded(inputs, labels, ids)) if m else {}
      plan = _gamma_cache_plan(gamma_cache, gamma_cache_mb, requests, m, mesh,
                               -(-(n - start) // int(batch_size)))
      if plan is not None:
        gammas = jax.device_put(sketching.build_gamma_cache(row_fn.key, requests, m, plan[0]),
                                parallel.replicated(mesh))
    inputs = jax.tree.map(lambda a: shard(_pad_batch(np.asarray(a), bsz)), inputs)
    lab = None if labels is None else shard(_pad_batch(np.asarray(labels, np.int32), bsz))
    if target == "true" and mode != "features" and lab is None:
      raise validation.SkmmError("target 'true' needs labels, but the data source has none.")
    out = step(variables, inputs, lab, shard(_pad_batch(np.asarray(ids, np.int32), bsz)), gammas)
    return np.asarray(out)[: stop - start], np.asarray(ids)

  meta = cache.read_json(meta_path) if os.path.exists(meta_path) else None
  if meta is not None and meta.get("config") != cache._canonical(config):
    raise validation.SkmmError(f"store {path!r} holds a different config (hash collision?).")
  if meta is not None and meta.get("complete"):
    return load_store(path)

  def padded(inputs, labels, ids):
    return (jax.tree.map(lambda a: _pad_batch(np.asarray(a), bsz), inputs),
            None if labels is None else _pad_batch(np.asarray(labels, np.int32), bsz),
            _pad_batch(np.asarray(ids, np.int32), bsz))

  if meta is None:
    recorder = sketching.GammaRequests()  # one abstract trace gives the width and Gamma's size
    width = jax.eval_shape(lambda v, x, l, i: row_fn(v, x, l, i, recorder), variables,
                           *padded(*source.batch(0, 1))).shape[-1]
    requests = dict(recorder) if m else {}
    os.makedirs(path, exist_ok=True)
    np.lib.format.open_memmap(os.path.join(path, "rows.npy"), mode="w+", dtype=np.float32,
                              shape=(n, width)).flush()
    np.lib.format.open_memmap(os.path.join(path, "ids.npy"), mode="w+", dtype=np.int64,
                              shape=(n,)).flush()
    meta = dict(config=config, n=n, m=int(width), n_done=0, complete=False, nonfinite_ids=[])
    cache.atomic_write_json(meta_path, meta)
  rows_mm = np.load(os.path.join(path, "rows.npy"), mmap_mode="r+", allow_pickle=False)
  ids_mm = np.load(os.path.join(path, "ids.npy"), mmap_mode="r+", allow_pickle=False)

  def commit(n_done):
    rows_mm.flush()
    ids_mm.flush()
    meta["n_done"] = int(n_done)
    meta["complete"] = bool(n_done == n)
    cache.atomic_write_json(meta_path, meta)

  start = int(meta["n_done"])
  bar = tqdm.tqdm(total=n, initial=start, unit="ex", desc=f"sketch {mode}/{backend} m={m}",
                  disable=not progress, dynamic_ncols=True)
  t0, done0, batches = time.perf_counter(), start, 0
  try:
    while start < n:
      stop = min(start + int(batch_size), n)
      rows, ids = run_step(start, stop)
      bad = ~np.isfinite(rows).all(axis=1)
      if bad.any():
        bad_ids = ids[bad].tolist()
        msg = (f"non-finite (NaN/Inf) sketched gradients for {len(bad_ids)} example(s); "
               f"offending example ids: {bad_ids[:20]}")
        if on_nonfinite == "raise":
          commit(start)
          raise validation.SkmmError(msg + ". Fix the inputs/model or pass on_nonfinite='warn'.")
        _log.warning(msg)
        meta["nonfinite_ids"] = meta["nonfinite_ids"] + bad_ids
      rows_mm[start:stop] = rows
      ids_mm[start:stop] = ids
      batches += 1
      bar.update(stop - start)
      bar.set_postfix(ex_per_s=f"{(stop - done0) / max(time.perf_counter() - t0, 1e-9):.1f}")
      start = stop
      if batches % int(checkpoint_every) == 0 or start == n:
        commit(start)
  finally:
    bar.close()
  del rows_mm, ids_mm
  return load_store(path)

