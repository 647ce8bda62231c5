"""Training loops: resume equivalence, device-count invariance, selection errors, LP sanity."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from skmm_jax import training
from skmm_jax.validation import SkmmError


def _blobs(n=240, d=6, c=3, seed=0):
  rng = np.random.default_rng(seed)
  y = rng.integers(0, c, n).astype(np.int32)
  centres = np.random.default_rng(99).normal(size=(c, d)) * 2.0  # shared by all splits
  x = (centres[y] + rng.normal(size=(n, d))).astype(np.float32)
  return training.Split(x, y)


def _cfg(**kw):
  base = dict(learning_rate=5e-2, epochs=6, batch_size=32, progress=False)
  base.update(kw)
  return training.TrainConfig(**base)


def _mlp_fn():
  """A three-layer model whose first layer is frozen: the FT-2 pattern."""

  def predict(params, x, frozen):
    h = jnp.tanh(x @ frozen["w0"])
    h = jnp.tanh(h @ params["w1"] + params["b1"])
    return h @ params["w2"]

  rng = np.random.default_rng(2)
  params = {"w1": rng.normal(size=(8, 8)).astype(np.float32) * 0.3,
            "b1": np.zeros(8, np.float32),
            "w2": rng.normal(size=(8, 3)).astype(np.float32) * 0.3}
  return predict, params


FROZEN = {"w0": np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32)}


def test_resume_mid_training_gives_same_final_params(tmp_path):
  data = _blobs()
  val = _blobs(60, seed=5)
  idx = np.arange(0, 240, 3)  # 80 rows, 3 batches per epoch, last one partial
  predict, params = _mlp_fn()
  cfg = _cfg()
  full = training.fit(predict, params, data, idx, val, val, cfg, num_classes=3, frozen=FROZEN,
                      workdir=str(tmp_path / "full"))
  wd = str(tmp_path / "interrupted")
  part = training.fit(predict, params, data, idx, val, val, cfg, num_classes=3, frozen=FROZEN,
                      workdir=wd,
                      stop_after_epoch=3)
  assert part.test == {} and len(part.history) == 3
  # A stray row of a lost epoch must not survive the resume.
  with open(os.path.join(wd, "metrics.jsonl"), "a") as f:
    f.write(json.dumps({"epoch": 4, "train_loss": -1.0}) + "\n")
  resumed = training.fit(predict, params, data, idx, val, val, cfg, num_classes=3, frozen=FROZEN,
                          workdir=wd)
  for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
    np.testing.assert_array_equal(a, b)
  assert resumed.best_epoch == full.best_epoch
  assert resumed.test == full.test
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["epoch"] for r in rows] == list(range(1, 7))
  assert all(r["train_loss"] > 0 for r in rows)
  # Calling again after completion restores the finished run instead of retraining.
  again = training.fit(predict, params, data, idx, val, val, cfg, num_classes=3, frozen=FROZEN,
                          workdir=wd)
  assert again.test == full.test and len(again.history) == 6


def test_one_and_four_devices_agree(mesh1, mesh4):
  data = _blobs()
  idx = np.arange(50)  # not a multiple of 4: exercises the zero-weight padding
  predict, params = _mlp_fn()
  cfg = _cfg(epochs=3, batch_size=16)
  r1 = training.fit(predict, params, data, idx, data, None, cfg, num_classes=3, mesh=mesh1,
                      frozen=FROZEN)
  r4 = training.fit(predict, params, data, idx, data, None, cfg, num_classes=3, mesh=mesh4,
                      frozen=FROZEN)
  for a, b in zip(jax.tree.leaves(r1.params), jax.tree.leaves(r4.params)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  assert r1.best_epoch == r4.best_epoch


@pytest.mark.parametrize("indices, match", [
    (np.array([], np.int64), "empty"),
    (np.array([0, 5, 240]), r"outside the training pool \[0, 240\).*\[240\]"),
    (np.array([-1, 3]), "outside"),
    (np.array([1, 1, 2]), "duplicate"),
    (np.array([0.0, 1.0]), "integer"),
    (np.zeros((2, 2), np.int64), "1-D"),
])
def test_bad_selection_is_a_clear_error(indices, match):
  data = _blobs()
  with pytest.raises(SkmmError, match=match):
    training.linear_probe(data, indices, data, data, _cfg(), num_classes=3)


def test_bad_labels_and_config_are_clear_errors():
  data = _blobs()
  with pytest.raises(SkmmError, match=r"labels outside \[0, 2\)"):
    training.linear_probe(data, np.arange(10), None, None, _cfg(), num_classes=2)
  with pytest.raises(SkmmError, match="unknown optimizer"):
    training.linear_probe(data, np.arange(10), None, None, _cfg(optimizer="adamm"),
                          num_classes=3)
  with pytest.raises(SkmmError, match="unknown training option"):
    training.TrainConfig.from_config({"learning_rat": 0.1})
  with pytest.raises(SkmmError, match="num_classes"):
    training.linear_probe(data, np.arange(10), None, None, _cfg())


def test_linear_probe_classification_and_validation_selection():
  train, val, test = _blobs(seed=0), _blobs(90, seed=1), _blobs(90, seed=2)
  res = training.linear_probe(train, np.arange(60), val, test, _cfg(epochs=15), num_classes=3)
  assert res.test["accuracy"] > 0.8
  vals = [r["val_accuracy"] for r in res.history]
  assert res.best_epoch == 1 + int(np.argmax(vals))  # first epoch with the best val accuracy
  assert res.val["accuracy"] == max(vals)


def test_classes_absent_from_selection():
  train, test = _blobs(seed=0), _blobs(90, seed=2)
  idx = np.nonzero(train.y < 2)[0][:40]  # class 2 is absent from S
  res = training.linear_probe(train, idx, None, test, _cfg(), num_classes=3)
  assert res.params["kernel"].shape == (6, 3)
  assert 0.0 < res.test["macro_f1"] < 1.0 and res.test["accuracy"] < 0.8


def test_linear_regression_matches_least_squares():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(200, 5)).astype(np.float32)
  w = rng.normal(size=5)
  y = (x @ w + 3.0 + 0.01 * rng.normal(size=200)).astype(np.float32)
  split = training.Split(x, y)
  cfg = _cfg(task="regression", learning_rate=0.1, schedule="cosine", epochs=300, batch_size=200)
  res = training.linear_probe(split, np.arange(100), None, split, cfg)
  a = np.c_[x[:100], np.ones(100)]
  coef = np.linalg.lstsq(a, y[:100], rcond=None)[0]
  np.testing.assert_allclose(res.params["kernel"][:, 0], coef[:5], atol=5e-3)
  np.testing.assert_allclose(res.params["bias"][0], coef[5], atol=5e-3)
  assert res.test["mae"] < 0.05


def test_paper_defaults():
  cfg = training.paper_config("stanfordcars_ft1")
  assert (cfg.learning_rate, cfg.epochs, cfg.optimizer) == (0.1, 50, "adam")
  assert training.paper_config("cifar10_ft1").epochs == 200
  assert training.paper_config("cifar10_ft2", epochs=2).epochs == 2


def test_history_stays_exact_over_two_interruptions(tmp_path, monkeypatch):
  data, val = _blobs(), _blobs(60, seed=5)
  idx = np.arange(0, 240, 3)
  predict, params = _mlp_fn()
  cfg = _cfg(checkpoint_every=1)
  wd = str(tmp_path / "run")
  training.fit(predict, params, data, idx, val, val, cfg, num_classes=3, frozen=FROZEN,
               workdir=wd, stop_after_epoch=3)
  with open(os.path.join(wd, "metrics.jsonl"), "a") as f:  # a row of an epoch lost in a kill
    f.write(json.dumps({"epoch": 4, "train_loss": -1.0}) + "\n")

  class Killed(Exception):
    pass

  save = training._save

  def save_then_die(mgr, epoch, item):
    save(mgr, epoch, item)
    if epoch == 4:
      raise Killed()

  monkeypatch.setattr(training, "_save", save_then_die)
  with pytest.raises(Killed):  # the second interruption, right after checkpoint 4
    training.fit(predict, params, data, idx, val, val, cfg, num_classes=3, frozen=FROZEN,
                 workdir=wd)
  monkeypatch.setattr(training, "_save", save)
  res = training.fit(predict, params, data, idx, val, val, cfg, num_classes=3, frozen=FROZEN,
                     workdir=wd)
  assert [r["epoch"] for r in res.history] == list(range(1, 7))
  with open(os.path.join(wd, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  assert [r["epoch"] for r in rows] == list(range(1, 7))
  assert all(r["train_loss"] > 0 for r in rows)
