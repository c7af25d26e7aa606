"""altup-t5: a runnable JAX/Flax reproduction of AltUp's T5 experiments."""

import setuptools

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
    python_requires=">=3.11",
    install_requires=[
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
