"""skmm-jax: Sketchy Moment Matching (SkMM) data selection for finetuning, in JAX.

The stages live in modules named after them and data flows one way:
data -> models -> gradients -> sketching -> selection -> training -> evaluation -> reporting.

Quick start:
  >>> import numpy as np, skmm_jax
  >>> x = np.random.default_rng(0).normal(size=(500, 32)).astype(np.float32)
  >>> res = skmm_jax.select(x, 20, method="skmm", m=16, seed=0)
  >>> res.indices.shape
  (20,)
"""
from skmm_jax.selection import SelectionResult, available, options, register, select
from skmm_jax.validation import SkmmError

__version__ = "0.1.0"
__all__ = ["select", "available", "options", "register", "SelectionResult", "SkmmError"]
