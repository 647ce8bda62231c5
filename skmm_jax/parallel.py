"""Device mesh and row sharding: every stage is data-parallel over a 1-D `data` mesh.

Arrays whose leading axis indexes examples (features, sketches, the moment matrix H,
the relaxation weights s) are sharded over the `data` axis of a mesh built from all
local devices. Row counts are padded with zero rows up to a multiple of the device count;
a boolean mask marks the real rows, and every kernel ignores the padding, so results do
not depend on how many devices there are.

Example:
  >>> import numpy as np
  >>> from skmm_jax import parallel
  >>> mesh = parallel.data_mesh()
  >>> rows = parallel.shard_rows(np.ones((10, 3), np.float32), mesh)
  >>> rows.n_valid, rows.array.shape[0] % mesh.size
  (10, 0)
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
  """A 1-D mesh named `data` over `devices` (default: all local devices).

  The axis is `Auto` so that jit's sharding propagation inserts the reductions;
  kernels that need explicit collectives use `jax.shard_map` on the same mesh.
  """
  devices = list(devices) if devices is not None else jax.local_devices()
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def row_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Sharding of an array whose leading axis is split over `data`."""
  return NamedSharding(mesh, P(DATA_AXIS, *([None] * (ndim - 1))))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def padded_size(n: int, mesh: Mesh) -> int:
  d = mesh.size
  return ((n + d - 1) // d) * d


class ShardedRows(NamedTuple):
  """A row-sharded array padded to a multiple of the device count.

  Attributes:
    array: (N_padded, ...) jax.Array sharded over `data`; padding rows are zero.
    n_valid: the number of real rows N.
    mesh: the mesh the array lives on.
  """
  array: jax.Array
  n_valid: int
  mesh: Mesh

  @property
  def mask(self) -> jax.Array:
    """(N_padded,) bool, True on real rows, sharded like the rows."""
    return jax.device_put(
        np.arange(self.array.shape[0]) < self.n_valid, row_sharding(self.mesh, 1))

  def numpy(self) -> np.ndarray:
    """The real rows, gathered on the host."""
    return np.asarray(self.array)[: self.n_valid]


def shard_rows(x, mesh: Optional[Mesh] = None, dtype=None) -> ShardedRows:
  """Pads `x` with zero rows to a multiple of the device count and shards it by rows."""
  mesh = mesh if mesh is not None else data_mesh()
  if isinstance(x, ShardedRows):
    return x
  x = np.asarray(x) if not isinstance(x, jax.Array) else x
  if dtype is not None:
    x = x.astype(dtype)
  n = x.shape[0]
  pad = padded_size(n, mesh) - n
  if pad:
    if isinstance(x, jax.Array):
      x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    else:
      x = np.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
  return ShardedRows(jax.device_put(x, row_sharding(mesh, x.ndim)), n, mesh)


def per_row_gumbel(key: jax.Array, n_valid: int, n_padded: int, dtype=jnp.float32):
  """Gumbel noise for rows 0..n_valid-1, padded with -inf.

  The noise is generated at the true size N, so it is identical whatever the padding
  (and so whatever the number of devices).
  """
  g = jax.random.gumbel(key, (n_valid,), dtype)
  return jnp.pad(g, (0, n_padded - n_valid), constant_values=-jnp.inf)
