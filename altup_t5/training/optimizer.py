"""Adafactor as T5 used it, and T5's learning-rate schedules (optax)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from altup_t5 import errors


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """Adafactor as T5 used it, and T5's learning-rate schedules."""
  # "rsqrt": base * rsqrt(max(step, warmup)) -- T5 pretraining (0.01 for 10k steps,
  # then decaying); "constant": base -- T5 fine-tuning uses 1e-3.
  schedule: str = "rsqrt"
  base_learning_rate: float = 1.0
  warmup_steps: int = 10_000
  # Adafactor (Shazeer & Stern 2018) with T5's settings.
  decay_rate: float = 0.8  # second-moment decay 1 - (t+1)^-0.8
  clipping_threshold: float = 1.0  # update clipping
  multiply_by_parameter_scale: bool = True  # relative step size
  factored: bool = True  # row/column second moments for matrices
  min_dim_size_to_factor: int = 128

  def __post_init__(self):
    errors.check_choice("schedule", self.schedule, ("rsqrt", "constant"))
    errors.check_number("base_learning_rate", self.base_learning_rate, minimum=0,
                        exclusive_minimum=True)
    errors.check_int("warmup_steps", self.warmup_steps, minimum=0)
    errors.check_number("decay_rate", self.decay_rate, minimum=0)
    errors.check_number("clipping_threshold", self.clipping_threshold, minimum=0,
                        exclusive_minimum=True)
    for name in ("multiply_by_parameter_scale", "factored"):
      errors.check_type(name, getattr(self, name), bool, "True or False")
    errors.check_int("min_dim_size_to_factor", self.min_dim_size_to_factor, minimum=0)

  def learning_rate(self) -> optax.Schedule:
    base, warmup = self.base_learning_rate, max(self.warmup_steps, 1)
    if self.schedule == "constant":
      return optax.constant_schedule(base)
    return lambda step: base * jax.lax.rsqrt(jnp.maximum(step, warmup).astype(jnp.float32))

  def make(self) -> optax.GradientTransformation:
    return optax.adafactor(
        learning_rate=self.learning_rate(), decay_rate=self.decay_rate,
        clipping_threshold=self.clipping_threshold,
        multiply_by_parameter_scale=self.multiply_by_parameter_scale,
        factored=self.factored, min_dim_size_to_factor=self.min_dim_size_to_factor)
