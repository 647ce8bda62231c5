"""Test set-up: 4 virtual CPU devices, so 1-vs-4-device agreement runs in one process."""
import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def mesh1():
  from skmm_jax import parallel
  return parallel.data_mesh(jax.devices()[:1])


@pytest.fixture(scope="session")
def mesh4():
  from skmm_jax import parallel
  assert len(jax.devices()) >= 4, "tests expect 4 virtual CPU devices (see conftest.py)"
  return parallel.data_mesh(jax.devices()[:4])
