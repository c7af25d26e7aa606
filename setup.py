"""altup-t5: a runnable JAX/Flax reproduction of AltUp's T5 experiments."""

import os
import shutil

import setuptools
from setuptools.command.build_py import build_py

# The gin files and study configs live at the top of the checkout (gin/, configs/)
# and ship inside the package (altup_t5/gin, altup_t5/configs), where
# `altup_t5.resources` finds them after a plain `pip install .` or a wheel install.
SHIPPED_TREES = ("gin", "configs")


class BuildPyWithConfigs(build_py):
  """build_py that also copies the shipped trees into the built package."""

  def run(self):
    super().run()
    if getattr(self, "editable_mode", False):
      return  # an editable install reads them from the checkout
    here = os.path.dirname(os.path.abspath(__file__))
    for tree in SHIPPED_TREES:
      target = os.path.join(self.build_lib, "altup_t5", tree)
      shutil.rmtree(target, ignore_errors=True)
      shutil.copytree(os.path.join(here, tree), target,
                      ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setuptools.setup(
    name="altup-t5",
    version="0.1.0",
    description=(
        "Alternating Updates (AltUp, Recycled-AltUp) for T5.1.1 in JAX/Flax: "
        "models, seqio tasks, a gin-driven trainer and side-by-side studies."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=setuptools.find_packages(include=["altup_t5", "altup_t5.*"]),
    cmdclass={"build_py": BuildPyWithConfigs},
    python_requires=">=3.11",
    install_requires=[
        "safetensors>=0.4",
        # JAX 0.10.x is the newest that installs on Python 3.11; 0.11+ needs 3.12.
        "jax>=0.10",
        "flax>=0.12",
        "optax>=0.2.4",
        "orbax-checkpoint>=0.11",
        "seqio>=0.0.19",
        "tensorflow-datasets>=4.9.6",
        # tfds imports it when building a dataset but declares it only for Python<3.9.
        "importlib_resources>=6",
        "gin-config>=0.5",
        "clu>=0.0.12",
        # clu's TensorBoard writer needs tensorboard but does not depend on it.
        "tensorboard>=2.15",
        "sentencepiece>=0.2",
        "numpy>=1.26",
        "scipy>=1.11",
        "scikit-learn>=1.4",
        "matplotlib>=3.8",
        "tqdm>=4.66",
    ],
    extras_require={
        "test": ["pytest>=8", "pytest-xdist>=3.5"],
        # `python -m altup_t5.bench --peer hf`: HuggingFace's T5 as the peer.
        # On a CPU-only machine install torch's CPU build first.
        "hf": ["torch>=2.4", "transformers>=4.44"],
    },
)
