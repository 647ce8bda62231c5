"""Per-example gradient features of a Flax model w.r.t. a named parameter subset (spec section 3).

A model is given as `apply_fn(variables, inputs) -> logits`, typically
`functools.partial(module.apply, train=False)` so that batch norm runs in inference mode
(running statistics), and the full `variables` dict ({'params': ..., 'batch_stats': ...}).
A parameter subset is a list of path prefixes such as `["params/classifier"]` (FT-1) or
`["params/stages_3/layers_1/layer_1/convolution", "params/classifier"]` (FT-2); only those
leaves are differentiated, everything else is frozen.

Three feature modes (spec section 3):
  * `grad`: `jax.vmap(jax.grad(loss))` of cross-entropy against `random` targets (uniform labels
    fixed by the seed, drawn per example id so that they do not depend on batching or sharding)
    or `true` labels;
  * `head_grad`: the closed form (p - y) outer [x; 1] of a linear head on features x;
  * `features`: the features x themselves.

Example:
  >>> import functools, jax, jax.numpy as jnp, flax.linen as nn
  >>> from skmm_jax import gradients
  >>> model = nn.Dense(3)
  >>> variables = model.init(jax.random.key(0), jnp.ones((1, 4)))
  >>> paths = gradients.subset_paths(variables, ["params/kernel"])
  >>> x = jnp.ones((5, 4)); ids = jnp.arange(5)
  >>> y = gradients.make_targets("random", ids, num_classes=3, seed=0)
  >>> g = gradients.per_example_grads(model.apply, variables, paths, x, y)
  >>> g["params/kernel"].shape
  (5, 4, 3)
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from skmm_jax import cache
from skmm_jax import validation

TARGET_MODES = ("random", "true")
FEATURE_MODES = ("grad", "head_grad", "features")
# Salt separating the random-label stream from the Gamma stream of the same seed.
_TARGET_SALT = 0x5EED7A6


def flatten_variables(variables) -> Dict[str, jax.Array]:
  """{'params': {'head': {'kernel': w}}} -> {'params/head/kernel': w}."""
  return traverse_util.flatten_dict(flax.core.unfreeze(variables), sep="/")


def _normalise(entry) -> str:
  if isinstance(entry, (tuple, list)):
    entry = "/".join(str(e) for e in entry)
  entry = str(entry).strip("/")
  return entry if entry.startswith("params/") or entry == "params" else "params/" + entry


def subset_paths(variables, subset: Sequence[str] | str) -> Tuple[str, ...]:
  """The sorted leaf paths selected by `subset` (path prefixes; 'params/' may be omitted).

  Args:
    variables: the model's variables dict.
    subset: prefixes such as ["params/classifier"], or one string; a prefix matches a leaf
      if it equals its path or a leading run of its components.

  Returns:
    Sorted tuple of '/'-joined leaf paths, e.g. ('params/classifier/bias', ...).

  Raises:
    SkmmError: if a prefix matches no parameter (naming the closest existing path).
  """
  subset = [subset] if isinstance(subset, str) else list(subset)
  flat = flatten_variables(variables)
  names = sorted(p for p in flat if p.startswith("params/"))
  if not subset:
    raise validation.SkmmError("the parameter subset is empty; name at least one parameter path.")
  chosen = set()
  for entry in subset:
    pre = _normalise(entry)
    hits = [p for p in names if p == pre or p.startswith(pre + "/")]
    if not hits:
      modules = sorted({p.rsplit("/", 1)[0] for p in names} | set(names))
      close = difflib.get_close_matches(pre, modules, n=1, cutoff=0.3)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise validation.SkmmError(
          f"parameter subset entry {entry!r} matches no parameter of the model.{hint}")
    chosen.update(hits)
  return tuple(sorted(chosen))


def split_trainable(variables, paths: Sequence[str]) -> Dict[str, jax.Array]:
  """The leaves named by `paths`, as a flat {path: array} dict."""
  flat = flatten_variables(variables)
  return {p: flat[p] for p in paths}


def merge_trainable(variables, trainable: Mapping[str, jax.Array]):
  """`variables` with the leaves in `trainable` replaced (traceable)."""
  flat = flatten_variables(variables)
  flat.update(trainable)
  return traverse_util.unflatten_dict(flat, sep="/")


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-row cross-entropy with integer targets, (B, C), (B,) -> (B,)."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def make_targets(mode: str, ids, labels=None, num_classes: Optional[int] = None,
                 seed: int = 0) -> jax.Array:
  """Targets for the gradient loss (traceable).

  Args:
    mode: 'random' (uniform in [0, num_classes), a function of (seed, example id) only) or
      'true' (the given labels).
    ids: (B,) integer example ids.
    labels: (B,) true labels (for 'true').
    num_classes: C (for 'random').
    seed: the seed the random labels derive from.

  Returns:
    (B,) int32 targets.
  """
  validation.check_choice(mode, TARGET_MODES, "target mode")
  if mode == "true":
    if labels is None:
      raise validation.SkmmError("target mode 'true' needs labels, but none were given.")
    return jnp.asarray(labels).astype(jnp.int32)
  if num_classes is None or int(num_classes) < 1:
    raise validation.SkmmError(f"target mode 'random' needs num_classes >= 1; got {num_classes!r}.")
  key = jax.random.fold_in(jax.random.key(seed), _TARGET_SALT)
  ids = jnp.asarray(ids).astype(jnp.uint32)
  return jax.vmap(
      lambda i: jax.random.randint(jax.random.fold_in(key, i), (), 0, int(num_classes)))(ids)


def per_example_loss_fn(apply_fn: Callable) -> Callable:
  """loss(trainable, variables, x, y) of ONE example (x without batch axis)."""
  def loss(trainable, variables, x, y):
    v = merge_trainable(variables, trainable)
    xb = jax.tree.map(lambda a: a[None], x)
    return cross_entropy(apply_fn(v, xb), y[None])[0]
  return loss


def per_example_grads(apply_fn: Callable, variables, paths: Sequence[str], inputs,
                      targets) -> Dict[str, jax.Array]:
  """`jax.vmap(jax.grad(loss))`: per-example gradients w.r.t. the leaves in `paths`.

  Args:
    apply_fn: (variables, inputs) -> logits, batch norm in inference mode.
    variables: the full variables dict (frozen except for `paths`).
    paths: leaf paths from `subset_paths`.
    inputs: (B, ...) array or pytree of arrays with a leading batch axis.
    targets: (B,) int targets.

  Returns:
    {path: (B, *leaf.shape)}.
  """
  trainable = split_trainable(variables, paths)
  loss = per_example_loss_fn(apply_fn)
  return jax.vmap(jax.grad(loss), in_axes=(None, None, 0, 0))(trainable, variables, inputs,
                                                             targets)


def flatten_grads(grads: Mapping[str, jax.Array]) -> jax.Array:
  """{path: (B, ...)} -> (B, r), leaves concatenated in sorted path order."""
  return jnp.concatenate([grads[p].reshape(grads[p].shape[0], -1) for p in sorted(grads)], axis=1)


def head_grad(features, kernel, bias, targets, head_path: str = "params/head"
              ) -> Dict[str, jax.Array]:
  """Closed-form per-example cross-entropy gradient of a linear head, (p - y) outer [x; 1].

  Args:
    features: (B, d) head inputs x.
    kernel: (d, C); bias: (C,) or None.
    targets: (B,) int targets.
    head_path: the head's module path, used to name the returned leaves.

  Returns:
    {head_path + '/kernel': (B, d, C), head_path + '/bias': (B, C)} — exactly what
    `per_example_grads` returns for the head's parameters.
  """
  features = jnp.asarray(features, jnp.float32)
  logits = features @ kernel + (0.0 if bias is None else bias)
  delta = jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(targets, kernel.shape[1])
  head_path = _normalise(head_path)
  out = {head_path + "/kernel": features[:, :, None] * delta[:, None, :]}
  if bias is not None:
    out[head_path + "/bias"] = delta
  return out


def params_fingerprint(variables) -> str:
  """A hash of every leaf's path, dtype, shape and bytes."""
  flat = flatten_variables(variables)
  return cache.fingerprint({p: cache.array_fingerprint(np.asarray(flat[p])) for p in sorted(flat)})
