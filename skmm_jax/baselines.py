"""Baseline selectors on any feature matrix (features or sketched gradients), spec section 6.

Each is registered in `skmm_jax.selection` and is deterministic given its seed:
  * `uniform`: n indices uniformly without replacement;
  * `herding`: DeepCore's greedy herding: the next point is the one farthest from
    (t+1) * mean minus the running sum of the points chosen so far (deterministic);
  * `kcenter`: k-center greedy, farthest-first traversal from one random start;
  * `adaptive`: adaptive sampling = randomly pivoted partial Cholesky on the rows' Gram kernel,
    filled uniformly once the rank is exhausted;
  * `leverage`: truncated leverage scores (top-`rank` left singular vectors), n draws without
    replacement proportional to the score;
  * `ridge_leverage`: ridge leverage scores sum_j U_ij^2 s_j^2 / (s_j^2 + alpha), same sampling.

The greedy loops (herding, k-center, RPCholesky) are jit-compiled `fori_loop`s over row-sharded
arrays: each step is one O(N d) pass, data-parallel over the `data` mesh.

Example:
  >>> import numpy as np, skmm_jax
  >>> x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
  >>> skmm_jax.select(x, 5, method="kcenter", seed=1, diagnostics=False).indices.shape
  (5,)
"""
from __future__ import annotations

import collections
import functools
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from skmm_jax import cache
from skmm_jax import parallel
from skmm_jax import rounding
from skmm_jax import selection
from skmm_jax import validation

_HI = jax.lax.Precision.HIGHEST


@selection.register("uniform")
def uniform(rows, n, key, *, ctx) -> selection.SelectorOutput:
  """n rows uniformly at random without replacement."""
  return selection.SelectorOutput(np.asarray(jax.random.permutation(key, rows.n_valid)[:n]))


# ---------------------------------------------------------------------------------------------
# Greedy loops.


@functools.partial(jax.jit, static_argnames=("n", "n_valid"))
def _herding(x, mask, n, n_valid):
  mu = jnp.sum(x, axis=0) / n_valid
  sq = jnp.sum(x * x, axis=1)

  def body(t, carry):
    running, chosen, idx = carry
    target = (t + 1) * mu - running
    dist = sq - 2 * jnp.dot(x, target, precision=_HI)  # ||x - target||^2 - ||target||^2
    dist = jnp.where(mask & ~chosen, dist, -jnp.inf)
    p = jnp.argmax(dist)
    return running + x[p], chosen.at[p].set(True), idx.at[t].set(p)

  init = (jnp.zeros(x.shape[1], x.dtype), jnp.zeros(x.shape[0], bool), jnp.zeros(n, jnp.int32))
  return jax.lax.fori_loop(0, n, body, init)[2]


@selection.register("herding")
def herding(rows, n, key, *, ctx) -> selection.SelectorOutput:
  """DeepCore herding (deterministic; the key is unused)."""
  del key
  return selection.SelectorOutput(np.asarray(_herding(rows.array, rows.mask, n, rows.n_valid)))


@functools.partial(jax.jit, static_argnames=("n",))
def _kcenter(x, mask, start, n):
  sq = jnp.sum(x * x, axis=1)

  def dist_to(p):
    return jnp.maximum(sq - 2 * jnp.dot(x, x[p], precision=_HI) + sq[p], 0)

  def body(t, carry):
    mind, chosen, idx = carry
    # Chosen rows are excluded explicitly: with duplicated rows (or rounding) their distance
    # need not be the unique minimum 0, and ties at 0 must fall on an unchosen row.
    p = jnp.argmax(jnp.where(mask & ~chosen, mind, -1.0))
    return jnp.minimum(mind, dist_to(p)), chosen.at[p].set(True), idx.at[t].set(p)

  mind = dist_to(start)
  chosen = jnp.zeros(x.shape[0], bool).at[start].set(True)
  idx = jnp.zeros(n, jnp.int32).at[0].set(start)
  return jax.lax.fori_loop(1, n, body, (mind, chosen, idx))[2]


@selection.register("kcenter")
def kcenter(rows, n, key, *, ctx) -> selection.SelectorOutput:
  """k-center greedy (farthest-first traversal) from one random start."""
  start = jax.random.randint(key, (), 0, rows.n_valid)
  return selection.SelectorOutput(np.asarray(_kcenter(rows.array, rows.mask, start, n)))


@functools.partial(jax.jit, static_argnames=("n", "n_valid", "rank_tol"))
def _rpcholesky(x, mask, key, n, n_valid, rank_tol):
  np_ = x.shape[0]
  d0 = jnp.where(mask, jnp.sum(x * x, axis=1), 0)
  dmax0 = jnp.max(d0)
  rmax = min(n, x.shape[1])
  basis = jnp.zeros((x.shape[1], rmax), x.dtype)

  def body(t, carry):
    resid, chosen, idx, basis, k = carry
    g = parallel.per_row_gumbel(jax.random.fold_in(key, t), n_valid, np_, x.dtype)
    exhausted = (k >= rmax) | (jnp.max(jnp.where(chosen, 0, resid)) <= rank_tol * dmax0)
    logw = jnp.where(exhausted, 0.0, jnp.log(jnp.maximum(resid, 1e-37)))
    ok = mask & ~chosen & (exhausted | (resid > rank_tol * dmax0))
    p = jnp.argmax(jnp.where(ok, logw + g, -jnp.inf))
    # New direction: the chosen row's residual against the basis (Gram-Schmidt, twice).
    v = x[p]
    for _ in range(2):
      v = v - jnp.dot(basis, jnp.dot(basis.T, v, precision=_HI), precision=_HI)
    nv = jnp.linalg.norm(v)
    add = (~exhausted) & (nv > 0)
    q = jnp.where(add, v / jnp.where(nv > 0, nv, 1), 0)
    # q is zero when nothing is added, so writing it leaves the basis unchanged in effect;
    # the column is only written (and k advanced) when `add`.
    basis = jnp.where(add, jax.lax.dynamic_update_slice(
        basis, q[:, None], (0, jnp.minimum(k, rmax - 1))), basis)
    proj = jnp.dot(x, q, precision=_HI)
    resid = jnp.maximum(resid - proj * proj, 0)
    return resid, chosen.at[p].set(True), idx.at[t].set(p), basis, k + add.astype(k.dtype)

  init = (d0, ~mask, jnp.zeros(n, jnp.int32), basis, jnp.asarray(0))
  return jax.lax.fori_loop(0, n, body, init)[2]


def rpcholesky(rows: parallel.ShardedRows, n: int, key: jax.Array,
               rank_tol: float = 1e-6) -> np.ndarray:
  """Randomly pivoted partial Cholesky on the rows' Gram kernel (adaptive sampling).

  Pivot t is drawn with probability proportional to the residual diagonal; once the residual is
  below `rank_tol` times the initial largest diagonal (the rank is exhausted), the remaining
  pivots are uniform among the rows not yet chosen.

  Returns:
    (n,) distinct row ids.
  """
  return np.asarray(_rpcholesky(rows.array, rows.mask, key, n, rows.n_valid, float(rank_tol)))


@selection.register("adaptive")
def adaptive(rows, n, key, *, ctx, rank_tol: float = 1e-6) -> selection.SelectorOutput:
  """Adaptive sampling (randomly pivoted Cholesky), filled uniformly past the rank."""
  return selection.SelectorOutput(rpcholesky(rows, n, key, rank_tol))


# ---------------------------------------------------------------------------------------------
# Leverage scores.


@jax.jit
def _gram(x):
  return jnp.dot(x.T, x, precision=_HI)


@jax.jit
def _weighted_scores(x, v, w):
  # sum_j (x . v_j)^2 * w_j  with w_j = weight / sigma_j^2: leverage of the left vectors.
  return jnp.dot(jnp.square(jnp.dot(x, v, precision=_HI)), w, precision=_HI)


_SPECTRA: "collections.OrderedDict[tuple, tuple]" = collections.OrderedDict()
_SPECTRA_MAX = 2


def _row_spectrum(rows: parallel.ShardedRows):
  """(kind, sig2, vectors) of the rows' thin SVD, float64; cached by the rows' content.

  kind "left": vectors are U (N x N, from X X^T, used when d > N <= 20000);
  kind "right": vectors are V (d x d, from X^T X). Leverage scores depend on neither the
  seed nor n, so a sweep decomposes each matrix once.
  """
  host = rows.numpy()
  key = (cache.array_fingerprint(host),)
  if key in _SPECTRA:
    _SPECTRA.move_to_end(key)
    return _SPECTRA[key]
  num, d = host.shape
  if d > num and num <= 20000:
    xh = host.astype(np.float64)
    sig2, vec = np.linalg.eigh(xh @ xh.T)
    out = ("left", np.clip(sig2, 0, None), vec)
  else:
    sig2, vec = np.linalg.eigh(np.asarray(_gram(rows.array), np.float64))
    out = ("right", np.clip(sig2, 0, None), vec)
  _SPECTRA[key] = out
  while len(_SPECTRA) > _SPECTRA_MAX:
    _SPECTRA.popitem(last=False)
  return out


def _left_scores(rows: parallel.ShardedRows, weight_fn) -> np.ndarray:
  """sum_j U_ij^2 weight_fn(sigma^2)_j over the thin SVD X = U diag(sigma) V^T, float64."""
  kind, sig2, vec = _row_spectrum(rows)
  w = weight_fn(sig2)
  if kind == "left":
    return (vec * vec) @ w
  pos = sig2 > 0
  w = np.where(pos, w / np.where(pos, sig2, 1), 0)
  out = _weighted_scores(rows.array, jnp.asarray(vec, rows.array.dtype),
                         jnp.asarray(w, rows.array.dtype))
  return np.asarray(out, np.float64)[: rows.n_valid]


def _sample_scores(scores: np.ndarray, n: int, key) -> np.ndarray:
  with np.errstate(divide="ignore"):
    logw = np.where(scores > 0, np.log(np.maximum(scores, 1e-300)), -np.inf)
  return rounding.gumbel_top_n(logw, n, key)


def truncated_leverage_scores(rows: parallel.ShardedRows, rank: int) -> np.ndarray:
  """Leverage scores of the top-`rank` left singular vectors."""
  def weight(sig2):
    top = np.argsort(sig2)[::-1][:rank]
    w = np.zeros_like(sig2)
    w[top] = (sig2[top] > 1e-12 * max(sig2.max(), 1e-300)).astype(np.float64)
    return w
  return _left_scores(rows, weight)


def ridge_leverage_scores(rows: parallel.ShardedRows, alpha: float) -> np.ndarray:
  """Ridge leverage scores sum_j U_ij^2 sigma_j^2 / (sigma_j^2 + alpha)."""
  return _left_scores(rows, lambda sig2: sig2 / (sig2 + alpha))


@selection.register("leverage")
def leverage(rows, n, key, *, ctx, rank: Optional[int] = None) -> selection.SelectorOutput:
  """Truncated leverage score sampling; `rank` defaults to min(n, d)."""
  rank = min(n, rows.array.shape[1]) if rank is None else int(rank)
  if rank <= 0:
    raise validation.SkmmError(f"leverage rank must be positive; got {rank}.")
  scores = truncated_leverage_scores(rows, rank)
  return selection.SelectorOutput(_sample_scores(scores, n, key), info={"rank": rank})


@selection.register("ridge_leverage")
def ridge_leverage(rows, n, key, *, ctx, alpha: Optional[float] = None) -> selection.SelectorOutput:
  """Ridge leverage score sampling; `alpha` defaults to tr(X^T X) / n (statistical dimension ~ n)."""
  if alpha is None:
    alpha = float(np.asarray(jnp.sum(jnp.square(rows.array)))) / n
  validation.check_range(alpha, "alpha", 0.0, low_open=True)
  scores = ridge_leverage_scores(rows, float(alpha))
  return selection.SelectorOutput(_sample_scores(scores, n, key), info={"alpha": float(alpha)})
