"""skmm-jax: Sketchy Moment Matching (SkMM) data selection in JAX."""
from setuptools import find_packages, setup

CORE = [
    "jax==0.10.2",
    "jaxlib==0.10.2",
    "flax==0.12.8",
    "optax==0.2.8",
    "chex==0.1.92",
    "orbax-checkpoint==0.12.8",
    "ml_collections==1.1.0",
    "absl-py==2.5.1",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "scikit-learn==1.9.1",
    "safetensors==0.8.0",
    "matplotlib",
    "tqdm",
]
VISION = [
    # transformers 4.57.6 is the last release with Flax models. Never use the
    # `transformers[flax]` extra: it pins jax 0.4.
    "transformers==4.57.6",
    "tensorflow-datasets==4.9.10",
    "pillow",
]
TEST = ["pytest", "hypothesis"]

setup(
    name="skmm-jax",
    version="0.1.0",
    description="Sketchy Moment Matching: fast, provable data selection for finetuning, in JAX.",
    packages=find_packages(include=["skmm_jax", "skmm_jax.*"]),
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={"vision": VISION, "test": TEST + VISION, "all": TEST + VISION},
)
