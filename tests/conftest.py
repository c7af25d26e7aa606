"""Shared test settings: quiet TensorFlow, deterministic float32 matmuls on CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# The tests run the library as the entry points do: CPU tuning before jax starts
# (importing altup_t5 alone applies nothing; test_no_import_side_effects checks that).
from altup_t5.bench import cpu_tuning  # pylint: disable=g-import-not-at-top

cpu_tuning.apply()

import jax  # pylint: disable=g-import-not-at-top

# Compare float32 results at full precision (XLA's CPU default is already float32).
jax.config.update("jax_default_matmul_precision", "highest")
