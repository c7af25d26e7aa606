"""Sequence-AltUp: AltUp's predict/compute/correct along the token axis (Baykal et al.,
2023, "Alternating Updates for Efficient Transformers", the Sequence-AltUp extension).

Sources (SEQ_ALTUP_SOURCES.md lists them with URLs): the stored copies of the paper
(the arXiv HTML of 2301.13310 and the NeurIPS 2023 text) could be read only up to the
abstract, which says AltUp extends "to the sequence dimension"; a third-party summary
describes the extension as computing a layer on a strided subset of positions and
predicting and correcting the rest with a few trained scalars. The section itself
could not be read, so the equations below are that description made precise, and
stride values, layers, initial values and the handling of masks are our choices
(listed below), not checked against the paper's text.

In our words, for one layer L with stride s over tokens x_0 .. x_{T-1} (each d wide),
and a(t) = s * floor(t / s) the *anchor* of token t (the last computed position <= t):

  compute:  y_a = L(x_0, x_s, x_2s, ...)_a      L runs on the T/s anchors only, so its
                                                 attention and FFN see a length T/s
  predict:  x_hat_t = p0 * x_t + p1 * x_a(t)     two trainable scalars p = (p0, p1)
  correct:  x_t <- x_hat_t + g * (y_a(t) - x_hat_a(t))   one trainable scalar g

i.e. AltUp's step (altup.py) with the "blocks" being a token and its anchor, the
activated one the anchor. Initial values p = (1, 0), g = 1, so at initialisation an
anchor gets exactly L's output (x_hat_a = x_a, then x_a + y_a - x_a = y_a) and every
skipped token gets its anchor's update added to itself: x_t + (y_a(t) - x_a(t)). This
is not the dense model (L never sees the skipped tokens); tests check this relation.

Choices (where the paper is silent, or where we could not read it), documented only here:
- Initial values p = (1, 0), g = 1 (AltUp's own start: predict "unchanged", correct
  "take the computed update").
- Encoder only, every encoder layer. In the decoder, a(t) <= t keeps it causal, but
  the cache would have to hold anchors only; we leave the decoder dense.
- L is applied to the input anchors x_a (AltUp's `ComputeOn.INPUT`); the config
  refuses `altup_compute_on='prediction'` with this variant. AltUp's `altup_k` and
  `altup_schedule` do not apply and are ignored, as for dense.
- Attention masks and the relative position bias are those of the full sequence taken
  at the anchor rows and columns, so anchors s apart are s apart for the bias.
- Packing/padding: a token whose anchor is padding or in another segment has no anchor
  (p1 and g terms dropped: x_t <- p0 * x_t), so examples never mix.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning

from altup_t5.errors import SettingError

Array = jax.Array


class SequenceAltUp(nn.Module):
  """The three scalars of one Sequence-AltUp layer: predict (p0, p1) and correct g."""

  def setup(self):
    # ("altup_blocks",) is replicated: the two "blocks" are a token and its anchor.
    self.predict_coefs = nn_partitioning.param_with_axes(
        "predict_coefs", lambda *_: jnp.array([1.0, 0.0], jnp.float32), (2,),
        jnp.float32, axes=("altup_blocks",))
    self.correct_coefs = nn_partitioning.param_with_axes(
        "correct_coefs", nn.initializers.ones, (1,), jnp.float32, axes=("altup_blocks",))

  def predict(self, x: Array, x_anchor_up: Array, keep: Array) -> Array:
    """x, x_anchor_up: [batch, T, d] (x_a(t) at t), keep: [batch, T, 1] ->
    x_hat_t = p0 x_t + p1 x_a(t)."""
    p = self.predict_coefs.astype(x.dtype)
    return p[0] * x + p[1] * keep * x_anchor_up

  def correct(self, x_hat: Array, innovation_up: Array, keep: Array) -> Array:
    """x_hat_t + g (y_a(t) - x_hat_a(t)), innovation_up: [batch, T, d]."""
    return x_hat + self.correct_coefs.astype(x_hat.dtype)[0] * keep * innovation_up


def sequence_alternating_update(module: SequenceAltUp, x: Array, anchored: Array,
                                stride: int, layer_fn: Callable[[Array], Array]) -> Array:
  """One Sequence-AltUp layer. x: [batch, T, d]; anchored: [batch, T] bool (token has a
  usable anchor); layer_fn: [batch, ceil(T/s), d] -> same, the d-wide layer on the
  anchors (called here, in the caller's compact scope)."""
  length = x.shape[1]
  up = lambda a: jnp.repeat(a, stride, axis=1)[:, :length]  # anchors -> every t
  keep = anchored[..., None].astype(x.dtype)  # [batch, T, 1]
  x_anchor = x[:, ::stride]  # [batch, ceil(T/s), d]
  x_hat = module.predict(x, up(x_anchor), keep)
  y_anchor = layer_fn(x_anchor)
  return module.correct(x_hat, up(y_anchor - x_hat[:, ::stride]), keep)


def anchored_mask(valid: Array, segment_ids: Array | None, stride: int) -> Array:
  """[batch, T] bool: token t's anchor a(t) is a real token of t's own segment."""
  length = valid.shape[1]
  up = lambda a: jnp.repeat(a[:, ::stride], stride, axis=1)[:, :length]
  ok = up(valid) & valid
  if segment_ids is not None:
    ok &= up(segment_ids) == segment_ids
  return ok


def check_stride(stride: int, length: int) -> None:
  """The stride may not exceed the encoder input length T (T is known only here; the
  config checks the stride is >= 2)."""
  if stride > length:
    raise SettingError(f"sequence_altup_stride={stride} must be between 2 and the encoder "
                       f"input length {length}")
