"""Ridge-regression evaluation of a selection (spec section 4), in float64 kernel form.

The synthetic experiment scores a selection S by ridge regression without intercept fitted
on S only: alpha is chosen by 2-fold unshuffled cross-validation on S (the split of
`sklearn.model_selection.KFold(2)`, S in the given order) by mean squared error, the model
is refitted on all of S, and the risk is the mean squared error over ALL N examples:

    risk(S) = (1/N) || X theta_S - y ||^2.

Everything is done in the row space of X (kernel form), because r >> n: with the full Gram
K = X X^T (float64, computed once per data set),

    predictions = K[:, S] (K[S, S] + alpha I)^{-1} y_S,

which is exactly `Ridge(fit_intercept=False, alpha)` fitted on (X_S, y_S). One symmetric
eigendecomposition of each fold's training Gram serves every alpha of the grid.

This module holds the regression (ridge) evaluation only; classification metrics
(accuracy, macro F1 ...) belong in `skmm_jax/metrics.py`.

Example:
  >>> import numpy as np
  >>> from skmm_jax import evaluation
  >>> rng = np.random.default_rng(0)
  >>> x = rng.normal(size=(100, 300)); y = x[:, 0]
  >>> ev = evaluation.RidgeEvaluator.from_features(x, y)
  >>> fit = ev.risk(np.arange(0, 100, 2))
  >>> bool(fit.alpha in evaluation.DEFAULT_ALPHAS), fit.cv_mse.shape
  (True, (10,))
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import scipy.linalg

from skmm_jax import validation

# The alpha grid of the paper's synthetic experiment.
DEFAULT_ALPHAS = np.linspace(1e-3, 1e2, 10)
DEFAULT_FOLDS = 2


class RidgeFit(NamedTuple):
  """A ridge fit on a subset and its risk.

  Attributes:
    risk: (1/N) ||X theta_S - y||^2 over all N examples.
    alpha: the regularisation chosen by cross-validation on S.
    cv_mse: (len(alphas),) cross-validated mean squared error per alpha (mean over folds).
    dual: (n,) dual coefficients c with theta_S = X_S^T c.
    subset: (n,) the row ids S, in the order used for the folds.
  """
  risk: float
  alpha: float
  cv_mse: np.ndarray
  dual: np.ndarray
  subset: np.ndarray


def gram(features) -> np.ndarray:
  """The full float64 Gram matrix K = X X^T (N, N).

  Args:
    features: (N, r) array.

  Returns:
    (N, N) float64, exactly symmetric.
  """
  x = np.asarray(validation.check_matrix(features, "features"), np.float64)
  k = x @ x.T
  return (k + k.T) * 0.5


def kfold_splits(n: int, n_splits: int = DEFAULT_FOLDS) -> List[Tuple[np.ndarray, np.ndarray]]:
  """Unshuffled K-fold (train, test) positions, identical to `sklearn KFold(n_splits)`.

  The first `n % n_splits` folds have one extra element; fold f tests a contiguous block.

  Example:
    >>> [t.tolist() for _, t in kfold_splits(5, 2)]
    [[0, 1, 2], [3, 4]]
  """
  if n < n_splits:
    raise validation.SkmmError(
        f"{n_splits}-fold cross-validation needs at least {n_splits} examples; got {n}.")
  sizes = np.full(n_splits, n // n_splits, np.int64)
  sizes[: n % n_splits] += 1
  bounds = np.concatenate([[0], np.cumsum(sizes)])
  pos = np.arange(n)
  return [(np.concatenate([pos[:a], pos[b:]]), pos[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def cv_mse(k_ss: np.ndarray, y_s: np.ndarray, alphas: Sequence[float] = DEFAULT_ALPHAS,
           n_splits: int = DEFAULT_FOLDS) -> np.ndarray:
  """Cross-validated MSE of kernel ridge for every alpha (mean of the folds' MSEs).

  One `eigh` of each fold's training Gram serves the whole alpha grid:
  pred_test(alpha) = K_te,tr U diag(1/(w + alpha)) U^T y_tr.

  Args:
    k_ss: (n, n) Gram of the subset, in fold order.
    y_s: (n,) targets.
    alphas: the grid.
    n_splits: number of unshuffled folds.

  Returns:
    (len(alphas),) float64.
  """
  alphas = np.asarray(alphas, np.float64)
  scores = np.zeros(alphas.shape, np.float64)
  splits = kfold_splits(y_s.shape[0], n_splits)
  for train, test in splits:
    w, u = scipy.linalg.eigh(k_ss[np.ix_(train, train)])
    w = np.maximum(w, 0.0)  # the Gram is PSD; clip round-off
    proj = u.T @ y_s[train]                                 # (n_tr,)
    a = k_ss[np.ix_(test, train)] @ u                       # (n_te, n_tr)
    pred = a @ (proj[:, None] / (w[:, None] + alphas[None, :]))  # (n_te, n_alpha)
    scores += np.mean((pred - y_s[test][:, None]) ** 2, axis=0)
  return scores / len(splits)


def ridge_dual(k_ss: np.ndarray, y_s: np.ndarray, alpha: float) -> np.ndarray:
  """Dual coefficients c = (K_SS + alpha I)^{-1} y_S (theta = X_S^T c)."""
  a = k_ss + float(alpha) * np.eye(k_ss.shape[0])
  return scipy.linalg.solve(a, y_s, assume_a="pos")


def _check_subset(subset, num: int) -> np.ndarray:
  s = np.asarray(subset)
  if s.ndim != 1 or s.size == 0:
    raise validation.SkmmError(f"subset must be a non-empty 1-D array of row ids; got shape {s.shape}.")
  if not np.issubdtype(s.dtype, np.integer):
    raise validation.SkmmError(f"subset must hold integer row ids; got dtype {s.dtype}.")
  if s.min() < 0 or s.max() >= num:
    raise validation.SkmmError(f"subset row ids must lie in [0, {num}); got range [{s.min()}, {s.max()}].")
  if np.unique(s).size != s.size:
    raise validation.SkmmError(f"subset holds duplicated row ids ({s.size - np.unique(s).size} duplicates).")
  return s.astype(np.int64)


FOLD_ORDERS = ("shuffled", "sorted")


def fold_order(subset, how: str = "shuffled", seed: int = 0) -> np.ndarray:
  """The order in which the unshuffled K-fold split sees the selection S.

  Selectors return sorted indices and the GMM pool is ordered by cluster, so contiguous folds
  of a sorted S hold disjoint clusters and the CV error barely depends on alpha. "shuffled"
  (the default) presents S in a seed-derived random order, as the authors' code sees it
  (their selections come out of sampling in random order); "sorted" keeps the sorted order.

  Example:
    >>> fold_order(np.arange(5), "sorted").tolist()
    [0, 1, 2, 3, 4]
  """
  validation.check_choice(how, FOLD_ORDERS, "fold order")
  s = np.asarray(subset)
  if how == "sorted":
    return np.sort(s)
  return np.random.default_rng(seed).permutation(np.sort(s))


def ridge_risk(k: np.ndarray, y: np.ndarray, subset, alphas: Sequence[float] = DEFAULT_ALPHAS,
               n_splits: int = DEFAULT_FOLDS) -> RidgeFit:
  """Ridge (no intercept) fitted on `subset` with CV-chosen alpha; risk over all rows.

  Args:
    k: (N, N) float64 Gram of all rows (`gram`).
    y: (N,) targets.
    subset: (n,) distinct row ids; their order defines the unshuffled folds.
    alphas: the alpha grid; ties go to the first (as `GridSearchCV`).
    n_splits: number of folds.

  Returns:
    A `RidgeFit`.
  """
  y = np.asarray(y, np.float64)
  s = _check_subset(subset, y.shape[0])
  k_ss = k[np.ix_(s, s)]
  y_s = y[s]
  scores = cv_mse(k_ss, y_s, alphas, n_splits)
  alpha = float(np.asarray(alphas, np.float64)[int(np.argmin(scores))])
  dual = ridge_dual(k_ss, y_s, alpha)
  pred = k[:, s] @ dual
  risk = float(np.mean((pred - y) ** 2))
  return RidgeFit(risk, alpha, scores, dual, s)


class RidgeEvaluator:
  """Scores selections on one data set; the Gram is computed once.

  Example:
    >>> ev = RidgeEvaluator.from_features(x, y)       # doctest: +SKIP
    >>> ev.risk(selection.indices).risk, ev.full_data().risk  # doctest: +SKIP
  """

  def __init__(self, k: np.ndarray, y, alphas: Sequence[float] = DEFAULT_ALPHAS,
               n_splits: int = DEFAULT_FOLDS):
    k = np.asarray(k, np.float64)
    y = np.asarray(y, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or y.shape != (k.shape[0],):
      raise validation.SkmmError(
          f"the Gram must be (N, N) and the targets (N,); got {k.shape} and {y.shape}.")
    validation.check_matrix(y[:, None], "targets")
    self.k, self.y = k, y
    self.alphas = np.asarray(alphas, np.float64)
    self.n_splits = int(n_splits)
    self._full: Optional[RidgeFit] = None

  @classmethod
  def from_features(cls, features, y, **kwargs) -> "RidgeEvaluator":
    """Builds the evaluator from (N, r) features (computes the float64 Gram)."""
    return cls(gram(features), y, **kwargs)

  @property
  def num_rows(self) -> int:
    return self.y.shape[0]

  def risk(self, subset) -> RidgeFit:
    """The ridge fit and risk of the selection `subset`."""
    return ridge_risk(self.k, self.y, subset, self.alphas, self.n_splits)

  def full_data(self, how: str = "sorted", seed: int = 0) -> RidgeFit:
    """The reference: the same procedure on all N rows, in `fold_order(.., how, seed)` order.

    Score it with the fold order the selections get, so that the CV protocol is the same.
    """
    if self._full is None or self._full[0] != (how, seed):
      self._full = ((how, seed), self.risk(fold_order(np.arange(self.num_rows), how, seed)))
    return self._full[1]
