"""Result tables and plots."""
import csv
import io
import os

import numpy as np
import pytest

from skmm_jax import reporting
from skmm_jax.validation import SkmmError


def _records():
  recs = []
  for m, scale in (("SkMM (default)", 1.0), ("uniform", 3.0), ("k_center", 2.0)):
    for n in (48, 200, 80):
      for seed in range(3):
        recs.append({"method": m, "n": n, "seed": seed, "risk": scale / n * (1 + 0.1 * seed),
                     "accuracy": 1.0 - scale / n})
  recs.append({"method": "partial", "n": 48, "seed": 0, "risk": 1e-3, "accuracy": None})
  return recs


def test_summarize_mean_std_and_order():
  summ = reporting.summarize(_records(), "risk", references={"Full data": 1e-4})
  assert summ.methods == ["SkMM (default)", "uniform", "k_center", "partial"]
  assert summ.sizes == [48, 80, 200]
  vals = 3.0 / 80 * np.array([1.0, 1.1, 1.2])
  np.testing.assert_allclose(summ.mean[1, 1], vals.mean())
  np.testing.assert_allclose(summ.std[1, 1], vals.std())
  assert summ.count[0].tolist() == [3, 3, 3] and summ.count[3].tolist() == [1, 0, 0]
  assert np.isnan(summ.mean[3, 1])
  best = reporting.best_mask(summ, lower_is_better=True)
  assert best[:, 0].tolist() == [False, False, False, True]
  assert best[:, 2].tolist() == [True, False, False, False]
  # Records without the metric are skipped (here: accuracy None for "partial").
  acc = reporting.summarize(_records(), "accuracy")
  assert acc.methods == ["SkMM (default)", "uniform", "k_center"]
  assert reporting.best_mask(acc, lower_is_better=False)[:, 0].tolist() == [True, False, False]


def test_markdown_csv_latex(tmp_path):
  summ = reporting.summarize(_records(), "risk", references={"Full data (ridge)": 1e-4})
  md = reporting.to_markdown(summ)
  lines = md.strip().splitlines()
  assert lines[0] == "| risk \\ n | 48 | 80 | 200 |"
  assert lines[2].startswith("| SkMM (default) | 0.0229 ± 0.0017 | **0.0138 ± 0.00102** |")
  assert "| partial | **0.001 ± 0** | – | – |" in md
  assert lines[-1] == "| *Full data (ridge)* | 0.0001 | 0.0001 | 0.0001 |"
  rows = list(csv.DictReader(io.StringIO(reporting.to_csv(summ))))
  assert rows[0]["method"] == "SkMM (default)" and rows[0]["n"] == "48"
  assert float(rows[0]["risk_mean"]) == pytest.approx(summ.mean[0, 0], rel=1e-15)
  assert rows[-1] == {"method": "Full data (ridge)", "n": "", "risk_mean": "0.0001", "risk_std": "",
                      "count": ""}
  assert len(rows) == 3 * 3 + 1 + 1
  tex = reporting.to_latex(summ, caption="Risk 100% of n", label="tab:x")
  assert r"\toprule" in tex and r"\bottomrule" in tex and r"\label{tab:x}" in tex
  assert r"Risk 100\% of n" in tex and r"k\_center" in tex
  assert r"\textbf{1.38e-02 $\pm$ 1.02e-03}" in tex
  assert r"\textit{Full data (ridge)}" in tex
  # Higher-is-better bolds the maximum.
  acc = reporting.summarize(_records(), "accuracy")
  assert "**0.979 ± 0**" in reporting.to_markdown(acc, lower_is_better=False)
  paths = reporting.write_tables(summ, str(tmp_path / "out"), stem="results")
  assert sorted(os.path.basename(p) for p in paths.values()) == ["results.csv", "results.md",
                                                                  "results.tex"]
  assert open(paths["md"]).read() == md
  assert not [f for f in os.listdir(tmp_path / "out") if f.startswith(".tmp")]


def test_plot_png(tmp_path):
  summ = reporting.summarize(_records(), "risk", references={"Full data (ridge)": 1e-4})
  path = reporting.plot(summ, str(tmp_path / "risk_vs_n.png"), ylabel="risk")
  with open(path, "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert os.path.getsize(path) > 10_000
  import matplotlib.image
  img = matplotlib.image.imread(path)
  assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500


def test_errors():
  with pytest.raises(SkmmError, match="no record holds the metric 'loss'"):
    reporting.summarize(_records(), "loss")
  with pytest.raises(SkmmError, match="no 'n' field"):
    reporting.summarize([{"method": "a", "risk": 1.0}], "risk")
