"""Pipeline: backbone features for every example of every split of one dataset, cached.

`run(config, workdir)` loads the backbone (`skmm_jax.models.load_bundle`) and each split
(`skmm_jax.data.vision.load_split`), and calls `skmm_jax.features.extract_features`, which
stores one npz per split under a key of (backbone, weights fingerprint, dataset, split,
preprocessing) and resumes an interrupted run. A summary is written to
`<workdir>/extract_features.json`.

Example (the offline smoke variant: digits, a tiny random ResNet):
  python experiments/main.py --config=configs/extract_features.py:runlocal --workdir=/tmp/feat
"""
from __future__ import annotations

import logging
import os

import numpy as np

from skmm_jax import cache, features, models, parallel
from skmm_jax.data import vision


def run(config, workdir: str):
  """Extracts features for `config.splits` of `config.dataset`; returns {split: npz path}.

  Config fields: backbone, weights (None: the paper's checkpoint; "random"), dataset,
  data_dir, splits, batch_size, chunk_batches, cache_dir ("" = <workdir>/features),
  limit (0 = every example; else the first `limit` of each split, for smoke runs), progress.
  """
  os.makedirs(workdir, exist_ok=True)
  bundle = models.load_bundle(config.backbone, num_classes=0, weights=config.get("weights", None),
                              seed=int(config.get("model_seed", 0)))
  cache_dir = config.get("cache_dir", "") or os.path.join(workdir, "features")
  mesh = parallel.data_mesh()
  limit = int(config.get("limit", 0) or 0)
  out = {}
  for split in config.splits:
    source = vision.load_split(config.dataset, split, config.get("data_dir", None) or None)
    name = config.dataset
    if limit and limit < len(source):
      source = vision.Subset(source, np.arange(limit))
      name = f"{config.dataset}[:{limit}]"
    feats = features.extract_features(
        bundle, source, dataset=name, split=split, cache_dir=cache_dir,
        batch_size=int(config.batch_size), chunk_batches=int(config.chunk_batches), mesh=mesh,
        progress=bool(config.get("progress", True)))
    logging.info("%s/%s: features %s -> %s", name, split, feats.features.shape, feats.path)
    out[split] = {"path": feats.path, "key": feats.key, "n": int(feats.features.shape[0]),
                  "dim": int(feats.features.shape[1])}
  cache.atomic_write_json(os.path.join(workdir, "extract_features.json"),
                          {"backbone": bundle.name, "weights": bundle.weights_fingerprint,
                           "dataset": config.dataset, "splits": out})
  return {k: v["path"] for k, v in out.items()}
