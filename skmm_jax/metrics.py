"""Evaluation metrics: accuracy, macro F1, MAE and MSE, in numpy on the host.

The classification metrics take the number of classes C explicitly, so that a model
trained on a subset S in which some classes are absent is still scored over all C
classes of the test data. Macro F1 follows scikit-learn's convention
(`f1_score(average="macro")`): it averages over the classes present in the labels or the
predictions (or over `labels` when given), and a class with no true and no predicted
example is left out rather than counted as 0 or 1.

Example:
  >>> import numpy as np
  >>> from skmm_jax import metrics
  >>> y, p = np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2])
  >>> float(metrics.accuracy(y, p)), round(float(metrics.macro_f1(y, p)), 4)
  (0.75, 0.6)
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from skmm_jax import validation


def _class_arrays(y_true, y_pred, name="y_pred"):
  y_true = np.asarray(y_true).reshape(-1)
  y_pred = np.asarray(y_pred).reshape(-1)
  if y_true.shape != y_pred.shape:
    raise validation.SkmmError(
        f"{name} has {y_pred.size} entries but y_true has {y_true.size}.")
  if y_true.size == 0:
    raise validation.SkmmError("cannot score an empty set of examples.")
  return y_true, y_pred


def predictions_from_logits(logits) -> np.ndarray:
  """Class ids from (N, C) logits (argmax, first index on ties)."""
  return np.asarray(logits).argmax(axis=-1)


def accuracy(y_true, y_pred) -> float:
  """Fraction of exact matches.

  Args:
    y_true: (N,) integer labels.
    y_pred: (N,) integer predictions.
  Returns:
    A float in [0, 1].
  """
  y_true, y_pred = _class_arrays(y_true, y_pred)
  return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, num_classes: int) -> np.ndarray:
  """(C, C) counts, rows are true classes, columns predicted classes."""
  y_true, y_pred = _class_arrays(y_true, y_pred)
  for arr, nm in ((y_true, "y_true"), (y_pred, "y_pred")):
    if arr.min() < 0 or arr.max() >= num_classes:
      raise validation.SkmmError(
          f"{nm} has class ids outside [0, {num_classes}): min {arr.min()}, max {arr.max()}.")
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (y_true.astype(np.int64), y_pred.astype(np.int64)), 1)
  return cm


def per_class_f1(y_true, y_pred, num_classes: int) -> np.ndarray:
  """(C,) F1 of each class; NaN for classes with no true and no predicted example."""
  cm = confusion_matrix(y_true, y_pred, num_classes)
  tp = np.diag(cm).astype(np.float64)
  support = cm.sum(axis=1)
  predicted = cm.sum(axis=0)
  denom = support + predicted
  with np.errstate(invalid="ignore", divide="ignore"):
    f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), np.nan)
  return f1


def macro_f1(y_true, y_pred, num_classes: Optional[int] = None,
             labels: Optional[Sequence[int]] = None) -> float:
  """Unweighted mean of per-class F1 (scikit-learn's `average="macro"`).

  Args:
    y_true: (N,) integer labels.
    y_pred: (N,) integer predictions.
    num_classes: C; default max(y_true, y_pred) + 1.
    labels: optional classes to average over. A listed class that never occurs
      in y_true nor y_pred scores 0 (as in scikit-learn). By default the average runs over
      the classes that occur in y_true or y_pred: classes absent from the training subset
      and never predicted do not distort the score.
  Returns:
    A float in [0, 1].
  """
  y_true, y_pred = _class_arrays(y_true, y_pred)
  if num_classes is None:
    num_classes = int(max(y_true.max(), y_pred.max(), -1 if labels is None else max(labels))) + 1
  f1 = per_class_f1(y_true, y_pred, num_classes)
  if labels is None:
    present = ~np.isnan(f1)
    return float(f1[present].mean())
  labels = np.asarray(labels, np.int64)
  if labels.size == 0:
    raise validation.SkmmError("labels is empty.")
  return float(np.nan_to_num(f1[labels], nan=0.0).mean())


def mean_absolute_error(y_true, y_pred) -> float:
  """mean |y_true - y_pred|."""
  y_true, y_pred = _class_arrays(y_true, y_pred)
  return float(np.mean(np.abs(y_true.astype(np.float64) - y_pred.astype(np.float64))))


def mean_squared_error(y_true, y_pred) -> float:
  """mean (y_true - y_pred)^2."""
  y_true, y_pred = _class_arrays(y_true, y_pred)
  return float(np.mean((y_true.astype(np.float64) - y_pred.astype(np.float64)) ** 2))


def classification_metrics(y_true, logits, num_classes: Optional[int] = None) -> Dict[str, float]:
  """Accuracy and macro F1 from (N, C) logits.

  Example:
    >>> classification_metrics(np.array([1, 0]), np.array([[0., 1.], [0., 1.]]))
    {'accuracy': 0.5, 'macro_f1': 0.3333333333333333}
  """
  logits = np.asarray(logits)
  num_classes = logits.shape[-1] if num_classes is None else num_classes
  pred = predictions_from_logits(logits)
  return {"accuracy": accuracy(y_true, pred),
          "macro_f1": macro_f1(y_true, pred, num_classes=num_classes)}


def regression_metrics(y_true, y_pred) -> Dict[str, float]:
  """MAE and MSE of real-valued predictions ((N,) or (N, 1))."""
  y_pred = np.asarray(y_pred).reshape(-1)
  return {"mae": mean_absolute_error(y_true, y_pred), "mse": mean_squared_error(y_true, y_pred)}


# Which way is better for each metric (used for model selection on the validation split).
HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "mae": False, "mse": False, "loss": False}


def is_better(metric: str, new: float, best: Optional[float]) -> bool:
  """True if `new` improves strictly on `best` for `metric` (None: always)."""
  if best is None:
    return True
  validation.check_choice(metric, HIGHER_IS_BETTER, "metric")
  return new > best if HIGHER_IS_BETTER[metric] else new < best
