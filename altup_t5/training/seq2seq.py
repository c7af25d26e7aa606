"""The network wrapped for training: T5's losses and metrics.

Like t5x's `EncoderDecoderModel`: the module computes logits, this class turns a
feature-converted batch (`encoder_input_tokens`, `decoder_input_tokens`,
`decoder_target_tokens`, optional `*_segment_ids` / `*_positions`, and
`decoder_loss_weights`) into a loss and metrics.

Metrics are `(total, count)` pairs so that they add up across steps, batches and hosts
before dividing: `summarize(metrics)` divides.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import jax
import jax.numpy as jnp
from flax import traverse_util


from altup_t5.model import layers
from altup_t5.model.network import Transformer

Array = jax.Array
Metrics = dict[str, tuple[Array, Array]]

# t5x's MoE metric names, sown by `moe.MoeMlp` into `intermediates`.
MOE_METRICS = ("auxiliary_loss", "router_z_loss", "fraction_tokens_left_behind",
               "expert_usage", "router_confidence")
LOSS_NORMALIZERS = ("NUM_REAL_TARGET_TOKENS", "NUM_TOTAL_TARGET_TOKENS")


@dataclasses.dataclass(frozen=True)
class LossSettings:
  """T5's training loss (t5x's defaults for T5.1.1)."""
  # Penalises log Z of the softmax so logits stay near log-normalised (T5: 1e-4).
  z_loss: float = 1e-4
  label_smoothing: float = 0.0
  # The summed loss is divided by this: None (sum, t5x's T5.1.1 default), a number
  # (t5x's pretraining uses batch * targets length), or one of LOSS_NORMALIZERS.
  loss_normalizing_factor: float | str | None = None
  # MoE auxiliary losses, added with these factors (Switch/GShard/t5x values).
  moe_aux_loss_factor: float = 0.01
  moe_router_z_loss_factor: float = 1e-4

  def __post_init__(self):
    f = self.loss_normalizing_factor
    if isinstance(f, str) and f not in LOSS_NORMALIZERS:
      raise ValueError(f"loss_normalizing_factor={f!r} is not a number, None, or one of "
                       f"{', '.join(map(repr, LOSS_NORMALIZERS))}")
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ValueError(f"label_smoothing={self.label_smoothing} must be in [0, 1)")


def cross_entropy(logits: Array, targets: Array, label_smoothing: float,
                  z_loss: float) -> tuple[Array, Array]:
  """Per-token cross entropy (with label smoothing, minus its constant entropy so a
  perfect model scores 0) and T5's z-loss, both `[batch, length]`."""
  vocab = logits.shape[-1]
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)  # [batch, length]
  log_probs = logits - log_z[..., None]
  confidence = 1.0 - label_smoothing
  target_log_prob = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
  nll = -confidence * target_log_prob
  if label_smoothing:
    low = label_smoothing / (vocab - 1)
    # Smoothed targets put `low` on every other token.
    nll -= low * (jnp.sum(log_probs, axis=-1) - target_log_prob)
    entropy = -(confidence * jnp.log(confidence) + (vocab - 1) * low * jnp.log(low))
    nll -= entropy
  return nll, z_loss * jnp.square(log_z)


@dataclasses.dataclass(frozen=True)
class TrivialIds:
  """Target ids that need no language model to predict in span corruption: EOS, and
  the sentinels (seqio numbers them down from the top of the vocabulary, so they are
  the ids >= `first_sentinel_id`)."""
  eos_id: int = 1
  first_sentinel_id: int | None = None  # None: the vocabulary has no sentinels

  @classmethod
  def of_vocabulary(cls, vocab) -> "TrivialIds":
    extra = int(getattr(vocab, "extra_ids", 0) or 0)
    return cls(int(vocab.eos_id), vocab.vocab_size - extra if extra else None)

  def mask(self, targets: Array) -> Array:
    trivial = targets == self.eos_id
    if self.first_sentinel_id is not None:
      trivial |= targets >= self.first_sentinel_id
    return trivial


class Seq2SeqModel:
  """A `Transformer` plus how to train, evaluate and decode it."""

  def __init__(self, module: Transformer, loss: LossSettings = LossSettings(),
               trivial_ids: "TrivialIds | None" = None):
    self.module = module
    self.loss = loss
    # Which target ids span corruption makes trivially predictable; None: EOS (id 1)
    # only. Set from the task's vocabulary by `with_trivial_ids`.
    self.trivial_ids = trivial_ids or TrivialIds()

  def with_trivial_ids(self, trivial_ids: "TrivialIds") -> "Seq2SeqModel":
    return Seq2SeqModel(self.module, self.loss, trivial_ids)

  @property
  def config(self):
    return self.module.config

  # ------------------------------------------------------------ variables
  def init(self, rng: Array, batch: Mapping[str, Array]):
    """All variables (`params`, `params_axes`) for batches shaped like `batch`
    (arrays or `jax.ShapeDtypeStruct`s; only shapes and dtypes are used)."""
    ones = {k: jnp.ones(v.shape, v.dtype) for k, v in _model_inputs(batch).items()}
    return self.module.init(rng, **ones, enable_dropout=False)

  # ------------------------------------------------------------ loss and metrics
  def loss_and_metrics(self, params, batch: Mapping[str, Array],
                       dropout_rng: Array | None) -> tuple[Array, Metrics]:
    """The training loss to differentiate, and the step's metrics."""
    rngs = {"dropout": dropout_rng} if dropout_rng is not None else None
    logits, state = self.module.apply(
        {"params": params}, **_model_inputs(batch), enable_dropout=rngs is not None,
        rngs=rngs, mutable=["intermediates"])
    targets = batch["decoder_target_tokens"]
    weights = batch.get("decoder_loss_weights")
    weights = (targets > 0) if weights is None else weights
    weights = weights.astype(jnp.float32)  # [batch, length]
    nll, z = cross_entropy(logits, targets, self.loss.label_smoothing, self.loss.z_loss)
    num_tokens = jnp.sum(weights)
    summed = jnp.sum((nll + z) * weights)
    loss = summed / self._normalizer(weights)
    correct = (layers.argmax(logits) == targets).astype(jnp.float32)
    # Sentinels and EOS: a model that gets only these right scores `trivial_floor`.
    trivial = self.trivial_ids.mask(targets).astype(jnp.float32)  # [batch, length]
    nontrivial = weights * (1.0 - trivial)
    metrics: Metrics = {
        "loss": (jnp.sum(nll * weights), num_tokens),  # cross entropy per token
        "z_loss": (jnp.sum(z * weights), num_tokens),
        "accuracy": (jnp.sum(correct * weights), num_tokens),
        "nonsentinel_accuracy": (jnp.sum(correct * nontrivial), jnp.sum(nontrivial)),
        "trivial_floor": (jnp.sum(trivial * weights), num_tokens),
        "num_tokens": (num_tokens, jnp.ones(())),
    }
    if self.config.uses_moe:
      moe = _average_moe_metrics(state.get("intermediates", {}))
      loss += (self.loss.moe_aux_loss_factor * moe["auxiliary_loss"]
               + self.loss.moe_router_z_loss_factor * moe["router_z_loss"])
      metrics.update({f"moe/{k}": (v, jnp.ones(())) for k, v in moe.items()})
    return loss, metrics

  def _normalizer(self, weights: Array) -> Array | float:
    f = self.loss.loss_normalizing_factor
    if f is None:
      return 1.0
    if f == "NUM_REAL_TARGET_TOKENS":
      return jnp.maximum(jnp.sum(weights), 1.0)
    if f == "NUM_TOTAL_TARGET_TOKENS":
      return float(weights.size)
    return float(f)

  def eval_metrics(self, params, batch: Mapping[str, Array]) -> Metrics:
    """Teacher-forced metrics without dropout."""
    return self.loss_and_metrics(params, batch, dropout_rng=None)[1]


def _model_inputs(batch: Mapping[str, Array]) -> dict[str, Array]:
  names = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens",
           "encoder_segment_ids", "decoder_segment_ids", "encoder_positions",
           "decoder_positions")
  return {k: batch[k] for k in names if k in batch}


def _average_moe_metrics(intermediates) -> dict[str, Array]:
  """Each sparse layer sows its metrics; average every metric over the layers."""
  flat = traverse_util.flatten_dict(intermediates)
  averages = {}
  for name in MOE_METRICS:
    values = [jnp.mean(jnp.asarray(v, jnp.float32)) for path, vs in flat.items()
              if path[-1] == name for v in (vs if isinstance(vs, tuple) else (vs,))]
    if not values:
      raise ValueError(f"MoE metric {name!r} was not sown by any layer")
    averages[name] = sum(values) / len(values)
  return averages


def summarize(metrics: Mapping[str, tuple[Array, Array]]) -> dict[str, float]:
  """(total, count) pairs -> floats (`num_tokens` stays a total)."""
  out = {}
  for name, (total, count) in metrics.items():
    total, count = float(total), float(count)
    out[name] = total if name == "num_tokens" else total / max(count, 1e-9)
  return out


def add_metrics(a: Metrics | None, b: Metrics) -> Metrics:
  if a is None:
    return b
  return jax.tree_util.tree_map(jnp.add, a, b)
