"""Early, named errors for bad input: never a deep JAX traceback.

Every public entry point validates its arguments here before anything is traced.
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

import numpy as np


class SkmmError(ValueError):
  """Raised for invalid user input (shapes, budgets, non-finite values, unknown names)."""


def check_matrix(x, name: str = "features", ndim: int = 2) -> np.ndarray | object:
  """Checks that `x` is a finite `ndim`-D numeric array; returns it unchanged.

  Non-finite entries are reported with the offending row ids (first 10).
  """
  shape = getattr(x, "shape", None)
  if shape is None:
    x = np.asarray(x)
    shape = x.shape
  if len(shape) != ndim:
    raise SkmmError(f"{name} must be a {ndim}-D array (N, d); got shape {tuple(shape)}.")
  if shape[0] == 0 or (ndim > 1 and shape[1] == 0):
    raise SkmmError(f"{name} is empty: shape {tuple(shape)}.")
  dtype = getattr(x, "dtype", None)
  if dtype is not None and not (np.issubdtype(dtype, np.floating) or np.issubdtype(dtype, np.integer)):
    raise SkmmError(f"{name} must be numeric; got dtype {dtype}.")
  finite = np.isfinite(np.asarray(x))
  if not finite.all():
    bad = np.nonzero(~finite.reshape(shape[0], -1).all(axis=1))[0]
    raise SkmmError(
        f"{name} contains NaN or Inf in {bad.size} row(s); first offending row ids: "
        f"{bad[:10].tolist()}.")
  return x


def check_budget(n, total: int, name: str = "n") -> int:
  """Checks 0 < n <= total and that n is an integer."""
  if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
    raise SkmmError(f"{name} must be an integer; got {n!r}.")
  n = int(n)
  if n <= 0:
    raise SkmmError(f"{name} must be positive; got {name}={n}.")
  if n > total:
    raise SkmmError(f"{name}={n} exceeds the pool size N={total}; choose {name} <= N.")
  return n


def check_choice(value: str, choices: Iterable[str], what: str) -> str:
  """Checks `value` is one of `choices`, suggesting the closest name if not."""
  choices = sorted(choices)
  if value not in choices:
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise SkmmError(f"unknown {what} {value!r}; choose one of {choices}.{hint}")
  return value


def check_range(value, name: str, low=None, high=None, low_open=False, high_open=False):
  """Checks low (<|<=) value (<|<=) high."""
  try:
    v = float(value)
  except (TypeError, ValueError):
    raise SkmmError(f"{name} must be a number; got {value!r}.") from None
  if not np.isfinite(v):
    raise SkmmError(f"{name} must be finite; got {value!r}.")
  if low is not None and (v <= low if low_open else v < low):
    raise SkmmError(f"{name} must be {'>' if low_open else '>='} {low}; got {value!r}.")
  if high is not None and (v >= high if high_open else v > high):
    raise SkmmError(f"{name} must be {'<' if high_open else '<='} {high}; got {value!r}.")
  return value


def check_labels(labels, n_rows: int, name: str = "labels") -> Optional[np.ndarray]:
  if labels is None:
    return None
  labels = np.asarray(labels)
  if labels.shape != (n_rows,):
    raise SkmmError(f"{name} must have shape ({n_rows},) to match the features; got {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise SkmmError(f"{name} must be integer class ids; got dtype {labels.dtype}.")
  return labels
