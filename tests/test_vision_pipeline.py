"""Every paper config end to end on mock data (tiny backbones, one epoch) through the launcher.

The configs run in this process through the launcher's own dispatch
(`experiments.main.load_pipeline(config.pipeline).run(config, workdir)`), so compiled work is
shared between them; one config also runs as a real `experiments/main.py` subprocess.
"""
import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
  sys.path.insert(0, ROOT)

CONFIGS = ["cifar10_resnet18_ft1", "cifar10_resnet18_ft2", "stanfordcars_resnet18_ft2",
           "cifar10_clip_lp", "stanfordcars_clip_lp", "utkface_clip_regression",
           "stanfordcars_clip_ft1", "stanfordcars_clip_ft2", "digits_transfer"]


def _config(name):
  cfg = importlib.import_module(f"configs.{name}").get_config("runlocal")
  cfg.lock()  # as the launcher's config_flags does
  return cfg


def _launch_in_process(name, workdir, **overrides):
  launcher = importlib.import_module("experiments.main")
  cfg = _config(name)
  with cfg.unlocked():
    cfg.update(overrides)
  return launcher.load_pipeline(cfg.pipeline).run(cfg, workdir)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
  """Content-keyed stores and selections shared by the configs (same mock data and backbone
  give the same keys), as a sweep would share them."""
  return str(tmp_path_factory.mktemp("cache"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_end_to_end_on_mock_data(name, tmp_path, shared_cache):
  workdir = str(tmp_path / name)
  records = _launch_in_process(name, workdir, cache_dir=shared_cache)
  cfg = _config(name)
  settings = cfg.settings if name == "digits_transfer" else (cfg.setting,)
  assert len(records) == len(settings) * len(cfg.methods) * len(cfg.sweep.n) * len(cfg.sweep.seeds)
  regression = cfg.task == "regression"
  for r in records:
    assert r["n"] == cfg.sweep.n[0] and r["best_epoch"] >= 1
    if regression:
      assert np.isfinite(r["test_mae"]) and r["test_mae"] > 0 and "val_mae" in r
    else:
      assert 0.0 <= r["test_accuracy"] <= 1.0 and 0.0 <= r["test_macro_f1"] <= 1.0
    assert np.isfinite(r["sel_moment_gap"])
  skmm = [r for r in records if r["method"] == "skmm"]
  assert skmm and all(r["sel_iters"] >= 1 for r in skmm)
  metric = "mae" if regression else "accuracy"
  for setting in settings:
    d = os.path.join(workdir, setting) if name == "digits_transfer" else workdir
    stem = f"{name}_{setting}" if name == "digits_transfer" else name
    with open(os.path.join(d, f"{stem}_{metric}.md")) as f:
      table = f.read()
    assert "SkMM" in table and "Uniform" in table
    assert os.path.getsize(os.path.join(d, f"{stem}_{metric}.png")) > 0
    with open(os.path.join(d, "results.jsonl")) as f:
      assert len(f.read().splitlines()) == len(records) // len(settings)


def test_rerun_reuses_every_stage_and_the_selection_is_cached(tmp_path):
  workdir = str(tmp_path / "ft2")
  first = _launch_in_process("cifar10_resnet18_ft2", workdir, full_reference=True)
  results = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(workdir) for f in fs
                   if f == "result.json")
  mtimes = [os.path.getmtime(p) for p in results]
  stores = sorted(os.listdir(os.path.join(workdir, "stores")))
  again = _launch_in_process("cifar10_resnet18_ft2", workdir, full_reference=True)
  assert again == first
  assert [os.path.getmtime(p) for p in results] == mtimes
  assert sorted(os.listdir(os.path.join(workdir, "stores"))) == stores
  assert len(stores) == 1  # one gradient sketch store, shared by every method and seed
  with open(os.path.join(workdir, "cifar10_resnet18_ft2_accuracy.md")) as f:
    assert "Full pool (n=48)" in f.read()


def test_real_loader_path_on_sklearn_digits(tmp_path):
  """The `skmm_jax.data.vision` loader path (host resize + crop to the backbone's input)."""
  recs = _launch_in_process("cifar10_resnet18_ft1", str(tmp_path), dataset="digits",
                            resize_on_device=False)
  assert len(recs) == 2 and all(0 <= r["test_accuracy"] <= 1 for r in recs)


def test_bad_config_values_are_clear_errors(tmp_path):
  from skmm_jax.pipelines import vision
  from skmm_jax.validation import SkmmError
  cfg = _config("cifar10_resnet18_ft1")
  with cfg.unlocked():
    cfg.setting = "ft3"
  with pytest.raises(SkmmError, match="unknown setting 'ft3'"):
    vision.run(cfg, str(tmp_path))
  cfg = _config("cifar10_resnet18_ft1")
  with cfg.unlocked():
    cfg.sweep.n = (1000,)
  with pytest.raises(SkmmError, match="exceeds the pool size"):
    vision.run(cfg, str(tmp_path))
  with pytest.raises(SkmmError, match="unknown config argument"):
    importlib.import_module("configs.cifar10_clip_lp").get_config("runlocl")


def test_dataroot_and_labroot_are_the_defaults(monkeypatch):
  from skmm_jax.pipelines import vision
  monkeypatch.setenv("DATAROOT", "/data/root")
  monkeypatch.setenv("LABROOT", "/lab/root")
  cfg = importlib.import_module("configs.stanfordcars_clip_ft2").get_config()
  assert cfg.data_dir == "/data/root"
  assert vision.default_workdir(cfg) == "/lab/root/skmm/stanfordcars_clip_ft2"
  assert cfg.train.learning_rate == 1e-2 and cfg.train.epochs == 50
  ft1 = importlib.import_module("configs.stanfordcars_clip_ft1").get_config()
  assert ft1.train.learning_rate == 0.1
  assert importlib.import_module("configs.cifar10_resnet18_ft1").get_config().train.epochs == 200
  monkeypatch.delenv("LABROOT")
  assert vision.default_workdir(cfg) == os.path.join("workdir", "stanfordcars_clip_ft2")


def test_real_launcher_subprocess(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  cmd = [sys.executable, os.path.join(ROOT, "experiments", "main.py"),
         f"--config={os.path.join(ROOT, 'configs', 'cifar10_resnet18_ft1.py')}:runlocal",
         f"--workdir={tmp_path}", "--config.sweep.seeds=(0,)"]
  proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(tmp_path / "results.jsonl") as f:
    recs = [json.loads(line) for line in f]
  assert {r["method"] for r in recs} == {"skmm", "uniform"}
  assert "SkMM" in proc.stdout  # the table is printed
