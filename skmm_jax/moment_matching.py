"""Sketchy Moment Matching: spectrum, the moment matrix H, the relaxation and its solvers.

Given the sketch G~ (N x m) of the gradient features:

  1. Spectrum: Sigma~ = G~^T G~ / N = V diag(lambda) V^T, eigendecomposed in float64 on host.
  2. H_ij = (g~_i . v_j)^2, precomputed once, so the selection's moment along v_j is (H^T s)_j.
  3. The relaxation   min ||H^T s - gamma * lambda||^2
                      s.t. 0 <= s_i <= 1/n, sum s = 1,  gamma_j >= 1/c,
     solved by `pgd` (FISTA with step 1/L and adaptive restart; L = 2 lambda_max of the problem's
     m x m Gram H^T H + diag(lambda^2), computed exactly, so nothing needs tuning) or `adam`
     (optax, projected after every step, parity with the authors' code). Each iteration costs
     O(N m): H^T s and H r; the authors recompute G~^T diag(s) G~ V at O(N m^2).
     The projection onto the capped simplex is exact: a safeguarded Newton search for the
     threshold tau with sum_i clip(x_i - tau, 0, 1/n) = 1 (the function is piecewise linear, so
     Newton lands on the root once the active set is right), warm-started from the previous tau.
  4. Rounding to n indices (`skmm_jax.rounding`).

H, s and the iterates are sharded over the `data` mesh; the reductions H^T s and the projection's
sums are all-reduced by jit's sharding propagation. Results agree on 1 and 4 devices.

Example:
  >>> import numpy as np, skmm_jax
  >>> x = np.random.default_rng(0).normal(size=(300, 20)).astype(np.float32)
  >>> res = skmm_jax.select(x, 30, method="skmm", m=8, iters=200, seed=0)
  >>> sorted(k for k in res.diagnostics if k.startswith("moment"))
  ['moment_gap']
"""
from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from skmm_jax import parallel
from skmm_jax import rounding as rounding_lib
from skmm_jax import selection
from skmm_jax import sketching
from skmm_jax import validation

_HI = jax.lax.Precision.HIGHEST
SOLVERS = ("pgd", "adam")
INITS = ("random", "adaptive")


# ---------------------------------------------------------------------------------------------
# Spectrum and the moment matrix.


class Spectrum(NamedTuple):
  """Eigendecomposition of the sketch's uncentred second moment, descending, float64."""
  eigvals: np.ndarray
  eigvecs: np.ndarray


@jax.jit
def _gram(x):
  return jnp.dot(x.T, x, precision=_HI)


def second_moment(rows: parallel.ShardedRows) -> np.ndarray:
  """G^T G / N in float64 on host (padding rows are zero, so they do not count)."""
  g = np.asarray(_gram(rows.array), np.float64) / rows.n_valid
  return 0.5 * (g + g.T)


def spectrum(rows: parallel.ShardedRows) -> Spectrum:
  """Sigma = G^T G / N = V diag(lambda) V^T, eigenvalues descending and clipped at 0."""
  w, v = np.linalg.eigh(second_moment(rows))
  order = np.argsort(w)[::-1]
  return Spectrum(np.clip(w[order], 0.0, None), v[:, order])


@jax.jit
def _moment_matrix(x, v):
  return jnp.square(jnp.dot(x, v, precision=_HI))


def moment_matrix(rows: parallel.ShardedRows, eigvecs: np.ndarray) -> jax.Array:
  """H = (G V)^2, (N_padded, m), sharded like the rows."""
  return _moment_matrix(rows.array, jnp.asarray(eigvecs, rows.array.dtype))


# ---------------------------------------------------------------------------------------------
# Exact projection onto the capped simplex {0 <= s <= cap, sum s = 1}.


class _ProjState(NamedTuple):
  tau: jax.Array
  lo: jax.Array
  hi: jax.Array
  it: jax.Array
  done: jax.Array


def project_capped_simplex(x: jax.Array, cap, mask: Optional[jax.Array] = None,
                           tau0: Optional[jax.Array] = None, max_iter: int = 100):
  """Euclidean projection of x onto {s : 0 <= s_i <= cap, sum_i s_i = 1} (rows where mask).

  The projection is s_i = clip(x_i - tau, 0, cap) with tau the root of the piecewise-linear,
  non-increasing g(tau) = sum_i clip(x_i - tau, 0, cap) - 1. A Newton step on g is exact once the
  set of free coordinates is right; steps leaving the bracket fall back to bisection.

  Args:
    x: (N,) point to project.
    cap: upper bound 1/n (requires cap * #valid >= 1).
    mask: optional (N,) bool; rows where False are held at 0 (device padding).
    tau0: optional warm start for tau.
    max_iter: iteration cap (convergence takes a few steps from a warm start).

  Returns:
    (s, tau).
  """
  dtype = x.dtype
  cap = jnp.asarray(cap, dtype)
  if mask is None:
    mask = jnp.ones(x.shape, bool)
  big = jnp.asarray(jnp.finfo(dtype).max, dtype)
  lo0 = jnp.min(jnp.where(mask, x, big)) - cap
  hi0 = jnp.max(jnp.where(mask, x, -big))
  tol = 32 * jnp.finfo(dtype).eps
  t0 = 0.5 * (lo0 + hi0) if tau0 is None else jnp.clip(tau0, lo0, hi0)

  def g_and_free(tau):
    d = x - tau
    s = jnp.where(mask, jnp.clip(d, 0, cap), 0)
    free = jnp.sum(jnp.where(mask & (d > 0) & (d < cap), 1, 0))
    return jnp.sum(s) - 1, free

  def cond(st):
    return (~st.done) & (st.it < max_iter)

  def body(st):
    res, free = g_and_free(st.tau)
    lo = jnp.where(res > 0, st.tau, st.lo)
    hi = jnp.where(res < 0, st.tau, st.hi)
    newton = st.tau + res / jnp.maximum(free, 1).astype(dtype)
    ok = (free > 0) & (newton > lo) & (newton < hi)
    tau = jnp.where(ok, newton, 0.5 * (lo + hi))
    width = hi - lo
    done = (jnp.abs(res) <= tol) | (tau == st.tau) | (width <= tol * jnp.maximum(jnp.abs(hi), cap))
    tau = jnp.where(jnp.abs(res) <= tol, st.tau, tau)
    return _ProjState(tau, lo, hi, st.it + 1, done)

  st = jax.lax.while_loop(cond, body, _ProjState(t0, lo0, hi0, jnp.asarray(0), jnp.asarray(False)))
  # One last Newton step on the final active set makes the sum exact up to rounding.
  res, free = g_and_free(st.tau)
  tau = jnp.where(free > 0, st.tau + res / jnp.maximum(free, 1).astype(dtype), st.tau)
  s = jnp.where(mask, jnp.clip(x - tau, 0, cap), 0)
  return s, tau


# ---------------------------------------------------------------------------------------------
# The relaxation and its solvers.


class Problem(NamedTuple):
  """The relaxation's data, scaled so that lambda_max = 1 (the argmin does not change).

  Attributes:
    H: (N_padded, m) moment matrix, sharded over `data`.
    lam: (m,) eigenvalues / lambda_max.
    mask: (N_padded,) valid rows.
    cap: 1/n.
    gamma_min: 1/c.
    lipschitz: 2 lambda_max(H^T H + diag(lam^2)) of the scaled problem.
  """
  H: jax.Array
  lam: jax.Array
  mask: jax.Array
  cap: float
  gamma_min: float
  lipschitz: float


def make_problem(sketch: parallel.ShardedRows, n: int, c: float) -> tuple:
  """Builds the scaled relaxation from a sketch; returns (Problem, Spectrum)."""
  spec = spectrum(sketch)
  scale = spec.eigvals[0] if spec.eigvals[0] > 0 else 1.0
  H = moment_matrix(sketch, spec.eigvecs) / jnp.asarray(scale, sketch.array.dtype)
  lam = spec.eigvals / scale
  gram = np.asarray(_gram(H), np.float64) + np.diag(lam ** 2)
  lip = 2.0 * float(np.linalg.eigvalsh(0.5 * (gram + gram.T))[-1])
  prob = Problem(H, jnp.asarray(lam, sketch.array.dtype), sketch.mask, 1.0 / n, 1.0 / c,
                 max(lip, 1e-30))
  return prob, spec


def _htx(H, s):
  return jnp.dot(s, H, precision=_HI)


def objective(prob: Problem, s, gamma):
  """||H^T s - gamma * lam||^2 of the scaled problem."""
  r = _htx(prob.H, s) - gamma * prob.lam
  return jnp.sum(r * r)


class SolverState(NamedTuple):
  """Iterates of either solver (fields a solver does not use stay at their initial value)."""
  s: jax.Array
  gamma: jax.Array
  s_prev: jax.Array
  gamma_prev: jax.Array
  u: jax.Array        # H^T s
  u_prev: jax.Array   # H^T s_prev
  t: jax.Array        # FISTA momentum parameter
  tau: jax.Array      # projection threshold (warm start)
  f: jax.Array        # objective at (s, gamma)
  best_s: jax.Array
  best_gamma: jax.Array
  best_f: jax.Array
  opt_state: optax.OptState
  it: jax.Array


def init_state(prob: Problem, s0: jax.Array, optimizer=None) -> SolverState:
  gamma0 = jnp.full(prob.lam.shape, prob.gamma_min, prob.lam.dtype)
  u0 = _htx(prob.H, s0)
  f0 = jnp.sum(jnp.square(u0 - gamma0 * prob.lam))
  opt_state = optimizer.init((s0, gamma0)) if optimizer is not None else ()
  z = jnp.asarray(0.0, s0.dtype)
  return SolverState(s0, gamma0, s0, gamma0, u0, u0, jnp.asarray(1.0, s0.dtype), z, f0,
                     s0, gamma0, f0, opt_state, jnp.asarray(0))


def _keep_best(st: SolverState) -> SolverState:
  better = st.f < st.best_f
  return st._replace(best_s=jnp.where(better, st.s, st.best_s),
                     best_gamma=jnp.where(better, st.gamma, st.best_gamma),
                     best_f=jnp.where(better, st.f, st.best_f))


def pgd_step(prob: Problem, st: SolverState) -> SolverState:
  """One FISTA step with step 1/L and function-value restart."""
  t_next = 0.5 * (1 + jnp.sqrt(1 + 4 * st.t * st.t))
  beta = (st.t - 1) / t_next
  ys = st.s + beta * (st.s - st.s_prev)
  yg = st.gamma + beta * (st.gamma - st.gamma_prev)
  uy = st.u + beta * (st.u - st.u_prev)          # H^T y, by linearity: no extra pass over H
  r = uy - yg * prob.lam
  grad_s = 2 * jnp.dot(prob.H, r, precision=_HI)
  grad_g = -2 * prob.lam * r
  inv_l = 1.0 / prob.lipschitz
  s_new, tau = project_capped_simplex(ys - inv_l * grad_s, prob.cap, prob.mask, st.tau)
  g_new = jnp.maximum(yg - inv_l * grad_g, prob.gamma_min)
  u_new = _htx(prob.H, s_new)
  f_new = jnp.sum(jnp.square(u_new - g_new * prob.lam))
  t_next = jnp.where(f_new > st.f, jnp.ones_like(t_next), t_next)  # adaptive restart
  st = st._replace(s=s_new, gamma=g_new, s_prev=st.s, gamma_prev=st.gamma, u=u_new,
                   u_prev=st.u, t=t_next, tau=tau, f=f_new, it=st.it + 1)
  return _keep_best(st)


def adam_step(prob: Problem, st: SolverState, optimizer) -> SolverState:
  """One optax step on (s, gamma) followed by the exact projection."""
  r = st.u - st.gamma * prob.lam
  grads = (2 * jnp.dot(prob.H, r, precision=_HI), -2 * prob.lam * r)
  updates, opt_state = optimizer.update(grads, st.opt_state, (st.s, st.gamma))
  s_new, tau = project_capped_simplex(st.s + updates[0], prob.cap, prob.mask, st.tau)
  g_new = jnp.maximum(st.gamma + updates[1], prob.gamma_min)
  u_new = _htx(prob.H, s_new)
  f_new = jnp.sum(jnp.square(u_new - g_new * prob.lam))
  st = st._replace(s=s_new, gamma=g_new, u=u_new, tau=tau, f=f_new, opt_state=opt_state,
                   it=st.it + 1)
  return _keep_best(st)


@functools.partial(jax.jit, static_argnames=("solver", "lr"))
def _run_chunk(prob: Problem, st: SolverState, k, solver: str, lr: float):
  if solver == "pgd":
    body = lambda _, s: pgd_step(prob, s)
  else:
    opt = optax.adam(lr)
    body = lambda _, s: adam_step(prob, s, opt)
  return jax.lax.fori_loop(0, k, body, st)


def solve(prob: Problem, s0: jax.Array, *, solver: str = "pgd", iters: int = 2000,
          lr: float = 1e-2, progress: bool = False, chunk: int = 250) -> SolverState:
  """Runs `iters` iterations of `solver` from s0 and returns the final state.

  The loop runs in jit-compiled chunks of `chunk` iterations (one compilation: the chunk
  length is a traced bound) so that a progress bar can follow it.
  """
  validation.check_choice(solver, SOLVERS, "solver")
  optimizer = optax.adam(lr) if solver == "adam" else None
  st = init_state(prob, s0, optimizer)
  bar = tqdm(total=iters, desc=f"SkMM {solver}", disable=not progress, leave=False)
  done = 0
  while done < iters:
    k = min(chunk, iters - done)
    st = _run_chunk(prob, st, jnp.asarray(k), solver, float(lr) if solver == "adam" else 0.0)
    done += k
    bar.update(k)
    bar.set_postfix(objective=f"{float(st.best_f):.3e}")
  bar.close()
  return st


# ---------------------------------------------------------------------------------------------
# Diagnostics.


def _psd_pinv(a: np.ndarray, rcond: float = 1e-6) -> np.ndarray:
  w, v = np.linalg.eigh(0.5 * (a + a.T))
  keep = w > rcond * max(w.max(), 0.0)
  inv = np.where(keep, 1.0 / np.where(keep, w, 1.0), 0.0)
  return (v * inv) @ v.T


def selection_diagnostics(sketch, indices: np.ndarray) -> dict:
  """Moment gap, trace score and eigenvalue score of the selection `indices` on `sketch`.

  moment_gap = ||Sigma_S - Sigma||_F / ||Sigma||_F; trace_score = tr(Sigma Sigma_S^+);
  eig_score = ||Sigma^{1/2} Sigma_S^+ Sigma^{1/2}||_2 (uncentred moments, float64).
  """
  if not isinstance(sketch, parallel.ShardedRows):
    sketch = parallel.shard_rows(np.asarray(sketch, np.float32))
  sigma = second_moment(sketch)
  gs = np.asarray(jnp.take(sketch.array, jnp.asarray(indices), axis=0), np.float64)
  sigma_s = gs.T @ gs / len(indices)
  pinv = _psd_pinv(sigma_s)
  w, v = np.linalg.eigh(sigma)
  root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  return {
      "moment_gap": float(np.linalg.norm(sigma_s - sigma) / max(np.linalg.norm(sigma), 1e-300)),
      "trace_score": float(np.trace(sigma @ pinv)),
      "eig_score": float(np.linalg.eigvalsh(root @ pinv @ root)[-1]),
  }


# ---------------------------------------------------------------------------------------------
# The selector.


def _indicator(indices: np.ndarray, n_padded: int, n: int, mesh) -> jax.Array:
  s0 = np.zeros(n_padded, np.float32)
  s0[indices] = 1.0 / n
  return jax.device_put(s0, parallel.row_sharding(mesh, 1))


@selection.register("skmm")
def skmm(rows: parallel.ShardedRows, n: int, key: jax.Array, *, ctx,
         m: Optional[int] = 128, c: float = 0.8, solver: str = "pgd", iters: int = 1000,
         lr: float = 1e-2, init: str = "adaptive", rounding: str = "topk") -> selection.SelectorOutput:
  """Sketchy Moment Matching.

  Args:
    m: sketch dimension; None uses the rows as they are (already sketched gradients).
    c: moment constant in (0, 1]; gamma >= 1/c.
    solver: "pgd" (FISTA, step 1/L, no learning rate) or "adam" (optax, `lr`).
    iters: solver iterations; the best iterate by objective is kept.
    lr: Adam's learning rate (ignored by pgd).
    init: "adaptive" (randomly pivoted Cholesky on the sketch) or "random" (the authors').
    rounding: "topk", "sample" or "class_balanced" (see `skmm_jax.rounding`).
  """
  validation.check_range(c, "c", 0.0, 1.0, low_open=True)
  validation.check_choice(solver, SOLVERS, "solver")
  validation.check_choice(init, INITS, "init")
  validation.check_choice(rounding, rounding_lib.METHODS, "rounding method")
  if iters is None or int(iters) < 1:
    raise validation.SkmmError(f"iters must be >= 1; got {iters!r}.")
  if solver == "adam":
    validation.check_range(lr, "lr", 0.0, low_open=True)
  if rounding == "class_balanced" and ctx.labels is None:
    raise validation.SkmmError("rounding 'class_balanced' needs labels; pass labels=... to select().")
  k_sketch, k_init, k_round = jax.random.split(key, 3)
  if m is None:
    sketch = rows
  else:
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m <= 0:
      raise validation.SkmmError(f"sketch dimension m must be a positive integer or None; got {m!r}.")
    sketch = sketching.sketch_sharded(rows, int(m), key=k_sketch)
  prob, spec = make_problem(sketch, n, c)
  if init == "random":
    start = np.asarray(jax.random.permutation(k_init, rows.n_valid)[:n])
  else:
    from skmm_jax import baselines
    start = baselines.rpcholesky(sketch, n, k_init)
  s0 = _indicator(start, rows.array.shape[0], n, rows.mesh)
  st = solve(prob, s0, solver=solver, iters=int(iters), lr=float(lr), progress=ctx.progress)
  s = np.asarray(st.best_s)[: rows.n_valid]
  idx = rounding_lib.round_weights(s, n, rounding, k_round, ctx.labels)
  lam_norm2 = float(np.sum(np.square(np.asarray(prob.lam, np.float64))))
  info = {
      "objective": float(st.best_f) / lam_norm2,
      "objective_init": float(objective(prob, s0, jnp.full(prob.lam.shape, prob.gamma_min))) / lam_norm2,
      "s_l0": int(np.count_nonzero(s > 0)),
      "iters": int(st.it),
      "sketch_dim": int(sketch.array.shape[1]),
  }
  return selection.SelectorOutput(indices=idx, weights=s, sketch=sketch, info=info)

