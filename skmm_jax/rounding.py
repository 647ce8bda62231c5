"""Rounding relaxation weights s in the capped simplex to n distinct indices.

Methods:
  * `sample`: n draws without replacement with probability proportional to s (Gumbel top-k);
  * `topk`: the n largest s_i;
  * `class_balanced`: the largest s_i within each class, n/C per class, the remainder spread
    deterministically (to the classes with most weight mass, then by class id); a class with too
    few examples gives its surplus to the others.
Ties are broken by a seed-derived random order (never by position, which would favour the first
rows of a pool sorted by class), so the output is always n distinct, sorted indices.

Example:
  >>> import numpy as np, jax
  >>> from skmm_jax import rounding
  >>> s = np.array([0.5, 0.0, 0.25, 0.25])
  >>> rounding.round_weights(s, 2, "topk", jax.random.key(0)).tolist()
  [0, 2]
"""
from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from skmm_jax import validation

METHODS = ("sample", "topk", "class_balanced")


def _tiebreak(key: jax.Array, num: int) -> np.ndarray:
  """A seed-derived random key per row (depends only on N and the key)."""
  return np.asarray(jax.random.uniform(key, (num,)), np.float64)


def top_n(primary: np.ndarray, n: int, tiebreak: np.ndarray) -> np.ndarray:
  """Indices of the n largest `primary` (-inf allowed), ties broken by larger `tiebreak`."""
  order = np.lexsort((-tiebreak, -primary))
  return np.sort(order[:n])


def gumbel_top_n(log_weights: np.ndarray, n: int, key: jax.Array) -> np.ndarray:
  """n indices drawn without replacement with P proportional to exp(log_weights).

  Rows of weight zero (log -inf) come last, in a random order, so n distinct indices are
  returned even when fewer than n weights are positive.
  """
  num = log_weights.shape[0]
  k1, k2 = jax.random.split(key)
  g = np.asarray(jax.random.gumbel(k1, (num,)), np.float64)
  return top_n(np.asarray(log_weights, np.float64) + g, n, _tiebreak(k2, num))


def _class_quotas(labels: np.ndarray, s: np.ndarray, n: int) -> dict:
  classes, counts = np.unique(labels, return_counts=True)
  mass = np.array([s[labels == c].sum() for c in classes])
  quota = np.full(classes.size, n // classes.size)
  order = np.lexsort((classes, -mass))  # most mass first, then class id
  quota[order[: n % classes.size]] += 1
  # Water-fill: classes with too few examples hand their surplus on, in the same order.
  while True:
    over = quota > counts
    if not over.any():
      break
    surplus = int((quota[over] - counts[over]).sum())
    quota[over] = counts[over]
    room = [i for i in order if quota[i] < counts[i]]
    while surplus and room:
      for i in room:
        if surplus == 0:
          break
        if quota[i] < counts[i]:
          quota[i] += 1
          surplus -= 1
      room = [i for i in room if quota[i] < counts[i]]
  return dict(zip(classes.tolist(), quota.tolist()))


def round_weights(s, n: int, method: str, key: jax.Array,
                  labels: Optional[np.ndarray] = None) -> np.ndarray:
  """Rounds weights `s` (N,) to n distinct sorted indices.

  Args:
    s: (N,) non-negative weights (the relaxation's solution).
    n: number of indices, 0 < n <= N.
    method: one of `METHODS`.
    key: PRNG key for sampling and tie-breaking.
    labels: (N,) class ids, required by `class_balanced`.

  Returns:
    (n,) int64 sorted distinct indices.
  """
  validation.check_choice(method, METHODS, "rounding method")
  s = np.asarray(s, np.float64)
  num = s.shape[0]
  n = validation.check_budget(n, num)
  k_sample, k_tie = jax.random.split(key)
  tie = _tiebreak(k_tie, num)
  if method == "sample":
    with np.errstate(divide="ignore"):
      logw = np.where(s > 0, np.log(np.maximum(s, 1e-300)), -np.inf)
    return gumbel_top_n(logw, n, k_sample).astype(np.int64)
  if method == "topk":
    return top_n(s, n, tie).astype(np.int64)
  if labels is None:
    raise validation.SkmmError("rounding 'class_balanced' needs labels; pass labels=... to select().")
  labels = validation.check_labels(labels, num)
  chosen = []
  for c, q in _class_quotas(labels, s, n).items():
    if q == 0:
      continue
    members = np.nonzero(labels == c)[0]
    chosen.append(members[top_n(s[members], q, tie[members])])
  return np.sort(np.concatenate(chosen)).astype(np.int64)
