"""Alternating Updates: predict, compute one block, correct (Baykal et al., 2023).

The token representation is K blocks of width d, `x: [..., K, d]`. A layer computes
on one *activated* block j*; the others are updated by a predict-and-correct step with
K^2 + K trainable scalars:

  predict:  x_hat_i = sum_j p[i, j] * x_j
  compute:  y = L(x_j*)            (or L(x_hat_j*), Gemma 3n's variant)
  correct:  x_i <- x_hat_i + g[i] * (y - x_hat_j*)

With p = I and g = 1 (the initial values) and K identical blocks, this is exactly the
dense layer applied to every block: AltUp starts as an identity-preserving widening.
The module is agnostic to what the K blocks are, so the same step can act on strided
token positions (the paper's Sequence-AltUp).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

from altup_t5.model.config import ComputeOn

Array = jax.Array


class AltUp(nn.Module):
  """The K^2 + K predict/correct scalars of one layer."""
  altup_k: int  # K, the number of d-wide blocks (T5Config.altup_k)

  def setup(self):
    k = self.altup_k
    if k < 2:
      raise ValueError(f"altup_k={k} must be >= 2 (AltUp needs at least two blocks)")
    self.predict_coefs = nn_partitioning.param_with_axes(
        "predict_coefs", lambda *_: jnp.eye(k, dtype=jnp.float32), (k, k), jnp.float32,
        axes=("altup_blocks", "altup_blocks_in"))
    self.correct_coefs = nn_partitioning.param_with_axes(
        "correct_coefs", nn.initializers.ones, (k,), jnp.float32, axes=("altup_blocks",))

  def predict(self, x: Array) -> Array:
    """x: [..., K, d] -> x_hat: [..., K, d], x_hat_i = sum_j p[i, j] x_j."""
    self._check_blocks(x.shape[-2], "x")
    coefs = self.predict_coefs.astype(x.dtype)[:, :, None]  # [K, K, 1]
    # K^2 scaled adds, which XLA fuses with their neighbours; written as an einsum it
    # becomes a dot with a K-long contraction, which XLA:CPU runs slowly.
    return jnp.sum(coefs * x[..., None, :, :], axis=-2)  # [..., K, K, d] -> [..., K, d]

  def correct(self, x_hat: Array, y: Array, active_block: int) -> Array:
    """x_hat: [..., K, d], y: [..., d] -> [..., K, d], x_i = x_hat_i + g_i (y - x_hat_j*)."""
    self._check_blocks(x_hat.shape[-2], "x_hat")
    if not 0 <= active_block < self.altup_k:
      raise ValueError(
          f"active_block={active_block} must be in [0, {self.altup_k})")
    innovation = (y - x_hat[..., active_block, :])[..., None, :]  # [..., 1, d]
    gains = self.correct_coefs.astype(x_hat.dtype)[:, None]  # [K, 1]
    return x_hat + gains * innovation

  def _check_blocks(self, k: int, name: str):
    if k != self.altup_k:
      raise ValueError(
          f"{name} has {k} blocks on axis -2 but AltUp(altup_k={self.altup_k})")


def alternating_update(altup: AltUp, x: Array, layer_fn: Callable[[Array], Array],
                       active_block: int, compute_on: ComputeOn) -> Array:
  """One AltUp layer: x: [..., K, d] -> [..., K, d], with `layer_fn: [..., d] -> [..., d]`
  the unchanged d-wide transformer layer (its own residuals included)."""
  x_hat = altup.predict(x)
  source = x_hat if compute_on == ComputeOn.PREDICTION else x
  y = layer_fn(source[..., active_block, :])
  return altup.correct(x_hat, y, active_block)


# ---- the two ends of the K-block representation ----

def replicate_blocks(x: Array, altup_k: int) -> Array:
  """Recycled-AltUp's input: [..., d] -> [..., K, d], K copies of one embedding."""
  return jnp.broadcast_to(x[..., None, :], x.shape[:-1] + (altup_k, x.shape[-1]))


def sum_blocks(x: Array) -> Array:
  """[..., K, d] -> [..., d]. Used wherever a d-wide vector is needed from the K
  blocks: Recycled-AltUp's output, and every encoder's memory for cross-attention
  (the decoder layers are d wide; the paper leaves this choice open)."""
  return jnp.sum(x, axis=-2)
