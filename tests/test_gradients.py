"""Per-example gradients, subsets, targets and the closed-form head gradient."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skmm_jax import gradients
from skmm_jax.validation import SkmmError
from tests._sketch_models import jit_grads, tiny_cnn

FT2 = ["params/conv2", "head"]


def test_subset_paths_prefixes_and_errors():
  _, v, _, _ = tiny_cnn()
  paths = gradients.subset_paths(v, FT2)
  assert paths == ("params/conv2/kernel", "params/head/bias", "params/head/kernel")
  assert gradients.subset_paths(v, "params/head") == ("params/head/bias", "params/head/kernel")
  with pytest.raises(SkmmError, match="Did you mean 'params/head'"):
    gradients.subset_paths(v, ["params/haed"])
  with pytest.raises(SkmmError, match="empty"):
    gradients.subset_paths(v, [])


def test_vmap_grad_rows_equal_single_example_grads():
  apply_fn, v, x, y = tiny_cnn()
  paths = gradients.subset_paths(v, FT2)
  g = jit_grads(apply_fn, v, paths, x, y)
  assert set(g) == set(paths)
  flat = gradients.flatten_variables(v)

  for i in [0, 5, 11]:
    def loss(tr):
      logits = apply_fn(gradients.merge_trainable(v, tr), x[i:i + 1])
      return gradients.cross_entropy(logits, jnp.asarray(y[i:i + 1])).sum()
    gi = jax.jit(jax.grad(loss))({p: flat[p] for p in paths})
    for p in paths:
      np.testing.assert_allclose(g[p][i], gi[p], rtol=2e-5, atol=1e-6)
  # Frozen parameters stay frozen: only the subset is differentiated.
  assert gradients.flatten_grads(g).shape == (12, 3 * 3 * 4 * 6 + 5 + 7 * 5)


def test_batch_norm_runs_in_inference_mode():
  apply_fn, v, x, y = tiny_cnn()
  paths = gradients.subset_paths(v, FT2)
  full = jit_grads(apply_fn, v, paths, x, y)
  part = jit_grads(apply_fn, v, paths, x[3:5], y[3:5])
  for p in paths:  # an example's gradient does not depend on the rest of its batch
    np.testing.assert_allclose(full[p][3:5], part[p], rtol=2e-5, atol=1e-6)


def test_random_targets_depend_only_on_seed_and_id():
  ids = jnp.arange(1000)
  t = np.asarray(gradients.make_targets("random", ids, num_classes=10, seed=3))
  assert t.min() >= 0 and t.max() < 10
  assert np.all(np.bincount(t, minlength=10) > 60)  # roughly uniform
  perm = np.random.default_rng(0).permutation(1000)
  t_perm = np.asarray(gradients.make_targets("random", ids[perm], num_classes=10, seed=3))
  np.testing.assert_array_equal(t_perm, t[perm])  # independent of batching / order
  t2 = np.asarray(gradients.make_targets("random", ids, num_classes=10, seed=4))
  assert (t2 != t).mean() > 0.5
  labels = np.arange(5) % 3
  np.testing.assert_array_equal(gradients.make_targets("true", np.arange(5), labels), labels)
  with pytest.raises(SkmmError, match="needs labels"):
    gradients.make_targets("true", np.arange(5))
  with pytest.raises(SkmmError, match="target mode"):
    gradients.make_targets("randm", np.arange(5), num_classes=3)


def test_head_grad_closed_form_equals_vmap_grad():
  import flax.linen as nn
  head = nn.Dense(4)
  rng = np.random.default_rng(1)
  x = rng.normal(size=(9, 6)).astype(np.float32)
  v = {"params": {"head": head.init(jax.random.key(1), x[:1])["params"]}}
  apply_fn = lambda v, x: head.apply({"params": v["params"]["head"]}, x)
  t = gradients.make_targets("random", np.arange(9), num_classes=4, seed=0)
  paths = gradients.subset_paths(v, "head")
  ref = jit_grads(apply_fn, v, paths, x, t)
  hg = gradients.head_grad(x, v["params"]["head"]["kernel"], v["params"]["head"]["bias"], t,
                           "head")
  assert set(hg) == set(ref)
  for p in ref:
    np.testing.assert_allclose(hg[p], ref[p], rtol=1e-5, atol=1e-6)


def test_params_fingerprint_changes_with_params():
  _, v, _, _ = tiny_cnn(seed=0)
  _, v2, _, _ = tiny_cnn(seed=1)
  assert gradients.params_fingerprint(v) == gradients.params_fingerprint(jax.tree.map(lambda a: a, v))
  assert gradients.params_fingerprint(v) != gradients.params_fingerprint(v2)
