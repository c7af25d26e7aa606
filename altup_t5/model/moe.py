"""Sparse mixture-of-experts FFN: `MoeMlp`, used in place of `MlpBlock` in every
`moe_layer_interval`-th layer (the MoE baseline of the paper, as in t5x/contrib/moe
with flaxformer's `MoeLayer`).

Steps, for tokens `[batch, length]` flattened and split into groups:
  1. route: a float32 `router` Dense gives per-token expert probabilities; within each
     group a router fills every expert's `capacity` slots with token ids
     (tokens-choose top-k, or experts-choose top-C);
  2. dispatch: gather tokens into `[experts, groups, capacity, emb_dim]` by slot index
     (the `expert` axis shards over the `expert` mesh axis: an all-to-all under jit);
  3. experts: `layers.MlpBlock` vmapped over the expert axis (parameters
     `expert/wi_0/kernel` of shape `[experts, emb_dim, expert_dim]`);
  4. combine: scatter-add each slot's output, scaled by its router probability, back
     onto its token. Unrouted tokens (dropped or padding) get 0: the residual carries them.
Dispatch and combine cost O(slots * emb_dim), slots = experts * capacity ~ factor * k *
tokens, instead of the O(tokens * experts * capacity * emb_dim) of a one-hot einsum.

Losses and metrics are sown into `intermediates` under t5x's MoE names (read by
`t5x.contrib.moe.models`), averaged over valid (non-padding) tokens only.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning
from jax import lax

from altup_t5.model import layers
from altup_t5.model.config import Router, T5Config

Array = jax.Array
constrain = nn_partitioning.with_sharding_constraint

# flaxformer's router initialiser: small normal logits, so routing starts near-uniform.
router_init = nn.initializers.normal(stddev=2e-2)

METRIC_NAMES = ("auxiliary_loss", "router_z_loss", "fraction_tokens_left_behind",
                "expert_usage", "router_confidence")


# ---- grouping and capacity ----

def group_token_shards() -> int:
  """How many devices the token-group axis is split over in the current mesh context
  (the `batch` rule's mesh axes); 1 outside a mesh.

  As in flaxformer (which reads `jax.device_count()`), the grouping, hence which
  tokens compete for capacity, depends on the mesh; outputs do not unless tokens are
  dropped."""
  mesh = jax.sharding.get_abstract_mesh()
  rules = nn_partitioning.get_axis_rules()
  if mesh.empty or not rules:
    return 1
  axes = nn_partitioning.logical_to_mesh_axes(("batch",), rules)[0]
  axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
  return math.prod(mesh.shape.get(a, 1) for a in axes)


def group_layout(num_tokens: int, max_group_size: int, shards: int = 1) -> tuple[int, int]:
  """`(num_groups, group_size)` for routing `num_tokens` tokens.

  As flaxformer's `_num_groups`: the fewest groups of at most `max_group_size` tokens,
  rounded up to a multiple of the devices holding groups (so each group lives on one
  device). Flaxformer also needs a multiple of the number of experts, for its
  reshape-based all-to-all; our expert-major transpose does not. Instead of searching
  for a group count that divides the tokens (which can degenerate to groups of one
  token), groups are made equal and the last is padded with invalid tokens (fewer
  than `num_groups` of them, never routed).
  """
  num_groups = math.ceil(num_tokens / max_group_size)
  num_groups = shards * math.ceil(num_groups / shards)
  return num_groups, math.ceil(num_tokens / num_groups)


def expert_capacity(config: T5Config, router: Router, group_size: int,
                    deterministic: bool) -> int:
  """Slots per expert per group: ceil(factor * k * group_size / num_experts).

  k = num_selected_experts for tokens-choose and 1 for experts-choose, so the factor is
  the slack over a perfectly balanced load for any k (flaxformer's formula,
  round(factor * group_size / experts), leaves k out: at factor 1 a top-2 layer has
  room for half of the choices).
  Floored at `moe_min_capacity` (flaxformer's `min_expert_capacity`) and capped at the
  group size: an expert never receives a token twice.
  """
  factor = config.eval_capacity_factor if deterministic else config.train_capacity_factor
  per_token = config.num_selected_experts if router == Router.TOKENS_CHOOSE else 1
  # round() first: in floats 0.1 * 3 * 10 is 3.0000000000000004, whose ceil is 4.
  capacity = math.ceil(round(factor * per_token * group_size / config.num_experts, 6))
  return min(group_size, max(config.moe_min_capacity, capacity))


# ---- routers: fill each expert's slots with token ids ----
# Both return `slot_token` [groups, experts * capacity] int32 (the token in each slot,
# `group_size` for an empty slot) and `slot_weight` [groups, experts * capacity] float32
# (the router probability that scales the slot's output; 0 when empty).

def route_tokens_choose(probs: Array, valid: Array, k: int,
                        capacity: int) -> tuple[Array, Array]:
  """Each valid token picks its top-k experts; an expert takes tokens in priority order
  until its capacity is full, the rest are dropped.

  Priority (flaxformer's `TokensChooseScatterRouter` without batch-prioritised routing):
  every token's first choice before any token's second choice, and within a choice
  rank, tokens in sequence order. The combine weight is the router probability of the
  chosen expert, not renormalised over the top-k (as in flaxformer).
  """
  groups, group_size, num_experts = probs.shape
  gate, expert = lax.top_k(probs, k)  # [groups, tokens, k]
  # Choice-major order: [groups, k * tokens], choice rank outermost.
  expert = jnp.swapaxes(expert, 1, 2).reshape(groups, k * group_size)
  gate = jnp.swapaxes(gate, 1, 2).reshape(groups, k * group_size)
  token = jnp.tile(jnp.arange(group_size, dtype=jnp.int32), k)  # [k * tokens]
  choice_valid = jnp.tile(valid, (1, k))  # [groups, k * tokens]
  # Position of each choice in its expert's queue; padding takes no place.
  one_hot = jax.nn.one_hot(expert, num_experts, dtype=jnp.int32)
  one_hot = one_hot * choice_valid[..., None]  # [groups, k * tokens, experts]
  position = jnp.sum((jnp.cumsum(one_hot, axis=1) - 1) * one_hot, axis=-1)
  kept = choice_valid & (position < capacity)  # [groups, k * tokens]
  # Flat slot of each kept choice; dropped ones point past the end and are discarded.
  slot = jnp.where(kept, expert * capacity + position, num_experts * capacity)

  def fill(slot, gate):  # one group
    slot_token = jnp.full((num_experts * capacity,), group_size, jnp.int32)
    slot_token = slot_token.at[slot].set(token, mode="drop")
    slot_weight = jnp.zeros((num_experts * capacity,), jnp.float32)
    return slot_token, slot_weight.at[slot].set(gate, mode="drop")

  return jax.vmap(fill)(slot, gate)


def route_experts_choose(probs: Array, valid: Array, capacity: int) -> tuple[Array, Array]:
  """Each expert takes the `capacity` valid tokens of the group it gives the highest
  probability (Expert Choice, flaxformer's `ExpertsChooseMaskedRouter`). A token may be
  processed by several experts or by none. Padding is never chosen (flaxformer only
  down-weights it); slots left over when the group has fewer valid tokens stay empty.
  """
  groups, group_size, num_experts = probs.shape
  # Probabilities are >= 0, so -1 ranks padding below every valid token.
  scores = jnp.where(valid[..., None], probs, -1.0)
  gate, token = lax.top_k(jnp.swapaxes(scores, 1, 2), capacity)  # [groups, experts, C]
  chosen = gate >= 0
  slot_token = jnp.where(chosen, token, group_size).astype(jnp.int32)
  slot_weight = jnp.where(chosen, gate, 0.0)
  return (slot_token.reshape(groups, num_experts * capacity),
          slot_weight.reshape(groups, num_experts * capacity))


# ---- losses ----

def load_balancing_loss(probs: Array, valid: Array, k: int) -> Array:
  """Switch/GShard auxiliary loss, `num_experts * sum_e f_e * P_e` per group, averaged
  over groups (flaxformer's `_load_balancing_loss`): f_e is the fraction of the group's
  valid tokens with expert e among their top-k (before capacity), P_e their mean router
  probability for e. Equals k under uniform routing. Groups without valid tokens are
  left out of the mean.
  """
  num_experts = probs.shape[-1]
  _, expert = lax.top_k(probs, k)  # [groups, tokens, k]
  chosen = jnp.max(jax.nn.one_hot(expert, num_experts), axis=-2)  # [groups, tokens, E]
  weight = valid.astype(jnp.float32)[..., None]  # [groups, tokens, 1]
  count = jnp.sum(weight, axis=1)  # [groups, 1]
  fraction = jnp.sum(chosen * weight, axis=1) / jnp.maximum(count, 1)  # [groups, E]
  mean_prob = jnp.sum(probs * weight, axis=1) / jnp.maximum(count, 1)  # [groups, E]
  per_group = num_experts * jnp.sum(fraction * mean_prob, axis=-1)  # [groups]
  has_tokens = count[:, 0] > 0
  return jnp.sum(per_group * has_tokens) / jnp.maximum(jnp.sum(has_tokens), 1)


def router_z_loss(logits: Array, valid: Array) -> Array:
  """ST-MoE's z-loss: mean over valid tokens of logsumexp(router logits)^2."""
  log_z = jax.nn.logsumexp(logits, axis=-1)  # [groups, tokens]
  return jnp.sum(jnp.square(log_z) * valid) / jnp.maximum(jnp.sum(valid), 1)


# ---- the layer ----

class MoeMlp(nn.Module):
  """Sparse gated-GELU FFN with `num_experts` experts of width `expert_dim`.

  `__call__(x [batch, length, emb_dim], valid [batch, length] bool or None,
  deterministic)`: padding (`valid=False`) is never routed, takes no capacity, gets
  output 0 and is left out of losses and metrics. `deterministic` selects the eval
  capacity factor (and disables expert dropout), as `enable_dropout` does in t5x.
  """
  config: T5Config
  router: Router

  @nn.compact
  def __call__(self, x: Array, valid: Array | None, deterministic: bool) -> Array:
    cfg = self.config
    router = self._router_kind()
    k, num_experts = cfg.num_selected_experts, cfg.num_experts
    if not 1 <= k <= num_experts:
      raise ValueError(f"num_selected_experts={k} must be between 1 and "
                       f"num_experts={num_experts}")
    if x.ndim != 3:
      raise ValueError(f"MoeMlp expects x of shape [batch, length, emb_dim], got {x.shape}")
    batch, length, emb_dim = x.shape
    valid = jnp.ones((batch, length), bool) if valid is None else valid.astype(bool)

    # [batch, length, emb_dim] -> [groups, group_size, emb_dim], padded with invalid tokens.
    num_tokens = batch * length
    groups, group_size = group_layout(num_tokens, cfg.moe_group_size, group_token_shards())
    pad = groups * group_size - num_tokens
    tokens = jnp.pad(x.reshape(num_tokens, emb_dim), ((0, pad), (0, 0)))
    tokens = constrain(tokens.reshape(groups, group_size, emb_dim),
                       ("batch", "length", "embed"))
    token_valid = jnp.pad(valid.reshape(num_tokens), (0, pad)).reshape(groups, group_size)

    # Routing in float32 for stability (Switch's "selective precision").
    logits = layers.Dense(num_experts, ("embed", "unmodeled"), jnp.float32,
                          kernel_init=router_init, name="router")(tokens)
    logits = constrain(logits, ("batch", "length", "unmodeled"))  # [groups, tokens, E]
    probs = jax.nn.softmax(logits, axis=-1)
    capacity = expert_capacity(cfg, router, group_size, deterministic)
    if router == Router.TOKENS_CHOOSE:
      slot_token, slot_weight = route_tokens_choose(probs, token_valid, k, capacity)
      aux_loss = load_balancing_loss(probs, token_valid, k)
    else:
      slot_token, slot_weight = route_experts_choose(probs, token_valid, capacity)
      aux_loss = jnp.zeros((), jnp.float32)  # experts always fill up: nothing to balance

    # Dispatch: [groups, E * C] slot ids -> [groups, E * C, emb_dim]; empty slots read 0.
    gather = jax.vmap(lambda t, s: t.at[s].get(mode="fill", fill_value=0))
    expert_inputs = gather(tokens, slot_token)
    expert_inputs = expert_inputs.reshape(groups, num_experts, capacity, emb_dim)
    # [experts, groups, capacity, emb_dim]: experts-major, sharded over the expert axis.
    expert_inputs = constrain(jnp.swapaxes(expert_inputs, 0, 1),
                              ("expert", "expert_group", "expert_capacity", "embed"))

    # The dense MLP, one copy per expert: own init and own dropout rng for each.
    experts = nn_partitioning.vmap_with_axes(
        layers.MlpBlock,
        variable_axes={"params": 0},
        split_rngs={"params": True, "dropout": True},
        in_axes=(0, None),
        partitioning_axis_names={"params": "expert"})
    expert_outputs = experts(cfg, mlp_dim=cfg.expert_dim, name="expert")(
        expert_inputs, deterministic)
    expert_outputs = constrain(expert_outputs,
                               ("expert", "expert_group", "expert_capacity", "embed"))
    # Back to group-major: [groups, E * C, emb_dim].
    expert_outputs = jnp.swapaxes(expert_outputs, 0, 1).reshape(
        groups, num_experts * capacity, emb_dim)

    # Combine: each slot's output, scaled by its router probability, added onto its
    # token; empty slots point past the end and are discarded.
    weighted = expert_outputs * slot_weight[..., None].astype(expert_outputs.dtype)
    scatter = jax.vmap(lambda s, v: jnp.zeros((group_size, emb_dim), v.dtype)
                       .at[s].add(v, mode="drop"))
    out = scatter(slot_token, weighted)  # [groups, group_size, emb_dim]
    out = constrain(out, ("batch", "length", "embed"))

    self._sow_metrics(aux_loss, router_z_loss(logits, token_valid), slot_token,
                      slot_weight, token_valid)
    out = out.reshape(groups * group_size, emb_dim)[:num_tokens]
    return constrain(out.reshape(batch, length, emb_dim), ("batch", "length", "embed"))

  def _router_kind(self) -> Router:
    try:
      return Router(self.router)
    except ValueError:
      allowed = ", ".join(repr(r.value) for r in Router)
      raise ValueError(f"router={self.router!r} is not one of {allowed}") from None

  def _sow_metrics(self, aux_loss, z_loss, slot_token, slot_weight, token_valid):
    """flaxformer's `MoeLayer` metrics, over valid tokens:
    fraction_tokens_left_behind = valid tokens processed by no expert / valid tokens;
    expert_usage = filled slots / all slots (1 for experts-choose without padding);
    router_confidence = mean router probability over filled slots."""
    groups, group_size = token_valid.shape
    filled = slot_token < group_size  # [groups, E * C]
    num_filled = jnp.sum(filled)
    # [groups, group_size]: how many experts processed each token.
    count = jax.vmap(lambda s: jnp.zeros((group_size,), jnp.int32).at[s].add(
        1, mode="drop"))(slot_token)
    num_valid = jnp.sum(token_valid)
    processed = jnp.sum((count > 0) & token_valid)
    metrics = {
        "auxiliary_loss": aux_loss,
        "router_z_loss": z_loss,
        "fraction_tokens_left_behind": (num_valid - processed) / jnp.maximum(num_valid, 1),
        "expert_usage": num_filled / filled.size,
        "router_confidence": jnp.sum(slot_weight) / jnp.maximum(num_filled, 1),
    }
    for name in METRIC_NAMES:
      self.sow("intermediates", name, jnp.asarray(metrics[name], jnp.float32))
