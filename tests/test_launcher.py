"""The real launcher runs the synthetic pipeline, resumes, and refuses a different config."""
import json
import os
import subprocess
import sys

import pytest

from configs import synthetic_gmm
from skmm_jax.pipelines import synthetic
from skmm_jax.validation import SkmmError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "synthetic_gmm.py")


def _launch(workdir, *extra):
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "main.py"),
         f"--config={CONFIG}:runlocal", f"--workdir={workdir}", *extra]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def _read(path):
  with open(path) as f:
    return f.read()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("gmm"))
  proc = _launch(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir, proc


def test_launcher_writes_table_and_plot(finished):
  workdir, proc = finished
  for name in ("results.md", "results.csv", "results.tex", "risk_vs_n.png", "records.jsonl",
               "config.json", "summary.md", "full_data.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  md = _read(os.path.join(workdir, "results.md"))
  assert "| risk \\ n | 12 | 40 |" in md
  assert "| SkMM (default: adaptive init, topk) |" in md and "| *Full data (ridge)* |" in md
  assert md.strip() in proc.stdout  # the table is printed
  records = [json.loads(line) for line in _read(os.path.join(workdir, "records.jsonl")).splitlines()]
  n_rows = len(synthetic_gmm.get_config("runlocal").rows.split(","))
  assert len(records) == n_rows * 2 * 1  # rows x sizes x seeds
  keys = [k for k, _ in synthetic.method_rows(synthetic_gmm.get_config("runlocal"))]
  assert len(keys) == n_rows and {r["key"] for r in records} == set(keys)
  for r in records:
    assert r["risk"] > 0 and r["time_s"] > 0 and "moment_gap" in r["diagnostics"]
  skmm = [r for r in records if r["selector"] == "skmm"]
  assert all(r["diagnostics"]["sketch_dim"] == 16 for r in skmm)  # m = 4 k with k = 4
  with open(os.path.join(workdir, "risk_vs_n.png"), "rb") as f:
    assert f.read(4) == b"\x89PNG"


def test_rerun_resumes_without_recomputing(finished):
  workdir, _ = finished
  before = _read(os.path.join(workdir, "records.jsonl"))
  os.remove(os.path.join(workdir, "results.md"))
  proc = _launch(workdir)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert _read(os.path.join(workdir, "records.jsonl")) == before
  assert os.path.exists(os.path.join(workdir, "results.md"))
  total = 2 * len(synthetic_gmm.get_config("runlocal").rows.split(","))
  assert f"{total}/{total}" in proc.stderr  # the progress bar starts complete


def test_different_config_in_same_workdir_fails_clearly(finished):
  workdir, _ = finished
  before = _read(os.path.join(workdir, "records.jsonl"))
  proc = _launch(workdir, "--config.seeds=(1,)")
  assert proc.returncode != 0
  assert "holds results of a different config" in proc.stderr
  assert "seeds" in proc.stderr and "another --workdir" in proc.stderr
  assert _read(os.path.join(workdir, "records.jsonl")) == before


def test_unknown_pipeline_and_field(tmp_path):
  proc = _launch(str(tmp_path), "--config.pipeline=synthetik")
  assert proc.returncode != 0
  assert "unknown pipeline (config.pipeline) 'synthetik'" in proc.stderr
  assert "Did you mean 'synthetic'?" in proc.stderr
  proc = _launch(str(tmp_path), "--config.sezes=(10,)")
  assert proc.returncode != 0 and "sezes" in proc.stderr


def test_torn_record_line_is_dropped(tmp_path):
  workdir = str(tmp_path)
  good = {"key": "uniform", "n": 12, "seed": 0, "risk": 1.0}
  with open(os.path.join(workdir, synthetic.RECORDS), "w") as f:
    f.write(json.dumps(good) + "\n" + '{"key": "unif')
  assert synthetic.load_records(workdir) == [good]
  assert _read(os.path.join(workdir, synthetic.RECORDS)) == json.dumps(good, sort_keys=True) + "\n"


def test_bad_rows_and_orphan_records(tmp_path):
  from configs import synthetic_gmm
  config = synthetic_gmm.get_config("runlocal")
  config.rows = "skmm_default,unifrom"
  with pytest.raises(SkmmError, match="Did you mean 'uniform'"):
    synthetic.run(config, str(tmp_path / "a"))
  config = synthetic_gmm.get_config("runlocal")
  config.methods.uniform.options.rnak = 3
  with pytest.raises(SkmmError, match="option of config.methods.uniform"):
    synthetic.method_rows(config)
  os.makedirs(tmp_path / "b")
  (tmp_path / "b" / synthetic.RECORDS).write_text("{}\n")
  with pytest.raises(SkmmError, match="no config.json"):
    synthetic.claim_workdir(synthetic_gmm.get_config("runlocal"), str(tmp_path / "b"))
