"""Real-data loaders: tfds (mocked, no TF, no downloads), UTKFace folders, digits, splits."""
import os

import numpy as np
import pytest

from skmm_jax.data import preprocess as pp
from skmm_jax.data import vision
from skmm_jax.validation import SkmmError

tfds = pytest.importorskip("tensorflow_datasets")


@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cars196", 196)])
def test_tfds_loaders_with_mock_data(tmp_path, name, classes):
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    for split in ("train", "test"):
      src = vision.load_split(name, split, data_dir=str(tmp_path))
      assert len(src) == 6
      image, label = src[2]
      assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
      if name == "cifar10":
        assert image.shape == (32, 32, 3)
      assert 0 <= int(label) < classes and np.issubdtype(np.asarray(label).dtype, np.integer)
      spec = pp.IMAGENET._replace(resize=40, crop=36)
      images, labels = vision.load_images(src, np.arange(4), spec)
      assert images.shape == (4, 36, 36, 3) and images.dtype == np.uint8
      assert labels.shape == (4,) and labels.dtype == np.int64
      assert labels.tolist() == [int(src[i][1]) for i in range(4)]


def test_tfds_absent_data_names_dataset_dir_and_command(tmp_path):
  with pytest.raises(vision.DataNotFoundError) as e:
    vision.load_split("cifar10", "train", data_dir=str(tmp_path / "empty"))
  msg = str(e.value)
  assert "'cifar10'" in msg and str(tmp_path / "empty") in msg
  assert "tfds build cifar10" in msg and "--file_format=array_record" in msg
  assert "does not exist" in msg
  (tmp_path / "dd" / "cars196" / "2.1.0").mkdir(parents=True)
  (tmp_path / "dd" / "cars196" / "2.1.0" / "cars196-train.tfrecord-00000-of-00001").write_bytes(b"")
  (tmp_path / "dd" / "cars196" / "2.1.0" / "dataset_info.json").write_text("{}")
  with pytest.raises(vision.DataNotFoundError,
                     match="'cars196'.*" + ("tfds.load" if vision._tf_available()
                                            else "prepared as TFRecord")):
    vision.load_split("cars196", "test", data_dir=str(tmp_path / "dd"))
  with pytest.raises(vision.DataNotFoundError, match="no cifar10/ folder"):
    vision.load_split("cifar10", "test", data_dir=str(tmp_path / "dd"))
  with pytest.raises(SkmmError, match="unknown dataset 'cifar100'"):
    vision.load_split("cifar100", "train")
  with pytest.raises(SkmmError, match="unknown split of cifar10 'validation'"):
    vision.load_split("cifar10", "validation")


def _write_jpg(path, rng, size=(20, 16)):
  from PIL import Image
  Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(path)


def test_utkface_folder_reports_malformed_names(tmp_path, caplog):
  rng = np.random.default_rng(0)
  good = ["25_0_1_20170116174525125.jpg", "3_1_4_20161219140623097.jpg.chip.jpg",
          "61_1_0_20170109142408075.jpg", "40_0_2_20170104020603.jpg", "8_1_3_2017.jpg"]
  bad = ["39_1_20170116174525125.jpg.chip.jpg", "abc_0_0_1.jpg", "25_2_0_2017.jpg"]
  for name in good + bad:
    _write_jpg(tmp_path / name, rng)
  (tmp_path / "README.txt").write_text("not an image")
  full = vision.utkface_source(str(tmp_path))
  assert len(full) == 5
  assert sorted(full.labels.tolist()) == [3.0, 8.0, 25.0, 40.0, 61.0]
  assert full.labels.dtype == np.float32
  assert sorted(s[0] for s in full.skipped) == sorted(bad)
  assert "malformed" in caplog.text
  image, age = full[0]
  assert image.shape == (20, 16, 3) and image.dtype == np.uint8
  train = vision.load_split("utkface", "train", data_dir=str(tmp_path))
  test = vision.load_split("utkface", "test", data_dir=str(tmp_path))
  assert len(train) == 4 and len(test) == 1
  assert not set(train.indices) & set(test.indices)
  with pytest.raises(vision.DataNotFoundError, match="utkface.*does not exist"):
    vision.utkface_source(str(tmp_path / "missing"))


def test_digits_and_seeded_validation_split():
  train, test = vision.load_split("digits", "train"), vision.load_split("digits", "test")
  assert len(train) + len(test) == 1797 and len(test) == 359
  image, label = train[0]
  assert image.shape == (8, 8) and image.dtype == np.uint8 and image.max() <= 255
  images, labels = vision.load_images(train, np.arange(5), pp.IMAGENET._replace(resize=16, crop=16))
  assert images.shape == (5, 16, 16, 3) and labels.dtype == np.int64
  assert set(np.unique([train[i][1] for i in range(len(train))])) == set(range(10))
  # the fixed test split is stable and disjoint from train
  assert not set(train.indices) & set(test.indices)
  np.testing.assert_array_equal(vision.load_split("digits", "test").indices, test.indices)
  # validation comes from the training pool, by seed
  tr, va = vision.train_val_indices(len(train), val_fraction=0.1, seed=3)
  assert len(va) == round(0.1 * len(train)) and len(tr) + len(va) == len(train)
  assert not set(tr) & set(va) and va.max() < len(train)
  tr2, va2 = vision.train_val_indices(len(train), val_fraction=0.1, seed=3)
  np.testing.assert_array_equal(va, va2)
  assert not np.array_equal(va, vision.train_val_indices(len(train), 0.1, seed=4)[1])
  val = vision.Subset(train, va)
  np.testing.assert_array_equal(val[0][0], train[va[0]][0])
  with pytest.raises(SkmmError, match="val_fraction"):
    vision.train_val_indices(10, val_fraction=1.5)


def test_preprocess_resize_crop_and_normalize():
  im = np.zeros((30, 60, 3), np.uint8)
  im[:, 15:45] = 255  # the centre square is white
  spec = pp.Preprocess(resize=20, crop=20, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
  out = pp.resize_crop(im, spec)
  assert out.shape == (20, 20, 3) and out.dtype == np.uint8
  assert out[:, 3:17].min() >= 250  # centre crop of the 40x20 resize keeps the white square
  assert pp.resize_crop(np.zeros((8, 8), np.uint8), spec).shape == (20, 20, 3)  # grey -> RGB
  x = np.asarray(pp.normalize(np.full((1, 2, 2, 3), 255, np.uint8), spec))
  np.testing.assert_allclose(x, 1.0)
  with pytest.raises(ValueError, match="uint8"):
    pp.resize_crop(np.zeros((8, 8, 3), np.float32), spec)


def test_numpy_batches():
  x, y = np.arange(10), np.arange(10) * 2
  batches = list(vision.numpy_batches([x, y], 4))
  assert [b[0].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
  shuffled = list(vision.numpy_batches([x, y], 4, seed=0, drop_remainder=True))
  assert len(shuffled) == 2 and all((b[1] == 2 * b[0]).all() for b in shuffled)
  assert sorted(np.concatenate([b[0] for b in vision.numpy_batches([x], 3, seed=1)])) == list(x)
