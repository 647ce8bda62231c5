"""The GMM generator follows the spec's draw order exactly."""
import numpy as np
import pytest

from skmm_jax.data import synthetic
from skmm_jax.validation import SkmmError


def _reference(N, r, k, std_max, seed):
  """A literal, loop-based re-derivation with the same rng calls in the same order."""
  rng = np.random.default_rng(seed)
  breaks = sorted(rng.integers(1, N - 1, k - 1).tolist())
  norms = rng.integers(1, 1 + k, k) * k
  stds = std_max * rng.random(k)
  latent = np.concatenate([rng.normal(size=k), np.zeros(r - k)])
  noise = rng.normal(size=(N, r))
  edges = [0] + breaks + [N]
  x = np.zeros((N, r))
  y = np.zeros(N)
  cid = np.zeros(N, np.int64)
  for j in range(k):
    centre = np.zeros(r)
    centre[j] = norms[j]
    for i in range(edges[j], edges[j + 1]):
      x[i] = centre + noise[i] * stds[j]
      y[i] = centre @ latent
      cid[i] = j
  return x, y, cid


@pytest.mark.parametrize("N,r,k,std_max,seed", [(200, 30, 5, 0.04, 0), (57, 12, 12, 0.5, 3),
                                                (40, 8, 1, 0.1, 7), (300, 50, 10, 0.04, 11)])
def test_matches_reference(N, r, k, std_max, seed):
  x, y, c = synthetic.gmm(N, r, k, std_max, seed)
  rx, ry, rc = _reference(N, r, k, std_max, seed)
  assert x.dtype == np.float64 and y.dtype == np.float64
  np.testing.assert_array_equal(x, rx)
  np.testing.assert_array_equal(y, ry)
  np.testing.assert_array_equal(c, rc)


def test_structure():
  x, y, c = synthetic.gmm(500, 40, 6, 0.04, seed=1)
  assert np.all(np.diff(c) >= 0)
  # Labels are shared by a cluster; features concentrate on the cluster's axis.
  for j in np.unique(c):
    rows = c == j
    assert np.unique(y[rows]).size == 1
    assert np.all(np.argmax(np.abs(x[rows]), axis=1) == j)
  # Centre norms are multiples of k in [k, k^2].
  norms = np.round(np.abs(x[np.arange(500), c]))
  assert set(np.unique(norms)) <= set(6 * np.arange(1, 7))
  x2, _, _ = synthetic.gmm(500, 40, 6, 0.04, seed=2)
  assert not np.array_equal(x, x2)


@pytest.mark.parametrize("args,match", [((100, 5, 6, 0.1, 0), "k <= r"),
                                        ((10, 20, 9, 0.1, 0), "k < N - 1"),
                                        ((100, 20, 5, -1.0, 0), "std_max"),
                                        ((100, 20, 5, float("nan"), 0), "std_max"),
                                        ((100.0, 20, 5, 0.1, 0), "N must be an integer"),
                                        ((100, 20, 0, 0.1, 0), "k must be >= 1"),
                                        ((100, 20, 5, 0.1, -1), "seed")])
def test_bad_arguments(args, match):
  with pytest.raises(SkmmError, match=match):
    synthetic.gmm(*args)
