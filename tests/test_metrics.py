"""Metrics against scikit-learn, including classes absent from the training subset."""
import numpy as np
import pytest
from sklearn import metrics as skm

from skmm_jax import metrics
from skmm_jax.validation import SkmmError


@pytest.mark.parametrize("seed", range(5))
def test_classification_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  c = 7
  y = rng.integers(0, c, 200)
  p = np.where(rng.random(200) < 0.6, y, rng.integers(0, c, 200))
  assert metrics.accuracy(y, p) == pytest.approx(skm.accuracy_score(y, p))
  assert metrics.macro_f1(y, p, num_classes=c) == pytest.approx(
      skm.f1_score(y, p, average="macro"))
  np.testing.assert_array_equal(metrics.confusion_matrix(y, p, c),
                                skm.confusion_matrix(y, p, labels=range(c)))


def test_macro_f1_classes_absent():
  # Class 3 never occurs in the labels but is predicted (a head trained on S may still
  # output it); class 4 occurs nowhere; class 2 occurs but is never predicted (absent from S).
  y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
  p = np.array([0, 3, 1, 1, 0, 1, 0, 1])
  want = skm.f1_score(y, p, average="macro", zero_division=0)
  assert metrics.macro_f1(y, p, num_classes=5) == pytest.approx(want)
  want_lab = skm.f1_score(y, p, average="macro", labels=[0, 1, 2, 3, 4], zero_division=0)
  assert metrics.macro_f1(y, p, num_classes=5, labels=range(5)) == pytest.approx(want_lab)
  f1 = metrics.per_class_f1(y, p, 5)
  assert np.isnan(f1[4]) and f1[2] == 0.0


def test_classification_metrics_from_logits():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(50, 4))
  y = rng.integers(0, 4, 50)
  out = metrics.classification_metrics(y, logits)
  p = logits.argmax(1)
  assert out["accuracy"] == pytest.approx(skm.accuracy_score(y, p))
  assert out["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))


def test_regression_matches_sklearn():
  rng = np.random.default_rng(1)
  y = rng.uniform(1, 90, 100)
  p = y + rng.normal(size=100) * 5
  out = metrics.regression_metrics(y, p[:, None])
  assert out["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
  assert out["mse"] == pytest.approx(skm.mean_squared_error(y, p))


def test_errors_and_model_selection_direction():
  with pytest.raises(SkmmError, match="empty"):
    metrics.accuracy([], [])
  with pytest.raises(SkmmError, match="entries"):
    metrics.accuracy([0, 1], [0])
  with pytest.raises(SkmmError, match="outside"):
    metrics.confusion_matrix([0, 5], [0, 1], 3)
  assert metrics.is_better("accuracy", 0.6, 0.5) and not metrics.is_better("mae", 3.0, 2.0)
  assert metrics.is_better("mae", 1.0, None)
  with pytest.raises(SkmmError, match="unknown metric"):
    metrics.is_better("acc", 1.0, 0.0)
