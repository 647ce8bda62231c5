"""Gaussian sketching with one seed-derived embedding, generated block by block.

The embedding Gamma in R^{r x m} has i.i.d. N(0, 1/m) entries, so E||Gamma^T g||^2 = ||g||^2.
It is never held whole: rows of Gamma come in blocks of `GAMMA_BLOCK_ROWS`, block b of leaf
`leaf` being drawn from `fold_in(fold_in(key, leaf_id), b)`. Any shard, any batch and any
resumed run regenerate exactly the same numbers, and every example is sketched with the
same Gamma (the authors' code draws a new one per batch; that is a bug).

For a parameter pytree, `leaf_id` is a stable 31-bit hash of the leaf's path
(`leaf_id_from_path`), so the same parameter always gets the same rows of Gamma, whichever
subset of parameters is sketched.

Example:
  >>> import numpy as np, jax
  >>> from skmm_jax import sketching
  >>> x = np.random.default_rng(0).normal(size=(6, 100)).astype(np.float32)
  >>> sk = sketching.gaussian_sketch(x, m=8, seed=0)
  >>> sk.shape
  (6, 8)
  >>> gamma = sketching.gaussian_embedding(jax.random.key(0), 100, 8)
  >>> bool(np.allclose(sk, x @ np.asarray(gamma), atol=1e-4))
  True
"""
from __future__ import annotations

import functools
import logging
from typing import Callable, Optional
import zlib

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from skmm_jax import gradients
from skmm_jax import parallel
from skmm_jax import validation

# Fixed: the numbers of Gamma depend on it, so it is part of every sketch's identity.
GAMMA_BLOCK_ROWS = 1024


def leaf_id_from_path(path: str) -> int:
  """A stable 31-bit id for a parameter path such as 'params/head/kernel'."""
  return zlib.crc32(path.encode()) & 0x7FFFFFFF


def gaussian_block(key: jax.Array, leaf_id: int, block: int | jax.Array, m: int,
                   dtype=jnp.float32) -> jax.Array:
  """Rows [block*B, (block+1)*B) of the embedding of leaf `leaf_id`, shape (B, m).

  Entries are N(0, 1/m). B = GAMMA_BLOCK_ROWS.
  """
  k = jax.random.fold_in(jax.random.fold_in(key, leaf_id), block)
  return jax.random.normal(k, (GAMMA_BLOCK_ROWS, m), dtype) / jnp.sqrt(jnp.asarray(m, dtype))


def gaussian_embedding(key: jax.Array, r: int, m: int, leaf_id: int = 0,
                       dtype=jnp.float32) -> jax.Array:
  """The whole (r, m) embedding of one leaf. For tests and small r only."""
  nb = -(-r // GAMMA_BLOCK_ROWS)
  blocks = [gaussian_block(key, leaf_id, b, m, dtype) for b in range(nb)]
  return jnp.concatenate(blocks, axis=0)[:r]


def num_blocks(r: int) -> int:
  """How many Gamma blocks cover r rows."""
  return -(-int(r) // GAMMA_BLOCK_ROWS)


class GammaRequests(dict):
  """Passed as `gammas` while tracing: records {leaf_id: rows} of every embedding used."""


def _chunk_source(gammas, key, leaf_id: int, r: int, m: int, dtype) -> Callable:
  """chunk index -> (C, m) rows of Gamma: read from the cache `gammas` or generated."""
  if isinstance(gammas, GammaRequests):
    gammas[int(leaf_id)] = max(int(r), gammas.get(int(leaf_id), 0))
  table = None if gammas is None or isinstance(gammas, GammaRequests) else gammas.get(str(leaf_id))
  generate = lambda c: gaussian_block(key, leaf_id, c, m, dtype)  # noqa: E731
  if table is None or table.shape[0] == 0:
    return generate
  if table.ndim != 3 or table.shape[1:] != (GAMMA_BLOCK_ROWS, m):
    raise validation.SkmmError(
        f"the cached Gamma of leaf {leaf_id} has shape {table.shape}; the sketch needs "
        f"(<= {num_blocks(r)}, {GAMMA_BLOCK_ROWS}, {m}). Rebuild the cache for this model and m.")
  k = int(table.shape[0])
  read = lambda c: jax.lax.dynamic_index_in_dim(  # noqa: E731
      table, jnp.minimum(c, k - 1), 0, keepdims=False).astype(dtype)
  if k >= num_blocks(r):
    return read
  # A partial cache holds the first k chunks; the others are generated.
  return lambda c: jax.lax.cond(c < k, read, generate, c)


def build_gamma_cache(key: jax.Array, requests, m: int,
                      max_bytes: Optional[int] = None) -> dict:
  """The cached embeddings for `requests` ({leaf_id: rows}): {str(leaf_id): (chunks, C, m)}.

  Same numbers as generating on the fly (`gaussian_block`); pass the result as `gammas` to the
  sketch functions to skip regenerating r x m Gaussians for every batch.

  Args:
    key: the seed's key (`jax.random.key(seed)`).
    requests: {leaf_id: rows}, e.g. from `RowFn.gamma_requests`.
    m: sketch dimension.
    max_bytes: optional budget. Whole leaves are cached in leaf-id order while they fit; the
      first leaf that does not fit gets its first chunks only (the rest of it, and any later
      leaf, is generated per call as before). None caches everything.

  Returns:
    {str(leaf_id): (k, C, m) float32}, k <= num_blocks(rows).
  """
  out = {}
  left = None if max_bytes is None else int(max_bytes)
  chunk_bytes = GAMMA_BLOCK_ROWS * int(m) * 4
  for leaf_id, r in sorted(requests.items()):
    k = num_blocks(r) if left is None else min(num_blocks(r), left // chunk_bytes)
    if k <= 0:
      break
    out[str(leaf_id)] = _gamma_table(key, int(leaf_id), k, int(m))
    if left is not None:
      left -= k * chunk_bytes
  return out


@functools.partial(jax.jit, static_argnames=("leaf_id", "n", "m"))
def _gamma_table(key, leaf_id, n, m):
  return jax.lax.map(lambda c: gaussian_block(key, leaf_id, c, m), jnp.arange(n))


def gamma_cache_bytes(requests, m: int) -> int:
  """Bytes `build_gamma_cache(requests, m)` allocates (float32)."""
  return sum(num_blocks(r) * GAMMA_BLOCK_ROWS * int(m) * 4 for r in requests.values())


def sketch_leaf(x: jax.Array, key: jax.Array, m: int, leaf_id: int = 0,
                gammas=None) -> jax.Array:
  """x (B, r) -> x @ Gamma_leaf (B, m), Gamma generated chunk by chunk inside a scan.

  Traceable (use inside jit). Memory is O(B * C + C * m), C = GAMMA_BLOCK_ROWS.

  Args:
    gammas: optional cache from `build_gamma_cache` (or a `GammaRequests` to record into).
  """
  b, r = x.shape
  nc = num_blocks(r)
  pad = nc * GAMMA_BLOCK_ROWS - r
  xp = jnp.pad(x, ((0, 0), (0, pad))) if pad else x
  xb = xp.reshape(b, nc, GAMMA_BLOCK_ROWS)
  rows = _chunk_source(gammas, key, leaf_id, r, m, x.dtype)

  def body(acc, i):
    blk = jax.lax.dynamic_index_in_dim(xb, i, axis=1, keepdims=False)
    return acc + jnp.dot(blk, rows(i), precision=jax.lax.Precision.HIGHEST), None

  acc0 = jnp.zeros((b, m), x.dtype)
  out, _ = jax.lax.scan(body, acc0, jnp.arange(nc))
  return out


def sketch_outer(u: jax.Array, delta: jax.Array, key: jax.Array, m: int, leaf_id: int,
                 gammas=None) -> jax.Array:
  """Sketch of per-example gradients sum_t u_t (x) delta_t without forming them.

  The gradient of a Dense/Conv kernel for example b is G_b = sum_t u_bt delta_bt^T, flattened
  row-major (row a * d_out + o, the kernel's own layout with the patch index a in (kh, kw, c_in)
  order). Each chunk of C rows of vec(G_b) is formed from u and delta just before it is
  multiplied by the matching rows of Gamma, so memory is O(B C + C m) and never O(B r); the
  extra work is B T C per chunk against the matmul's 2 B C m.

  Args:
    u: (B, T, d_in) layer inputs (Dense) or patches (Conv), T positions / tokens.
    delta: (B, T, d_out) output-gradients.
    key, m, leaf_id: the embedding (the kernel leaf's `leaf_id_from_path`).
    gammas: optional cache from `build_gamma_cache`.

  Returns:
    (B, m) = flatten(G) @ Gamma_leaf.
  """
  b, t, ka = u.shape
  ko = delta.shape[-1]
  r = ka * ko
  cr = GAMMA_BLOCK_ROWS
  nc = num_blocks(r)
  aligned = cr % ko == 0
  span = cr // ko if aligned else -(-cr // ko) + 1   # patch entries one chunk touches
  last = ((nc - 1) * cr) // ko
  up = jnp.pad(u, ((0, 0), (0, 0), (0, max(last + span - ka, 0))))
  rows = _chunk_source(gammas, key, leaf_id, r, m, u.dtype)
  hi = jax.lax.Precision.HIGHEST

  def body(acc, c):
    s = c * cr
    a0 = s // ko
    ua = jax.lax.dynamic_slice_in_dim(up, a0, span, axis=2)
    if t == 1:  # an outer product: one fused elementwise loop (a batched dot is 1.4x slower)
      g = (ua[:, 0, :, None] * delta[:, 0, None, :]).reshape(b, span * ko)
    else:
      g = jnp.einsum("bta,bto->bao", ua, delta, precision=hi).reshape(b, span * ko)
    if not aligned:
      g = jax.lax.dynamic_slice_in_dim(g, s - a0 * ko, cr, axis=1)
    return acc + jnp.dot(g, rows(c), precision=hi), None

  out, _ = jax.lax.scan(body, jnp.zeros((b, m), u.dtype), jnp.arange(nc))
  return out


@functools.partial(jax.jit, static_argnames=("m", "leaf_id"))
def _sketch_rows(x, key, m, leaf_id):
  return sketch_leaf(x, key, m, leaf_id)


def gaussian_sketch(features, m: int, seed: int = 0, leaf_id: int = 0,
                    mesh=None) -> np.ndarray:
  """Sketches an (N, r) feature matrix to (N, m) with the seed's embedding.

  Rows are sharded over the `data` mesh; the result is gathered to the host.

  Args:
    features: (N, r) array.
    m: sketch dimension.
    seed: the seed Gamma is derived from.
    leaf_id: which embedding (0 for a plain feature matrix).
    mesh: optional mesh (default: all local devices).

  Returns:
    (N, m) float32 numpy array.
  """
  validation.check_matrix(features, "features")
  if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m <= 0:
    raise validation.SkmmError(f"sketch dimension m must be a positive integer; got {m!r}.")
  rows = parallel.shard_rows(np.asarray(features, np.float32), mesh)
  out = _sketch_rows(rows.array, jax.random.key(seed), int(m), int(leaf_id))
  return np.asarray(out)[: rows.n_valid]


def sketch_sharded(rows: parallel.ShardedRows, m: int, seed: int = 0,
                   leaf_id: int = 0, key: Optional[jax.Array] = None) -> parallel.ShardedRows:
  """Like `gaussian_sketch` but keeps the result sharded on the device mesh.

  `key` (a derived key) replaces `jax.random.key(seed)` when given.
  """
  key = jax.random.key(seed) if key is None else key
  out = _sketch_rows(rows.array, key, int(m), int(leaf_id))
  return parallel.ShardedRows(out, rows.n_valid, rows.mesh)


# ----------------------------------------------------------------------------------------------
# Sketch backends for per-example gradients (spec section 3).
#
# A backend turns (apply_fn, variables, parameter subset, a batch) into the (B, m) rows
# g_i^T Gamma without ever holding Gamma whole:
#   * `gaussian`: materialises the per-example gradients with vmap(grad) (O(B r) memory) and
#     multiplies each leaf by its own block-generated Gamma (`sketch_leaf`, leaf id from the
#     leaf's path). Summing over leaves is the sketch of the concatenated gradient with the
#     stacked Gamma (`dense_embedding`). The correctness oracle.
#   * `kronecker`: for flax.linen Dense and Conv layers, Gamma_layer = P_in (x) P_out with
#     P_in ((d_in [+1 for the bias]) x r_in), P_out (d_out x r_out), r_in r_out = m, entries
#     N(0, 1/r_in) and N(0, 1/r_out). The per-example gradient of such a layer is
#     sum_t [x_t; 1] (x) delta_t over its tokens / output positions t, so its sketch is
#     sum_t (P_in^T [x_t; 1]) (x) (P_out^T delta_t): the layer inputs are projected in the
#     forward pass (a Conv becomes a conv with r_in random filters) and `sow`n, the output
#     gradients delta come from `perturb` with one backward pass of the summed loss (examples
#     are independent in inference mode). The gradient itself is never formed.
#   * `sparse_sign` (optional fast transform): vmap(grad) times a sparse sign embedding with s
#     nonzeros per row; r s random numbers per batch instead of the Gaussian's r m.
# All satisfy E||Gamma^T g||^2 = ||g||^2; layers / leaves are summed (independent Gammas).
# ----------------------------------------------------------------------------------------------


# Modules computed as y = x @ kernel (+ bias) besides flax.linen.Dense, by class name (the
# project's `skmm_jax.models.heads.LinearHead`); extend it for your own Dense-like modules.
DENSE_LIKE_MODULES = {"LinearHead"}

_KRON_U = "skmm_kron_inputs"
_KRON_P = "skmm_kron_perturbations"


def sketch_grads(grads, key: jax.Array, m: int, gammas=None) -> jax.Array:
  """{path: (B, ...)} per-example gradients -> (B, m) = flatten_grads(grads) @ dense_embedding.

  Each leaf is multiplied by its own block-generated Gamma (leaf id = `leaf_id_from_path`).
  """
  out = None
  for p in sorted(grads):
    g = grads[p]
    s = sketch_leaf(g.reshape(g.shape[0], -1).astype(jnp.float32), key, m, leaf_id_from_path(p),
                    gammas)
    out = s if out is None else out + s
  return out


def dense_embedding(shapes, key: jax.Array, m: int) -> jax.Array:
  """The stacked (r, m) Gamma `sketch_grads` uses, rows in `gradients.flatten_grads` order.

  Args:
    shapes: {path: leaf shape} (without the batch axis).
  For tests and small r only: it holds r x m numbers.
  """
  return jnp.concatenate([
      gaussian_embedding(key, int(np.prod(shapes[p])), m, leaf_id_from_path(p))
      for p in sorted(shapes)], axis=0)


def kron_dims(m: int, r_out: Optional[int] = None) -> tuple:
  """(r_in, r_out) with r_in * r_out = m; default r_out = the largest divisor <= sqrt(m)."""
  if r_out is None:
    r_out = max(d for d in range(1, int(np.sqrt(m)) + 1) if m % d == 0)
  if m % r_out:
    raise validation.SkmmError(f"kronecker r_out={r_out} must divide the sketch dimension m={m}.")
  return m // r_out, int(r_out)


def kronecker_factors(key: jax.Array, module_path: str, d_in: int, d_out: int, m: int,
                      r_out: Optional[int] = None):
  """(P_in (d_in, r_in), P_out (d_out, r_out)) of one layer; d_in counts the bias row if any.

  The layer's Gamma is np.kron(P_in, P_out), acting on the row-major flattening of the
  (d_in, d_out) gradient [kernel reshaped to (-1, d_out); bias].
  """
  r_in, r_out = kron_dims(m, r_out)
  p_in = gaussian_embedding(key, d_in, r_in, leaf_id_from_path(module_path + "/kron_in"))
  p_out = gaussian_embedding(key, d_out, r_out, leaf_id_from_path(module_path + "/kron_out"))
  return p_in, p_out


def _module_groups(paths) -> dict:
  groups = {}
  for p in paths:
    mod, leaf = p.rsplit("/", 1)
    groups.setdefault(mod, set()).add(leaf)
  return groups


def _as_tuple(v, n=None):
  if v is None:
    return None
  return (v,) * (n or 1) if isinstance(v, int) else tuple(v)


PER_EXAMPLE_METHODS = ("auto", "captured", "vmap")


def gaussian_backend(apply_fn: Callable, paths, m: int, key: jax.Array,
                     per_example: str = "auto") -> Callable:
  """Backend `gaussian`: per-example gradients times the block-generated Gamma.

  Args:
    per_example: how the per-example gradients reach Gamma.
      'vmap': jax.vmap(jax.grad) materialises them (B x r; any parameters).
      'captured': Dense/Conv layers only: layer inputs (conv patches) and output-gradients are
        captured in one batched forward/backward pass, and each chunk of the gradient is
        formed just before its matmul with Gamma (`sketch_outer`): never B x r in memory, no
        batch-grouped convolutions. Same rows as 'vmap' (to float rounding).
      'auto' (default): 'captured' when every layer of the subset is a Dense/Conv layer called
        once, else 'vmap'.

  Returns:
    fn(variables, inputs, targets, gammas=None) -> (B, m); `gammas` is an optional Gamma
    cache (`build_gamma_cache`).
  """
  validation.check_choice(per_example, PER_EXAMPLE_METHODS, "per-example gradient method")
  groups = _module_groups(paths)
  if per_example == "captured":
    _check_layer_groups(groups, "gaussian (per_example='captured')")
  layer_subset = per_example != "vmap" and _layer_groups_ok(groups)

  def vmap_fn(variables, inputs, targets, gammas=None):
    grads = gradients.per_example_grads(apply_fn, variables, paths, inputs, targets)
    return sketch_grads(grads, key, m, gammas)

  def captured_fn(variables, inputs, targets, gammas=None):
    cap = capture_layers(apply_fn, groups, variables, inputs, targets, conv_patches)
    out = None
    for mpath, (u, delta) in sorted(cap.items()):
      s = sketch_outer(u, delta, key, m, leaf_id_from_path(mpath + "/kernel"), gammas)
      if "bias" in groups[mpath]:
        s = s + sketch_leaf(delta.sum(axis=1), key, m, leaf_id_from_path(mpath + "/bias"), gammas)
      out = s if out is None else out + s
    return out

  if per_example == "vmap" or not layer_subset:
    return vmap_fn
  if per_example == "captured":
    return captured_fn

  def auto_fn(variables, inputs, targets, gammas=None):
    try:  # decided while tracing: capture fails early on layers it cannot intercept
      return captured_fn(variables, inputs, targets, gammas)
    except LayerCaptureError as e:
      logging.info("gaussian backend: per-example gradients by vmap(grad), since %s", e)
      return vmap_fn(variables, inputs, targets, gammas)
  return auto_fn


def _dense_like(mod) -> bool:
  return isinstance(mod, nn.Dense) or type(mod).__name__ in DENSE_LIKE_MODULES


class LayerCaptureError(validation.SkmmError):
  """The model's layers cannot be captured (not Dense/Conv, shared, or apply_fn lacks mutable)."""


def _layer_groups_ok(groups) -> bool:
  return all("kernel" in leaves and leaves <= {"kernel", "bias"} for leaves in groups.values())


def _check_layer_groups(groups, backend: str):
  for mod, leaves in groups.items():
    if "kernel" not in leaves or not leaves <= {"kernel", "bias"}:
      raise validation.SkmmError(
          f"the {backend} backend works on whole Dense/Conv layers (kernel [+ bias]); the subset "
          f"selects {sorted(leaves)} of {mod!r}. Use backend='gaussian' for other parameters.")


def _conv_clone(mod, features: int, groups: int = 1):
  """An unbound bias-free Conv with `mod`'s geometry (stride, padding, dilations)."""
  if mod.feature_group_count != 1:
    raise LayerCaptureError("grouped convolutions are not supported by layer capture.")
  return nn.Conv(features, _as_tuple(mod.kernel_size), strides=mod.strides, padding=mod.padding,
                 input_dilation=mod.input_dilation, kernel_dilation=mod.kernel_dilation,
                 feature_group_count=groups, use_bias=False,
                 precision=jax.lax.Precision.HIGHEST, parent=None)


def conv_patches(mod, mpath, x, d_out):
  """Input map for `capture_layers`: a Conv layer's input patches, a Dense layer's input.

  Patches come from a depthwise convolution with one-hot filters (B T k c_in multiply-adds, not
  the B T (k c_in)^2 of a dense identity filter), reordered to the kernel's (kh, kw, c_in)
  layout, so flax's padding / stride / dilation rules apply unchanged.
  """
  del mpath, d_out
  if _dense_like(mod):
    return x
  ks = _as_tuple(mod.kernel_size)
  taps, c = int(np.prod(ks)), x.shape[-1]
  onehot = jnp.eye(taps, dtype=x.dtype).reshape(*ks, 1, taps)
  y = _conv_clone(mod, c * taps, groups=c).apply(
      {"params": {"kernel": jnp.tile(onehot, (1,) * len(ks) + (1, c))}}, x)
  y = y.reshape(*y.shape[:-1], c, taps)
  return jnp.swapaxes(y, -1, -2).reshape(*y.shape[:-2], taps * c)


def capture_layers(apply_fn: Callable, groups, variables, inputs, targets,
                   input_map: Callable) -> dict:
  """Per-layer (mapped inputs, output-gradients) of the Dense/Conv layers in `groups`.

  The layers are intercepted (`flax.linen.intercept_methods`): `input_map(mod, mpath, x)` maps
  each layer's input to per-position vectors u (B, ..., k), which are `sow`n; the layer output
  is `perturb`ed, and one backward pass of the summed loss gives each example's output-gradient
  delta (B, ..., d_out) (examples are independent with batch norm in inference mode).

  Returns:
    {module path: (u (B, T, k), delta (B, T, d_out))}.
  """
  def interceptor(next_fun, args, kwargs, context):
    mod = context.module
    if context.method_name != "__call__" or not (_dense_like(mod) or isinstance(mod, nn.Conv)):
      return next_fun(*args, **kwargs)
    mpath = "/".join(("params",) + tuple(mod.path))
    if mpath not in groups:
      return next_fun(*args, **kwargs)
    x = args[0] if args else kwargs["inputs"]
    y = next_fun(*args, **kwargs)
    mod.sow(_KRON_U, "u", input_map(mod, mpath, x.astype(jnp.float32), y.shape[-1]))
    return mod.perturb("y", y, collection=_KRON_P)

  base = dict(flax.core.unfreeze(variables))
  base.pop(_KRON_P, None)

  def run(v, mutable):
    with nn.intercept_methods(interceptor):
      try:
        return apply_fn(v, inputs, mutable=mutable)
      except TypeError as e:
        if "mutable" not in str(e):
          raise
        raise LayerCaptureError(
            "layer capture (backend 'kronecker', per_example='captured') needs apply_fn to be a "
            "flax Module.apply (possibly functools.partial'd) accepting mutable=...; got "
            f"{apply_fn!r}.") from e

  shapes = jax.eval_shape(lambda v: run(v, [_KRON_P, _KRON_U])[1][_KRON_P], base)
  perts = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)

  def loss(p):
    logits, state = run({**base, _KRON_P: p}, [_KRON_U])
    return gradients.cross_entropy(logits, targets).sum(), state[_KRON_U]

  deltas, us = jax.grad(loss, has_aux=True)(perts)
  deltas = traverse_util.flatten_dict(flax.core.unfreeze(deltas), sep="/")
  us = traverse_util.flatten_dict(flax.core.unfreeze(us), sep="/")
  missing = sorted(set(groups) - {"params/" + k[:-2] for k in deltas})
  if missing:
    raise LayerCaptureError(
        f"layer capture supports flax.linen.Dense / Conv layers (and DENSE_LIKE_MODULES) only; "
        f"the subset's {missing} were not called as such. Use backend='gaussian'.")
  out = {}
  for mpath in sorted(groups):
    key_ = mpath[len("params/"):]
    u = us[key_ + "/u"]
    if len(u) != 1:
      raise LayerCaptureError(
          f"layer {mpath!r} is called {len(u)} times (shared weights); layer capture needs one "
          f"call per layer. Use backend='gaussian' with per_example='vmap'.")
    delta = deltas[key_ + "/y"].astype(jnp.float32)
    b = delta.shape[0]
    out[mpath] = (u[0].reshape(b, -1, u[0].shape[-1]), delta.reshape(b, -1, delta.shape[-1]))
  return out


def captured_per_example_grads(apply_fn: Callable, variables, paths, inputs, targets) -> dict:
  """Per-example gradients of Dense/Conv layers from captured inputs and output-gradients.

  Equal to `gradients.per_example_grads` (sum over positions of input patch (x) delta) but
  without vmap: XLA lowers vmap(grad) of a convolution to a batch-grouped convolution, which
  is slow on CPU. Conv patches come from `conv_patches` (the kernel's (kh, kw, c_in) layout,
  flax's padding rules unchanged). It materialises B x r numbers: the `gaussian` backend's
  'captured' path sketches from the same captures without forming them (`sketch_outer`).

  Returns:
    {path: (B, *leaf.shape)} for the kernel (and bias) leaves in `paths`.
  """
  groups = _module_groups(paths)
  _check_layer_groups(groups, "captured")
  cap = capture_layers(apply_fn, groups, variables, inputs, targets, conv_patches)
  flat = gradients.flatten_variables(variables)
  out = {}
  for mpath, (u, delta) in cap.items():
    k = jnp.einsum("bta,bto->bao", u, delta, precision=jax.lax.Precision.HIGHEST)
    out[mpath + "/kernel"] = k.reshape((k.shape[0],) + flat[mpath + "/kernel"].shape)
    if "bias" in groups[mpath]:
      out[mpath + "/bias"] = delta.sum(axis=1)
  return out


def kronecker_backend(apply_fn: Callable, paths, m: int, key: jax.Array,
                      r_out: Optional[int] = None) -> Callable:
  """Backend `kronecker` for flax.linen Dense / Conv layers (see the section comment above).

  `apply_fn` must accept flax's `mutable=` keyword (a `Module.apply`, possibly partial'd).

  Returns:
    fn(variables, inputs, targets) -> (B, m).
  """
  groups = _module_groups(paths)
  r_in, r_out = kron_dims(m, r_out)
  _check_layer_groups(groups, "kronecker")

  def project(mod, mpath, x, d_out):
    use_bias = "bias" in groups[mpath]
    if _dense_like(mod):
      d_in = x.shape[-1]
      p_in, _ = kronecker_factors(key, mpath, d_in + use_bias, d_out, m, r_out)
      u = jnp.matmul(x, p_in[:d_in], precision=jax.lax.Precision.HIGHEST)
    else:
      ks = _as_tuple(mod.kernel_size)
      d_in = int(np.prod(ks)) * x.shape[-1]
      p_in, _ = kronecker_factors(key, mpath, d_in + use_bias, d_out, m, r_out)
      u = _conv_clone(mod, r_in).apply(
          {"params": {"kernel": p_in[:d_in].reshape(*ks, x.shape[-1], r_in)}}, x)
    return u + p_in[d_in] if use_bias else u

  def fn(variables, inputs, targets, gammas=None):
    del gammas  # the Kronecker factors are small and generated per call
    cap = capture_layers(apply_fn, groups, variables, inputs, targets, project)
    out = None
    for mpath, (u, delta) in cap.items():
      b, d_out = delta.shape[0], delta.shape[-1]
      _, p_out = kronecker_factors(key, mpath, 1, d_out, m, r_out)
      v = jnp.matmul(delta, p_out, precision=jax.lax.Precision.HIGHEST)
      s = jnp.einsum("btp,btq->bpq", u, v, precision=jax.lax.Precision.HIGHEST).reshape(b, m)
      out = s if out is None else out + s
    return out

  return fn


def sparse_sign_leaf(x: jax.Array, key: jax.Array, m: int, leaf_id: int, s: int = 4) -> jax.Array:
  """x (B, r) -> x @ Omega (B, m), Omega a sparse sign embedding of leaf `leaf_id`.

  Every row i of Omega has `s` entries +-1/sqrt(s) (columns h_j(i), signs sigma_j(i) drawn
  from fold_in(key, leaf_id) and the salt of repetition j), so E||Omega^T x||^2 = ||x||^2.
  It draws r s random numbers per leaf (not r m as the Gaussian does) and costs O(B r s).
  """
  b, r = x.shape
  base = jax.random.fold_in(jax.random.fold_in(key, leaf_id), 0x5A5E)
  out = jnp.zeros((m, b), x.dtype)
  for j in range(s):
    kh, ks = jax.random.split(jax.random.fold_in(base, j))
    h = jax.random.randint(kh, (r,), 0, m)
    sign = jax.random.rademacher(ks, (r,), x.dtype)
    out = out + jax.ops.segment_sum((x * sign).T, h, num_segments=m)
  return out.T / jnp.sqrt(jnp.asarray(s, x.dtype))


def sparse_sign_embedding(key: jax.Array, r: int, m: int, leaf_id: int = 0, s: int = 4):
  """The explicit (r, m) Omega of `sparse_sign_leaf` (tests and small r only)."""
  return sparse_sign_leaf(jnp.eye(r, dtype=jnp.float32), key, m, leaf_id, s)


def sparse_sign_backend(apply_fn: Callable, paths, m: int, key: jax.Array, s: int = 4) -> Callable:
  """Backend `sparse_sign`: vmap(grad) per-example gradients times a sparse sign embedding.

  An optional fast transform: the dense Gaussian is bound by generating r m Gaussians per
  batch; this one generates r s numbers and does O(B r s) work, at the price of weaker
  embedding constants for small s. Leaves are summed, as for `gaussian`.
  """
  def fn(variables, inputs, targets, gammas=None):
    del gammas  # r s numbers per call: nothing worth caching
    grads = gradients.per_example_grads(apply_fn, variables, paths, inputs, targets)
    out = 0.0
    for p in sorted(grads):
      g = grads[p]
      out = out + sparse_sign_leaf(g.reshape(g.shape[0], -1).astype(jnp.float32), key, m,
                                   leaf_id_from_path(p), s)
    return out
  return fn


BACKENDS = {"gaussian": gaussian_backend, "kronecker": kronecker_backend,
            "sparse_sign": sparse_sign_backend}


class RowFn:
  """The traceable per-batch function `make_row_fn` returns.

  Call it as row_fn(variables, inputs, labels, ids, gammas=None) -> (B, m) float32.
  `gammas` is an optional Gamma cache (`build_gamma_cache`): the same numbers as generating
  Gamma from the seed on every call, without the r x m Gaussians per call.
  """

  def __init__(self, fn: Callable, key: jax.Array, m: Optional[int]):
    self._fn, self.key, self.m = fn, key, m
    functools.update_wrapper(self, fn)

  def __call__(self, variables, inputs, labels, ids, gammas=None):
    return self._fn(variables, inputs, labels, ids, gammas)

  def gamma_requests(self, variables, inputs, labels, ids) -> dict:
    """{leaf_id: rows} of the Gamma embeddings one call generates (traced abstractly)."""
    req = GammaRequests()
    jax.eval_shape(lambda v, x, l, i: self._fn(v, x, l, i, req), variables, inputs, labels, ids)
    return dict(req)

  def build_gamma_cache(self, variables, inputs, labels, ids,
                        max_bytes: Optional[int] = None) -> dict:
    """The Gamma cache for this function (see `build_gamma_cache`); inputs fix the shapes."""
    req = self.gamma_requests(variables, inputs, labels, ids)
    return build_gamma_cache(self.key, req, self.m, max_bytes) if req else {}


def make_row_fn(apply_fn: Callable, paths=(), *, m: Optional[int], seed: int = 0,
                mode: str = "grad", target: str = "random", backend: str = "gaussian",
                head_path: str = "params/head", **backend_options) -> Callable:
  """The per-batch feature function the streaming driver jit-compiles.

  Args:
    apply_fn: for mode 'grad': (variables, inputs) -> logits (batch norm in inference mode);
      for 'head_grad' / 'features': (variables, inputs) -> (B, d) features.
    paths: leaf paths of the differentiated subset (`gradients.subset_paths`), mode 'grad'.
    m: sketch dimension; None in 'features' / 'head_grad' mode keeps the raw rows.
    seed: seeds Gamma and the random targets.
    mode: 'grad', 'head_grad' (closed-form head gradient, head at `head_path` in variables)
      or 'features'.
    target: 'random' or 'true' (modes 'grad' and 'head_grad').
    backend: 'gaussian', 'kronecker' or 'sparse_sign' (mode 'grad').
    **backend_options: e.g. per_example ('auto', 'captured', 'vmap') for 'gaussian', r_out
      for 'kronecker', s for 'sparse_sign'.

  Returns:
    A `RowFn`: row_fn(variables, inputs, labels, ids, gammas=None) -> (B, m) float32
    (traceable; labels may be None for random targets; `gammas` an optional Gamma cache from
    `row_fn.build_gamma_cache`).

  Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> model = nn.Dense(3); v = model.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> fn = make_row_fn(model.apply, ("params/bias", "params/kernel"), m=8, seed=0)
    >>> fn(v, jnp.ones((2, 4)), None, jnp.arange(2)).shape
    (2, 8)
  """
  validation.check_choice(mode, gradients.FEATURE_MODES, "feature mode")
  validation.check_choice(target, gradients.TARGET_MODES, "target mode")
  validation.check_choice(backend, BACKENDS, "sketch backend")
  if m is not None and (isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m <= 0):
    raise validation.SkmmError(f"sketch dimension m must be a positive integer; got {m!r}.")
  if mode == "grad" and m is None:
    raise validation.SkmmError("mode 'grad' needs a sketch dimension m (N x r is never stored).")
  key = jax.random.key(seed)

  if mode == "features":
    def features_fn(variables, inputs, labels, ids, gammas=None):
      x = apply_fn(variables, inputs)
      x = x.reshape(x.shape[0], -1).astype(jnp.float32)
      return x if m is None else sketch_leaf(x, key, int(m), 0, gammas)
    return RowFn(features_fn, key, m)

  if mode == "head_grad":
    head_path = gradients._normalise(head_path)

    def head_fn(variables, inputs, labels, ids, gammas=None):
      flat = gradients.flatten_variables(variables)
      if head_path + "/kernel" not in flat:
        raise validation.SkmmError(f"no linear head at {head_path!r} in the variables.")
      kernel, bias = flat[head_path + "/kernel"], flat.get(head_path + "/bias")
      t = gradients.make_targets(target, ids, labels, kernel.shape[1], seed)
      grads = gradients.head_grad(apply_fn(variables, inputs), kernel, bias, t, head_path)
      if m is None:
        return gradients.flatten_grads(grads)
      return sketch_grads(grads, key, int(m), gammas)
    return RowFn(head_fn, key, m)

  if not paths:
    raise validation.SkmmError("mode 'grad' needs a non-empty parameter subset.")
  paths = tuple(sorted(paths))
  sketch = BACKENDS[backend](apply_fn, paths, int(m), key, **backend_options)

  def grad_fn(variables, inputs, labels, ids, gammas=None):
    num_classes = jax.eval_shape(apply_fn, variables, inputs).shape[-1]
    t = gradients.make_targets(target, ids, labels, num_classes, seed)
    return sketch(variables, inputs, t, gammas)
  return RowFn(grad_fn, key, m)
