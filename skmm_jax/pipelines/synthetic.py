"""The synthetic GMM experiment (spec sections 4 and 6), resumable, importable from Colab.

`run(config, workdir)` draws the GMM data once, computes its float64 Gram once, then for
every seed, budget n and method row of the config selects n rows with `skmm_jax.select`,
scores the selection by the ridge risk of `skmm_jax.evaluation`, and appends one record
per run to `workdir/records.jsonl` (one JSON line, flushed and fsynced). A rerun skips the
records already there; a workdir that holds results of a different config is refused.
At the end it writes `results.md`, `results.csv`, `results.tex` and `risk_vs_n.png`, with
the full-data ridge risk as a reference row / line.

Config fields (see `configs/synthetic_gmm.py`):
  data: N, r, k, std_max, seed of `skmm_jax.data.synthetic.gmm`.
  seeds: selection seeds; sizes: the budgets n.
  methods: {key: {name, method, options}}: `name` is the table row, `method` a registered
    selector, `options` its keyword options.
  rows: comma-separated method keys to run, in table order.
  eval: alpha_min, alpha_max, num_alphas (the linspace grid) and folds.
  progress: show the progress bar (not part of the results' identity).

Example (Colab):
  >>> from configs import synthetic_gmm                      # doctest: +SKIP
  >>> from skmm_jax.pipelines import synthetic               # doctest: +SKIP
  >>> out = synthetic.run(synthetic_gmm.get_config(), "/tmp/gmm")  # doctest: +SKIP
  >>> print(out["table"])                                    # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import time
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from skmm_jax import cache
from skmm_jax import evaluation
from skmm_jax import reporting
from skmm_jax import selection
from skmm_jax import validation
from skmm_jax.data import synthetic

RECORDS = "records.jsonl"
CONFIG = "config.json"
FULL_DATA_ROW = "Full data (ridge)"
# Config fields that do not change any result (excluded from the fingerprint).
_PRESENTATION_FIELDS = ("progress",)


def _to_dict(config) -> Dict[str, Any]:
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def config_fingerprint(config) -> str:
  """The identity of a config's results: `cache.fingerprint` of every result-relevant field."""
  d = {k: v for k, v in _to_dict(config).items() if k not in _PRESENTATION_FIELDS}
  return cache.fingerprint(d)


def _diff_keys(a: Mapping, b: Mapping, prefix: str = "") -> List[str]:
  out = []
  for key in sorted(set(a) | set(b)):
    va, vb = a.get(key, "<missing>"), b.get(key, "<missing>")
    if isinstance(va, Mapping) and isinstance(vb, Mapping):
      out += _diff_keys(va, vb, prefix + key + ".")
    elif json.dumps(va, sort_keys=True, default=str) != json.dumps(vb, sort_keys=True, default=str):
      out.append(prefix + key)
  return out


def claim_workdir(config, workdir: str) -> str:
  """Stores `workdir/config.json`, or checks that the stored one is the same config.

  Returns:
    The config fingerprint.

  Raises:
    SkmmError: if `workdir` holds results of a different config (never overwritten), or
      records without a config.
  """
  fp = config_fingerprint(config)
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, CONFIG)
  current = json.loads(json.dumps({k: v for k, v in _to_dict(config).items()
                                  if k not in _PRESENTATION_FIELDS}, sort_keys=True, default=str))
  if os.path.exists(path):
    stored = cache.read_json(path)
    if stored.get("fingerprint") != fp:
      fields = _diff_keys(stored.get("config", {}), current)
      raise validation.SkmmError(
          f"workdir {workdir!r} holds results of a different config (stored fingerprint "
          f"{stored.get('fingerprint')}, this config {fp}; differing fields: "
          f"{', '.join(fields[:12]) or 'unknown'}). Results are never overwritten: choose "
          "another --workdir (or delete that directory yourself).")
    return fp
  if os.path.exists(os.path.join(workdir, RECORDS)):
    raise validation.SkmmError(
        f"workdir {workdir!r} holds {RECORDS} but no {CONFIG}, so its config is unknown; "
        "choose another --workdir.")
  cache.atomic_write_json(path, {"fingerprint": fp, "config": current})
  return fp


def load_records(workdir: str) -> List[Dict[str, Any]]:
  """Reads `records.jsonl`; a torn last line (interrupted write) is dropped and the file
  rewritten atomically without it."""
  path = os.path.join(workdir, RECORDS)
  if not os.path.exists(path):
    return []
  records, bad = [], 0
  with open(path) as f:
    for line in f:
      if not line.strip():
        continue
      try:
        records.append(json.loads(line))
      except json.JSONDecodeError:
        bad += 1
  if bad:
    cache.atomic_write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
  return records


def append_record(workdir: str, record: Mapping[str, Any]) -> None:
  """Appends one JSON line to `records.jsonl` and fsyncs it."""
  with open(os.path.join(workdir, RECORDS), "a") as f:
    f.write(json.dumps(record, sort_keys=True) + "\n")
    f.flush()
    os.fsync(f.fileno())


def record_key(rec: Mapping[str, Any]) -> Tuple[str, int, int]:
  return (str(rec["key"]), int(rec["n"]), int(rec["seed"]))


def method_rows(config) -> List[Tuple[str, Dict[str, Any]]]:
  """The (key, entry) pairs named by `config.rows`, validated, in table order."""
  methods = _to_dict(config.methods)
  keys = [k.strip() for k in str(config.rows).split(",") if k.strip()]
  if not keys:
    raise validation.SkmmError("config.rows names no method; e.g. --config.rows=skmm_default,uniform.")
  if len(set(keys)) != len(keys):
    raise validation.SkmmError(f"config.rows lists a method twice: {config.rows!r}.")
  out = []
  available = selection.available()
  for key in keys:
    validation.check_choice(key, methods, "method key in config.rows")
    entry = dict(methods[key])
    validation.check_choice(entry.get("method"), available, f"selector of config.methods.{key}")
    opts = {k: v for k, v in dict(entry.get("options") or {}).items() if v is not None}
    for opt in opts:
      validation.check_choice(opt, selection.options(entry["method"]),
                              f"option of config.methods.{key} (selector {entry['method']!r})")
    out.append((key, {"name": str(entry.get("name") or key), "method": entry["method"],
                      "options": opts}))
  return out


def _scalars(d: Mapping[str, Any]) -> Dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, (bool, np.bool_)):
      out[k] = bool(v)
    elif isinstance(v, (int, np.integer)):
      out[k] = int(v)
    elif isinstance(v, (float, np.floating)) or (np.ndim(v) == 0 and np.size(v) == 1
                                                 and hasattr(v, "dtype")):
      out[k] = float(v)
    elif isinstance(v, str):
      out[k] = v
  return out


def make_data(config):
  """The GMM data of `config.data`."""
  d = config.data
  return synthetic.gmm(int(d.N), int(d.r), int(d.k), float(d.std_max), int(d.seed))


def make_evaluator(config, data) -> evaluation.RidgeEvaluator:
  e = config.eval
  alphas = np.linspace(float(e.alpha_min), float(e.alpha_max), int(e.num_alphas))
  return evaluation.RidgeEvaluator.from_features(data.features, data.labels, alphas=alphas,
                                                 n_splits=int(e.folds))


def run_one(features, evaluator: evaluation.RidgeEvaluator, key: str, entry: Mapping[str, Any],
            n: int, seed: int, clusters=None, fold_order: str = "shuffled") -> Dict[str, Any]:
  """One selection + evaluation; returns its record (with the number of clusters hit)."""
  t0 = time.perf_counter()
  res = selection.select(features, n, method=entry["method"], seed=seed, **entry["options"])
  t_sel = time.perf_counter() - t0
  t0 = time.perf_counter()
  fit = evaluator.risk(evaluation.fold_order(res.indices, fold_order, seed))
  t_eval = time.perf_counter() - t0
  return {"key": key, "method": entry["name"], "selector": entry["method"], "n": int(n),
          "seed": int(seed), "risk": fit.risk, "alpha": fit.alpha, "time_s": t_sel,
          "eval_time_s": t_eval, "diagnostics": _scalars(res.diagnostics),
          **({} if clusters is None else
             {"clusters_covered": int(np.unique(np.asarray(clusters)[res.indices]).size)})}


def _flat(records):
  return [{**{k: v for k, v in r.items() if k != "diagnostics"}, **r.get("diagnostics", {})}
          for r in records]


def write_reports(records: List[Mapping[str, Any]], full_risk: float, workdir: str,
                  row_order: List[str]) -> Dict[str, Any]:
  """Writes the risk tables and plot, and a markdown summary of diagnostics and timings."""
  order = {name: i for i, name in enumerate(row_order)}
  records = sorted(records, key=lambda r: (order.get(r["method"], len(order)), r["n"], r["seed"]))
  flat = _flat(records)
  summ = reporting.summarize(flat, "risk", references={FULL_DATA_ROW: full_risk})
  paths = reporting.write_tables(summ, workdir, "results", lower_is_better=True, fmt="{:.3g}",
                                 caption="Ridge risk of the selection on the synthetic GMM data "
                                 "(mean ± std over seeds).")
  paths["png"] = reporting.plot(summ, os.path.join(workdir, "risk_vs_n.png"),
                                ylabel="risk (MSE over all N)", xlabel="coreset size n")
  table = reporting.to_markdown(summ, lower_is_better=True)
  extra = ["# Synthetic GMM: ridge risk\n", table]
  for metric, title in (("moment_gap", "moment gap ||Σ̃_S − Σ̃||_F / ||Σ̃||_F"),
                        ("trace_score", "trace score tr(Σ̃ Σ̃_S^+)"),
                        ("clusters_covered", "clusters covered by S (of k)"),
                        ("time_s", "selection wall time [s] (includes jit compilation on first use)")):
    try:
      s = reporting.summarize(flat, metric)
    except validation.SkmmError:
      continue
    extra += [f"\n## {title}\n", reporting.to_markdown(s, lower_is_better=metric != "clusters_covered")]
  paths["summary"] = os.path.join(workdir, "summary.md")
  cache.atomic_write_text(paths["summary"], "\n".join(extra))
  return {"summary": summ, "table": table, "paths": paths}


def run(config, workdir: str) -> Dict[str, Any]:
  """Runs (or resumes) the synthetic GMM experiment of `config` in `workdir`.

  Args:
    config: an `ml_collections.ConfigDict` as built by `configs/synthetic_gmm.py`.
    workdir: output directory (created); must be empty or hold this same config's results.

  Returns:
    {"records": all records, "full_data_risk": float, "summary": reporting.Summary,
     "table": markdown table, "paths": {md, csv, tex, png, summary}, "fingerprint": str,
     "computed": number of runs computed now (the rest were resumed)}.

  Raises:
    SkmmError: on a bad config or a workdir holding a different config.
  """
  from tqdm.auto import tqdm

  rows = method_rows(config)
  sizes = [validation.check_budget(int(n), int(config.data.N)) for n in config.sizes]
  seeds = [int(s) for s in config.seeds]
  if not sizes or not seeds:
    raise validation.SkmmError("config.sizes and config.seeds must be non-empty.")
  fp = claim_workdir(config, workdir)
  records = load_records(workdir)
  done = {record_key(r) for r in records}
  todo = [(seed, n, key, entry) for seed in seeds for n in sizes for key, entry in rows
          if (key, n, seed) not in done]
  data = make_data(config)
  evaluator = make_evaluator(config, data)
  fold = str(config.eval.get("fold_order", "shuffled"))
  full = evaluator.full_data(fold)  # the CV protocol of the selections
  features = data.features.astype(np.float32)
  bar = tqdm(total=len(seeds) * len(sizes) * len(rows), initial=len(done & {
      (k, n, s) for s in seeds for n in sizes for k, _ in rows}),
             desc="synthetic GMM", disable=not bool(config.get("progress", True)), unit="run")
  for seed, n, key, entry in todo:
    bar.set_postfix_str(f"{key} n={n} seed={seed}")
    rec = run_one(features, evaluator, key, entry, n, seed, data.clusters, fold)
    rec["config_fingerprint"] = fp
    append_record(workdir, rec)
    records.append(rec)
    bar.update(1)
  bar.close()
  wanted = {(k, n, s) for s in seeds for n in sizes for k, _ in rows}
  records = [r for r in records if record_key(r) in wanted]
  cache.atomic_write_json(os.path.join(workdir, "full_data.json"),
                          {"risk": full.risk, "alpha": full.alpha,
                           "cv_mse": full.cv_mse.tolist(), "config_fingerprint": fp})
  out = write_reports(records, full.risk, workdir, [e["name"] for _, e in rows])
  print(out["table"])
  out.update(records=records, full_data_risk=full.risk, fingerprint=fp, computed=len(todo))
  return out
