r"""Runs an experiment pipeline: `skmm_jax.pipelines.<config.pipeline>.run(config, workdir)`.

Usage (from the repository root):
  python experiments/main.py --config=configs/synthetic_gmm.py --workdir=/tmp/skmm/gmm
  python experiments/main.py --config=configs/synthetic_gmm.py:full --workdir=/tmp/skmm/gmm_full

Any config field can be overridden, e.g. `--config.seeds="(0,1)"`; an unknown field is
rejected by ml_collections, an unknown pipeline name by this launcher.
"""
import importlib
import os
import pkgutil
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

# Run from a checkout without installing the package.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

from skmm_jax import pipelines  # noqa: E402
from skmm_jax import validation  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (path[:variant]).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (results, records, resume state).")
flags.mark_flags_as_required(["config", "workdir"])


def available_pipelines():
  """Names of the modules in `skmm_jax.pipelines`."""
  return sorted(m.name for m in pkgutil.iter_modules(pipelines.__path__) if not m.name.startswith("_"))


def load_pipeline(name: str):
  """Imports `skmm_jax.pipelines.<name>`, with a clear error for an unknown name."""
  validation.check_choice(str(name), available_pipelines(), "pipeline (config.pipeline)")
  module = importlib.import_module(f"skmm_jax.pipelines.{name}")
  if not callable(getattr(module, "run", None)):
    raise validation.SkmmError(f"pipeline module skmm_jax.pipelines.{name} has no run(config, workdir).")
  return module


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  config = _CONFIG.value
  if "pipeline" not in config:
    raise validation.SkmmError("the config has no `pipeline` field naming skmm_jax.pipelines.<name>.")
  load_pipeline(config.pipeline).run(config, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main)
