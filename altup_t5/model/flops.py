"""Model FLOPs of a step, counted from the architecture (what `bench` divides by time)."""

from __future__ import annotations

from altup_t5.model import moe
from altup_t5.model.config import Router, T5Config


def model_flops(cfg: T5Config, batch: int, inputs_length: int, targets_length: int,
                *, train: bool = True) -> float:
  """FLOPs of the network's matmuls for one batch, each matmul counted once.

  Convention: a matmul of [m, k] by [k, n] is 2*m*k*n FLOPs forward; a train step is
  3x the forward (the backward pass computes one matmul for the input gradient and
  one for the weight gradient). Counted: q/k/v/out projections, attention scores and
  weighted values (over all keys, as computed: masks do not skip work), the MLP
  kernels, the logits (K*d -> vocab for AltUp), AltUp's predict ([K, K] by [K, d] per
  token and layer) and MoE's router. Sequence-AltUp's encoder layers count their
  ceil(inputs_length / stride) anchors; the decoder's cross-attention all inputs. MoE experts count the slots they process at the
  capacity in force (train capacity factor for `train=True`, eval otherwise), full or
  not: `num_groups * num_experts * capacity` tokens per sparse layer. Not counted:
  the embedding lookup (a gather), norms, softmax, AltUp's correct step, MoE dispatch
  and combine (gathers and scatters), and the optimiser.
  """
  d, joined = cfg.emb_dim, cfg.num_heads * cfg.head_dim
  mlp_matmuls = len(cfg.mlp_activations) + 1  # wi_0, wi_1, wo for gated GELU

  def attention(q_len: int, kv_len: int) -> int:  # multiply-adds of one example
    return (2 * q_len * d * joined  # query, out
            + 2 * kv_len * d * joined  # key, value
            + 2 * q_len * kv_len * joined)  # scores, weighted values

  def feed_forward(layer: int, tokens: int, router: Router) -> int:
    if not cfg.is_sparse_layer(layer):
      return tokens * d * cfg.mlp_dim * mlp_matmuls
    groups, group_size = moe.group_layout(tokens, cfg.moe_group_size)
    capacity = moe.expert_capacity(cfg, router, group_size, deterministic=not train)
    slots = groups * cfg.num_experts * capacity
    return tokens * d * cfg.num_experts + slots * d * cfg.expert_dim * mlp_matmuls

  altup_predict = cfg.altup_k ** 2 * d if cfg.uses_altup else 0  # per token
  enc_tokens, dec_tokens = batch * inputs_length, batch * targets_length
  macs = 0
  # Sequence-AltUp: the encoder layers run on the anchors only.
  enc_len = (-(-inputs_length // cfg.sequence_altup_stride) if cfg.uses_sequence_altup
             else inputs_length)
  for layer in range(cfg.num_encoder_layers):
    macs += batch * attention(enc_len, enc_len)
    macs += feed_forward(layer, batch * enc_len, cfg.encoder_router)
    macs += enc_tokens * altup_predict
  for layer in range(cfg.num_decoder_layers):
    macs += batch * attention(targets_length, targets_length)  # self-attention
    macs += batch * attention(targets_length, inputs_length)  # cross-attention
    macs += feed_forward(layer, dec_tokens, Router.TOKENS_CHOOSE)
    macs += dec_tokens * altup_predict
  macs += dec_tokens * cfg.embedding_blocks * d * cfg.vocab_size  # logits
  return 2.0 * macs * (3 if train else 1)
