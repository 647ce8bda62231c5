r"""Benchmark: the SkMM relaxation solver against the authors' O(N m^2) formulation.

One command, side by side in one run (medians over repeats, ratios printed):

  python experiments/benchmarks/bench_selector.py                  # N=50k, m=512, 2000 iters
  python experiments/benchmarks/bench_selector.py --scaling=10000,50000,200000

* `ours`: FISTA on the precomputed moment matrix H (N x m): per iteration one H^T s and one
  H r, O(N m), plus the exact projection (warm-started Newton).
* `reference`: the same iteration, but the moments are recomputed as
  diag(V^T G~^T diag(s) G~ V) every iteration and differentiated with `jax.grad`, as the authors'
  code does (O(N m^2) per iteration). It is timed over `--ref_iters` iterations and the
  per-iteration time is extrapolated to `--iters` (stated in the output).
* scaling: per-iteration time of `ours` for each N, and the whole `skmm_jax.select` call.
"""
from __future__ import annotations

import functools
import statistics
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

import skmm_jax
from skmm_jax import moment_matching as mm
from skmm_jax import parallel

_N = flags.DEFINE_integer("n_pool", 50_000, "Pool size N.")
_M = flags.DEFINE_integer("m", 512, "Sketch dimension.")
_BUDGET = flags.DEFINE_integer("budget", 1000, "Selection budget n.")
_ITERS = flags.DEFINE_integer("iters", 2000, "Solver iterations.")
_REF_ITERS = flags.DEFINE_integer("ref_iters", 5, "Iterations timed for the reference.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Repeats (the median is reported).")
_SCALING = flags.DEFINE_list("scaling", ["10000", "50000", "200000"], "Pool sizes for scaling.")
_SCALING_ITERS = flags.DEFINE_integer("scaling_iters", 200, "Iterations per scaling point.")


def _sketch(num: int, m: int, seed: int = 0) -> np.ndarray:
  """A sketch with a decaying spectrum, like sketched gradients."""
  rng = np.random.default_rng(seed)
  scales = (1.0 / np.arange(1, m + 1)) ** 0.7
  return (rng.normal(size=(num, m)) * scales).astype(np.float32)


def _reference_step(g, v, lam, mask, cap, gamma_min, lip, st):
  """FISTA step where the moments are recomputed from G~ each iteration (authors' way)."""
  def loss(s, gamma):
    cov = jnp.dot(g.T * s, g, precision=jax.lax.Precision.HIGHEST)       # G^T diag(s) G, O(N m^2)
    mom = jnp.sum(v * jnp.dot(cov, v, precision=jax.lax.Precision.HIGHEST), axis=0)
    return jnp.sum(jnp.square(mom - gamma * lam))
  s, gamma, s_prev, g_prev, t, tau = st
  t_next = 0.5 * (1 + jnp.sqrt(1 + 4 * t * t))
  beta = (t - 1) / t_next
  ys, yg = s + beta * (s - s_prev), gamma + beta * (gamma - g_prev)
  gs, gg = jax.grad(loss, argnums=(0, 1))(ys, yg)
  s_new, tau = mm.project_capped_simplex(ys - gs / lip, cap, mask, tau)
  return (s_new, jnp.maximum(yg - gg / lip, gamma_min), s, gamma, t_next, tau)


@functools.partial(jax.jit, static_argnames=("k",))
def _reference_run(g, v, lam, mask, cap, gamma_min, lip, st, k):
  body = lambda _, st: _reference_step(g, v, lam, mask, cap, gamma_min, lip, st)
  return jax.lax.fori_loop(0, k, body, st)


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def bench_solver(num: int, m: int, n: int, iters: int, ref_iters: int, repeats: int):
  sk = parallel.shard_rows(_sketch(num, m))
  t0 = time.perf_counter()
  prob, spec = mm.make_problem(sk, n, 0.8)
  jax.block_until_ready(prob.H)
  setup = time.perf_counter() - t0
  s0 = mm._indicator(np.arange(n), sk.array.shape[0], n, sk.mesh)
  mm.solve(prob, s0, iters=2)  # compile
  ours = _median_time(lambda: mm.solve(prob, s0, iters=iters).best_f, repeats)

  v = jnp.asarray(spec.eigvecs, jnp.float32)
  scale = float(spec.eigvals[0])
  g = sk.array / np.sqrt(scale)  # same scaled problem as `ours`
  st = (s0, jnp.full((m,), prob.gamma_min, jnp.float32), s0,
        jnp.full((m,), prob.gamma_min, jnp.float32), jnp.asarray(1.0), jnp.asarray(0.0))
  args = (g, v, prob.lam, prob.mask, prob.cap, prob.gamma_min, prob.lipschitz)
  jax.block_until_ready(_reference_run(*args, st, k=ref_iters))  # compile
  ref = _median_time(lambda: _reference_run(*args, st, k=ref_iters)[0], repeats)
  # Same iterates: the two formulations agree.
  a = np.asarray(mm.solve(prob, s0, iters=ref_iters).s)
  b = np.asarray(_reference_run(*args, st, k=ref_iters)[0])
  agree = float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-30))
  return dict(setup=setup, ours=ours, ref_per_iter=ref / ref_iters, agree=agree)


def main(argv):
  del argv
  num, m, n, iters = _N.value, _M.value, _BUDGET.value, _ITERS.value
  print(f"devices: {jax.devices()}")
  print(f"\n## Solver: N={num:,}, m={m}, n={n}, {iters} iterations "
        f"(median of {_REPEATS.value})\n")
  r = bench_solver(num, m, n, iters, _REF_ITERS.value, _REPEATS.value)
  ref_total = r["ref_per_iter"] * iters
  print("| path | per iteration | {} iterations | ratio |".format(iters))
  print("|---|---|---|---|")
  print(f"| ours: precomputed H, O(N m) | {1e3 * r['ours'] / iters:.2f} ms | {r['ours']:.1f} s | 1.0x |")
  print(f"| reference: G~^T diag(s) G~ V per iteration, O(N m^2) (timed over "
        f"{_REF_ITERS.value} its, extrapolated) | {1e3 * r['ref_per_iter']:.1f} ms | "
        f"{ref_total:.1f} s | {ref_total / r['ours']:.1f}x slower |")
  print(f"\none-off set-up (spectrum + H + L): {r['setup']:.2f} s; "
        f"max relative difference of the iterates after {_REF_ITERS.value} steps: {r['agree']:.1e}")

  print(f"\n## Scaling with N (m={m}, n={n}, {_SCALING_ITERS.value} solver iterations; "
        "whole select() with init adaptive, topk)\n")
  print("| N | solver per iteration | select() total |")
  print("|---|---|---|")
  for num_s in [int(s) for s in _SCALING.value]:
    x = _sketch(num_s, m, seed=1)
    sk = parallel.shard_rows(x)
    prob, _ = mm.make_problem(sk, n, 0.8)
    s0 = mm._indicator(np.arange(n), sk.array.shape[0], n, sk.mesh)
    mm.solve(prob, s0, iters=2)
    per = _median_time(lambda: mm.solve(prob, s0, iters=_SCALING_ITERS.value).best_f,
                       _REPEATS.value) / _SCALING_ITERS.value
    t0 = time.perf_counter()
    skmm_jax.select(x, n, method="skmm", m=None, iters=_SCALING_ITERS.value, seed=0,
                    diagnostics=False)
    total = time.perf_counter() - t0
    print(f"| {num_s:,} | {1e3 * per:.2f} ms | {total:.1f} s |")


if __name__ == "__main__":
  app.run(main)
