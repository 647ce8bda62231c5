r"""Benchmark: FT-2 gradient sketching of a ResNet18 at 32x32 inputs, m = 512, three ways.

  (a) authors' approach: materialise the per-example gradients with vmap(grad), then project
      them with a stored dense Gamma (r x m, held in memory);
  (b) `gaussian` backend as configured by default (per_example='auto' -> 'captured': layer inputs
      and output-gradients captured in one batched pass, each chunk of the per-example gradient
      formed right before its matmul), Gamma generated block by block from the seed per batch;
  (c) `kronecker` backend: layer inputs / output-gradients, no per-example gradient;
  (d) `sparse_sign` backend (optional fast transform): vmap(grad), s = 4 signs per coordinate;
  (e) `gaussian` backend with per_example='vmap' (materialised vmap(grad), Gamma generated);
  (f) `gaussian` backend as `sketch_store.sketch_dataset` runs it by default when Gamma fits in
      memory (gamma_cache='auto'): (b) with Gamma generated once per run, not once per batch
      (the one-off build time is reported separately). Same rows as (b), bit for bit.

Each path runs in its own subprocess (so peak RSS is its own), compiled once, then timed over
`--reps` batches; the report gives median examples/s, the ratios to (a), peak memory (process
RSS and XLA's compiled memory analysis), and the matmul-bound floor of the dense backend:
2 B r m FLOPs per batch at the machine's measured matmul rate for the same shapes, with the
ratio to it of (b), (e) and (f).

One command:
  python experiments/benchmarks/bench_gradient_sketch.py            # all paths, side by side
  python experiments/benchmarks/bench_gradient_sketch.py --batch 32 --reps 3 --json out.json
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

PATHS = {"a": "materialised vmap(grad) @ stored Gamma (authors)",
         "b": "gaussian backend, Gamma generated per batch",
         "c": "kronecker backend",
         "d": "sparse_sign backend (s=4, optional fast transform)",
         "e": "gaussian, per_example='vmap', Gamma generated",
         "f": "gaussian backend, Gamma cached (store default)"}
FLOOR_PATHS = ("b", "e", "f")


def _rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _setup(batch: int, num_classes: int = 10):
  import jax
  import jax.numpy as jnp
  import numpy as np
  from skmm_jax import gradients
  try:
    from skmm_jax import models
  except ImportError as e:  # pragma: no cover - reported, not hidden
    raise SystemExit(f"skmm_jax.models is not available ({e}); the ResNet18 benchmark needs it.")
  module = models.resnet.resnet18(num_classes)
  variables = jax.jit(module.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  prefixes = ["/".join(p) for p in models.subset_prefixes(module, "ft2")]
  paths = gradients.subset_paths(variables, prefixes)
  apply_fn = functools.partial(module.apply, train=False)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, 32, 32, 3)).astype(np.float32))
  ids = jnp.arange(batch)
  return apply_fn, variables, paths, x, ids


def _time(fn, args, reps):
  import jax
  jax.block_until_ready(fn(*args))  # compile + warm up
  ts = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    ts.append(time.perf_counter() - t0)
  return ts


def _memory_analysis(fn, args):
  try:
    ma = fn.lower(*args).compile().memory_analysis()
    return {"xla_temp_mb": ma.temp_size_in_bytes / 2**20,
            "xla_argument_mb": ma.argument_size_in_bytes / 2**20,
            "xla_output_mb": ma.output_size_in_bytes / 2**20}
  except Exception as e:  # memory_analysis is backend-dependent
    return {"xla_memory_analysis": f"unavailable: {e}"}


def run_path(path: str, batch: int, m: int, reps: int, seed: int = 0) -> dict:
  """Runs one path in this process; returns its measurements."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from skmm_jax import gradients, sketching
  rss0 = _rss_mb()
  apply_fn, variables, paths, x, ids = _setup(batch)
  r = sum(int(np.prod(gradients.flatten_variables(variables)[p].shape)) for p in paths)
  out = {"path": path, "what": PATHS[path], "batch": batch, "m": m, "r": r,
         "layers": list(paths)}
  if path == "a":
    # Filled block by block on the host (one r x m float32 buffer, no generator temporaries).
    gamma_np = np.empty((r, m), np.float32)
    rng = np.random.default_rng(seed)
    for i in range(0, r, 1 << 16):
      blk = gamma_np[i:i + (1 << 16)]
      rng.standard_normal(blk.shape, dtype=np.float32, out=blk)
      blk *= 1.0 / np.sqrt(m)
    gamma = jax.device_put(gamma_np)
    del gamma_np, blk
    out["stored_gamma_mb"] = r * m * 4 / 2**20

    @jax.jit
    def fn(v, x, ids, gamma):
      c = jax.eval_shape(apply_fn, v, x).shape[-1]
      t = gradients.make_targets("random", ids, num_classes=c, seed=seed)
      g = gradients.flatten_grads(gradients.per_example_grads(apply_fn, v, paths, x, t))
      return jnp.dot(g, gamma, precision=jax.lax.Precision.HIGHEST)
    args = (variables, x, ids, gamma)
  else:
    backend = {"c": "kronecker", "d": "sparse_sign"}.get(path, "gaussian")
    opts = {"per_example": "vmap"} if path == "e" else {}
    row_fn = sketching.make_row_fn(apply_fn, paths, m=m, seed=seed, backend=backend, **opts)
    fn = jax.jit(lambda v, x, ids, g: row_fn(v, x, None, ids, g))
    gammas = None
    if path == "f":
      t0 = time.perf_counter()
      gammas = jax.block_until_ready(row_fn.build_gamma_cache(variables, x, None, ids))
      out["cache_build_s"] = time.perf_counter() - t0
      out["cache_mb"] = sum(a.nbytes for a in gammas.values()) / 2**20
    args = (variables, x, ids, gammas)
  out.update(_memory_analysis(fn, args))
  ts = _time(fn, args, reps)
  out["seconds_per_batch"] = ts
  out["median_s"] = statistics.median(ts)
  out["examples_per_s"] = batch / out["median_s"]
  out["peak_rss_mb"] = _rss_mb()
  out["peak_rss_delta_mb"] = out["peak_rss_mb"] - rss0
  return out


def matmul_rate(batch: int, m: int, k: int = 16384, reps: int = 7) -> float:
  """Measured float32 matmul FLOP/s for (batch, k) @ (k, m) (the projection's shape).

  The fastest of `reps` timings: the floor is then the strictest the machine allows.
  """
  import jax
  import jax.numpy as jnp
  a = jax.random.normal(jax.random.key(0), (batch, k))
  b = jax.random.normal(jax.random.key(1), (k, m))
  f = jax.jit(lambda a, b: jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST))
  ts = _time(f, (a, b), reps)
  return 2.0 * batch * k * m / min(ts)


def gamma_generation_seconds(r: int, m: int, blocks: int = 64) -> float:
  """Measured time to generate the r x m Gaussian Gamma block by block (no matmul), per batch.

  Every number of each chunk is used (summed), so XLA cannot skip generating any of them.
  """
  import jax
  import jax.numpy as jnp
  from skmm_jax import sketching

  @jax.jit
  def gen(key):
    def body(acc, i):
      return acc + sketching.gaussian_block(key, 7, i, m).sum(axis=0), None
    return jax.lax.scan(body, jnp.zeros((m,)), jnp.arange(blocks))[0]

  ts = _time(gen, (jax.random.key(0),), 3)
  return statistics.median(ts) / blocks * sketching.num_blocks(r)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--batch", type=int, default=32)
  p.add_argument("--m", type=int, default=512)
  p.add_argument("--reps", type=int, default=3)
  p.add_argument("--paths", default="a,b,c,d,e,f", help="subset of a,b,c,d,e,f")
  p.add_argument("--only", default=None, help=argparse.SUPPRESS)  # child mode
  p.add_argument("--json", default=None, help="also write the results here")
  args = p.parse_args(argv)
  if args.only:
    print("RESULT " + json.dumps(run_path(args.only, args.batch, args.m, args.reps)))
    return
  results = {}
  rate_before = matmul_rate(args.batch, args.m)
  for path in args.paths.split(","):
    cmd = [sys.executable, os.path.abspath(__file__), "--only", path, "--batch", str(args.batch),
           "--m", str(args.m), "--reps", str(args.reps)]
    print(f"running ({path}) {PATHS[path]} ...", flush=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    if proc.returncode or not line:
      results[path] = {"path": path, "what": PATHS[path], "error": proc.stderr[-2000:]}
      print(proc.stderr[-2000:], file=sys.stderr)
      continue
    results[path] = json.loads(line[0][len("RESULT "):])
  rate = max(rate_before, matmul_rate(args.batch, args.m))  # measured before and after
  any_ok = next((v for v in results.values() if "r" in v), None)
  summary = {"batch": args.batch, "m": args.m, "matmul_gflops": rate / 1e9, "paths": results,
             "cpu_count": os.cpu_count(), "loadavg_1min": os.getloadavg()[0]}
  if any_ok:
    flops = 2.0 * args.batch * any_ok["r"] * args.m
    summary["projection_gflop_per_batch"] = flops / 1e9
    summary["floor_b_examples_per_s"] = args.batch / (flops / rate)
    summary["gamma_generation_s_per_batch"] = gamma_generation_seconds(any_ok["r"], args.m)
  eps = {k: v.get("examples_per_s") for k, v in results.items()}
  if eps.get("a"):
    for k in "bcdef":
      if eps.get(k):
        summary[f"ratio_{k}_over_a"] = eps[k] / eps["a"]
  for k in FLOOR_PATHS:
    if eps.get(k) and "floor_b_examples_per_s" in summary:
      summary[f"{k}_vs_floor"] = summary["floor_b_examples_per_s"] / eps[k]

  print(f"\nFT-2 ResNet18 32x32, r = {any_ok['r'] if any_ok else '?'}, m = {args.m}, "
        f"batch = {args.batch}, {os.cpu_count()} CPUs, load {summary['loadavg_1min']:.1f}")
  print(f"{'path':<52} {'ex/s':>9} {'s/batch':>9} {'peak RSS MB':>12} {'XLA temp MB':>12}")
  for k, v in results.items():
    if "error" in v:
      print(f"({k}) {v['what']:<48} FAILED")
      continue
    print(f"({k}) {v['what']:<48} {v['examples_per_s']:>9.2f} {v['median_s']:>9.3f} "
          f"{v['peak_rss_mb']:>12.0f} {v.get('xla_temp_mb', float('nan')):>12.0f}")
  for k in "bcdef":
    if f"ratio_{k}_over_a" in summary:
      print(f"ratio ({k})/(a): {summary[f'ratio_{k}_over_a']:.2f}x")
  if "floor_b_examples_per_s" in summary:
    print(f"matmul rate {rate / 1e9:.1f} GFLOP/s -> floor for (b) "
          f"{summary['floor_b_examples_per_s']:.2f} ex/s "
          f"({summary['projection_gflop_per_batch']:.1f} GFLOP/batch)"
          + "".join(f"; ({k}) is {summary[f'{k}_vs_floor']:.2f}x the floor"
                    for k in FLOOR_PATHS if f"{k}_vs_floor" in summary))
    print(f"generating Gamma (r x m threefry Gaussians, block by block) alone takes "
          f"{summary['gamma_generation_s_per_batch']:.2f} s per batch, whatever the batch size")
  if "cache_build_s" in results.get("f", {}):
    print(f"(f) builds its {results['f']['cache_mb']:.0f} MB Gamma cache once per run in "
          f"{results['f']['cache_build_s']:.2f} s")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(summary, f, indent=2)
  return summary


if __name__ == "__main__":
  main()
