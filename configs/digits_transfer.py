"""Offline transfer experiment: ResNet pretrained on digits 0-4, SkMM vs baselines on 5-9.

Launch (2 CPU cores, a few minutes):
  python experiments/main.py --config=configs/digits_transfer.py --workdir=/tmp/digits
Small variant (tests, seconds):
  python experiments/main.py --config=configs/digits_transfer.py:runlocal --workdir=/tmp/d
"""
import ml_collections


def get_config(arg: str = ""):
  c = ml_collections.ConfigDict()
  c.name = "digits_transfer"
  c.pipeline = "digits_transfer"
  c.dataset = "digits5to9"
  c.bundle_builder = "digits_pretrained"
  c.backbone = "digits_resnet"
  c.task = "classification"
  c.settings = ("ft1", "ft2")
  c.upsample = 4            # 8x8 digits -> 32x32
  c.split_seed = 0
  c.test_fraction = 0.3
  c.val_fraction = 0.15
  c.model_seed = 0
  c.head_seed = 0
  c.progress = True
  c.full_reference = True   # also train on the whole pool, shown as a reference row
  c.cache_dir = ""           # "" = the work directory (stores/ and selections/ go there)
  c.arch = ml_collections.ConfigDict(dict(depths=(1, 1), hidden_sizes=(16, 32), embedding_size=16))
  c.pretrain = ml_collections.ConfigDict(dict(
      optimizer="adam", learning_rate=3e-3, batch_size=64, epochs=15, seed=0))
  c.selection_by_setting = ml_collections.ConfigDict(dict(
      ft1=dict(features="features", m=None, sketch_seed=0, batch_size=128),
      ft2=dict(features="grad", m=64, target="random", backend="gaussian", sketch_seed=0,
               batch_size=128, gamma_cache="auto"),
  ))
  # The paper's optimiser (Adam, lr 1e-2); with |S| <= 512 an epoch is one step, so FT-1
  # gets 300 of them (after 100 the head was still improving: best epochs near the end).
  c.train_by_setting = ml_collections.ConfigDict(dict(
      ft1=dict(optimizer="adam", learning_rate=1e-2, batch_size=512, epochs=300, eval_every=5),
      ft2=dict(optimizer="adam", learning_rate=1e-2, batch_size=512, epochs=40, eval_every=2),
  ))
  c.methods = ("skmm", "uniform", "herding", "kcenter", "adaptive")
  c.method_options = ml_collections.ConfigDict(dict(skmm=dict(c=0.8, iters=1000)))
  c.m_by_setting = ml_collections.ConfigDict(dict(ft1=(None,), ft2=(64,)))
  c.sweep = ml_collections.ConfigDict(dict(n=(10, 20, 40, 80), seeds=(0, 1, 2, 3, 4), m=None,
                                           c=None))
  if arg == "runlocal":
    c.pretrain.epochs = 1
    c.train_by_setting.ft1.epochs = 1
    c.train_by_setting.ft2.epochs = 1
    c.selection_by_setting.ft2.m = 8
    c.m_by_setting.ft2 = (8,)
    c.methods = ("skmm", "uniform")
    c.method_options.skmm.iters = 20
    c.sweep.n = (10,)
    c.sweep.seeds = (0,)
    c.progress = False
    c.full_reference = False
    c.data_fraction = 0.2
  elif arg:
    raise ValueError(f"unknown config argument {arg!r}; use '' or 'runlocal'.")
  return c
