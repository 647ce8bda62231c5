"""Result tables (markdown, CSV, LaTeX) and plots from experiment records.

An experiment writes one record per run, a flat dict such as
`{"method": "SkMM", "n": 48, "seed": 0, "risk": 3e-3, "time_s": 1.2}`. `summarize` groups
the records by (row, column) keys, by default (method, n), into mean and standard deviation
of one metric over seeds; the writers render the summary with the best mean per column in
bold (lower or higher is better, per metric), and `plot` draws metric vs column on log-log
axes with std error bars. Constant reference values (e.g. the full-data risk) can be added
as extra rows / dashed lines; they are never bolded.

Example:
  >>> from skmm_jax import reporting
  >>> recs = [{"method": m, "n": n, "seed": s, "risk": (1.0 if m == "a" else 2.0) / n + s}
  ...         for m in ("a", "b") for n in (10, 20) for s in (0, 1)]
  >>> summ = reporting.summarize(recs, "risk")
  >>> summ.methods, summ.sizes, summ.mean.shape
  (['a', 'b'], [10, 20], (2, 2))
  >>> print(reporting.to_markdown(summ, fmt="{:.2f}").splitlines()[2])
  | a | **0.60 ± 0.50** | **0.55 ± 0.50** |
"""
from __future__ import annotations

import csv
import io
import os
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence

import numpy as np

from skmm_jax import cache
from skmm_jax import validation


class Summary(NamedTuple):
  """Mean and std of one metric per (row, column).

  Attributes:
    metric: the metric's record key, e.g. "risk" or "accuracy".
    methods: row labels, in order of first appearance in the records.
    sizes: column labels (sorted), e.g. the budgets n.
    mean: (len(methods), len(sizes)) float64, NaN where no record exists.
    std: same shape; standard deviation over the records (seeds), ddof as requested.
    count: same shape, int: number of records aggregated.
    references: {label: value} constant reference rows (e.g. full-data risk).
    col_name: the column key ("n").
  """
  metric: str
  methods: List[str]
  sizes: List[Any]
  mean: np.ndarray
  std: np.ndarray
  count: np.ndarray
  references: Dict[str, float]
  col_name: str = "n"


def summarize(records: Iterable[Mapping[str, Any]], metric: str = "risk", row: str = "method",
              col: str = "n", ddof: int = 0,
              references: Optional[Mapping[str, float]] = None) -> Summary:
  """Groups records by (row, col) and reduces `metric` to mean and std.

  Args:
    records: dicts holding at least `row`, `col` and `metric`. Records whose metric is
      missing or None are skipped (e.g. an accuracy table over mixed records).
    metric: the key to aggregate.
    row: the key of the table rows (method names).
    col: the key of the table columns (budgets).
    ddof: delta degrees of freedom of the std (0: numpy's default, as the authors' plots).
    references: optional {label: value} constant rows (not aggregated, never bolded).

  Returns:
    A `Summary`.

  Raises:
    SkmmError: if no record holds the metric, or a record lacks `row` or `col`.
  """
  groups: Dict[Any, Dict[Any, List[float]]] = {}
  for i, rec in enumerate(records):
    if rec.get(metric) is None:
      continue
    for key in (row, col):
      if key not in rec:
        raise validation.SkmmError(f"record {i} has no {key!r} field: {dict(rec)}.")
    groups.setdefault(rec[row], {}).setdefault(rec[col], []).append(float(rec[metric]))
  if not groups:
    raise validation.SkmmError(f"no record holds the metric {metric!r}.")
  methods = list(groups)
  sizes = sorted({c for g in groups.values() for c in g})
  shape = (len(methods), len(sizes))
  mean, std = np.full(shape, np.nan), np.full(shape, np.nan)
  count = np.zeros(shape, np.int64)
  for i, m in enumerate(methods):
    for j, c in enumerate(sizes):
      vals = np.asarray(groups[m].get(c, []), np.float64)
      count[i, j] = vals.size
      if vals.size:
        mean[i, j] = vals.mean()
        std[i, j] = vals.std(ddof=ddof) if vals.size > ddof else np.nan
  refs = {str(k): float(v) for k, v in (references or {}).items()}
  return Summary(metric, [str(m) for m in methods], sizes, mean, std, count, refs, col)


def best_mask(summary: Summary, lower_is_better: bool = True) -> np.ndarray:
  """(methods, sizes) bool: True where the mean is the best of its column (ties all True)."""
  mean = summary.mean
  filled = np.where(np.isnan(mean), np.inf if lower_is_better else -np.inf, mean)
  best = filled.min(axis=0) if lower_is_better else filled.max(axis=0)
  return (filled == best[None, :]) & ~np.isnan(mean)


def _cells(summary: Summary, fmt: str, pm: str) -> List[List[str]]:
  out = []
  for i in range(len(summary.methods)):
    row = []
    for j in range(len(summary.sizes)):
      m, s = summary.mean[i, j], summary.std[i, j]
      if np.isnan(m):
        row.append("–")
      elif np.isnan(s):
        row.append(fmt.format(m))
      else:
        row.append(f"{fmt.format(m)}{pm}{fmt.format(s)}")
    out.append(row)
  return out


def to_markdown(summary: Summary, lower_is_better: bool = True, fmt: str = "{:.3g}") -> str:
  """A markdown table: rows methods, columns sizes, cells "mean ± std", best in bold.

  Args:
    summary: from `summarize`.
    lower_is_better: which mean is bolded (risk, MAE: True; accuracy: False).
    fmt: the number format of mean and std.

  Returns:
    The table as a string (ends with a newline).
  """
  best = best_mask(summary, lower_is_better)
  header = [f"{summary.metric} \\ {summary.col_name}"] + [str(c) for c in summary.sizes]
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
  for i, (name, cells) in enumerate(zip(summary.methods, _cells(summary, fmt, " ± "))):
    cells = [f"**{c}**" if best[i, j] else c for j, c in enumerate(cells)]
    lines.append("| " + " | ".join([name] + cells) + " |")
  for name, v in summary.references.items():
    lines.append("| " + " | ".join([f"*{name}*"] + [fmt.format(v)] * len(summary.sizes)) + " |")
  return "\n".join(lines) + "\n"


def to_csv(summary: Summary) -> str:
  """Long-format CSV: method, <col>, <metric>_mean, <metric>_std, count.

  Reference rows have an empty column value and count.
  """
  buf = io.StringIO()
  w = csv.writer(buf, lineterminator="\n")
  w.writerow(["method", summary.col_name, f"{summary.metric}_mean", f"{summary.metric}_std", "count"])
  for i, name in enumerate(summary.methods):
    for j, c in enumerate(summary.sizes):
      if summary.count[i, j]:
        w.writerow([name, c, repr(float(summary.mean[i, j])), repr(float(summary.std[i, j])),
                    int(summary.count[i, j])])
  for name, v in summary.references.items():
    w.writerow([name, "", repr(float(v)), "", ""])
  return buf.getvalue()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
  """Escapes LaTeX's special characters in a label."""
  return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(summary: Summary, lower_is_better: bool = True, fmt: str = "{:.2e}",
             caption: Optional[str] = None, label: Optional[str] = None) -> str:
  """A booktabs LaTeX table (needs \\usepackage{booktabs}); best mean per column in bold."""
  best = best_mask(summary, lower_is_better)
  ncol = len(summary.sizes)
  lines = [r"\begin{table}[t]", r"\centering", r"\small"]
  if caption:
    lines.append(r"\caption{" + latex_escape(caption) + "}")
  if label:
    lines.append(r"\label{" + label + "}")
  lines += [r"\begin{tabular}{l" + "c" * ncol + "}", r"\toprule",
            latex_escape(f"{summary.metric} / {summary.col_name}") + " & "
            + " & ".join(latex_escape(c) for c in summary.sizes) + r" \\", r"\midrule"]
  for i, (name, cells) in enumerate(zip(summary.methods, _cells(summary, fmt, " $\\pm$ "))):
    cells = [c.replace("–", "--") for c in cells]
    cells = [r"\textbf{" + c + "}" if best[i, j] else c for j, c in enumerate(cells)]
    lines.append(" & ".join([latex_escape(name)] + cells) + r" \\")
  if summary.references:
    lines.append(r"\midrule")
    for name, v in summary.references.items():
      lines.append(" & ".join([r"\textit{" + latex_escape(name) + "}"] + [fmt.format(v)] * ncol)
                   + r" \\")
  lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
  return "\n".join(lines) + "\n"


def write_tables(summary: Summary, directory: str, stem: str = "results",
                 lower_is_better: bool = True, fmt: str = "{:.3g}",
                 caption: Optional[str] = None) -> Dict[str, str]:
  """Writes `<stem>.md`, `<stem>.csv` and `<stem>.tex` atomically; returns their paths."""
  paths = {ext: os.path.join(directory, f"{stem}.{ext}") for ext in ("md", "csv", "tex")}
  cache.atomic_write_text(paths["md"], to_markdown(summary, lower_is_better, fmt))
  cache.atomic_write_text(paths["csv"], to_csv(summary))
  cache.atomic_write_text(paths["tex"], to_latex(summary, lower_is_better, caption=caption))
  return paths


_MARKERS = "osD^v<>pP*Xh"


def plot(summary: Summary, path: str, ylabel: Optional[str] = None, xlabel: Optional[str] = None,
         logx: bool = True, logy: bool = True, highlight: Sequence[str] = ("SkMM",),
         title: Optional[str] = None) -> str:
  """Plots mean ± std of the metric vs the column key, one line per method (PNG, Agg).

  Args:
    summary: from `summarize`.
    path: the output PNG path (written atomically).
    ylabel, xlabel: axis labels (default: the metric and column names).
    logx, logy: log scales (a std bar reaching below zero is clipped at the axis on log y).
    highlight: rows whose name contains one of these substrings are drawn thicker.
    title: optional title.

  Returns:
    `path`.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  style = {"font.family": "serif", "font.size": 9, "axes.labelsize": 10, "legend.fontsize": 7,
           "axes.spines.top": False, "axes.spines.right": False}
  with plt.rc_context(style):
    fig, ax = plt.subplots(figsize=(5.0, 3.6), dpi=150)
    x = np.asarray(summary.sizes, np.float64)
    for i, name in enumerate(summary.methods):
      ok = ~np.isnan(summary.mean[i])
      if not ok.any():
        continue
      strong = any(h in name for h in highlight)
      std = np.nan_to_num(summary.std[i][ok])
      ax.errorbar(x[ok], summary.mean[i][ok], yerr=std, label=name, marker=_MARKERS[i % len(_MARKERS)],
                  markersize=4 if not strong else 5, linewidth=2.0 if strong else 1.0,
                  capsize=2, elinewidth=0.8, zorder=3 if strong else 2)
    for name, v in summary.references.items():
      ax.axhline(v, color="0.4", linestyle="--", linewidth=1.0, label=name, zorder=1)
    if logx:
      ax.set_xscale("log")
      ax.set_xticks(x)
      ax.set_xticklabels([str(c) for c in summary.sizes])
      ax.minorticks_off()
    if logy:
      ax.set_yscale("log", nonpositive="clip")
    ax.set_xlabel(xlabel or summary.col_name)
    ax.set_ylabel(ylabel or summary.metric)
    if title:
      ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3, linewidth=0.5)
    ax.legend(frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    try:
      cache._atomic_write(path, lambda f: fig.savefig(f, format="png", bbox_inches="tight"))
    finally:
      plt.close(fig)
  return path

