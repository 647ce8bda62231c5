"""Training on a selected subset S with Optax: LP, FT-1 and FT-2, resumable, data-parallel.

One generic loop, `fit`, trains a pytree of trainable parameters through a pure
`predict_fn(params, x[, frozen])` (frozen parameters are passed separately) on the rows
`indices` of a training pool only, with

  * minibatches drawn from S by a permutation that depends only on (seed, epoch), padded
    with zero-weight rows to a static, device-count-divisible shape, and sharded over the
    `data` mesh (parameters replicated; jit inserts the gradient all-reduce), so the
    result does not depend on the number of devices;
  * model selection on the validation split only (the best epoch by `select_metric`),
    and one final test evaluation of the selected parameters;
  * Orbax checkpoints of (params, optimiser state, best params, epoch), so that an
    interrupted run resumes and ends with exactly the parameters of an uninterrupted run;
  * metrics as JSON lines (`metrics.jsonl`) and a tqdm progress bar.

Thin wrappers give the paper's settings (spec section 5):
  * `linear_probe`: multinomial logistic regression on standardised frozen features
    (classification) or linear regression with MSE (regression);
  * `train_head` (FT-1): the linear head on frozen backbone features;
  * FT-2 uses `fit` directly with a `predict_fn` that runs the last two layers
    (see `skmm_jax.pipelines.vision`).

Example:
  >>> import numpy as np
  >>> from skmm_jax import training
  >>> rng = np.random.default_rng(0)
  >>> x = rng.normal(size=(300, 8)).astype(np.float32); y = (x[:, 0] > 0).astype(np.int32)
  >>> split = training.Split(x, y)
  >>> cfg = training.TrainConfig(learning_rate=0.1, epochs=20, batch_size=64, progress=False)
  >>> res = training.linear_probe(split, np.arange(100), split, split, cfg, num_classes=2)
  >>> res.test["accuracy"] > 0.9
  True
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from skmm_jax import metrics as metrics_lib
from skmm_jax import parallel
from skmm_jax import validation

TASKS = ("classification", "regression")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Hyperparameters of one training run.

  Attributes:
    task: "classification" (softmax cross-entropy) or "regression" (MSE).
    optimizer: "adam" (the paper's), "adamw" or "sgd" (momentum 0.9).
    learning_rate: peak learning rate (constant, or cosine-decayed if `schedule="cosine"`).
    schedule: "constant" or "cosine".
    batch_size: minibatch size (capped at |S|).
    epochs: passes over S.
    l2: coefficient of 0.5 * l2 * ||W||^2 on every parameter with ndim >= 2 (weights,
      not biases), as in a ridge / L2-regularised logistic regression.
    weight_decay: decoupled weight decay for "adamw".
    eval_every: evaluate on the validation split every this many epochs (and at the end).
    checkpoint_every: save an Orbax checkpoint every this many epochs (0: by time only).
    checkpoint_every_s: also save once this many seconds passed since the last save
      (0: by epochs only). A run stopped by `stop_after_epoch` always saves.
    checkpoint_final: save when training completes (a later call then returns the finished
      run without retraining); pipelines that cache the result themselves turn this off.
    select_metric: the validation metric that picks the epoch; default "accuracy"
      (classification) or "mae" (regression).
    eval_batch_size: batch size of evaluation passes.
    seed: seed of the minibatch order.
    progress: show a tqdm progress bar.
  """
  task: str = "classification"
  optimizer: str = "adam"
  learning_rate: float = 1e-2
  schedule: str = "constant"
  batch_size: int = 512
  epochs: int = 50
  l2: float = 0.0
  weight_decay: float = 0.0
  eval_every: int = 1
  checkpoint_every: int = 0
  checkpoint_every_s: float = 120.0
  checkpoint_final: bool = True
  select_metric: Optional[str] = None
  eval_batch_size: int = 1024
  seed: int = 0
  progress: bool = True

  @classmethod
  def from_config(cls, cfg) -> "TrainConfig":
    """Builds a TrainConfig from a dict / ConfigDict, rejecting unknown keys by name."""
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in d:
      validation.check_choice(k, names, "training option")
    return cls(**d)

  @property
  def metric(self) -> str:
    if self.select_metric is not None:
      return self.select_metric
    return "accuracy" if self.task == "classification" else "mae"

  def validate(self) -> "TrainConfig":
    validation.check_choice(self.task, TASKS, "task")
    validation.check_choice(self.optimizer, OPTIMIZERS, "optimizer")
    validation.check_choice(self.schedule, ("constant", "cosine"), "schedule")
    validation.check_range(self.learning_rate, "learning_rate", low=0, low_open=True)
    validation.check_range(self.l2, "l2", low=0)
    validation.check_range(self.weight_decay, "weight_decay", low=0)
    for name in ("batch_size", "epochs", "eval_every", "eval_batch_size"):
      validation.check_budget(getattr(self, name), np.iinfo(np.int64).max, name)
    validation.check_choice(self.metric, metrics_lib.HIGHER_IS_BETTER, "select_metric")
    return self


class Split(NamedTuple):
  """One split of a data set: inputs (array or pytree of arrays with N rows) and targets.

  Attributes:
    x: (N, ...) inputs: features, images, or a pytree of such (cached activations).
    y: (N,) integer class ids (classification) or real targets (regression).
  """
  x: Any
  y: np.ndarray

  def __len__(self):
    return int(np.asarray(self.y).shape[0])

  def take(self, idx) -> "Split":
    return Split(jax.tree.map(lambda a: np.asarray(a)[idx], self.x), np.asarray(self.y)[idx])


class TrainState(NamedTuple):
  """What changes during training (and what a checkpoint stores).

  Attributes:
    step: int32 scalar, optimiser steps taken.
    params: the trainable parameters.
    opt_state: the Optax state.
  """
  step: jax.Array
  params: Any
  opt_state: Any


class TrainResult(NamedTuple):
  """The outcome of `fit`.

  Attributes:
    params: the selected parameters (best validation epoch; last epoch without validation).
    best_epoch: the epoch of `params` (1-based).
    val: validation metrics of `params` ({} without a validation split).
    test: test metrics of `params`, computed once at the end ({} without a test split).
    history: one dict per evaluated epoch (train loss, validation metrics).
  """
  params: Any
  best_epoch: int
  val: Dict[str, float]
  test: Dict[str, float]
  history: List[Dict[str, float]]


# ----------------------------------------------------------------------------- checks


def check_selection(indices, pool_size: int, name: str = "selection") -> np.ndarray:
  """Checks a selection is non-empty, in range and duplicate-free; returns int64 ids.

  Raises:
    SkmmError: naming the problem (empty, out of range with the offending ids, duplicates).
  """
  idx = np.asarray(indices)
  if idx.ndim != 1:
    raise validation.SkmmError(f"{name} must be a 1-D array of row ids; got shape {idx.shape}.")
  if idx.size == 0:
    raise validation.SkmmError(f"{name} is empty: there is nothing to train on (n must be > 0).")
  if not np.issubdtype(idx.dtype, np.integer):
    raise validation.SkmmError(f"{name} must hold integer row ids; got dtype {idx.dtype}.")
  bad = idx[(idx < 0) | (idx >= pool_size)]
  if bad.size:
    raise validation.SkmmError(
        f"{name} has {bad.size} id(s) outside the training pool [0, {pool_size}); "
        f"first offending ids: {bad[:10].tolist()}.")
  if np.unique(idx).size != idx.size:
    raise validation.SkmmError(f"{name} contains duplicate ids ({idx.size - np.unique(idx).size} "
                               "repeats); a selection must be a set.")
  return idx.astype(np.int64)


def _check_split(split: Split, task: str, name: str, num_classes: Optional[int]):
  n = len(split)
  for leaf in jax.tree.leaves(split.x):
    if np.shape(leaf)[0] != n:
      raise validation.SkmmError(
          f"{name}: inputs have {np.shape(leaf)[0]} rows but {n} targets.")
  if task == "classification":
    y = np.asarray(split.y)
    if not np.issubdtype(y.dtype, np.integer):
      raise validation.SkmmError(f"{name}: classification targets must be integers; got {y.dtype}.")
    if num_classes is not None and n and (y.min() < 0 or y.max() >= num_classes):
      raise validation.SkmmError(
          f"{name}: labels outside [0, {num_classes}): min {y.min()}, max {y.max()}.")


# ----------------------------------------------------------------------------- pieces


def make_optimizer(cfg: TrainConfig, total_steps: int) -> optax.GradientTransformation:
  """The Optax optimiser of `cfg` (Adam by default, as in the paper)."""
  lr = cfg.learning_rate
  if cfg.schedule == "cosine":
    lr = optax.cosine_decay_schedule(cfg.learning_rate, max(total_steps, 1))
  if cfg.optimizer == "adam":
    return optax.adam(lr)
  if cfg.optimizer == "adamw":
    return optax.adamw(lr, weight_decay=cfg.weight_decay)
  return optax.sgd(lr, momentum=0.9)


def per_example_loss(outputs: jax.Array, targets: jax.Array, task: str) -> jax.Array:
  """Softmax cross-entropy on integer labels, or squared error on real targets."""
  if task == "classification":
    return optax.softmax_cross_entropy_with_integer_labels(outputs.astype(jnp.float32), targets)
  outputs = outputs.reshape(outputs.shape[0], -1)[:, 0]
  return (outputs.astype(jnp.float32) - targets.astype(jnp.float32)) ** 2


def _l2_penalty(params) -> jax.Array:
  leaves = [jnp.sum(jnp.square(p)) for p in jax.tree.leaves(params) if p.ndim >= 2]
  return 0.5 * sum(leaves) if leaves else jnp.zeros(())


def batch_order(n: int, batch_size: int, seed: int, epoch: int) -> List[np.ndarray]:
  """Positions into S of each minibatch of `epoch`; depends only on (n, batch_size, seed, epoch)."""
  perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
  return [perm[i:i + batch_size] for i in range(0, n, batch_size)]


def _pad_batch(split_s: Split, pos: np.ndarray, padded: int, y_dtype):
  """Rows `pos` of the subset, padded with zero-weight copies of row pos[0] to `padded`."""
  pad = padded - pos.size
  take = np.concatenate([pos, np.full(pad, pos[0], pos.dtype)]) if pad else pos
  x = jax.tree.map(lambda a: a[take], split_s.x)
  y = np.asarray(split_s.y)[take].astype(y_dtype)
  w = np.concatenate([np.ones(pos.size, np.float32), np.zeros(pad, np.float32)])
  return x, y, w


def _copy(tree):
  return jax.tree.map(jnp.copy, tree)


def _put_rows(tree, mesh):
  return jax.tree.map(lambda a: jax.device_put(a, parallel.row_sharding(mesh, np.ndim(a))), tree)


def make_train_step(predict_fn: Callable, tx: optax.GradientTransformation, task: str, l2: float):
  """A jitted step: weighted mean loss over the real rows of a padded, sharded batch.

  The step is `step(state, x, y, w, frozen) -> (state, loss)`; `predict_fn(params, x)` is
  called as `predict_fn(params, x, frozen)` when `frozen` is not None.
  """

  def step(state: TrainState, x, y, w, frozen):
    def loss_fn(params):
      out = predict_fn(params, x) if frozen is None else predict_fn(params, x, frozen)
      per = per_example_loss(out, y, task)
      loss = jnp.sum(per * w) / jnp.maximum(jnp.sum(w), 1.0)
      return loss + (l2 * _l2_penalty(params) if l2 else 0.0), loss

    (_, data_loss), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(state.step + 1, params, opt_state), data_loss

  return jax.jit(step, donate_argnums=0)


@functools.lru_cache(maxsize=64)
def _compiled(predict_fn: Callable, opt_key: tuple, total_steps: int, task: str, l2: float):
  """(tx, jitted step, jitted predict), shared by every run with the same model and optimiser,
  so that sweeps over seeds and methods compile once per batch shape."""
  cfg = TrainConfig(**dict(opt_key))
  tx = make_optimizer(cfg, total_steps)
  step = make_train_step(predict_fn, tx, task, l2)
  pred = jax.jit(lambda p, x, fz: predict_fn(p, x) if fz is None else predict_fn(p, x, fz))
  return tx, step, pred


def predict(predict_fn: Callable, params, x, mesh=None, batch_size: int = 1024,
            frozen=None, _jitted: Optional[Callable] = None) -> np.ndarray:
  """Outputs of `predict_fn(params, .)` on every row of `x`, batched and sharded.

  Args:
    predict_fn: (params, x_batch) -> outputs.
    params: the parameters.
    x: (N, ...) array or pytree of arrays.
    mesh: the `data` mesh (default: all local devices).
    batch_size: rows per pass (rounded up to a multiple of the device count).
    frozen: optional frozen parameters, passed as `predict_fn(params, x, frozen)`.
  Returns:
    (N, ...) numpy outputs.
  """
  mesh = mesh if mesh is not None else parallel.data_mesh()
  fn = _jitted or _compiled(predict_fn, (), 1, "classification", 0.0)[2]
  n = np.shape(jax.tree.leaves(x)[0])[0]
  bs = parallel.padded_size(min(batch_size, n), mesh)
  outs = []
  for i in range(0, n, bs):
    chunk = jax.tree.map(lambda a: np.asarray(a[i:i + bs]), x)
    m = np.shape(jax.tree.leaves(chunk)[0])[0]
    if m < bs:
      chunk = jax.tree.map(lambda a: np.concatenate([a, np.repeat(a[:1], bs - m, 0)]), chunk)
    outs.append(np.asarray(fn(params, _put_rows(chunk, mesh), frozen))[:m])
  return np.concatenate(outs)


def evaluate(predict_fn: Callable, params, split: Split, task: str, num_classes=None,
             mesh=None, batch_size: int = 1024, frozen=None, _jitted=None) -> Dict[str, float]:
  """Metrics of `params` on `split`: accuracy + macro F1, or MAE + MSE."""
  out = predict(predict_fn, params, split.x, mesh, batch_size, frozen, _jitted)
  if task == "classification":
    return metrics_lib.classification_metrics(split.y, out, num_classes)
  return metrics_lib.regression_metrics(split.y, out)


# ----------------------------------------------------------------------------- checkpoints


def _manager(ckpt_dir: str):
  import orbax.checkpoint as ocp
  opts = ocp.CheckpointManagerOptions(max_to_keep=1, create=True,
                                      enable_async_checkpointing=False)
  return ocp.CheckpointManager(os.path.abspath(ckpt_dir), options=opts)


def _save(mgr, epoch: int, item) -> None:
  import orbax.checkpoint as ocp
  mgr.save(epoch, args=ocp.args.StandardSave(item))
  mgr.wait_until_finished()


def _restore(mgr, template):
  import orbax.checkpoint as ocp
  step = mgr.latest_step()
  if step is None:
    return None, 0
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
  return mgr.restore(step, args=ocp.args.StandardRestore(abstract)), int(step)


def _read_history(path: str, upto_epoch: int) -> List[Dict[str, float]]:
  if not os.path.exists(path):
    return []
  with open(path) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  return [r for r in rows if r.get("epoch", 0) <= upto_epoch]


def _write_history(path: str, rows) -> None:
  from skmm_jax import cache
  cache.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


# ----------------------------------------------------------------------------- the loop


def fit(predict_fn: Callable, params, train: Split, indices, val: Optional[Split],
        test: Optional[Split], cfg: TrainConfig, *, num_classes: Optional[int] = None,
        workdir: Optional[str] = None, mesh=None, frozen=None,
        stop_after_epoch: Optional[int] = None) -> TrainResult:
  """Trains `params` on the rows `indices` of `train`; selects on `val`; tests once on `test`.

  Args:
    predict_fn: pure (params, x_batch) -> outputs ((B, C) logits, or (B,) / (B, 1) for
      regression). Frozen parameters are closed over; batch norm must be in inference mode.
    params: initial trainable parameters (pytree of arrays).
    train: the training pool; only rows `indices` are ever used.
    indices: the selection S (1-D, distinct ids in [0, len(train))).
    val: validation split for model selection (None: keep the last epoch).
    test: test split, evaluated once with the selected parameters (None: skip).
    cfg: a `TrainConfig`.
    num_classes: C (classification); labels are checked to lie in [0, C).
    workdir: where checkpoints (`ckpt/`) and `metrics.jsonl` go; None: no checkpoints.
      A run finds its latest checkpoint there and resumes from it.
    mesh: the `data` mesh (default: all local devices).
    frozen: optional pytree of frozen parameters, passed as `predict_fn(params, x, frozen)`
      (an argument rather than a closure: no large constants in the compiled program, and
      runs that share `predict_fn` share the compiled step).
    stop_after_epoch: stop (after checkpointing) once this epoch is done, without the
      final evaluation, as a preempted job would; a later call resumes.
  Returns:
    A `TrainResult` (params None-free; `test` empty if stopped early or no test split).
  Raises:
    SkmmError: empty / out-of-range / duplicate selection, label or shape mismatch, bad config.
  """
  cfg.validate()
  idx = check_selection(indices, len(train))
  _check_split(train, cfg.task, "train", num_classes)
  for sp, nm in ((val, "val"), (test, "test")):
    if sp is not None:
      _check_split(sp, cfg.task, nm, num_classes)
      if len(sp) == 0:
        raise validation.SkmmError(f"the {nm} split is empty.")
  mesh = mesh if mesh is not None else parallel.data_mesh()
  n = idx.size
  sub = train.take(idx)
  bs = min(cfg.batch_size, n)
  padded = parallel.padded_size(bs, mesh)
  steps_per_epoch = -(-n // bs)
  opt_key = tuple(sorted((k, getattr(cfg, k)) for k in
                         ("optimizer", "learning_rate", "schedule", "weight_decay")))
  # Only a cosine schedule depends on the run's length; any other shares one compiled step
  # across budgets n (a sweep would otherwise recompile for every n).
  total = steps_per_epoch * cfg.epochs if cfg.schedule == "cosine" else 0
  tx, step_fn, pred_jit = _compiled(predict_fn, opt_key, total, cfg.task, float(cfg.l2))
  y_dtype = np.int32 if cfg.task == "classification" else np.float32

  rep = parallel.replicated(mesh)
  params = jax.device_put(jax.tree.map(jnp.asarray, params), rep)
  state = TrainState(jnp.zeros((), jnp.int32), params, tx.init(params))
  state = jax.device_put(state, rep)
  # Copies: the train step donates `state`, so `best` must not alias its buffers.
  best = {"params": _copy(state.params), "value": jnp.asarray(np.nan, jnp.float32),
          "epoch": jnp.zeros((), jnp.int32)}
  history: List[Dict[str, float]] = []
  start_epoch = 0
  mgr = None
  hist_path = None
  if workdir is not None:
    os.makedirs(workdir, exist_ok=True)
    hist_path = os.path.join(workdir, "metrics.jsonl")
    mgr = _manager(os.path.join(workdir, "ckpt"))
    restored, start_epoch = _restore(mgr, {"state": state, "best": best})
    if restored is not None:
      state = jax.device_put(restored["state"], rep)
      best = jax.device_put(restored["best"], rep)
      history = _read_history(hist_path, start_epoch)
    # The file then holds exactly the restored epochs: rows of epochs lost with an interruption
    # are dropped now, not left to reappear on a later resume.
    _write_history(hist_path, history)

  if frozen is not None:
    frozen = jax.device_put(jax.tree.map(jnp.asarray, frozen), rep)
  best_value = None if np.isnan(float(best["value"])) else float(best["value"])
  last_epoch = cfg.epochs if stop_after_epoch is None else min(cfg.epochs, stop_after_epoch)

  bar = None
  if cfg.progress and start_epoch < last_epoch:
    from tqdm.auto import tqdm
    bar = tqdm(total=cfg.epochs, initial=start_epoch, desc="train", leave=False)
  last_save = time.time()
  for epoch in range(start_epoch + 1, last_epoch + 1):
    losses = []
    for pos in batch_order(n, bs, cfg.seed, epoch):
      x, y, w = _pad_batch(sub, pos, padded, y_dtype)
      state, loss = step_fn(state, _put_rows(x, mesh), _put_rows(y, mesh), _put_rows(w, mesh),
                            frozen)
      losses.append((loss, pos.size))
    train_loss = float(sum(float(l) * k for l, k in losses) / n)
    row = {"epoch": epoch, "step": int(state.step), "train_loss": train_loss}
    if not np.isfinite(train_loss):
      raise FloatingPointError(f"training loss became {train_loss} at epoch {epoch}; "
                               f"lower the learning rate (now {cfg.learning_rate}).")
    if val is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
      vm = evaluate(predict_fn, state.params, val, cfg.task, num_classes, mesh,
                    cfg.eval_batch_size, frozen, pred_jit)
      row.update({f"val_{k}": v for k, v in vm.items()})
      if metrics_lib.is_better(cfg.metric, vm[cfg.metric], best_value):
        best_value = vm[cfg.metric]
        best = {"params": _copy(state.params), "value": jnp.asarray(best_value, jnp.float32),
                "epoch": jnp.asarray(epoch, jnp.int32)}
    history.append(row)
    if hist_path is not None:
      with open(hist_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    if mgr is not None and (
        (cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0)
        or (cfg.checkpoint_every_s and time.time() - last_save >= cfg.checkpoint_every_s)
        or (epoch == last_epoch and (last_epoch < cfg.epochs or cfg.checkpoint_final))):
      _save(mgr, epoch, {"state": state, "best": best})
      last_save = time.time()
    if bar is not None:
      bar.update(1)
      bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k not in ("epoch", "step")})
  if bar is not None:
    bar.close()
  if hist_path is not None:
    _write_history(hist_path, history)  # drops rows of epochs lost to an interruption

  done_epoch = max(start_epoch, last_epoch)
  if val is None:
    final_params, best_epoch, val_metrics = state.params, done_epoch, {}
  else:
    final_params, best_epoch = best["params"], int(best["epoch"])
    val_metrics = {k[4:]: v for r in history if r["epoch"] == best_epoch
                   for k, v in r.items() if k.startswith("val_")}
  test_metrics: Dict[str, float] = {}
  if test is not None and done_epoch >= cfg.epochs:
    test_metrics = evaluate(predict_fn, final_params, test, cfg.task, num_classes, mesh,
                            cfg.eval_batch_size, frozen, pred_jit)
  if mgr is not None:
    mgr.close()
  params_host = jax.tree.map(np.asarray, final_params)
  return TrainResult(params_host, best_epoch, val_metrics, test_metrics, history)


# ----------------------------------------------------------------------------- LP / FT-1


class Standardizer(NamedTuple):
  """Feature standardisation x -> (x - mean) / std with statistics of the training subset."""
  mean: np.ndarray
  std: np.ndarray

  @classmethod
  def fit(cls, x: np.ndarray, eps: float = 1e-6) -> "Standardizer":
    x = np.asarray(x, np.float64)
    return cls(x.mean(0).astype(np.float32), np.maximum(x.std(0), eps).astype(np.float32))

  def __call__(self, x) -> np.ndarray:
    return ((np.asarray(x, np.float32) - self.mean) / self.std).astype(np.float32)


@functools.lru_cache(maxsize=None)
def linear_predict_fn(num_outputs: int) -> Callable:
  """predict_fn of the shared `LinearHead` on (B, d) features (one function per output count,
  so that repeated runs share compiled code)."""
  from skmm_jax.models.heads import LinearHead
  head = LinearHead(num_outputs=num_outputs, zero_init=True)
  return lambda params, x: head.apply({"params": params}, x)


def train_head(train: Split, indices, val: Optional[Split], test: Optional[Split],
               cfg: TrainConfig, *, num_classes: Optional[int] = None, standardize: bool = False,
               init_params=None, workdir: Optional[str] = None, mesh=None,
               stop_after_epoch: Optional[int] = None) -> TrainResult:
  """Trains a linear head on frozen (N, d) features of the rows `indices` (LP and FT-1).

  Args:
    train, val, test: `Split`s whose x are (N, d) features.
    indices: the selection S.
    cfg: training config ("classification": C = num_classes outputs; "regression": 1).
    num_classes: C for classification.
    standardize: standardise features with mean/std of the selected rows (LP).
    init_params: optional initial head params ({"kernel", "bias"}); default zeros.
    workdir, mesh, stop_after_epoch: as in `fit`.
  Returns:
    A `TrainResult`; `params` are the head's, in standardised coordinates if `standardize`.
  """
  idx = check_selection(indices, len(train))
  if cfg.task == "classification" and num_classes is None:
    raise validation.SkmmError("num_classes is required for classification.")
  x = np.asarray(train.x)
  if x.ndim != 2:
    raise validation.SkmmError(f"features must be (N, d); got shape {x.shape}.")
  if standardize:
    st = Standardizer.fit(x[idx])
    train = Split(st(x), train.y)
    val = None if val is None else Split(st(val.x), val.y)
    test = None if test is None else Split(st(test.x), test.y)
  out_dim = num_classes if cfg.task == "classification" else 1
  d = x.shape[1]
  if init_params is None:
    init_params = {"kernel": np.zeros((d, out_dim), np.float32),
                   "bias": np.zeros((out_dim,), np.float32)}
  return fit(linear_predict_fn(out_dim), init_params, train, idx, val, test, cfg,
             num_classes=num_classes, workdir=workdir, mesh=mesh,
             stop_after_epoch=stop_after_epoch)


def linear_probe(train: Split, indices, val: Optional[Split], test: Optional[Split],
                 cfg: TrainConfig, *, num_classes: Optional[int] = None,
                 workdir: Optional[str] = None, mesh=None) -> TrainResult:
  """LP: multinomial logistic regression on standardised features, or linear regression (MSE).

  Classification standardises the features with the statistics of S; regression trains
  on the features as given (the paper's UTKFace features are L2-normalised CLIP features).
  """
  return train_head(train, indices, val, test, cfg, num_classes=num_classes,
                    standardize=cfg.task == "classification", workdir=workdir, mesh=mesh)


# Paper defaults (spec section 5), by setting.
PAPER_DEFAULTS = {
    "lp_classification": dict(task="classification", optimizer="adam", learning_rate=1e-2,
                              batch_size=512, epochs=100, l2=1e-4),
    "lp_regression": dict(task="regression", optimizer="adam", learning_rate=1e-2,
                          batch_size=512, epochs=200),
    "cifar10_ft1": dict(task="classification", optimizer="adam", learning_rate=1e-2,
                        batch_size=512, epochs=200),
    "cifar10_ft2": dict(task="classification", optimizer="adam", learning_rate=1e-2,
                        batch_size=512, epochs=50),
    "stanfordcars_ft1": dict(task="classification", optimizer="adam", learning_rate=1e-1,
                             batch_size=512, epochs=50),
    "stanfordcars_ft2": dict(task="classification", optimizer="adam", learning_rate=1e-2,
                             batch_size=512, epochs=50),
}


def paper_config(setting: str, **overrides) -> TrainConfig:
  """The paper's training defaults for `setting` (see `PAPER_DEFAULTS`), with overrides."""
  validation.check_choice(setting, PAPER_DEFAULTS, "training setting")
  return TrainConfig(**{**PAPER_DEFAULTS[setting], **overrides}).validate()
