"""Tiny Flax models shared by the gradient-sketching tests (test helper, not a test file)."""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class TinyCNN(nn.Module):
  """Conv (stride 2, SAME, bias) -> BN -> relu -> Conv (explicit pad, no bias) -> pool -> Dense -> Dense."""
  num_classes: int = 5

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.Conv(4, (3, 3), strides=(2, 2), padding="SAME", name="conv1")(x)
    x = nn.BatchNorm(use_running_average=not train, name="bn")(x)
    x = nn.relu(x)
    x = nn.Conv(6, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, name="conv2")(x)
    x = nn.relu(x).mean(axis=(1, 2))
    x = nn.relu(nn.Dense(7, name="proj")(x))
    return nn.Dense(self.num_classes, name="head")(x)


class TokenNet(nn.Module):
  """Dense layers applied to token sequences (B, T, d), like a transformer MLP."""
  num_classes: int = 3

  @nn.compact
  def __call__(self, x):
    x = nn.gelu(nn.Dense(6, name="fc1")(x))
    x = nn.Dense(5, name="fc2")(x).mean(axis=1)
    return nn.Dense(self.num_classes, name="head")(x)


@functools.lru_cache(maxsize=None)
def _init(seed, num_classes, hw):
  model = TinyCNN(num_classes)
  return model, jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, hw, hw, 3)))


def jit_grads(apply_fn, v, paths, x, t):
  """gradients.per_example_grads, compiled (eager dispatch dominates tiny models)."""
  from skmm_jax import gradients
  return _jit_grads(apply_fn, tuple(paths))(v, x, t)


@functools.lru_cache(maxsize=None)
def _jit_grads(apply_fn, paths):
  from skmm_jax import gradients
  return jax.jit(lambda v, x, t: gradients.per_example_grads(apply_fn, v, paths, x, t))


def tiny_cnn(seed=0, num_classes=5, hw=8):
  """(apply_fn, variables (a fresh copy), x (12, hw, hw, 3), labels); cached per arguments."""
  model, v = _init(seed, num_classes, hw)
  v = jax.tree.map(lambda a: a, v)
  rng = np.random.default_rng(seed)
  v["batch_stats"]["bn"]["mean"] = jnp.asarray(rng.normal(size=4), jnp.float32)
  v["batch_stats"]["bn"]["var"] = jnp.asarray(rng.uniform(0.5, 2.0, size=4), jnp.float32)
  x = rng.normal(size=(12, hw, hw, 3)).astype(np.float32)
  y = rng.integers(0, num_classes, size=12)
  return _apply(model), v, x, y


@functools.lru_cache(maxsize=None)
def _apply(model):
  return functools.partial(model.apply, train=False)


def token_net(seed=0):
  model = TokenNet()
  v = model.init(jax.random.key(seed), jnp.zeros((1, 4, 3)))
  x = np.random.default_rng(seed).normal(size=(6, 4, 3)).astype(np.float32)
  return model.apply, v, x
