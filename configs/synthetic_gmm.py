r"""The synthetic GMM experiment (spec section 4): ridge risk of the selection vs n.

Launch from the repository root:

  # default: paper data (N=3000, r=5000, k=10), n in (48, 80, 200, 800), 3 seeds
  python experiments/main.py --config=configs/synthetic_gmm.py --workdir=/tmp/skmm/gmm_default

  # the paper's grid: n in (48, 64, 80, 120, 200, 400, 800, 1600), 8 seeds
  python experiments/main.py --config=configs/synthetic_gmm.py:full --workdir=/tmp/skmm/gmm_full

  # tiny smoke test (seconds; used by the tests)
  python experiments/main.py --config=configs/synthetic_gmm.py:runlocal --workdir=/tmp/skmm/gmm_local

  # override any field, e.g. only two rows and the Adam solver for the authors' row:
  python experiments/main.py --config=configs/synthetic_gmm.py \
    --config.rows=skmm_authors,uniform --config.methods.skmm_authors.options.solver=adam \
    --config.methods.skmm_authors.options.lr=1e-5 --workdir=/tmp/skmm/gmm_adam

A rerun with the same workdir resumes (finished runs are skipped); a workdir holding a
different config is refused. Outputs in the workdir: records.jsonl, config.json,
results.{md,csv,tex}, risk_vs_n.png, summary.md (diagnostics and timings), full_data.json.

From Python / Colab:

  from configs import synthetic_gmm
  from skmm_jax.pipelines import synthetic
  out = synthetic.run(synthetic_gmm.get_config("full"), "/tmp/skmm/gmm_full")
"""
import ml_collections
from ml_collections import config_dict

VARIANTS = ("default", "full", "runlocal")


def _skmm(name, k_ref, init, rounding, iters):
  return ml_collections.ConfigDict(dict(
      name=name, method="skmm",
      options=ml_collections.ConfigDict(dict(
          m=k_ref * 4, c=0.999, solver="pgd", iters=iters, lr=config_dict.placeholder(float),
          init=init, rounding=rounding))))


def _baseline(name, method, **options):
  return ml_collections.ConfigDict(dict(name=name, method=method,
                                        options=ml_collections.ConfigDict(options)))


def get_config(arg=None):
  """Returns the config of variant `arg` in {None/"default", "full", "runlocal"}."""
  variant = arg or "default"
  if variant not in VARIANTS:
    raise ValueError(f"unknown synthetic_gmm variant {variant!r}; choose one of {VARIANTS}.")
  config = ml_collections.ConfigDict()
  config.pipeline = "synthetic"
  config.variant = variant

  k = config_dict.FieldReference(10)
  config.data = ml_collections.ConfigDict(dict(N=3000, r=5000, k=k, std_max=0.04, seed=0))
  config.seeds = (0, 1, 2)
  config.sizes = (48, 80, 200, 800)
  iters = config_dict.FieldReference(1000)
  iters_adam = config_dict.FieldReference(10000)

  config.methods = ml_collections.ConfigDict()
  # The project default (init adaptive, rounding topk, FISTA) and the authors' setting
  # (init random, rounding sample, Adam lr 1e-5 for 1e4 iterations), plus the authors'
  # init and rounding with the FISTA solver, to separate the solver from the init.
  config.methods.skmm_default = _skmm("SkMM (default: adaptive init, topk)", k, "adaptive",
                                      "topk", iters)
  config.methods.skmm_authors = _skmm("SkMM (authors: random init, sample, Adam)", k,
                                      "random", "sample", iters_adam)
  config.methods.skmm_authors.options.solver = "adam"
  config.methods.skmm_authors.options.lr = 1e-5
  config.methods.skmm_random_pgd = _skmm("SkMM (random init, sample, FISTA)", k, "random",
                                         "sample", iters)
  config.methods.uniform = _baseline("Uniform", "uniform")
  config.methods.herding = _baseline("Herding", "herding")
  config.methods.kcenter = _baseline("K-center greedy", "kcenter")
  config.methods.adaptive = _baseline("Adaptive sampling", "adaptive")
  config.methods.leverage = _baseline("Truncated leverage (rank k)", "leverage", rank=k)
  # alpha None: the selector's default tr(X^T X)/n (statistical dimension about n).
  config.methods.ridge_leverage = _baseline("Ridge leverage", "ridge_leverage",
                                            alpha=config_dict.placeholder(float))
  # Rows to run, in table order (a subset may be given on the command line).
  config.rows = ("skmm_default,skmm_authors,skmm_random_pgd,uniform,herding,kcenter,adaptive,"
                 "leverage,ridge_leverage")

  # fold_order: the unshuffled 2-fold CV sees S in a seed-derived random order ("shuffled"),
  # as the authors' code does, or sorted ("sorted": contiguous folds hold disjoint clusters).
  config.eval = ml_collections.ConfigDict(dict(alpha_min=1e-3, alpha_max=1e2, num_alphas=10,
                                               fold_order="shuffled",
                                               folds=2))
  config.progress = True

  if variant == "full":
    config.seeds = tuple(range(8))
    config.sizes = (48, 64, 80, 120, 200, 400, 800, 1600)
  elif variant == "runlocal":
    config.data.N = 240
    config.data.r = 120
    k.set(4)
    iters.set(40)
    iters_adam.set(40)
    config.seeds = (0,)
    config.sizes = (12, 40)
  return config
