"""Streaming sketch store: sharding-independent, resumable, keyed by its config, NaN-reporting."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skmm_jax import gradients
from skmm_jax import sketch_store
from skmm_jax import sketching
from skmm_jax.validation import SkmmError
from tests._sketch_models import tiny_cnn

FT2 = ["params/conv2", "params/head"]


class Interrupted(Exception):
  pass


class CountingSource(sketch_store.ArraySource):
  """An ArraySource that records the batches asked for and can 'crash' after some of them."""

  def __init__(self, *a, crash_after=None, **k):
    super().__init__(*a, **k)
    self.calls, self.crash_after = [], crash_after

  def batch(self, start, stop):
    if self.crash_after is not None and len(self.calls) >= self.crash_after:
      raise Interrupted(f"simulated kill before rows {start}:{stop}")
    self.calls.append((start, stop))
    return super().batch(start, stop)


@pytest.fixture(scope="module")
def setup():
  apply_fn, v, x, y = tiny_cnn(num_classes=4)
  x = np.concatenate([x, x[::-1] * 0.5])[:22]
  y = np.concatenate([y, y])[:22]
  return apply_fn, v, x, y


def _run(setup, root, source=None, **kw):
  apply_fn, v, x, y = setup
  source = source or sketch_store.ArraySource(x, y)
  opts = dict(subset=FT2, m=16, seed=0, batch_size=8, progress=False, root=str(root))
  opts.update(kw)
  return sketch_store.sketch_dataset(source, apply_fn, v, **opts)


def test_store_rows_equal_direct_sketch(setup, tmp_path):
  apply_fn, v, x, y = setup
  st = _run(setup, tmp_path, target="true")
  assert st.rows.shape == (22, 16) and st.meta["complete"] and st.meta["n_done"] == 22
  np.testing.assert_array_equal(st.ids, np.arange(22))
  paths = gradients.subset_paths(v, FT2)
  ref = sketching.make_row_fn(apply_fn, paths, m=16, seed=0, target="true")(v, x, y, np.arange(22))
  np.testing.assert_allclose(st.rows, ref, rtol=1e-4, atol=1e-5)
  again = sketch_store.load_store(st.path)
  np.testing.assert_array_equal(again.rows, st.rows)


@pytest.mark.parametrize("backend", ["gaussian", "kronecker"])
def test_one_and_four_devices_give_the_same_store(setup, tmp_path, mesh1, mesh4, backend):
  a = _run(setup, tmp_path / "one", mesh=mesh1, backend=backend, batch_size=8)
  b = _run(setup, tmp_path / "four", mesh=mesh4, backend=backend, batch_size=5)
  assert os.path.basename(a.path) == os.path.basename(b.path)  # same key
  np.testing.assert_array_equal(a.ids, b.ids)
  np.testing.assert_allclose(a.rows, b.rows, rtol=1e-5, atol=1e-6)


def test_killed_run_resumes_to_the_identical_store(setup, tmp_path):
  apply_fn, v, x, y = setup
  full = _run(setup, tmp_path / "full", batch_size=4)
  src = CountingSource(x, y, crash_after=3)
  with pytest.raises(Interrupted):
    _run(setup, tmp_path / "resumed", source=src, batch_size=4, checkpoint_every=2)
  partial = sketch_store.load_store(os.path.join(tmp_path / "resumed", os.path.basename(full.path)),
                                    allow_partial=True)
  assert partial.meta["n_done"] == 8 and not partial.meta["complete"]  # 2 batches committed
  with pytest.raises(SkmmError, match="incomplete"):
    sketch_store.load_store(partial.path)
  src2 = CountingSource(x, y)
  res = _run(setup, tmp_path / "resumed", source=src2, batch_size=4, checkpoint_every=2)
  assert src2.calls[0] == (8, 12)  # starts at the committed row, recomputes nothing before it
  assert sum(b - a for a, b in src2.calls) == 22 - 8
  np.testing.assert_array_equal(res.ids, full.ids)
  np.testing.assert_array_equal(res.rows, full.rows)
  src3 = CountingSource(x, y)  # a finished store is reused without any computation
  _run(setup, tmp_path / "resumed", source=src3, batch_size=4)
  assert src3.calls == []


def test_changed_config_never_reuses_a_stale_store(setup, tmp_path):
  apply_fn, v, x, y = setup
  base = _run(setup, tmp_path)
  v2 = jax.tree.map(lambda a: a, v)
  v2["params"]["head"]["kernel"] = v2["params"]["head"]["kernel"] * 1.5
  variants = [dict(m=8), dict(seed=1), dict(target="true"), dict(backend="kronecker"),
              dict(subset=["params/head"])]
  keys = {os.path.basename(base.path)}
  for kw in variants:
    st = _run(setup, tmp_path, **kw)
    keys.add(os.path.basename(st.path))
  st = sketch_store.sketch_dataset(sketch_store.ArraySource(x, y), apply_fn, v2, subset=FT2, m=16,
                                   batch_size=8, progress=False, root=str(tmp_path))
  keys.add(os.path.basename(st.path))
  assert not np.allclose(st.rows, base.rows)
  st = _run(setup, tmp_path, source=sketch_store.ArraySource(x + 1e-3, y))
  keys.add(os.path.basename(st.path))
  assert len(keys) == len(variants) + 3
  assert len(os.listdir(tmp_path)) == len(keys)


def test_nonfinite_gradients_are_reported_with_example_ids(setup, tmp_path):
  apply_fn, v, x, y = setup
  x = x.copy()
  x[9, 0, 0, 0] = np.nan
  x[13, 1, 2, 0] = np.inf
  ids = np.arange(22) + 100
  with pytest.raises(SkmmError, match=r"offending example ids: \[109, 113\]"):
    _run(setup, tmp_path, source=sketch_store.ArraySource(x, y, ids=ids))
  st = _run(setup, tmp_path, source=sketch_store.ArraySource(x, y, ids=ids), on_nonfinite="warn")
  assert st.meta["nonfinite_ids"] == [109, 113] and st.meta["complete"]
  assert np.isfinite(np.delete(np.asarray(st.rows), [9, 13], axis=0)).all()


def test_features_mode_and_validation(setup, tmp_path):
  apply_fn, v, x, y = setup
  feat = lambda v, x: x.reshape(x.shape[0], -1)[:, :10]
  st = sketch_store.sketch_dataset(sketch_store.ArraySource(x), feat, v, mode="features", m=None,
                                   batch_size=8, progress=False, root=str(tmp_path))
  np.testing.assert_allclose(st.rows, x.reshape(22, -1)[:, :10])
  with pytest.raises(SkmmError, match="batch_size"):
    _run(setup, tmp_path, batch_size=0)
  with pytest.raises(SkmmError, match="distinct"):
    sketch_store.ArraySource(x, ids=np.zeros(22, np.int64))


@pytest.mark.parametrize("mesh_name", ["mesh1", "mesh4"])
def test_gamma_cache_on_and_off_give_identical_stores(setup, tmp_path, mesh_name, request):
  mesh = request.getfixturevalue(mesh_name)
  on = _run(setup, tmp_path / "on", mesh=mesh, gamma_cache=True)
  off = _run(setup, tmp_path / "off", mesh=mesh, gamma_cache=False)
  auto_none = _run(setup, tmp_path / "none", mesh=mesh, gamma_cache="auto", gamma_cache_mb=0)
  one_chunk_mb = sketching.GAMMA_BLOCK_ROWS * 16 * 4 / 2**20
  auto_part = _run(setup, tmp_path / "part", mesh=mesh, gamma_cache_mb=1.5 * one_chunk_mb)
  np.testing.assert_array_equal(on.rows, off.rows)
  np.testing.assert_array_equal(on.rows, auto_none.rows)
  np.testing.assert_array_equal(on.rows, auto_part.rows)
  with pytest.raises(SkmmError, match="gamma_cache must be"):
    _run(setup, tmp_path / "bad", gamma_cache="yes")
  with pytest.raises(SkmmError, match="gamma_cache_mb"):
    _run(setup, tmp_path / "bad", gamma_cache_mb=-1)
