"""Shared test settings: quiet TensorFlow, deterministic float32 matmuls on CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # pylint: disable=g-import-not-at-top

# Compare float32 results at full precision (XLA's CPU default is already float32).
jax.config.update("jax_default_matmul_precision", "highest")
