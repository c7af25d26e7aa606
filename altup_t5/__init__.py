"""altup-t5: Alternating Updates for T5.1.1 in JAX/Flax.

The public surface is small on purpose:
  config_for(size, variant, **overrides) -> T5Config
  Transformer(config)        the encoder-decoder (t5x module contract)
  AltUp(num_blocks)          the predict/correct step
Training, data and studies live in their own modules (`altup_t5.train`,
`altup_t5.data`, `altup_t5.compare`, `altup_t5.bench`).
"""

# Before anything imports jax: see cpu_tuning.py (ALTUP_T5_CPU_TUNING=0 disables it).
from altup_t5 import cpu_tuning

cpu_tuning.apply()

from altup_t5.altup import AltUp  # pylint: disable=g-import-not-at-top,wrong-import-position
from altup_t5.config import ComputeOn, Router, Schedule, T5Config, Variant, config_for
from altup_t5.network import Transformer

__version__ = "0.1.0"
