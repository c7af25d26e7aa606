"""T5.1.1 encoder-decoder with every variant the paper compares.

One set of modules builds all of them; `T5Config.variant` decides:
- dense / wide: T5.1.1 as t5x's `examples/t5/network.py` (wide is just bigger): the same
  function in float32 (t5x checkpoints give our logits to ~2e-6). With bfloat16
  activations our default `float32_attention_logits=True` computes the attention softmax
  in float32 where t5x's default does not (logits ~1e-2 apart on `tiny`); set it False,
  as gin/t5x/ does, for t5x's numbers exactly;
- moe: the MLP of every `moe_layer_interval`-th layer is a sparse `MoeMlp`;
- altup: the representation is `[batch, length, K, d]`, from a `[vocab, K, d]` table,
  normalised over K*d and projected K*d -> vocab at the output;
- recycled_altup: a `[vocab, d]` table replicated K times; the K output blocks are
  summed back to d before the final norm and the d -> vocab projection;
- altup_moe: AltUp around layers whose FFN is sparse where MoE's is;
- sequence_altup: dense widths; each encoder layer runs on every stride-th token and
  the others are predicted and corrected (`sequence_altup.SequenceAltUp`).
Every AltUp layer is `altup.alternating_update` around the unchanged d-wide layer, and
the encoder hands the decoder a d-wide memory (`altup.sum_blocks`, then the norm).

The `Transformer` honours t5x's module contract (`__call__`, `encode`, `decode` with a
`cache` collection, `params_axes`), so it also plugs into t5x's `EncoderDecoderModel`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from altup_t5.model import altup as altup_lib
from altup_t5.model import layers
from altup_t5.model import moe
from altup_t5.model import sequence_altup as seq_altup_lib
from altup_t5.model.config import Router, T5Config, Variant, config_for  # re-exported
from altup_t5.model.layers import constrain, dropout

Array = jax.Array

__all__ = ["T5Config", "Transformer", "config_for", "Variant"]


def _representation_axes(cfg: T5Config) -> tuple[str, ...]:
  if cfg.uses_altup:
    return ("batch", "length", "altup_blocks", "embed")
  return ("batch", "length", "embed")


def _feed_forward(cfg: T5Config, layer: int, router: Router, x: Array, valid: Array,
                  deterministic: bool) -> Array:
  """The layer's FFN: dense gated-GELU, or sparse where MoE puts experts."""
  if cfg.is_sparse_layer(layer):
    return moe.MoeMlp(cfg, router, name="mlp")(x, valid, deterministic)
  return layers.MlpBlock(cfg, name="mlp")(x, deterministic)


def _with_altup(cfg: T5Config, layer: int, x: Array, layer_fn) -> Array:
  """Apply a d-wide layer to the representation: directly, or as an AltUp layer."""
  if not cfg.uses_altup:
    return layer_fn(x)
  return altup_lib.alternating_update(
      altup_lib.AltUp(altup_k=cfg.altup_k, name="altup"), x, layer_fn,
      cfg.active_block(layer), cfg.altup_compute_on)


class EncoderLayer(nn.Module):
  """Pre-norm self-attention and FFN, each with a residual; `layer` counts within
  the encoder (it picks the activated block and whether the FFN is sparse)."""
  config: T5Config
  layer: int

  @nn.compact
  def __call__(self, x: Array, bias: Array, valid: Array, deterministic: bool,
               anchored: Array | None = None) -> Array:
    cfg = self.config
    if cfg.uses_sequence_altup:
      # The layer sees only the anchors: their rows and columns of the full bias
      # (masks and relative positions), and their validity for MoE.
      s = cfg.sequence_altup_stride
      bias, valid = bias[:, :, ::s, ::s], valid[:, ::s]

    def layer_fn(h):  # [batch, length, emb_dim] -> [batch, length, emb_dim]
      a = layers.RMSNorm(dtype=cfg.activation_dtype, name="pre_attention_layer_norm")(h)
      a = layers.MultiHeadAttention(cfg, name="attention")(
          a, a, bias, deterministic=deterministic)
      h = h + dropout(cfg.dropout_rate, a, deterministic)
      m = layers.RMSNorm(dtype=cfg.activation_dtype, name="pre_mlp_layer_norm")(h)
      m = _feed_forward(cfg, self.layer, cfg.encoder_router, m, valid, deterministic)
      return h + dropout(cfg.dropout_rate, m, deterministic)

    if cfg.uses_sequence_altup:
      x = seq_altup_lib.sequence_alternating_update(
          seq_altup_lib.SequenceAltUp(name="sequence_altup"), x, anchored,
          cfg.sequence_altup_stride, layer_fn)
    else:
      x = _with_altup(cfg, self.layer, x, layer_fn)
    return constrain(x, _representation_axes(cfg))


class DecoderLayer(nn.Module):
  """Pre-norm causal self-attention, cross-attention to the d-wide memory, FFN."""
  config: T5Config
  layer: int

  @nn.compact
  def __call__(self, x: Array, encoded: Array, self_bias: Array, cross_bias: Array,
               valid: Array, deterministic: bool, decode: bool) -> Array:
    cfg = self.config
    norm = lambda name: layers.RMSNorm(dtype=cfg.activation_dtype, name=name)

    def layer_fn(h):  # [batch, length, emb_dim] -> [batch, length, emb_dim]
      a = norm("pre_self_attention_layer_norm")(h)
      a = layers.MultiHeadAttention(cfg, name="self_attention")(
          a, a, self_bias, deterministic=deterministic, decode=decode)
      h = h + dropout(cfg.dropout_rate, a, deterministic)
      c = norm("pre_cross_attention_layer_norm")(h)
      c = layers.MultiHeadAttention(cfg, name="encoder_decoder_attention")(
          c, encoded, cross_bias, deterministic=deterministic, decode_memory=decode)
      h = h + dropout(cfg.dropout_rate, c, deterministic)
      m = norm("pre_mlp_layer_norm")(h)
      # Decoder MoE layers always let tokens choose: experts choosing among a
      # sequence's tokens would let a token's routing depend on its future.
      m = _feed_forward(cfg, self.layer, Router.TOKENS_CHOOSE, m, valid, deterministic)
      return h + dropout(cfg.dropout_rate, m, deterministic)

    x = _with_altup(cfg, self.layer, x, layer_fn)
    return constrain(x, _representation_axes(cfg))


def make_token_embedder(cfg: T5Config) -> layers.Embed:
  """The table shared by encoder and decoder (`token_embedder/embedding`, as in T5):
  [vocab, d], or [vocab, K, d] with K independent blocks for AltUp."""
  if cfg.embedding_blocks > 1:
    features, axes = (cfg.embedding_blocks, cfg.emb_dim), ("altup_blocks", "embed")
  else:
    features, axes = (cfg.emb_dim,), ("embed",)
  return layers.Embed(cfg.vocab_size, features, axes, cfg.activation_dtype,
                      name="token_embedder")


def embed(cfg: T5Config, embedder: layers.Embed, ids: Array) -> Array:
  """[batch, length] ids -> [batch, length, d], or [batch, length, K, d] with AltUp
  (Recycled-AltUp replicates its d-wide embedding into K identical blocks)."""
  x = embedder(ids)
  if cfg.is_recycled:
    x = altup_lib.replicate_blocks(x, cfg.altup_k)
  return x


class Encoder(nn.Module):
  config: T5Config
  embedder: nn.Module

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None,
               deterministic: bool) -> Array:
    cfg = self.config
    length = tokens.shape[1]
    valid = tokens > 0  # [batch, length]
    # Padding/packing mask plus one relative position bias shared by all layers.
    bias = layers.attention_bias(valid, valid, segment_ids, segment_ids)
    bias = bias + layers.RelativePositionBias(cfg, bidirectional=True,
                                              name="relpos_bias")(length, length)
    x = dropout(cfg.dropout_rate, embed(cfg, self.embedder, tokens), deterministic)
    x = constrain(x, _representation_axes(cfg))
    anchored = None
    if cfg.uses_sequence_altup:
      seq_altup_lib.check_stride(cfg.sequence_altup_stride, length)
      anchored = seq_altup_lib.anchored_mask(valid, segment_ids, cfg.sequence_altup_stride)
    for i in range(cfg.num_encoder_layers):
      x = EncoderLayer(cfg, i, name=f"layers_{i}")(x, bias, valid, deterministic,
                                                   anchored)
    if cfg.uses_altup:
      x = altup_lib.sum_blocks(x)  # [batch, length, K, d] -> [batch, length, d]
    x = layers.RMSNorm(dtype=cfg.activation_dtype, name="encoder_norm")(x)
    return dropout(cfg.dropout_rate, x, deterministic)  # [batch, length, emb_dim]


class Decoder(nn.Module):
  config: T5Config
  embedder: nn.Module

  @nn.compact
  def __call__(self, encoded: Array, tokens: Array, self_mask: Array | None,
               cross_mask: Array, valid: Array, deterministic: bool, decode: bool,
               max_decode_length: int | None) -> Array:
    cfg = self.config
    # While decoding step by step, the bias covers the whole cache and each attention
    # layer takes the row of its current position.
    length = max_decode_length if decode and max_decode_length else tokens.shape[1]
    bias = layers.RelativePositionBias(cfg, bidirectional=False,
                                       name="relpos_bias")(length, length)
    self_bias = bias if self_mask is None else self_mask + bias
    y = dropout(cfg.dropout_rate, embed(cfg, self.embedder, tokens), deterministic)
    y = constrain(y, _representation_axes(cfg))
    for i in range(cfg.num_decoder_layers):
      y = DecoderLayer(cfg, i, name=f"layers_{i}")(
          y, encoded, self_bias, cross_mask, valid, deterministic, decode)
    if cfg.is_recycled:
      y = altup_lib.sum_blocks(y)  # Recycled-AltUp: back to d before the softmax
    if cfg.embedding_blocks > 1:
      # AltUp: norm over all K*d features, then K*d -> vocab.
      y = layers.RMSNorm(("altup_blocks", "embed"), cfg.activation_dtype,
                         name="decoder_norm")(y)
      y = dropout(cfg.dropout_rate, y, deterministic)
      kernel_axes, contract = ("altup_blocks", "embed", "vocab"), 2
    else:
      y = layers.RMSNorm(dtype=cfg.activation_dtype, name="decoder_norm")(y)
      y = dropout(cfg.dropout_rate, y, deterministic)
      kernel_axes, contract = ("embed", "vocab"), 1
    # Logits in float32 for a stable softmax (as t5x).
    logits = layers.Dense(cfg.vocab_size, kernel_axes, jnp.float32,
                          contract_dims=contract, name="logits_dense")(y)
    return constrain(logits, ("batch", "length", "vocab"))  # [batch, length, vocab]


class Transformer(nn.Module):
  """An encoder-decoder T5.1.1 of any variant, with t5x's module interface."""
  config: T5Config

  def setup(self):
    self.token_embedder = make_token_embedder(self.config)
    self.encoder = Encoder(self.config, self.token_embedder)
    self.decoder = Decoder(self.config, self.token_embedder)

  def encode(self, encoder_input_tokens: Array, encoder_segment_ids: Array | None = None,
             enable_dropout: bool = True) -> Array:
    """[batch, inputs_length] ids -> [batch, inputs_length, emb_dim] memory."""
    if encoder_input_tokens.ndim != 2:
      raise ValueError(
          f"encoder_input_tokens must be [batch, length]; got {encoder_input_tokens.shape}")
    return self.encoder(encoder_input_tokens, encoder_segment_ids,
                        deterministic=not enable_dropout)

  def decode(self, encoded: Array, encoder_input_tokens: Array,
             decoder_input_tokens: Array, decoder_target_tokens: Array,
             encoder_segment_ids: Array | None = None,
             decoder_segment_ids: Array | None = None,
             decoder_positions: Array | None = None, enable_dropout: bool = True,
             decode: bool = False, max_decode_length: int | None = None) -> Array:
    """Decoder logits `[batch, targets_length, vocab]`.

    With `decode=True` the first call (full-length inputs) creates the `cache`
    collection; each later call feeds one token per sequence and needs
    `max_decode_length` (the cache length). Positions are implied by the relative
    attention, so `decoder_positions` is accepted for t5x and unused.
    """
    del decoder_positions
    encoder_valid = encoder_input_tokens > 0
    if decode:
      if encoder_segment_ids is not None:
        raise ValueError("packed inputs (encoder_segment_ids) cannot be decoded; "
                         "decode one example per row")
      # No self-attention mask: the cache masks positions not yet written.
      self_mask = None
      decoder_valid = jnp.ones_like(decoder_target_tokens, dtype=bool)
      cross_mask = layers.attention_bias(decoder_valid, encoder_valid)
    else:
      decoder_valid = decoder_target_tokens > 0
      self_mask = layers.attention_bias(decoder_valid, decoder_valid, decoder_segment_ids,
                                        decoder_segment_ids, causal=True)
      cross_mask = layers.attention_bias(decoder_valid, encoder_valid,
                                         decoder_segment_ids, encoder_segment_ids)
    return self.decoder(encoded, decoder_input_tokens, self_mask, cross_mask,
                        decoder_valid, deterministic=not enable_dropout, decode=decode,
                        max_decode_length=max_decode_length)

  def __call__(self, encoder_input_tokens: Array, decoder_input_tokens: Array,
               decoder_target_tokens: Array, encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None,
               encoder_positions: Array | None = None,
               decoder_positions: Array | None = None, *, enable_dropout: bool = True,
               decode: bool = False, max_decode_length: int | None = None) -> Array:
    """Teacher-forced logits `[batch, targets_length, vocab]` (t5x's signature)."""
    del encoder_positions  # relative attention needs no absolute positions
    encoded = self.encode(encoder_input_tokens, encoder_segment_ids, enable_dropout)
    return self.decode(encoded, encoder_input_tokens, decoder_input_tokens,
                       decoder_target_tokens, encoder_segment_ids, decoder_segment_ids,
                       decoder_positions, enable_dropout, decode, max_decode_length)
