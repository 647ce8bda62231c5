"""One entry point and one registry for every data-selection method.

`select(features, n, method=...)` works on any (N, d) array a user brings: backbone
features, sketched gradients, or raw data. It validates its input, shards the rows over the
`data` mesh of all local devices, runs the registered selector and returns `n` sorted,
distinct indices together with diagnostics.

Selectors are plain functions registered under a name:

    @register("uniform")
    def uniform(rows: parallel.ShardedRows, n: int, key: jax.Array, *, ctx: SelectorContext):
      ...
      return SelectorOutput(indices=idx)

Their keyword-only parameters after `ctx` are their options; `select` rejects an option a
selector does not have (a config typo) with the closest valid name.

Example:
  >>> import numpy as np
  >>> import skmm_jax
  >>> x = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32)
  >>> res = skmm_jax.select(x, 10, method="uniform", seed=0)
  >>> len(res.indices), bool(np.all(np.diff(res.indices) > 0))
  (10, True)
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Dict, NamedTuple, Optional

import jax
import numpy as np

from skmm_jax import parallel
from skmm_jax import validation


class SelectorOutput(NamedTuple):
  """What a selector returns.

  Attributes:
    indices: (n,) distinct row ids (any order; `select` sorts them).
    weights: optional (N,) relaxation weights (SkMM's s).
    sketch: optional (N, m) matrix the selector matched moments on (for callers; the
      diagnostics use one common sketch for every method).
    info: extra scalars (objective, ||s||_0, iterations ...).
  """
  indices: np.ndarray
  weights: Optional[np.ndarray] = None
  sketch: Optional[Any] = None
  info: Optional[Dict[str, Any]] = None


@dataclasses.dataclass(frozen=True)
class SelectorContext:
  """Everything a selector may need besides the rows, the budget and the key."""
  labels: Optional[np.ndarray] = None
  progress: bool = False
  num_classes: Optional[int] = None


class SelectionResult(NamedTuple):
  """The result of `select`.

  Attributes:
    indices: (n,) int64, sorted and distinct.
    method: the selector's name.
    diagnostics: dict of moment gap, trace score, eigenvalue score and the selector's info.
    weights: optional (N,) relaxation weights (SkMM).
  """
  indices: np.ndarray
  method: str
  diagnostics: Dict[str, Any]
  weights: Optional[np.ndarray] = None


@dataclasses.dataclass(frozen=True)
class _Entry:
  fn: Callable
  options: Dict[str, Any]
  needs_labels: bool


_REGISTRY: Dict[str, _Entry] = {}


def register(name: str, *, needs_labels: bool = False):
  """Registers a selector under `name` (decorator)."""
  def deco(fn):
    sig = inspect.signature(fn)
    opts = {p.name: p.default for p in sig.parameters.values()
            if p.kind == p.KEYWORD_ONLY and p.name != "ctx"}
    _REGISTRY[name] = _Entry(fn, opts, needs_labels)
    return fn
  return deco


def _ensure_builtin():
  # Importing these modules registers their selectors.
  from skmm_jax import baselines  # noqa: F401
  from skmm_jax import moment_matching  # noqa: F401


def available() -> list:
  """Names of all registered selectors."""
  _ensure_builtin()
  return sorted(_REGISTRY)


def options(method: str) -> Dict[str, Any]:
  """The options of `method` and their defaults."""
  _ensure_builtin()
  validation.check_choice(method, _REGISTRY, "selection method")
  return dict(_REGISTRY[method].options)


def select(features, n: int, method: str = "skmm", *, seed: int = 0, labels=None,
           mesh=None, diagnostics: bool = True, progress: bool = False,
           diagnostics_m: int = 256, **method_options) -> SelectionResult:
  """Selects `n` of the N rows of `features` with `method`.

  Args:
    features: (N, d) array (numpy or jax): features, sketched gradients or raw data.
    n: the budget, 0 < n <= N.
    method: a registered selector name, see `available()`.
    seed: the seed; the same seed gives the same indices on any number of devices.
    labels: optional (N,) integer class ids (needed by `class_balanced` rounding).
    mesh: optional `data` mesh (default: all local devices).
    diagnostics: compute the moment gap, trace and eigenvalue scores of the selection.
    progress: show progress bars.
    diagnostics_m: sketch dimension the diagnostics of every method use when d is larger.
    **method_options: options of the selector (see `options(method)`).

  Returns:
    A `SelectionResult` with `n` sorted distinct indices.

  Raises:
    SkmmError: on bad input (shape, NaN/Inf, n out of range, unknown method or option).
  """
  _ensure_builtin()
  validation.check_choice(method, _REGISTRY, "selection method")
  entry = _REGISTRY[method]
  for k in method_options:
    validation.check_choice(k, entry.options, f"option for method {method!r}")
  features = validation.check_matrix(features, "features")
  num = features.shape[0]
  n = validation.check_budget(n, num)
  labels = validation.check_labels(labels, num)
  if entry.needs_labels and labels is None:
    raise validation.SkmmError(f"method {method!r} needs labels.")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise validation.SkmmError(f"seed must be an integer; got {seed!r}.")
  rows = parallel.shard_rows(np.asarray(features, np.float32), mesh)
  ctx = SelectorContext(labels=labels, progress=progress,
                        num_classes=None if labels is None else int(labels.max()) + 1)
  out = entry.fn(rows, n, jax.random.key(int(seed)), ctx=ctx, **method_options)
  idx = np.sort(np.asarray(out.indices, np.int64))
  if idx.shape != (n,) or np.unique(idx).size != n or idx.min() < 0 or idx.max() >= num:
    raise RuntimeError(f"selector {method!r} returned an invalid index set "
                       f"(shape {idx.shape}, {np.unique(idx).size} distinct); this is a bug.")
  diag: Dict[str, Any] = dict(out.info or {})
  if diagnostics:
    from skmm_jax import moment_matching
    # Every method is measured on the same matrix (SkMM's own optimisation sketch may have
    # another m): the features themselves, or one seed-derived sketch of them.
    if features.shape[1] <= diagnostics_m:
      sk = rows
    else:
      from skmm_jax import sketching
      sk = sketching.sketch_sharded(rows, diagnostics_m, seed=int(seed))
    diag.update(moment_matching.selection_diagnostics(sk, idx))
  return SelectionResult(idx, method, diag, out.weights)
