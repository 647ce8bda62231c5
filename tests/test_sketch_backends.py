"""Sketch backends: the dense Gaussian equals G @ Gamma, the Kronecker backend equals its definition
on Dense and Conv layers, and both preserve squared norms in expectation."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skmm_jax import gradients
from skmm_jax import sketching
from skmm_jax.validation import SkmmError
from tests._sketch_models import jit_grads, tiny_cnn, token_net

FT2 = ["params/conv1", "params/conv2", "params/head"]


def _targets(apply_fn, v, x, seed=0):
  c = jax.eval_shape(apply_fn, v, x[:1]).shape[-1]
  return gradients.make_targets("random", np.arange(len(x)), num_classes=c, seed=seed)


def _kron_definition(grads, key, m, r_out=None):
  """sum over layers of vec([kernel.reshape(-1, d_out); bias]) @ np.kron(P_in, P_out)."""
  out = 0
  for mod in sorted({p.rsplit("/", 1)[0] for p in grads}):
    k = np.asarray(grads[mod + "/kernel"])
    b, d_out = k.shape[0], k.shape[-1]
    g = k.reshape(b, -1, d_out)
    if mod + "/bias" in grads:
      g = np.concatenate([g, np.asarray(grads[mod + "/bias"])[:, None, :]], axis=1)
    p_in, p_out = sketching.kronecker_factors(key, mod, g.shape[1], d_out, m, r_out)
    out = out + g.reshape(b, -1) @ np.kron(np.asarray(p_in), np.asarray(p_out))
  return out


def _kron_and_grads(apply_fn, paths, m, v, x, t):
  """The Kronecker rows (seed 0) and the vmap(grad) gradients, in one compiled program."""
  @jax.jit
  def f(v, x, t):
    return (sketching.kronecker_backend(apply_fn, paths, m, jax.random.key(0))(v, x, t),
            jit_grads(apply_fn, v, paths, x, t))
  return f(v, x, t)


def _check_gaussian_auto_is_captured_and_exact(apply_fn, paths, v, x, t, grads, m=8):
  """The default gaussian backend captures these layers and equals flatten(G) @ Gamma."""
  key = jax.random.key(0)
  auto, cap = jax.jit(lambda v, x, t: tuple(
      sketching.gaussian_backend(apply_fn, paths, m, key, per_example=pe)(v, x, t)
      for pe in ("auto", "captured")))(v, x, t)
  np.testing.assert_array_equal(auto, cap)
  g = np.asarray(gradients.flatten_grads(grads), np.float64)
  gamma = np.asarray(sketching.dense_embedding({p: grads[p].shape[1:] for p in paths}, key, m),
                     np.float64)
  np.testing.assert_allclose(auto, g @ gamma, rtol=1e-4, atol=1e-5)


def test_gaussian_backend_equals_naive_dense_projection():
  apply_fn, v, x, _ = tiny_cnn()
  paths = gradients.subset_paths(v, FT2)
  fn = jax.jit(sketching.make_row_fn(apply_fn, paths, m=24, seed=5, backend="gaussian"))
  rows = np.asarray(fn(v, x, None, jnp.arange(len(x))))
  t = _targets(apply_fn, v, x, seed=5)
  grads = jit_grads(apply_fn, v, paths, x, t)
  g = np.asarray(gradients.flatten_grads(grads), np.float64)
  gamma = np.asarray(sketching.dense_embedding({p: grads[p].shape[1:] for p in paths},
                                               jax.random.key(5), 24), np.float64)
  np.testing.assert_allclose(rows, g @ gamma, rtol=1e-4, atol=1e-5)


def test_captured_per_example_grads_equal_vmap_grad():
  apply_fn, v, x, _ = tiny_cnn()
  paths = gradients.subset_paths(v, FT2 + ["params/proj"])
  t = _targets(apply_fn, v, x)

  @jax.jit
  def both(v, x, t):
    cap = sketching.captured_per_example_grads(apply_fn, v, paths, x, t)
    rows = sketching.gaussian_backend(apply_fn, paths, 8, jax.random.key(1),
                                      per_example="captured")(v, x, t)
    return cap, rows, sketching.gaussian_backend(apply_fn, paths, 8, jax.random.key(1))(v, x, t)

  cap, rows_cap, rows_vmap = both(v, x, t)
  ref = jit_grads(apply_fn, v, paths, x, t)
  assert set(cap) == set(ref)
  for p in ref:
    np.testing.assert_allclose(cap[p], ref[p], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(rows_cap, rows_vmap, rtol=1e-4, atol=1e-5)
  with pytest.raises(SkmmError, match="per-example gradient method"):
    sketching.gaussian_backend(apply_fn, paths, 8, jax.random.key(1), per_example="loop")


def test_kronecker_backend_equals_definition_on_conv_and_dense():
  apply_fn, v, x, _ = tiny_cnn()
  paths = gradients.subset_paths(v, FT2 + ["params/proj"])
  for m, r_out in [(24, None), (12, 3)]:
    fn = jax.jit(sketching.make_row_fn(apply_fn, paths, m=m, seed=2, backend="kronecker",
                                       r_out=r_out))
    rows = np.asarray(fn(v, x, None, jnp.arange(len(x))))
    t = _targets(apply_fn, v, x, seed=2)
    grads = jit_grads(apply_fn, v, paths, x, t)
    ref = _kron_definition(grads, jax.random.key(2), m, r_out)
    np.testing.assert_allclose(rows, ref, rtol=1e-4, atol=1e-5)


def test_sparse_sign_backend_equals_explicit_embedding():
  apply_fn, v, x, _ = tiny_cnn()
  paths = gradients.subset_paths(v, ["conv2", "head"])
  t = _targets(apply_fn, v, x)
  key = jax.random.key(4)
  rows = jax.jit(sketching.sparse_sign_backend(apply_fn, paths, 16, key, s=3))(v, x, t)
  grads = jit_grads(apply_fn, v, paths, x, t)
  ref = 0
  for p in sorted(grads):
    om = np.asarray(sketching.sparse_sign_embedding(
        key, int(np.prod(grads[p].shape[1:])), 16, sketching.leaf_id_from_path(p), s=3))
    assert np.all(np.sum(om != 0, axis=1) <= 3)  # sparse: at most s entries per row
    ref = ref + np.asarray(grads[p]).reshape(len(x), -1) @ om
  np.testing.assert_allclose(rows, ref, rtol=1e-4, atol=1e-5)


def test_kronecker_on_token_dense_layers():
  apply_fn, v, x = token_net()
  paths = gradients.subset_paths(v, ["fc1", "fc2"])
  t = _targets(apply_fn, v, x)
  rows, grads = _kron_and_grads(apply_fn, paths, 16, v, x, t)
  np.testing.assert_allclose(rows, _kron_definition(grads, jax.random.key(0), 16),
                             rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("backend,m,tol", [("gaussian", 16, 0.12), ("kronecker", 64, 0.2),
                                            ("sparse_sign", 16, 0.12)])
def test_norm_preserved_in_expectation(backend, m, tol):
  apply_fn, v, x, _ = tiny_cnn()
  x = x[:2]
  paths = gradients.subset_paths(v, ["conv2", "head"])
  t = _targets(apply_fn, v, x)
  g2 = np.sum(np.asarray(gradients.flatten_grads(
      jit_grads(apply_fn, v, paths, x, t))) ** 2, axis=1)

  def one(key):
    return sketching.BACKENDS[backend](apply_fn, paths, m, key)(v, x, t)

  keys = jax.random.split(jax.random.key(123), 400)
  sk = np.asarray(jax.jit(jax.vmap(one))(keys))
  ratio = (sk ** 2).sum(-1).mean(0) / g2
  np.testing.assert_allclose(ratio, 1.0, atol=tol)


def test_features_and_head_grad_modes():
  import flax.linen as nn
  head = nn.Dense(3)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(5, 6)).astype(np.float32)
  v = {"params": {"head": head.init(jax.random.key(0), x[:1])["params"]}}
  feat = lambda v, x: x
  rows = sketching.make_row_fn(feat, m=None, mode="features")(v, x, None, jnp.arange(5))
  np.testing.assert_allclose(rows, x)
  rows = sketching.make_row_fn(feat, m=4, mode="features", seed=1)(v, x, None, jnp.arange(5))
  np.testing.assert_allclose(rows, sketching.gaussian_sketch(x, 4, seed=1), rtol=1e-5, atol=1e-6)
  # head_grad sketched == gaussian backend on vmap(grad) of the same head
  logits = lambda v, x: head.apply({"params": v["params"]["head"]}, x)
  paths = gradients.subset_paths(v, "head")
  a = sketching.make_row_fn(feat, m=8, mode="head_grad", head_path="head", seed=3)(
      v, x, None, jnp.arange(5))
  b = sketching.make_row_fn(logits, paths, m=8, mode="grad", seed=3)(v, x, None, jnp.arange(5))
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  raw = sketching.make_row_fn(feat, m=None, mode="head_grad", head_path="head")(
      v, x, None, jnp.arange(5))
  assert raw.shape == (5, 6 * 3 + 3)


def test_bad_backend_and_unsupported_layers_are_named():
  apply_fn, v, x, _ = tiny_cnn()
  with pytest.raises(SkmmError, match="Did you mean 'kronecker'"):
    sketching.make_row_fn(apply_fn, ("params/head/kernel",), m=8, backend="kronecer")
  with pytest.raises(SkmmError, match="kernel"):
    sketching.make_row_fn(apply_fn, gradients.subset_paths(v, "bn"), m=8, backend="kronecker")
  with pytest.raises(SkmmError, match="divide"):
    sketching.make_row_fn(apply_fn, ("params/head/kernel",), m=8, backend="kronecker", r_out=3)
  wrapped = lambda v, x: apply_fn(v, x)  # not a Module.apply: no mutable= keyword
  paths = gradients.subset_paths(v, ["head"])
  with pytest.raises(SkmmError, match="Module.apply"):
    sketching.kronecker_backend(wrapped, paths, 8, jax.random.key(0))(
        v, x[:2], jnp.zeros(2, jnp.int32))
  with pytest.raises(SkmmError, match="needs a sketch dimension"):
    sketching.make_row_fn(apply_fn, ("params/head/kernel",), m=None)


def test_kronecker_on_tiny_clip_vision_tower():
  transformers = pytest.importorskip("transformers")
  import flax.linen as nn
  from transformers.models.clip.modeling_flax_clip import FlaxCLIPVisionModule

  cfg = transformers.CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, image_size=8, patch_size=4,
                                      projection_dim=8)

  class ClipClassifier(nn.Module):
    @nn.compact
    def __call__(self, pixel_values):
      out = FlaxCLIPVisionModule(cfg, name="vision")(pixel_values)
      proj = nn.Dense(8, use_bias=False, name="visual_projection")(out.pooler_output)
      return nn.Dense(3, name="classifier")(proj)

  model = ClipClassifier()
  x = np.random.default_rng(0).normal(size=(3, 8, 8, 3)).astype(np.float32)
  v = jax.jit(model.init)(jax.random.key(0), x[:1])
  paths = gradients.subset_paths(v, ["visual_projection", "classifier",
                                     "vision/vision_model/encoder/layers/0/mlp/fc2",
                                     "vision/vision_model/embeddings/patch_embedding"])
  t = _targets(model.apply, v, x)
  rows, grads = _kron_and_grads(model.apply, paths, 8, v, x, t)
  np.testing.assert_allclose(rows, _kron_definition(grads, jax.random.key(0), 8),
                             rtol=1e-4, atol=1e-5)
  _check_gaussian_auto_is_captured_and_exact(model.apply, paths, v, x, t, grads)


def test_kronecker_and_gaussian_on_project_resnet_tiny_ft2():
  models = pytest.importorskip("skmm_jax.models")
  b = models.resnet_tiny_bundle(num_classes=3, seed=0)
  prefixes = ["/".join(p) for p in models.subset_prefixes(b.module, "ft2")]
  paths = gradients.subset_paths(b.variables, prefixes)
  apply_fn = functools.partial(b.module.apply, train=False)
  x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype(np.float32)
  t = _targets(apply_fn, b.variables, x)
  rows, grads = _kron_and_grads(apply_fn, paths, 8, b.variables, x, t)
  np.testing.assert_allclose(rows, _kron_definition(grads, jax.random.key(0), 8),
                             rtol=1e-4, atol=1e-5)
  _check_gaussian_auto_is_captured_and_exact(apply_fn, paths, b.variables, x, t, grads)


@pytest.mark.parametrize("t,d_in,d_out,m", [
    (1, 4608 // 64, 512, 16),   # d_out divides the chunk: aligned chunks (ResNet FT-2 shape)
    (3, 50, 7, 12),             # unaligned, several positions, r < one chunk
    (2, 300, 10, 8),            # unaligned, r spans several chunks and ends mid-chunk
    (1, 3, 1500, 8),            # d_out larger than a chunk
])
def test_sketch_outer_equals_the_formed_gradient_times_gamma(t, d_in, d_out, m):
  rng = np.random.default_rng(d_in)
  u = rng.normal(size=(3, t, d_in)).astype(np.float32)
  delta = rng.normal(size=(3, t, d_out)).astype(np.float32)
  key = jax.random.key(9)
  rows = jax.jit(lambda u, d: sketching.sketch_outer(u, d, key, m, 77))(u, delta)
  g = np.einsum("bta,bto->bao", u, delta).reshape(3, -1).astype(np.float64)
  gamma = np.asarray(sketching.gaussian_embedding(key, d_in * d_out, m, 77), np.float64)
  np.testing.assert_allclose(rows, g @ gamma, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("opts", [dict(per_example="auto"), dict(per_example="vmap"),
                                  dict(mode="features"), dict(mode="head_grad")])
def test_gamma_cache_gives_bit_identical_rows(opts):
  apply_fn, v, x, _ = tiny_cnn()
  opts = dict(opts)
  mode = opts.pop("mode", "grad")
  if mode == "grad":
    fn = sketching.make_row_fn(apply_fn, gradients.subset_paths(v, FT2), m=24, seed=3, **opts)
  else:
    feat = lambda v, x: x.reshape(len(x), -1)
    v = {"params": {"head": {"kernel": jnp.ones((192, 3)), "bias": jnp.zeros(3)}}}
    fn = sketching.make_row_fn(feat, m=24, seed=3, mode=mode, head_path="head")
  ids = jnp.arange(len(x))
  req = fn.gamma_requests(v, x, None, ids)
  cache = fn.build_gamma_cache(v, x, None, ids)
  assert set(cache) == {str(k) for k in req}
  assert sum(a.nbytes for a in cache.values()) == sketching.gamma_cache_bytes(req, 24)
  f = jax.jit(fn)
  np.testing.assert_array_equal(f(v, x, None, ids), f(v, x, None, ids, cache))
  chunk = sketching.GAMMA_BLOCK_ROWS * 24 * 4
  part = fn.build_gamma_cache(v, x, None, ids, max_bytes=chunk)  # the first leaf only
  assert len(part) == 1
  np.testing.assert_array_equal(f(v, x, None, ids), f(v, x, None, ids, part))
  wrong_m = {k: a[..., :8] for k, a in cache.items()}
  with pytest.raises(SkmmError, match="cached Gamma"):
    f(v, x, None, ids, wrong_m)


def test_partial_gamma_cache_within_a_leaf_is_exact():
  x = np.random.default_rng(0).normal(size=(5, 3000)).astype(np.float32)  # 3 chunks
  key = jax.random.key(2)
  f = jax.jit(lambda x, g: sketching.sketch_leaf(x, key, 16, 9, g))
  full = f(x, None)
  for k in (1, 2, 3):
    cache = sketching.build_gamma_cache(key, {9: 3000}, 16,
                                        max_bytes=k * sketching.GAMMA_BLOCK_ROWS * 16 * 4 + 5)
    assert cache["9"].shape == (k, sketching.GAMMA_BLOCK_ROWS, 16)
    np.testing.assert_array_equal(f(x, cache), full)
  assert sketching.build_gamma_cache(key, {9: 3000}, 16, max_bytes=100) == {}


def test_auto_falls_back_to_vmap_where_layers_cannot_be_captured():
  apply_fn, v, x, _ = tiny_cnn()
  ids = jnp.arange(len(x))
  wrapped = lambda v, x: apply_fn(v, x)  # no mutable= keyword: capture is impossible
  for fn, subset in [(wrapped, FT2), (apply_fn, ["bn", "head"])]:
    paths = gradients.subset_paths(v, subset)
    auto = jax.jit(sketching.make_row_fn(fn, paths, m=16, seed=1))(v, x, None, ids)
    vm = jax.jit(sketching.make_row_fn(fn, paths, m=16, seed=1, per_example="vmap"))(
        v, x, None, ids)
    np.testing.assert_array_equal(auto, vm)
  paths = gradients.subset_paths(v, FT2)  # Conv/Dense layers of a Module.apply: captured
  auto, cap = (jax.jit(sketching.make_row_fn(apply_fn, paths, m=16, seed=1, per_example=pe))(
      v, x, None, ids) for pe in ("auto", "captured"))
  np.testing.assert_array_equal(auto, cap)
  with pytest.raises(SkmmError, match="Module.apply"):
    sketching.make_row_fn(wrapped, paths, m=16, per_example="captured")(v, x, None, ids)
