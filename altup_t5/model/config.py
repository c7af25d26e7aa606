"""The one network config: `T5Config`, its variants, and `config_for(size, variant)`.

Every module takes `config=` (t5x's way to avoid kwarg plumbing). Variants are an enum
plus K; everything derived from them is a property, so modules never re-derive it.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import jax.numpy as jnp

from altup_t5.errors import SettingError, check_int, check_number


class Variant(str, enum.Enum):
  """The networks the paper compares."""
  DENSE = "dense"  # T5.1.1 as in t5x.
  WIDE = "wide"  # T5.1.1 with d, heads and mlp times K: the paper's "2x wider model".
  MOE = "moe"  # T5.1.1 with a sparse FFN in every `moe_layer_interval`-th layer.
  ALTUP = "altup"  # K-wide representation, K*d embedding table and softmax input.
  RECYCLED_ALTUP = "recycled_altup"  # K-wide representation from a d-wide embedding.
  ALTUP_MOE = "altup_moe"  # AltUp around layers whose FFN is sparse where MoE's is.
  # Dense widths; each encoder layer computes on every stride-th token and predicts and
  # corrects the others (model/sequence_altup.py has the equations and choices).
  SEQUENCE_ALTUP = "sequence_altup"


class Schedule(str, enum.Enum):
  """Which block each layer computes on (its *activated* block)."""
  ALTERNATING = "alternating"  # layer l activates block l mod K (the paper's default).
  SAME = "same"  # every layer activates block 0 (the paper's ablation).


class ComputeOn(str, enum.Enum):
  """What the layer's transformer block is applied to."""
  INPUT = "input"  # y = L(x_j*): predict and compute are independent (the paper).
  PREDICTION = "prediction"  # y = L(x_hat_j*): Gemma 3n's choice, kept for ablation.


class Router(str, enum.Enum):
  TOKENS_CHOOSE = "tokens_choose"  # each token picks its top-k experts (Switch for k=1).
  EXPERTS_CHOOSE = "experts_choose"  # each expert picks its top tokens; encoder only.


def _enum_value(enum_cls, value, field):
  try:
    return enum_cls(value)
  except ValueError:
    allowed = ", ".join(repr(m.value) for m in enum_cls)
    raise SettingError(f"{field}={value!r} is not one of {allowed}") from None


@dataclasses.dataclass(frozen=True)
class T5Config:
  """Hyperparameters of one network. Defaults are T5.1.1 Small, dense."""

  # Vocabulary rows: T5's 32000 SentencePiece pieces + 100 sentinels, padded to 32128
  # so the embedding and softmax shard evenly.
  vocab_size: int = 32128
  # d: width of the token representation seen by each transformer layer.
  emb_dim: int = 512
  # Attention heads and their width; T5.1.1 keeps head_dim at 64 for every size, so
  # heads * head_dim need not equal emb_dim (Small: 6 * 64 = 384).
  num_heads: int = 6
  head_dim: int = 64
  # Hidden width of the gated-GELU MLP.
  mlp_dim: int = 1024
  num_encoder_layers: int = 8
  num_decoder_layers: int = 8
  # T5.1.1 pretrains without dropout and fine-tunes with 0.1.
  dropout_rate: float = 0.0
  # Activation dtype; parameters are always float32. 'bfloat16' on TPU.
  dtype: Any = "float32"
  # Gated GELU: wi_0 goes through gelu, wi_1 stays linear, and the two are multiplied.
  mlp_activations: tuple[str, ...] = ("gelu", "linear")
  # Relative position bias: one [heads, buckets] table per stack, shared by its layers.
  relpos_num_buckets: int = 32
  relpos_max_distance: int = 128
  # Softmax of attention in float32 even for bfloat16 activations.
  float32_attention_logits: bool = True

  variant: Variant = Variant.DENSE
  # AltUp's K: the representation is K blocks of width d (the paper's default is 2).
  # The one name for K: gin's ALTUP_K, the AltUp module's `altup_k`.
  altup_k: int = 2
  altup_schedule: Schedule = Schedule.ALTERNATING  # gin: ALTUP_SCHEDULE
  altup_compute_on: ComputeOn = ComputeOn.INPUT  # gin: ALTUP_COMPUTE_ON
  # The wide baseline's multiplier of d, heads and mlp (`config_for` applies it): the
  # paper's "2x wider model" is 2, compared with AltUp at K=2.
  width_factor: int = 2
  # Sequence-AltUp's stride s: encoder layers compute on tokens 0, s, 2s, ...
  # (gin: SEQUENCE_ALTUP_STRIDE). Must be >= 2 and <= the encoder input length.
  sequence_altup_stride: int = 2

  # MoE: `num_experts` experts of width `expert_mlp_dim` (0 means mlp_dim).
  num_experts: int = 8
  expert_mlp_dim: int = 0
  # Layer i is sparse when i % moe_layer_interval == moe_layer_interval - 1
  # (every other layer for 2, as in Switch and GShard).
  moe_layer_interval: int = 2
  # Top-k for tokens-choose routing: 1 is Switch, 2 is the GShard/T5X default.
  num_selected_experts: int = 2
  # Routing of the encoder's sparse layers; the decoder always uses tokens-choose,
  # because experts choosing among a sequence would let a token see its future.
  encoder_router: Router = Router.TOKENS_CHOOSE
  # Expert capacity = capacity_factor * k * group_size / num_experts tokens.
  train_capacity_factor: float = 1.25
  eval_capacity_factor: float = 2.0
  # Floor on the capacity, so small groups (decoding: one token per sequence) still
  # route their tokens; flaxformer's `min_expert_capacity` default.
  moe_min_capacity: int = 4
  # Tokens are routed within groups of at most this many (GShard's "group size").
  moe_group_size: int = 4096

  def __post_init__(self):
    # Accept strings for the enums (gin and `config_for` pass strings).
    set_ = lambda name, value: object.__setattr__(self, name, value)
    set_("variant", _enum_value(Variant, self.variant, "variant"))
    set_("altup_schedule", _enum_value(Schedule, self.altup_schedule, "altup_schedule"))
    set_("altup_compute_on",
         _enum_value(ComputeOn, self.altup_compute_on, "altup_compute_on"))
    set_("encoder_router", _enum_value(Router, self.encoder_router, "encoder_router"))
    set_("mlp_activations", tuple(self.mlp_activations))
    try:
      jnp.dtype(self.dtype)
    except TypeError:
      raise SettingError(
          f"dtype={self.dtype!r} is not a dtype; use 'float32' or 'bfloat16'") from None
    for name in ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim",
                 "num_encoder_layers", "num_decoder_layers", "relpos_num_buckets",
                 "relpos_max_distance", "altup_k", "width_factor", "sequence_altup_stride", "num_experts",
                 "expert_mlp_dim", "moe_layer_interval", "num_selected_experts",
                 "moe_min_capacity", "moe_group_size"):
      check_int(name, getattr(self, name))  # types here; ranges below, as they apply
    for name in ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim",
                 "num_encoder_layers", "num_decoder_layers"):
      if getattr(self, name) < 1:
        raise SettingError(f"{name}={getattr(self, name)} must be a positive integer")
    check_number("dropout_rate", self.dropout_rate)
    check_number("train_capacity_factor", self.train_capacity_factor)
    check_number("eval_capacity_factor", self.eval_capacity_factor)
    if not 0.0 <= self.dropout_rate < 1.0:
      raise SettingError(f"dropout_rate={self.dropout_rate} must be in [0, 1)")
    if self.width_factor < 1:
      raise SettingError(f"width_factor={self.width_factor} must be a positive integer")
    if self.uses_altup and self.altup_k < 2:
      raise SettingError(
          f"altup_k={self.altup_k} must be >= 2 for variant {self.variant.value!r} "
          "(AltUp needs at least two blocks)")
    if self.uses_sequence_altup and self.sequence_altup_stride < 2:
      raise SettingError(
          f"sequence_altup_stride={self.sequence_altup_stride} must be an integer >= 2 "
          "(and <= the encoder input length) for variant 'sequence_altup'")
    if self.uses_sequence_altup and self.altup_compute_on != ComputeOn.INPUT:
      # The layer runs on the anchors x_a; a prediction-input variant is not defined
      # for the sequence axis (model/sequence_altup.py), so it is refused, not ignored.
      raise SettingError(
          f"altup_compute_on={self.altup_compute_on.value!r} is not defined for variant "
          "'sequence_altup'; allowed: 'input'")
    if self.uses_moe:
      if self.num_experts < 1:
        raise SettingError(f"num_experts={self.num_experts} must be >= 1")
      if not 1 <= self.num_selected_experts <= self.num_experts:
        raise SettingError(
            f"num_selected_experts={self.num_selected_experts} must be between 1 and "
            f"num_experts={self.num_experts}")
      if self.moe_layer_interval < 1:
        raise SettingError(f"moe_layer_interval={self.moe_layer_interval} must be >= 1")
      for name in ("train_capacity_factor", "eval_capacity_factor"):
        if getattr(self, name) <= 0:
          raise SettingError(f"{name}={getattr(self, name)} must be > 0")
      if self.moe_group_size < 1:
        raise SettingError(f"moe_group_size={self.moe_group_size} must be >= 1")
      if self.moe_min_capacity < 1:
        raise SettingError(f"moe_min_capacity={self.moe_min_capacity} must be >= 1")

  def replace(self, **changes) -> "T5Config":
    return dataclasses.replace(self, **changes)

  # ---- derived properties: the only place variants are interpreted ----
  @property
  def uses_altup(self) -> bool:
    return self.variant in (Variant.ALTUP, Variant.RECYCLED_ALTUP, Variant.ALTUP_MOE)

  @property
  def uses_sequence_altup(self) -> bool:
    """Sequence-AltUp: d-wide like dense (uses_altup is False), strided encoder layers."""
    return self.variant == Variant.SEQUENCE_ALTUP

  @property
  def uses_moe(self) -> bool:
    return self.variant in (Variant.MOE, Variant.ALTUP_MOE)

  @property
  def is_recycled(self) -> bool:
    """Recycled-AltUp: a d-wide embedding replicated into the K blocks, and the K
    output blocks summed back to d before the final norm and softmax."""
    return self.variant == Variant.RECYCLED_ALTUP

  @property
  def representation_blocks(self) -> int:
    """Blocks of width d in the token representation: K with AltUp, else 1."""
    return self.altup_k if self.uses_altup else 1

  @property
  def embedding_blocks(self) -> int:
    """Blocks in the embedding table and the softmax input: K with AltUp's K*d-wide
    table, 1 for Recycled-AltUp and every model without AltUp."""
    return self.altup_k if self.uses_altup and not self.is_recycled else 1

  @property
  def activation_dtype(self):
    return jnp.dtype(self.dtype)

  @property
  def expert_dim(self) -> int:
    return self.expert_mlp_dim or self.mlp_dim

  def is_sparse_layer(self, layer: int) -> bool:
    n = self.moe_layer_interval
    return self.uses_moe and layer % n == n - 1

  def active_block(self, layer: int) -> int:
    """The block layer `layer` (counted within its stack) computes on."""
    if self.altup_schedule == Schedule.SAME:
      return 0
    return layer % self.altup_k


# T5.1.1 sizes, as in t5x's gin/models/t5_1_1/*.gin; `tiny` is ours, sized for a CPU
# and the offline vocabulary (8000 SentencePiece pieces + 100 sentinels, padded).
# `micro` and `tiny2x` bracket `tiny`, so a CPU study has three sizes per method (the
# paper's speedup is read off quality-vs-speed curves across sizes).
SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(vocab_size=8192, emb_dim=128, num_heads=4, head_dim=32, mlp_dim=384,
                 num_encoder_layers=4, num_decoder_layers=4),
    "small": dict(emb_dim=512, num_heads=6, head_dim=64, mlp_dim=1024,
                  num_encoder_layers=8, num_decoder_layers=8),
    "base": dict(emb_dim=768, num_heads=12, head_dim=64, mlp_dim=2048,
                 num_encoder_layers=12, num_decoder_layers=12),
    "large": dict(emb_dim=1024, num_heads=16, head_dim=64, mlp_dim=2816,
                  num_encoder_layers=24, num_decoder_layers=24),
    "xl": dict(emb_dim=2048, num_heads=32, head_dim=64, mlp_dim=5120,
               num_encoder_layers=24, num_decoder_layers=24),
    "xxl": dict(emb_dim=4096, num_heads=64, head_dim=64, mlp_dim=10240,
                num_encoder_layers=24, num_decoder_layers=24),
    # The CPU frontier around `tiny` (listed last, so messages keep the paper's order).
    "micro": dict(vocab_size=8192, emb_dim=64, num_heads=2, head_dim=32, mlp_dim=192,
                  num_encoder_layers=2, num_decoder_layers=2),
    "tiny2x": dict(vocab_size=8192, emb_dim=192, num_heads=6, head_dim=32, mlp_dim=576,
                   num_encoder_layers=6, num_decoder_layers=6),
}


def config_for(size: str, variant: str = "dense", *, attention_dim: int | None = None,
               **overrides) -> T5Config:
  """The config of a paper size and variant, e.g. `config_for("base", "altup")`.

  `overrides` are T5Config fields. `attention_dim` asks for heads * head_dim of that
  width (num_heads is derived from it unless given, and must agree if given). The
  `wide` variant multiplies d, heads and mlp by `altup_k` (after the overrides).
  """
  if not isinstance(size, str) or size not in SIZES:
    raise SettingError(f"size={size!r} is not one of {', '.join(map(repr, SIZES))}")
  variant = _enum_value(Variant, variant, "variant")
  fields = {f.name for f in dataclasses.fields(T5Config)}
  unknown = sorted(set(overrides) - fields)
  if unknown:
    raise SettingError(f"unknown T5Config field(s) {unknown}; fields are {sorted(fields)}")
  values = {**SIZES[size], **overrides, "variant": variant}
  if attention_dim is not None:
    head_dim = values["head_dim"]
    if "num_heads" in overrides:
      if overrides["num_heads"] * head_dim != attention_dim:
        raise SettingError(
            f"num_heads={overrides['num_heads']} x head_dim={head_dim} = "
            f"{overrides['num_heads'] * head_dim} does not match "
            f"attention_dim={attention_dim}")
    elif attention_dim % head_dim:
      raise SettingError(
          f"attention_dim={attention_dim} is not a multiple of head_dim={head_dim}; "
          "allowed: multiples of head_dim")
    else:
      values["num_heads"] = attention_dim // head_dim
  if variant == Variant.WIDE:
    factor = values.get("width_factor", 2)
    if not isinstance(factor, int) or factor < 2:
      raise SettingError(f"width_factor={factor!r} must be an integer >= 2 for variant "
                       "'wide'")
    for name in ("emb_dim", "num_heads", "mlp_dim"):
      values[name] *= factor
  return T5Config(**values)
