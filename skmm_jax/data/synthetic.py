"""The synthetic Gaussian-mixture regression data of the paper (spec section 4).

`gmm` reproduces the authors' generator draw for draw: one `numpy.random.default_rng(seed)`
and the same calls in the same order, so that a seed gives the same data as their notebook.

The data: k clusters of imbalanced sizes, cluster j centred at norm_j * e_j in R^r with
isotropic Gaussian noise of std std_j; the label of every example of cluster j is
centre_j . latent, with latent = (k standard normals, r-k zeros). The labels are noise-free
and shared by a cluster, so a selection that misses a cluster cannot predict its label.

Example:
  >>> from skmm_jax.data import synthetic
  >>> x, y, c = synthetic.gmm(300, 50, 5, 0.04, seed=0)
  >>> x.shape, y.shape, c.shape, x.dtype.name
  ((300, 50), (300,), (300,), 'float64')
  >>> bool((c[1:] >= c[:-1]).all())  # rows are ordered by cluster
  True
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from skmm_jax import validation


class GMMData(NamedTuple):
  """A synthetic regression data set.

  Attributes:
    features: (N, r) float64.
    labels: (N,) float64 regression targets.
    clusters: (N,) int64 cluster ids, non-decreasing (rows are ordered by cluster).
  """
  features: np.ndarray
  labels: np.ndarray
  clusters: np.ndarray


def _check_int(value, name: str, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise validation.SkmmError(f"{name} must be an integer; got {value!r}.")
  if int(value) < low:
    raise validation.SkmmError(f"{name} must be >= {low}; got {name}={value}.")
  return int(value)


def check_gmm_args(N, r, k, std_max, seed) -> None:
  """Validates the arguments of `gmm` with named errors.

  Raises:
    SkmmError: if k > r (the centres are basis vectors of R^r), k >= N - 1 (the k-1
      breakpoints are drawn from [1, N-1)), N < 3, std_max < 0 or not finite, or a
      non-integer size or seed.
  """
  N = _check_int(N, "N", 3)
  r = _check_int(r, "r", 1)
  k = _check_int(k, "k", 1)
  _check_int(seed, "seed", 0)
  validation.check_range(std_max, "std_max", low=0.0)
  if k > r:
    raise validation.SkmmError(
        f"the number of clusters k={k} exceeds the dimension r={r}: the centres are k distinct "
        "standard basis vectors of R^r, so k <= r is needed.")
  if k > 1 and k >= N - 1:
    raise validation.SkmmError(
        f"k={k} clusters need k-1 breakpoints drawn from [1, N-1) with N={N}; choose k < N - 1.")


def gmm(N: int, r: int, k: int, std_max: float, seed: int = 0) -> GMMData:
  """Draws the synthetic GMM regression data set exactly as the authors' notebook.

  Draw order with one `rng = numpy.random.default_rng(seed)`:
    1. breakpoints `rng.integers(1, N-1, k-1)`, sorted; cluster sizes are the gaps between
       0, the breakpoints and N (duplicated breakpoints give an empty cluster, as theirs);
    2. centre norms `rng.integers(1, 1+k, k) * k`; centre j = norm_j * e_j;
    3. cluster stds `std_max * rng.random(k)`;
    4. latent `rng.normal(size=k)` followed by r-k zeros;
    5. noise `rng.normal(size=(N, r))`, scaled row-wise by the row's cluster std.

  Args:
    N: number of examples.
    r: dimension (the "number of parameters"), r >= k.
    k: number of clusters.
    std_max: the largest possible cluster std (std_j = std_max * U(0, 1)).
    seed: the numpy seed.

  Returns:
    `GMMData(features (N, r) float64, labels (N,) float64, clusters (N,) int64)`, rows
    ordered by cluster; label of cluster j = centre_j . latent = norm_j * latent_j.

  Example:
    >>> x, y, c = gmm(3000, 5000, 10, 0.04, seed=0)  # the paper's default setting
  """
  check_gmm_args(N, r, k, std_max, seed)
  N, r, k = int(N), int(r), int(k)
  rng = np.random.default_rng(int(seed))
  breaks = np.sort(rng.integers(1, N - 1, k - 1))
  sizes = np.diff(np.concatenate([[0], breaks, [N]])).astype(np.int64)
  norms = rng.integers(1, 1 + k, k) * k
  stds = std_max * rng.random(k)
  latent = np.concatenate([rng.normal(size=k), np.zeros(r - k)])
  clusters = np.repeat(np.arange(k, dtype=np.int64), sizes)
  # centre + noise * std, done in place (the centre is norm_j on coordinate j only).
  features = rng.normal(size=(N, r))
  features *= stds[clusters][:, None]
  features[np.arange(N), clusters] += norms[clusters]
  labels = (norms * latent[:k])[clusters].astype(np.float64)
  return GMMData(features, labels, clusters)
