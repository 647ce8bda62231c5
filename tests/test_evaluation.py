"""Ridge evaluation in kernel form agrees with sklearn Ridge + GridSearchCV(KFold(2))."""
import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold

from skmm_jax import evaluation
from skmm_jax.validation import SkmmError


def _sklearn_risk(x, y, subset, alphas):
  gs = GridSearchCV(Ridge(fit_intercept=False), {"alpha": list(alphas)}, cv=KFold(2),
                    scoring="neg_mean_squared_error")
  gs.fit(x[subset], y[subset])
  pred = gs.best_estimator_.predict(x)
  return gs.best_params_["alpha"], -gs.cv_results_["mean_test_score"], np.mean((pred - y) ** 2)


@pytest.mark.parametrize("num,dim,n,seed", [(60, 200, 15, 0), (80, 30, 41, 1), (50, 100, 50, 2),
                                            (70, 400, 9, 3)])
def test_matches_sklearn(num, dim, n, seed):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(num, dim)) * rng.uniform(0.1, 3.0, size=dim)
  y = x @ rng.normal(size=dim) * 0.3 + rng.normal(size=num)
  subset = np.sort(rng.choice(num, n, replace=False))
  alphas = evaluation.DEFAULT_ALPHAS
  ev = evaluation.RidgeEvaluator.from_features(x, y)
  fit = ev.risk(subset)
  alpha, mse, risk = _sklearn_risk(x, y, subset, alphas)
  np.testing.assert_allclose(fit.cv_mse, mse, rtol=1e-8)
  assert fit.alpha == alpha
  np.testing.assert_allclose(fit.risk, risk, rtol=1e-8)
  # theta_S = X_S^T c equals sklearn's coefficients.
  coef = Ridge(alpha=alpha, fit_intercept=False).fit(x[subset], y[subset]).coef_
  np.testing.assert_allclose(x[subset].T @ fit.dual, coef, rtol=1e-7, atol=1e-9)


def test_alpha_choice_varies_and_matches():
  """A grid where the small alpha wins and one where a large alpha wins."""
  rng = np.random.default_rng(5)
  x = rng.normal(size=(40, 10))
  alphas = np.linspace(1e-3, 1e2, 10)
  for noise, expect_small in [(0.0, True), (30.0, False)]:
    y = x @ rng.normal(size=10) + noise * rng.normal(size=40)
    fit = evaluation.ridge_risk(evaluation.gram(x), y, np.arange(40), alphas)
    alpha, _, risk = _sklearn_risk(x, y, np.arange(40), alphas)
    assert fit.alpha == alpha
    assert (fit.alpha == alphas[0]) == expect_small
    np.testing.assert_allclose(fit.risk, risk, rtol=1e-8)


def test_full_data_and_fold_order():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 50))
  y = rng.normal(size=30)
  ev = evaluation.RidgeEvaluator.from_features(x, y)
  full = ev.full_data()
  alpha, _, risk = _sklearn_risk(x, y, np.arange(30), evaluation.DEFAULT_ALPHAS)
  assert full.alpha == alpha
  np.testing.assert_allclose(full.risk, risk, rtol=1e-8)
  # The subset order defines the folds: a permuted subset is a different CV problem.
  perm = rng.permutation(30)
  a2, mse2, _ = _sklearn_risk(x, y, perm, evaluation.DEFAULT_ALPHAS)
  np.testing.assert_allclose(ev.risk(perm).cv_mse, mse2, rtol=1e-8)


def test_kfold_matches_sklearn():
  for n in (2, 5, 8, 11):
    ours = evaluation.kfold_splits(n, 2)
    theirs = list(KFold(2).split(np.zeros(n)))
    for (a, b), (c, d) in zip(ours, theirs):
      np.testing.assert_array_equal(a, c)
      np.testing.assert_array_equal(b, d)


def test_bad_input():
  x = np.random.default_rng(0).normal(size=(10, 4))
  ev = evaluation.RidgeEvaluator.from_features(x, np.zeros(10))
  with pytest.raises(SkmmError, match="duplicated"):
    ev.risk([1, 1, 2])
  with pytest.raises(SkmmError, match=r"\[0, 10\)"):
    ev.risk([3, 10])
  with pytest.raises(SkmmError, match="at least 2"):
    ev.risk([3])
  with pytest.raises(SkmmError, match="integer"):
    ev.risk(np.array([1.0, 2.0]))
  with pytest.raises(SkmmError, match=r"\(N, N\)"):
    evaluation.RidgeEvaluator(np.zeros((3, 3)), np.zeros(4))
