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
import zlib

import jax
import jax.numpy as jnp
import numpy as np

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


def sketch_leaf(x: jax.Array, key: jax.Array, m: int, leaf_id: int = 0) -> jax.Array:
  """x (B, r) -> x @ Gamma_leaf (B, m), generating Gamma block by block inside a scan.

  Traceable (use inside jit). Memory is O(B * GAMMA_BLOCK_ROWS + GAMMA_BLOCK_ROWS * m).
  """
  b, r = x.shape
  nb = -(-r // GAMMA_BLOCK_ROWS)
  pad = nb * GAMMA_BLOCK_ROWS - r
  xp = jnp.pad(x, ((0, 0), (0, pad))) if pad else x
  xb = xp.reshape(b, nb, GAMMA_BLOCK_ROWS)

  def body(acc, i):
    blk = jax.lax.dynamic_index_in_dim(xb, i, axis=1, keepdims=False)
    g = gaussian_block(key, leaf_id, i, m, x.dtype)
    return acc + jnp.dot(blk, g, precision=jax.lax.Precision.HIGHEST), None

  acc0 = jnp.zeros((b, m), x.dtype)
  out, _ = jax.lax.scan(body, acc0, jnp.arange(nb))
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
                   leaf_id: int = 0) -> parallel.ShardedRows:
  """Like `gaussian_sketch` but keeps the result sharded on the device mesh."""
  out = _sketch_rows(rows.array, jax.random.key(seed), int(m), int(leaf_id))
  return parallel.ShardedRows(out, rows.n_valid, rows.mesh)
