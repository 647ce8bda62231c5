"""The public entry point: every method, determinism, devices, sketching, rounding, bad input."""
import jax
import numpy as np
import pytest

import skmm_jax
from skmm_jax import rounding
from skmm_jax import sketching

METHODS = ["skmm", "uniform", "herding", "kcenter", "adaptive", "leverage", "ridge_leverage"]


@pytest.fixture(scope="module")
def feats():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(5, 30)) * 4
  lab = rng.integers(0, 5, 203)
  return (centres[lab] + rng.normal(size=(203, 30))).astype(np.float32), lab


@pytest.mark.parametrize("method", METHODS)
def test_same_indices_on_1_and_4_devices(method, feats, mesh1, mesh4):
  x, _ = feats
  opts = {"m": 16, "iters": 200} if method == "skmm" else {}
  r1 = skmm_jax.select(x, 25, method=method, seed=7, mesh=mesh1, **opts)
  r4 = skmm_jax.select(x, 25, method=method, seed=7, mesh=mesh4, **opts)
  again = skmm_jax.select(x, 25, method=method, seed=7, mesh=mesh4, **opts)
  np.testing.assert_array_equal(r1.indices, r4.indices)
  np.testing.assert_array_equal(r4.indices, again.indices)  # bit for bit on the same devices
  assert r1.indices.dtype == np.int64
  assert np.all(np.diff(r1.indices) > 0) and r1.indices.size == 25
  for k in ("moment_gap", "trace_score", "eig_score"):
    np.testing.assert_allclose(r1.diagnostics[k], r4.diagnostics[k], rtol=1e-4)
  if method == "skmm":
    np.testing.assert_allclose(r1.weights, r4.weights, atol=1e-6)


@pytest.mark.parametrize("method", ["skmm", "uniform", "kcenter", "adaptive", "leverage"])
def test_seed_changes_random_methods(method, feats):
  x, _ = feats
  opts = {"m": 16, "iters": 50, "init": "random", "rounding": "sample"} if method == "skmm" else {}
  a = skmm_jax.select(x, 25, method=method, seed=0, diagnostics=False, **opts).indices
  b = skmm_jax.select(x, 25, method=method, seed=1, diagnostics=False, **opts).indices
  assert not np.array_equal(a, b)


@pytest.mark.parametrize("rounding_method", ["topk", "sample", "class_balanced"])
@pytest.mark.parametrize("init", ["random", "adaptive"])
@pytest.mark.parametrize("solver", ["pgd", "adam"])
def test_skmm_variants_return_n_distinct_sorted(rounding_method, init, solver, feats):
  x, lab = feats
  r = skmm_jax.select(x, 31, method="skmm", seed=2, labels=lab, m=8, iters=30, solver=solver,
                      init=init, rounding=rounding_method, diagnostics=False)
  assert r.indices.size == 31 and np.unique(r.indices).size == 31
  assert np.all(np.diff(r.indices) > 0)
  assert r.diagnostics["s_l0"] >= 31
  assert np.isfinite(r.diagnostics["objective"])


def test_skmm_improves_moment_objective_over_its_start(feats):
  x, _ = feats
  r = skmm_jax.select(x, 20, method="skmm", seed=0, m=16, iters=300)
  assert r.diagnostics["objective"] < 0.1 * r.diagnostics["objective_init"]


def test_skmm_accepts_presketched_rows(feats):
  x, _ = feats
  sk = sketching.gaussian_sketch(x, 12, seed=0)
  r = skmm_jax.select(sk, 20, method="skmm", m=None, iters=50, seed=0)
  assert r.diagnostics["sketch_dim"] == 12


def test_rounding_edge_cases():
  key = jax.random.key(0)
  s = np.zeros(10)
  s[[1, 4, 7]] = 1 / 3
  for method in ("sample", "topk"):
    out = rounding.round_weights(s, 5, method, key)  # fewer positive weights than n
    assert out.size == 5 and np.unique(out).size == 5 and {1, 4, 7} <= set(out.tolist())
  ties = np.full(10, 0.1)
  a = rounding.round_weights(ties, 4, "topk", jax.random.key(1))
  b = rounding.round_weights(ties, 4, "topk", jax.random.key(2))
  assert a.size == 4 and not np.array_equal(a, b)  # ties broken by the seed, not by position
  labels = np.array([0] * 7 + [1] * 2 + [2])
  cb = rounding.round_weights(np.linspace(1, 2, 10), 7, "class_balanced", key, labels)
  counts = np.bincount(labels[cb], minlength=3)
  assert counts.sum() == 7 and counts[1] == 2 and counts[2] == 1  # small classes give surplus on


def test_sketch_matches_naive_and_preserves_norms():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(4, 2500)).astype(np.float32)  # spans 3 generator blocks
  gamma = np.asarray(sketching.gaussian_embedding(jax.random.key(5), 2500, 64))
  np.testing.assert_allclose(sketching.gaussian_sketch(x, 64, seed=5), x @ gamma, rtol=2e-4, atol=2e-3)
  # E||Gamma^T g||^2 = ||g||^2: average over 200 independent embeddings.
  g = rng.normal(size=(1, 300)).astype(np.float32)
  ratios = [np.sum(sketching.gaussian_sketch(g, 32, seed=s) ** 2) / np.sum(g ** 2) for s in range(200)]
  # Var of the ratio is 2/m; the mean of 200 draws has std 0.0177: 4 sigma.
  assert abs(np.mean(ratios) - 1) < 4 * np.sqrt(2 / 32 / 200)


def test_sketch_same_rows_whatever_the_batch():
  x = np.random.default_rng(0).normal(size=(9, 700)).astype(np.float32)
  full = sketching.gaussian_sketch(x, 16, seed=3)
  part = sketching.gaussian_sketch(x[4:7], 16, seed=3)
  np.testing.assert_allclose(full[4:7], part, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n=0), "positive"),
    (dict(n=-3), "positive"),
    (dict(n=10_000), "exceeds the pool size"),
    (dict(n=2.5), "integer"),
    (dict(method="skm"), "Did you mean 'skmm'"),
    (dict(method="skmm", m=0), "sketch dimension"),
    (dict(method="skmm", c=0.0), "c must be"),
    (dict(method="skmm", c=1.5), "c must be"),
    (dict(method="skmm", iter=5), "Did you mean 'iters'"),
    (dict(method="skmm", solver="sgd"), "unknown solver"),
    (dict(method="skmm", init="kmeans"), "unknown init"),
    (dict(method="skmm", rounding="round"), "unknown rounding"),
    (dict(method="skmm", rounding="class_balanced"), "needs labels"),
    (dict(seed="a"), "seed"),
])
def test_bad_input_gives_clear_errors(kwargs, match, feats):
  x, _ = feats
  args = dict(n=5, method="uniform")
  args.update(kwargs)
  with pytest.raises(skmm_jax.SkmmError, match=match):
    skmm_jax.select(x, args.pop("n"), **args)


def test_bad_features_give_clear_errors(feats):
  x, _ = feats
  bad = x.copy()
  bad[[3, 17], 2] = np.nan
  with pytest.raises(skmm_jax.SkmmError, match=r"NaN or Inf in 2 row\(s\).*\[3, 17\]"):
    skmm_jax.select(bad, 5)
  bad[3, 2] = np.inf
  with pytest.raises(skmm_jax.SkmmError, match="NaN or Inf"):
    skmm_jax.select(bad, 5)
  with pytest.raises(skmm_jax.SkmmError, match="2-D"):
    skmm_jax.select(x[0], 5)
  with pytest.raises(skmm_jax.SkmmError, match="empty"):
    skmm_jax.select(np.zeros((0, 3)), 1)
  with pytest.raises(skmm_jax.SkmmError, match="labels must have shape"):
    skmm_jax.select(x, 5, labels=np.zeros(3, int))


def _farthest_first(x, start, n):
  """numpy k-center greedy: the unchosen row farthest from the chosen set, first index on ties."""
  d = ((x[:, None] - x[None]) ** 2).sum(-1)
  chosen = [start]
  for _ in range(n - 1):
    mind = d[:, chosen].min(axis=1)
    mind[chosen] = -1
    chosen.append(int(np.argmax(mind)))
  return chosen


def test_kcenter_and_herding_match_references_and_survive_duplicate_rows():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(40, 5)).astype(np.float32)
  start = int(jax.random.randint(jax.random.key(11), (), 0, 40))
  got = skmm_jax.select(x, 7, method="kcenter", seed=11).indices
  np.testing.assert_array_equal(got, sorted(_farthest_first(x.astype(np.float64), start, 7)))
  # 12 rows, 3 distinct points: after 3 picks every distance is 0 and ties must go to new rows.
  dup = np.repeat(rng.normal(size=(3, 4)).astype(np.float32), 4, axis=0)
  for method in ("kcenter", "herding"):
    idx = skmm_jax.select(dup, 5, method=method, seed=0).indices
    assert len(np.unique(idx)) == 5
  idx = skmm_jax.select(dup, 3, method="kcenter", seed=0).indices
  assert len(np.unique(dup[idx], axis=0)) == 3  # farthest-first covers every distinct point
