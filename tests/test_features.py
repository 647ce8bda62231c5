"""Feature extraction: deterministic, identical on 1 and 4 devices, cached, resumable."""
import os

import numpy as np
import pytest

from skmm_jax import features, models
from skmm_jax.data import preprocess as pp
from skmm_jax.data import vision

SPEC = pp.IMAGENET._replace(resize=32, crop=32)


class _Source:
  """Random 32x32 images; counts reads and can fail at one index (a simulated crash)."""

  def __init__(self, n=37, fail_at=None):
    rng = np.random.default_rng(0)
    self.images = rng.integers(0, 256, (n, 24, 28, 3), dtype=np.uint8)
    self.labels = rng.integers(0, 5, n)
    self.fail_at, self.reads = fail_at, 0

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    if self.fail_at is not None and int(i) == self.fail_at:
      raise KeyboardInterrupt("simulated interruption")
    self.reads += 1
    return self.images[int(i)], self.labels[int(i)]


@pytest.fixture(scope="module")
def bundle():
  return models.resnet_tiny_bundle(num_classes=5, seed=0, preprocess=SPEC)


def _reference(bundle, src):
  images, _ = vision.load_images(src, np.arange(len(src)), bundle.preprocess)
  return np.asarray(bundle.apply_features(bundle.variables, pp.normalize(images, bundle.preprocess)))


def test_features_identical_on_1_and_4_devices_and_cached(tmp_path, bundle, mesh1, mesh4):
  src = _Source()
  f1 = features.extract_features(bundle, src, dataset="toy", split="train",
                                 cache_dir=str(tmp_path / "a"), batch_size=8, chunk_batches=2,
                                 mesh=mesh1, progress=False)
  f4 = features.extract_features(bundle, src, dataset="toy", split="train",
                                 cache_dir=str(tmp_path / "b"), batch_size=8, chunk_batches=2,
                                 mesh=mesh4, progress=False)
  assert f1.features.shape == (37, 16) and f1.features.dtype == np.float32
  np.testing.assert_array_equal(f1.labels, src.labels)
  # equal up to float32 rounding: the per-device batch (8 vs 2) changes XLA's conv blocking
  np.testing.assert_allclose(f1.features, f4.features, rtol=0, atol=2e-6)
  np.testing.assert_allclose(f1.features, _reference(bundle, src), atol=1e-5)
  assert f1.key == f4.key and os.path.basename(f1.path).startswith("resnet_tiny-toy-train-")
  assert not any(n.startswith(".parts") for n in os.listdir(tmp_path / "a"))
  # a second call reads the store, computing nothing
  reads = src.reads
  again = features.extract_features(bundle, src, dataset="toy", split="train",
                                    cache_dir=str(tmp_path / "a"), batch_size=8, mesh=mesh4,
                                    progress=False)
  assert src.reads == reads
  np.testing.assert_array_equal(again.features, f1.features)
  assert again.meta["dataset"] == "toy" and again.meta["preprocess"]["crop"] == 32


def test_key_depends_on_everything_that_determines_features(bundle):
  k = features.feature_key("resnet_tiny", bundle.weights_fingerprint, "toy", "train", SPEC)
  assert k == features.feature_key("resnet_tiny", bundle.weights_fingerprint, "toy", "train", SPEC)
  other = models.resnet_tiny_bundle(num_classes=5, seed=1, preprocess=SPEC)
  variants = [
      features.feature_key("resnet_tiny", other.weights_fingerprint, "toy", "train", SPEC),
      features.feature_key("resnet18", bundle.weights_fingerprint, "toy", "train", SPEC),
      features.feature_key("resnet_tiny", bundle.weights_fingerprint, "toy2", "train", SPEC),
      features.feature_key("resnet_tiny", bundle.weights_fingerprint, "toy", "test", SPEC),
      features.feature_key("resnet_tiny", bundle.weights_fingerprint, "toy", "train",
                           SPEC._replace(resample="bilinear")),
  ]
  assert len(set(variants + [k])) == 6


def test_extraction_resumes_after_interruption(tmp_path, bundle, mesh4):
  crashing = _Source(fail_at=29)  # chunks of 16 rows: parts 0 (rows 0..15) completes
  with pytest.raises(KeyboardInterrupt):
    features.extract_features(bundle, crashing, dataset="toy", split="train",
                              cache_dir=str(tmp_path), batch_size=8, chunk_batches=2, mesh=mesh4,
                              progress=True)
  parts = [d for d in os.listdir(tmp_path) if d.startswith(".parts-")]
  assert len(parts) == 1 and os.listdir(tmp_path / parts[0]) == ["part-000000.npz"]
  src = _Source()
  out = features.extract_features(bundle, src, dataset="toy", split="train",
                                  cache_dir=str(tmp_path), batch_size=8, chunk_batches=2,
                                  mesh=mesh4, progress=False)
  assert src.reads == 37 - 16  # the finished part was not recomputed
  fresh = features.extract_features(bundle, _Source(), dataset="toy", split="train",
                                    cache_dir=str(tmp_path / "fresh"), batch_size=8, mesh=mesh4,
                                    progress=False)
  np.testing.assert_allclose(out.features, fresh.features, atol=1e-6)
  assert not os.path.exists(tmp_path / parts[0])


def test_extraction_on_digits_and_clip_tiny(tmp_path, mesh4):
  from skmm_jax.models import clip
  b = models.clip_bundle(num_classes=0, weights=None, config=clip.tiny_config())
  src = vision.Subset(vision.load_split("digits", "test"), np.arange(20))
  out = features.extract_features(b, src, dataset="digits", split="test", cache_dir=str(tmp_path),
                                  batch_size=8, mesh=mesh4, progress=False)
  assert out.features.shape == (20, 8)
  np.testing.assert_allclose(np.linalg.norm(out.features, axis=1), 1.0, atol=1e-5)
  assert out.labels.dtype == np.int64


def test_extract_features_pipeline_runlocal(tmp_path):
  import sys
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  from configs import extract_features as cfg_mod
  from skmm_jax.pipelines import extract_features as pipeline
  from skmm_jax import cache
  config = cfg_mod.get_config("runlocal")
  paths = pipeline.run(config, str(tmp_path))
  assert set(paths) == {"train", "test"}
  summary = cache.read_json(str(tmp_path / "extract_features.json"))
  assert summary["splits"]["train"]["n"] == 64 and summary["splits"]["test"]["dim"] == 16
  f = features.load_features(paths["test"])
  assert f.features.shape == (64, 16) and f.meta["dataset"] == "digits[:64]"
  assert pipeline.run(config, str(tmp_path)) == paths  # cached: same store
  with pytest.raises(ValueError, match="unknown variant"):
    cfg_mod.get_config("imagenet")
