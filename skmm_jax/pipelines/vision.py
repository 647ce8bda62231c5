"""The vision pipeline: features or sketched gradients -> selection -> training on S -> evaluation.

One driver for every real-data experiment of the paper (spec section 5) and for the offline
digits experiment. Each stage is cached under the work directory and keyed by
`skmm_jax.cache.fingerprint` of everything that determines it, so that a sweep over the budgets
n, seeds, sketch dimensions m and moment constants c re-uses the backbone, the feature
extraction and the sketches, and a re-run (or a killed run) recomputes nothing finished:

  <workdir>/stores/<key>/            pool / val / test features and gradient sketches
                                     (`skmm_jax.sketch_store`, resumable)
  <workdir>/selections/<key>.npz     selected indices (+ <key>.json diagnostics)
  <workdir>/runs/<key>/              training checkpoints (Orbax) and metrics.jsonl
  <workdir>/runs/<key>/result.json   the run's record (val metrics, one test evaluation)
  <workdir>/results.jsonl            every record of this config, tables and a plot

`config.cache_dir` (default: the work directory) moves `stores/` and `selections/` elsewhere;
both are content-keyed, so several configs (or a sweep split over work directories) can share
them safely.

Settings (`config.setting`):
  * "lp": linear probe on frozen features (logistic regression on standardised features,
    or linear regression with MSE when `config.task == "regression"`);
  * "ft1": the linear head on frozen backbone features (selection features: the features);
  * "ft2": the last two layers (`bundle.subset("ft2")`), selection on sketched gradients.

Data come from `config.dataset`: "mock" (random images with class-dependent colour, for
tests), or a loader registered with `register_dataset` (the digits pipeline does this), or
the real-data loaders of `skmm_jax.data` (cifar10, cars196, utkface).

Example (what `experiments/main.py --config=configs/cifar10_resnet18_ft2.py:runlocal` runs):
  >>> from configs import cifar10_resnet18_ft2  # doctest: +SKIP
  >>> records = run(cifar10_resnet18_ft2.get_config("runlocal"), "/tmp/wd")  # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from skmm_jax import cache
from skmm_jax import training
from skmm_jax import validation
from skmm_jax.data import vision as vision_data

SETTINGS = ("lp", "ft1", "ft2")
SELECTION_FEATURES = ("features", "head_grad", "grad")


class Datasets(NamedTuple):
  """The splits of one experiment.

  Attributes:
    train: the selection pool (inputs: uint8 (N, H, W, 3) images, or float images already
      normalised for the backbone); only the selected rows are trained on.
    val: held out from the training pool, for model selection.
    test: evaluated once per run.
    num_classes: C (classification) or 1 (regression).
    task: "classification" or "regression".
    name: a short name (part of every cache key, with the data fingerprint).
  """
  train: training.Split
  val: training.Split
  test: training.Split
  num_classes: int
  task: str
  name: str


# --------------------------------------------------------------------------- data sets

_DATASETS: Dict[str, Callable] = {}


def register_dataset(name: str):
  """Registers `loader(config) -> Datasets` under `name` (decorator)."""
  def deco(fn):
    _DATASETS[name] = fn
    return fn
  return deco


def split_holdout(n: int, fraction: float, seed: int):
  """(keep, holdout) index arrays: a seeded random `fraction` of range(n) is held out."""
  validation.check_range(fraction, "val_fraction", 0.0, 1.0, low_open=True, high_open=True)
  return vision_data.train_val_indices(n, seed=seed, n_val=max(1, int(round(n * fraction))))


@register_dataset("mock")
def mock_datasets(config) -> Datasets:
  """Tiny random uint8 images whose mean colour depends on the class (or on the target).

  `config.mock`: n_train, n_val, n_test, image_size, num_classes; `config.task` decides
  between integer labels and real (age-like) targets.
  """
  mc = config.mock
  rng = np.random.default_rng(int(mc.get("seed", 0)))
  c = int(mc.num_classes) if config.task == "classification" else 1
  total = int(mc.n_train) + int(mc.n_val) + int(mc.n_test)
  s = int(mc.image_size)
  if config.task == "classification":
    y = rng.integers(0, c, total).astype(np.int32)
    shade = (y + 0.5) / c
  else:
    shade = rng.random(total)
    y = (1.0 + 79.0 * shade).astype(np.float32)
  colour = np.stack([shade, 1 - shade, (shade * 3) % 1], 1)[:, None, None, :]
  img = np.clip(colour * 200 + rng.normal(scale=25, size=(total, s, s, 3)), 0, 255).astype(np.uint8)
  a, b = int(mc.n_train), int(mc.n_train) + int(mc.n_val)
  sp = lambda lo, hi: training.Split(img[lo:hi], y[lo:hi])  # noqa: E731
  return Datasets(sp(0, a), sp(a, b), sp(b, total), c, config.task, "mock")


def num_outputs(config) -> int:
  """Head outputs of `config.dataset`: C for classification, 1 for regression."""
  if config.dataset == "mock":
    return int(config.mock.num_classes) if config.task == "classification" else 1
  from skmm_jax.data import vision as data_vision
  validation.check_choice(config.dataset, data_vision.DATASETS, "dataset")
  info = data_vision.DATASETS[config.dataset]
  return info.num_classes if info.task == "classification" else 1


def load_datasets(config, preprocess=None) -> Datasets:
  """The `Datasets` of `config.dataset`: a registered loader ("mock", "digits5to9"), or a real
  data set of `skmm_jax.data.vision` ("cifar10", "cars196", "utkface", "digits").

  Real data: the official "train" split is the pool minus a seeded validation part
  (`config.val_fraction`, `config.split_seed`), "test" is the test split. Images are resized
  and centre-cropped on the host with `preprocess` (the backbone's), except when
  `config.resize_on_device` (default for CIFAR-10, whose 32x32 images stack as they are):
  then the uint8 images stay small and `model_inputs` resizes them on device.
  """
  name = config.dataset
  if name in _DATASETS:
    return _DATASETS[name](config)
  from skmm_jax.data import vision as data_vision
  validation.check_choice(name, list(data_vision.DATASETS) + list(_DATASETS), "dataset")
  info = data_vision.DATASETS[name]
  data_dir = config.get("data_dir", None) or default_data_dir()
  on_device = bool(config.get("resize_on_device", name == "cifar10"))
  pp = None if on_device else preprocess
  pool_src = data_vision.load_split(name, "train", data_dir)
  test_src = data_vision.load_split(name, "test", data_dir)
  tr, va = data_vision.train_val_indices(len(pool_src), float(config.get("val_fraction", 0.1)),
                                         int(config.get("split_seed", 0)))
  y_dtype = np.int32 if info.task == "classification" else np.float32

  def split(src, idx):
    x, y = data_vision.load_images(src, idx, pp)
    if x.ndim == 3 or x.shape[-1] == 1:
      x = np.repeat(x.reshape(x.shape[:3] + (1,)), 3, axis=-1)
    return training.Split(x, y.astype(y_dtype))

  c = info.num_classes if info.task == "classification" else 1
  return Datasets(split(pool_src, tr), split(pool_src, va),
                  split(test_src, np.arange(len(test_src))), c, info.task, name)


_DATA_KEYS: Dict[int, tuple] = {}


def _data_key(ds: Datasets) -> str:
  """Fingerprint of every split (memoised per Datasets object: hashing images is not free)."""
  hit = _DATA_KEYS.get(id(ds))
  if hit is not None and hit[0] is ds:
    return hit[1]
  key = _data_key_uncached(ds)
  _DATA_KEYS.clear()
  _DATA_KEYS[id(ds)] = (ds, key)
  return key


def _data_key_uncached(ds: Datasets) -> str:
  parts = [ds.name, ds.task, ds.num_classes]
  for sp in (ds.train, ds.val, ds.test):
    parts += [cache.array_fingerprint(np.asarray(a)) for a in jax.tree.leaves(sp.x)]
    parts.append(cache.array_fingerprint(np.asarray(sp.y)))
  return cache.fingerprint(parts)


# --------------------------------------------------------------------------- the model


def model_inputs(bundle, x):
  """Backbone inputs from a batch: uint8 images are resized to the crop size and normalised
  on device; float inputs are taken as already normalised."""
  if x.dtype == jnp.uint8:
    from skmm_jax.data import preprocess
    crop = int(bundle.preprocess.crop)
    x = preprocess.normalize(x, bundle.preprocess)
    if x.shape[1] != crop or x.shape[2] != crop:
      x = jax.image.resize(x, (x.shape[0], crop, crop, x.shape[3]), "bilinear")
  return x


def load_bundle(config, num_outputs: int):
  """The backbone of `config` (`config.backbone`, `config.weights`), or a registered builder."""
  builder = config.get("bundle_builder", None)
  if builder:
    return _BUNDLES[builder](config, num_outputs)
  from skmm_jax import models
  return models.load_bundle(config.backbone, num_classes=num_outputs,
                            weights=config.get("weights", None),
                            seed=int(config.get("model_seed", 0)))


_BUNDLES: Dict[str, Callable] = {}


def register_bundle(name: str):
  """Registers `builder(config, num_outputs) -> ModelBundle` (e.g. a pretraining stage)."""
  def deco(fn):
    _BUNDLES[name] = fn
    return fn
  return deco


def subset_strings(bundle, setting: str) -> List[str]:
  """'params/...' path prefixes of the trained subset, as `skmm_jax.gradients` expects."""
  from skmm_jax import models
  return ["params/" + "/".join(p) for p in models.subset_prefixes(bundle.module, setting)]


_FT2_PREDICT: Dict[str, Callable] = {}


def ft2_predict_fn(bundle) -> Callable:
  """predict(sel, x, frozen) of the FT-2 model: the trained subset `sel` (nested params dict)
  merged with the frozen rest; one function per bundle, so compiled steps are shared."""
  key = bundle.name + ":" + bundle.weights_fingerprint
  if key not in _FT2_PREDICT:
    from flax import traverse_util

    def predict(sel, x, frozen):
      flat = {**traverse_util.flatten_dict(frozen["rest"]), **traverse_util.flatten_dict(sel)}
      v = dict(frozen["collections"], params=traverse_util.unflatten_dict(flat))
      return bundle.apply_logits(v, model_inputs(bundle, x))
    _FT2_PREDICT[key] = predict
  return _FT2_PREDICT[key]


# --------------------------------------------------------------------------- stages


class Stage(NamedTuple):
  """What the feature stage hands on: the selection rows and the training inputs."""
  rows: np.ndarray          # (N, k) selection features / sketch of the pool
  key: str                  # cache key of `rows`
  train: training.Split     # training inputs (features for lp/ft1, images for ft2)
  val: training.Split
  test: training.Split


# config.selection.gamma_cache: keep Gamma in memory for the whole sketching run ('auto': if it
# fits, see sketch_store.sketch_dataset); strings so that a command-line override stays typed.
_GAMMA_CACHE = {"auto": "auto", "on": True, "off": False}


def _store(source_x, y, bundle, config, workdir, *, mode, m=None, subset=(), seed=0,
           progress=False):
  from skmm_jax import sketch_store
  src = sketch_store.ArraySource(source_x, labels=None if y is None else np.asarray(y))
  if mode == "features":
    apply_fn = lambda v, x: bundle.apply_features(v, model_inputs(bundle, x))  # noqa: E731
  else:
    apply_fn = lambda v, x: bundle.apply_logits(v, model_inputs(bundle, x))  # noqa: E731
  sel = config.selection
  return sketch_store.sketch_dataset(
      src, apply_fn, bundle.variables, root=os.path.join(workdir, "stores"), subset=list(subset),
      m=m, seed=seed, mode=mode, target=sel.get("target", "random"),
      backend=sel.get("backend", "gaussian"), head_path="params/classifier",
      batch_size=int(sel.get("batch_size", 64)), model_name=bundle.name,
      params_fingerprint=bundle.weights_fingerprint, progress=progress,
      gamma_cache=_GAMMA_CACHE[validation.check_choice(
          sel.get("gamma_cache", "auto"), tuple(_GAMMA_CACHE), "selection.gamma_cache")])


def features_stage(ds: Datasets, bundle, config, workdir, progress=False):
  """Frozen-backbone features of every split (cached stores)."""
  return [np.asarray(_store(sp.x, None, bundle, config, workdir, mode="features",
                            progress=progress).rows) for sp in (ds.train, ds.val, ds.test)]


def selection_rows(ds: Datasets, bundle, config, workdir, m: Optional[int], feats=None,
                   progress=False):
  """(rows, key) the selectors run on: features, head gradients or sketched FT-2 gradients."""
  kind = config.selection.features
  validation.check_choice(kind, SELECTION_FEATURES, "selection features")
  seed = int(config.selection.get("sketch_seed", 0))
  y = ds.train.y if config.selection.get("target", "random") == "true" else None
  if kind == "features":
    rows = feats[0] if feats is not None else features_stage(ds, bundle, config, workdir)[0]
    return rows, cache.fingerprint("features", bundle.weights_fingerprint, _data_key(ds))
  if kind == "head_grad":
    st = _store(ds.train.x, y, bundle, config, workdir, mode="head_grad", m=m, seed=seed,
                progress=progress)
  else:
    st = _store(ds.train.x, y, bundle, config, workdir, mode="grad", m=m, seed=seed,
                subset=subset_strings(bundle, "ft2"), progress=progress)
  return np.asarray(st.rows), os.path.basename(st.path)


def select_stage(rows, rows_key, method, n, seed, options, workdir, labels=None):
  """Cached `skmm_jax.select`: (indices, diagnostics)."""
  import skmm_jax
  key = cache.fingerprint("select", rows_key, method, int(n), int(seed), dict(options))
  path = os.path.join(workdir, "selections", key)
  if os.path.exists(path + ".npz") and os.path.exists(path + ".json"):
    return cache.load_npz(path + ".npz")["indices"], cache.read_json(path + ".json"), key
  t0 = time.time()
  res = skmm_jax.select(rows, int(n), method=method, seed=int(seed), labels=labels, **options)
  diag = {k: v for k, v in res.diagnostics.items() if isinstance(v, (int, float, str, bool))}
  diag["select_time_s"] = time.time() - t0
  cache.atomic_save_npz(path + ".npz", indices=res.indices)
  cache.atomic_write_json(path + ".json", diag)
  return res.indices, diag, key


def train_stage(setting, ds: Datasets, feats, bundle, indices, tcfg: training.TrainConfig,
                run_dir, mesh=None) -> training.TrainResult:
  """Trains on S with the setting's model and evaluates (val selection, one test pass)."""
  c = ds.num_classes
  nc = c if ds.task == "classification" else None
  if setting == "lp":
    tr, va, te = (training.Split(f, sp.y) for f, sp in zip(feats, (ds.train, ds.val, ds.test)))
    return training.linear_probe(tr, indices, va, te, tcfg, num_classes=nc, workdir=run_dir,
                                 mesh=mesh)
  if setting == "ft1":
    tr, va, te = (training.Split(f, sp.y) for f, sp in zip(feats, (ds.train, ds.val, ds.test)))
    head = bundle.variables["params"]["classifier"]
    return training.train_head(tr, indices, va, te, tcfg, num_classes=nc,
                               init_params={k: np.asarray(v) for k, v in head.items()},
                               workdir=run_dir, mesh=mesh)
  from flax import traverse_util
  from skmm_jax import models
  sel, rest = models.split_params(bundle.variables["params"], bundle.subset("ft2"))
  collections = {k: v for k, v in bundle.variables.items() if k != "params"}
  return training.fit(ft2_predict_fn(bundle), traverse_util.unflatten_dict(sel), ds.train, indices,
                      ds.val, ds.test, tcfg, num_classes=nc, workdir=run_dir, mesh=mesh,
                      frozen={"rest": traverse_util.unflatten_dict(rest),
                              "collections": collections})


# --------------------------------------------------------------------------- the driver


def _sweep(config, name, default):
  sw = config.get("sweep", None)
  v = sw.get(name, None) if sw is not None else None
  return list(default if v is None else v)


def method_label(method: str, m, c, multi_m: bool, multi_c: bool) -> str:
  """Table row label, e.g. "SkMM" or "SkMM m=64 c=0.8" in a sweep over m and c."""
  names = {"skmm": "SkMM", "skmm_v2": "SkMM-v2", "uniform": "Uniform", "herding": "Herding",
           "kcenter": "K-center", "adaptive": "Adaptive", "leverage": "Leverage",
           "ridge_leverage": "Ridge leverage"}
  label = names.get(method, method)
  if multi_m and m is not None:
    label += f" m={m}"
  if multi_c and method.startswith("skmm") and c is not None:
    label += f" c={c}"
  return label


def run(config, workdir: Optional[str] = None) -> List[Dict[str, Any]]:
  """Runs every (m, c, method, n, seed) of `config`; returns the records (also written).

  Args:
    config: an ml_collections ConfigDict (see `configs/*.py`).
    workdir: the work directory (default: $LABROOT/skmm/<config name>, else ./workdir).
  Returns:
    One record per run: method, label, n, seed, m, c, metrics (test_*, val_*), timing.
  """
  setting = config.setting
  validation.check_choice(setting, SETTINGS, "setting")
  workdir = workdir or default_workdir(config)
  os.makedirs(workdir, exist_ok=True)
  progress = bool(config.get("progress", True))
  if config.dataset in _DATASETS:
    ds = load_datasets(config)
    bundle = load_bundle(config, ds.num_classes)
  else:
    bundle = load_bundle(config, num_outputs(config))
    ds = load_datasets(config, bundle.preprocess)
  cache_root = config.get("cache_dir", None) or workdir
  feats = features_stage(ds, bundle, config, cache_root, progress) if setting != "ft2" else None
  # result.json caches a finished run, so no final checkpoint; time-based ones stay.
  tcfg = training.TrainConfig.from_config(dict(config.train.to_dict(), task=ds.task,
                                               progress=False, checkpoint_final=False)).validate()
  methods = list(config.methods)
  ns, seeds = _sweep(config, "n", [100]), _sweep(config, "seeds", [0])
  grad_feats = config.selection.features != "features"
  ms = _sweep(config, "m", [config.selection.get("m", None)])
  cs = _sweep(config, "c", [config.get("method_options", {}).get("skmm", {}).get("c", 0.8)])
  records: List[Dict[str, Any]] = []
  jobs = []
  for m in ms:
    for c in cs:
      for method in methods:
        if not method.startswith("skmm") and c != cs[0]:
          continue  # c is a SkMM option only
        if not grad_feats and not method.startswith("skmm") and m != ms[0]:
          continue  # on features, m is a SkMM option only
        if method == "uniform" and m != ms[0]:
          continue  # uniform never reads the rows: one run per (n, seed) whatever m is
        for n in ns:
          for seed in seeds:
            jobs.append((m, c, method, n, seed))
  from tqdm.auto import tqdm
  rows_cache: Dict[Any, Any] = {}
  for m, c, method, n, seed in tqdm(jobs, desc=f"{config.get('name', 'vision')}",
                                    disable=not progress):
    rkey = m if grad_feats else None
    if rkey not in rows_cache:
      rows_cache[rkey] = selection_rows(ds, bundle, config, cache_root, m, feats, progress)
    rows, rows_key = rows_cache[rkey]
    opts = dict(config.get("method_options", {}).get(method, {}))
    if method.startswith("skmm"):
      opts["c"] = c
      if not grad_feats:
        opts["m"] = m
      elif method == "skmm":
        opts["m"] = None  # rows are already sketched
    balanced = ds.task == "classification" and opts.get("rounding") == "class_balanced"
    idx, diag, sel_key = select_stage(rows, rows_key, method, n, seed, opts, cache_root,
                                      labels=ds.train.y if balanced else None)
    run_key = cache.fingerprint("train", sel_key, setting, dataclasses_dict(tcfg), _data_key(ds),
                                bundle.weights_fingerprint)
    run_dir = os.path.join(workdir, "runs", run_key)
    res_path = os.path.join(run_dir, "result.json")
    if os.path.exists(res_path):
      rec = cache.read_json(res_path)
    else:
      t0 = time.time()
      res = train_stage(setting, ds, feats, bundle, idx, dataclasses_replace(tcfg, seed=seed),
                        run_dir)
      rec = {"method": method, "label": method_label(method, m, c, len(ms) > 1, len(cs) > 1),
             "n": int(n), "seed": int(seed), "m": m, "c": c if method.startswith("skmm") else None,
             "setting": setting, "best_epoch": res.best_epoch, "train_time_s": time.time() - t0,
             **{f"val_{k}": v for k, v in res.val.items()},
             **{f"test_{k}": v for k, v in res.test.items()},
             **{f"sel_{k}": v for k, v in diag.items()}}
      cache.atomic_write_json(res_path, rec)
    # The label depends on this sweep (several m or c?), not on the run that cached the result.
    rec = dict(rec, label=method_label(method, m, c, len(ms) > 1, len(cs) > 1))
    records.append(rec)
  refs = {}
  if config.get("full_reference", False):
    full = full_pool_record(setting, ds, feats, bundle, tcfg, workdir)
    refs = {f"Full pool (n={full['n']})": full}
  paths = write_report(records, workdir, ds.task, config.get("name", "vision"), refs)
  for k, p in paths.items():
    if k.endswith("_md"):
      with open(p) as f:
        print(f"{config.get('name', 'vision')} ({setting}): test {k[:-3]}\n{f.read()}", flush=True)
  return records


def dataclasses_dict(cfg) -> dict:
  import dataclasses
  return dataclasses.asdict(cfg)


def dataclasses_replace(cfg, **kw):
  import dataclasses
  return dataclasses.replace(cfg, **kw)


def default_workdir(config) -> str:
  """$LABROOT/skmm/<name> when LABROOT is set (the authors' convention), else ./workdir/<name>."""
  root = os.environ.get("LABROOT")
  name = config.get("name", "vision")
  return os.path.join(root, "skmm", name) if root else os.path.join("workdir", name)


def default_data_dir() -> Optional[str]:
  """$DATAROOT when set (the authors' convention), else None (the loader's default)."""
  return os.environ.get("DATAROOT") or None


def full_pool_record(setting, ds: Datasets, feats, bundle, tcfg, workdir) -> Dict[str, Any]:
  """The reference run trained on the whole pool (cached like the others)."""
  n = len(ds.train)
  key = cache.fingerprint("full", setting, dataclasses_dict(tcfg), _data_key(ds),
                          bundle.weights_fingerprint)
  run_dir = os.path.join(workdir, "runs", key)
  path = os.path.join(run_dir, "result.json")
  if os.path.exists(path):
    return cache.read_json(path)
  res = train_stage(setting, ds, feats, bundle, np.arange(n), tcfg, run_dir)
  rec = {"method": "full", "n": n, "setting": setting, "best_epoch": res.best_epoch,
         **{f"test_{k}": v for k, v in res.test.items()}}
  cache.atomic_write_json(path, rec)
  return rec


def write_report(records, workdir: str, task: str, name: str,
                 references: Optional[Dict[str, Dict[str, Any]]] = None) -> Dict[str, str]:
  """results.jsonl, a mean +- std table per test metric (markdown/CSV/LaTeX) and a plot.

  `references` are {label: record} drawn as constant rows / dashed lines (e.g. the full pool).
  """
  from skmm_jax import reporting
  cache.atomic_write_text(os.path.join(workdir, "results.jsonl"),
                          "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
  out = {}
  metrics = ("accuracy", "macro_f1") if task == "classification" else ("mae",)
  for met in metrics:
    refs = {k: r[f"test_{met}"] for k, r in (references or {}).items()}
    summ = reporting.summarize(records, f"test_{met}", row="label", col="n", references=refs)
    lower = met == "mae"
    out.update({f"{met}_{k}": v for k, v in reporting.write_tables(
        summ, workdir, stem=f"{name}_{met}", lower_is_better=lower, fmt="{:.4f}").items()})
    out[f"{met}_png"] = reporting.plot(summ, os.path.join(workdir, f"{name}_{met}.png"),
                                       ylabel=f"test {met}", logy=False, title=name)
  return out


# --------------------------------------------------------------------------- configs

PAPER_METHODS = ("skmm", "uniform", "herding", "kcenter", "adaptive", "leverage", "ridge_leverage")
PAPER_N = (500, 1000, 1500, 2000, 2500, 3000, 3500, 4000)
PAPER_SEEDS = (0, 1, 2, 3, 4)
PAPER_M = (32, 64, 128, 256, 512)
PAPER_C = (0.6, 0.7, 0.8, 0.9)


def base_config(*, name: str, dataset: str, backbone: str, setting: str, train_setting: str,
                task: str = "classification", features: str = "features", m: Optional[int] = None,
                arg: str = ""):
  """The ConfigDict of one paper experiment (spec section 5); `configs/*.py` are thin wrappers.

  Args:
    name: experiment name (work directory and table names).
    dataset: "cifar10", "cars196" or "utkface" (loaded by `skmm_jax.data`).
    backbone: "resnet18" or "clip_vit_b32".
    setting: "lp", "ft1" or "ft2".
    train_setting: key of `training.PAPER_DEFAULTS` (learning rate, batch size, epochs).
    task: "classification" or "regression".
    features: selection features: "features", "head_grad" or "grad" (sketched FT-2 gradients).
    m: the sketch dimension of gradient features (None for "features").
    arg: "" (the paper's grid at the default m and c), "sweep" (also every m and c of the
      paper), or "runlocal" (mock data, a tiny random backbone, one epoch: the tests).
  """
  import ml_collections
  c = ml_collections.ConfigDict()
  c.name = name
  c.pipeline = "vision"
  c.dataset = dataset
  c.data_dir = default_data_dir()
  c.val_fraction = 0.1
  c.split_seed = 0
  c.backbone = backbone
  c.weights = None
  c.model_seed = 0
  c.task = task
  c.setting = setting
  c.progress = True
  c.cache_dir = ""           # "" = the work directory (stores/ and selections/ go there)
  c.full_reference = False   # also train on the whole pool (a reference row in the tables)
  c.selection = ml_collections.ConfigDict(dict(
      features=features, m=m, target="random", backend="gaussian", sketch_seed=0, batch_size=64,
      gamma_cache="auto"))
  c.train = ml_collections.ConfigDict(
      {k: v for k, v in training.PAPER_DEFAULTS[train_setting].items() if k != "task"})
  c.train.eval_every = 1
  c.methods = PAPER_METHODS
  c.method_options = ml_collections.ConfigDict(dict(skmm=dict(c=0.8, iters=2000)))
  c.sweep = ml_collections.ConfigDict(dict(
      n=PAPER_N, seeds=PAPER_SEEDS, m=None if features == "features" else (m,), c=(0.8,)))
  c.mock = ml_collections.ConfigDict(dict(n_train=48, n_val=16, n_test=16, image_size=32,
                                          num_classes=4, seed=0))
  if arg == "sweep":
    c.sweep.m = PAPER_M
    c.sweep.c = PAPER_C
  elif arg == "runlocal":
    c.dataset = "mock"
    c.backbone = {"resnet18": "resnet_tiny", "clip_vit_b32": "clip_tiny"}.get(backbone, backbone)
    c.progress = False
    c.train.epochs = 1
    c.train.batch_size = 16
    c.methods = ("skmm", "uniform")
    c.method_options.skmm.iters = 20
    c.selection.batch_size = 32
    c.sweep.n = (12,)
    c.sweep.seeds = (0,)
    if features != "features":
      c.selection.m = 8
      c.sweep.m = (8,)
    else:
      c.sweep.m = (None,)
  elif arg:
    raise validation.SkmmError(f"unknown config argument {arg!r}; use '', 'sweep' or 'runlocal'.")
  return c
