"""An offline real-data transfer experiment: pretrain on digits 0-4, select from 5-9, finetune.

The data are scikit-learn's bundled 8x8 handwritten digits (1797 images, no download).
  1. Pretraining (cached): a small Flax ResNet (`skmm_jax.models.resnet.ResNet`, two stages of
     16/32 channels) is trained on digits 0-4, all parameters, Adam; the epoch is chosen on a
     held-out part of 0-4.
  2. Transfer: digits 5-9 (relabelled 0-4) are split into a selection pool, a validation
     split and a test split (fixed by `config.split_seed`). The backbone gets a fresh
     5-way head (seeded by `config.head_seed`).
  3. For FT-1 (head on frozen features; selection on the features) and FT-2 (the last 3x3
     convolution + head; selection on sketched gradients with random targets), every method
     selects n pool examples per seed, the model is finetuned on them with model selection on
     the validation split, and test accuracy / macro F1 are reported once per run, through the
     same driver as the paper's experiments (`skmm_jax.pipelines.vision`).

Launch: `python experiments/main.py --config=configs/digits_transfer.py --workdir=...`.

Example:
  >>> from configs import digits_transfer  # doctest: +SKIP
  >>> records = run(digits_transfer.get_config(), "/tmp/digits")  # doctest: +SKIP
"""
from __future__ import annotations

import copy
import os
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from skmm_jax import cache
from skmm_jax import training
from skmm_jax import validation
from skmm_jax.pipelines import vision

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def digits_images(upsample: int = 4, fraction: float = 1.0):
  """sklearn digits as float (N, 8u, 8u, 3) images in [-1, 1] and int labels.

  `fraction` < 1 keeps a fixed random subset (the small test variant)."""
  from skmm_jax.data import vision as data_vision
  src = data_vision.digits_source()
  keep = np.arange(len(src))
  if fraction < 1.0:
    keep = np.sort(np.random.default_rng(0).permutation(keep)[:int(round(fraction * keep.size))])
  img = src.images[keep].astype(np.float32) / 255.0
  img = np.kron(img, np.ones((1, upsample, upsample), np.float32))
  img = (img - 0.5) / 0.5
  return np.repeat(img[..., None], 3, axis=-1), src.labels[keep].astype(np.int32)


def _subset(images, labels, classes):
  keep = np.isin(labels, classes)
  lut = np.full(10, -1, np.int32)
  lut[list(classes)] = np.arange(len(classes), dtype=np.int32)
  return images[keep], lut[labels[keep]]


@vision.register_dataset("digits5to9")
def target_datasets(config) -> vision.Datasets:
  """Digits 5-9 relabelled 0-4: pool / val / test split by `config.split_seed`."""
  x, y = _subset(*digits_images(int(config.get("upsample", 4)),
                                      float(config.get("data_fraction", 1.0))), TARGET_CLASSES)
  rest, test = vision.split_holdout(len(y), float(config.get("test_fraction", 0.3)),
                                    int(config.get("split_seed", 0)))
  pool, val = vision.split_holdout(rest.size, float(config.get("val_fraction", 0.15)),
                                   int(config.get("split_seed", 0)) + 1)
  pool, val = rest[pool], rest[val]
  sp = lambda i: training.Split(x[i], y[i])  # noqa: E731
  return vision.Datasets(sp(pool), sp(val), sp(test), len(TARGET_CLASSES), "classification",
                         "digits5to9")


def make_module(config):
  """The small ResNet of `config.arch` (widths, depths, stem)."""
  from skmm_jax.models import resnet
  a = config.arch
  return resnet.ResNet(depths=tuple(a.depths), hidden_sizes=tuple(a.hidden_sizes),
                       embedding_size=int(a.embedding_size), layer_type="basic",
                       num_classes=len(SOURCE_CLASSES))


_PRETRAINED: Dict[str, Any] = {}


def pretrain(config, workdir: str, progress: bool = False):
  """Variables of the backbone pretrained on digits 0-4 (cached under workdir/pretrain/<key>).

  Returns:
    (variables, info) with info the pretraining's validation accuracy on 0-4 and best epoch.
  """
  from flax import traverse_util
  module = make_module(config)
  x, y = _subset(*digits_images(int(config.get("upsample", 4)),
                                float(config.get("data_fraction", 1.0))), SOURCE_CLASSES)
  tr, va = vision.split_holdout(len(y), 0.2, int(config.get("split_seed", 0)))
  pcfg = training.TrainConfig.from_config(dict(config.pretrain.to_dict(), progress=progress))
  seed = int(config.get("model_seed", 0))
  # `progress` only draws a bar: it must not change the key (else a second pretraining).
  key = cache.fingerprint("pretrain", config.arch.to_dict(),
                          {k: v for k, v in pcfg.__dict__.items() if k != "progress"},
                          cache.array_fingerprint(x), cache.array_fingerprint(y), seed)
  path = os.path.join(workdir, "pretrain", key)
  if path in _PRETRAINED:
    return _PRETRAINED[path]
  if os.path.exists(os.path.join(path, "variables.npz")):
    flat = cache.load_npz(os.path.join(path, "variables.npz"))
    variables = traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})
    out = (variables, cache.read_json(os.path.join(path, "info.json")))
    _PRETRAINED[path] = out
    return out
  init = jax.jit(module.init)(jax.random.PRNGKey(seed), jnp.zeros((1,) + x.shape[1:]))
  init = jax.tree.map(np.asarray, dict(init))
  collections = {k: v for k, v in init.items() if k != "params"}

  def predict(params, xb, frozen):
    return module.apply(dict(frozen, params=params), xb, train=False)

  res = training.fit(predict, init["params"], training.Split(x, y), tr,
                     training.Split(x[va], y[va]), None, pcfg, num_classes=len(SOURCE_CLASSES),
                     workdir=os.path.join(path, "train"), frozen=collections)
  variables = dict(collections, params=res.params)
  flat = traverse_util.flatten_dict(variables)
  cache.atomic_save_npz(os.path.join(path, "variables.npz"),
                        **{"/".join(k): np.asarray(v) for k, v in flat.items()})
  info = {"val_accuracy_0to4": res.val.get("accuracy"), "best_epoch": res.best_epoch}
  cache.atomic_write_json(os.path.join(path, "info.json"), info)
  _PRETRAINED[path] = (variables, info)
  return variables, info


@vision.register_bundle("digits_pretrained")
def pretrained_bundle(config, num_outputs: int):
  """The pretrained backbone with a fresh `num_outputs`-way head (seed `config.head_seed`)."""
  from skmm_jax import models
  from skmm_jax.data.preprocess import IMAGENET
  from skmm_jax.models import heads
  workdir = config.pretrain_dir
  variables, _ = pretrain(config, workdir, bool(config.get("progress", False)))
  module = make_module(config).clone(num_classes=num_outputs)
  d = module.feature_dim
  head = jax.jit(heads.LinearHead(num_outputs).init)(
      jax.random.PRNGKey(int(config.get("head_seed", 0))), jnp.zeros((1, d)))["params"]
  params = dict(variables["params"], classifier=jax.tree.map(np.asarray, head))
  size = int(8 * config.get("upsample", 4))
  return models.bundle_from_module("digits_resnet", module, dict(variables, params=params),
                                   IMAGENET._replace(resize=size, crop=size), d)


def setting_config(config, setting: str):
  """The `vision` config of one setting ("ft1" / "ft2") of the digits experiment."""
  sub = copy.deepcopy(config)
  with sub.unlocked():
    sub.setting = setting
    sub.name = f"{config.name}_{setting}"
    sub.selection = sub.selection_by_setting[setting]
    sub.train = sub.train_by_setting[setting]
    if "m_by_setting" in sub:
      sub.sweep.m = sub.m_by_setting[setting]
  return sub


def run(config, workdir: Optional[str] = None) -> List[Dict[str, Any]]:
  """Pretrains (cached), then runs the FT-1 and FT-2 sweeps; returns all records."""
  workdir = workdir or vision.default_workdir(config)
  with config.unlocked():
    config.pretrain_dir = workdir
  records = []
  for setting in config.settings:
    validation.check_choice(setting, ("ft1", "ft2"), "digits setting")
    sub = setting_config(config, setting)
    recs = vision.run(sub, os.path.join(workdir, setting))
    records += recs
  _, info = pretrain(config, workdir, bool(config.get("progress", False)))
  cache.atomic_write_json(os.path.join(workdir, "pretrain_info.json"), info)
  return records
