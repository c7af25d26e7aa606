"""T5.1.1 building blocks: dense, RMSNorm, embedding, relative position bias, attention
(with a decode cache), gated-GELU MLP, and the attention masks.

Parameters are float32 and created with logical axis names (`param_with_axes`, the
`params_axes` collection t5x validates); activations run in `config.dtype`. Parameter
names and shapes are t5x's, so T5.1.1 checkpoints map onto these modules.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax.linen import partitioning as nn_partitioning
from jax import lax

from altup_t5.model.config import T5Config

param_with_axes = nn_partitioning.param_with_axes
constrain = nn_partitioning.with_sharding_constraint

Array = jax.Array
NEG_INF = -1e10  # additive mask value; finite so fully masked rows stay NaN-free

# T5's initialisers (t5x examples/t5/layers.py): fan-in scaled, truncated normal for
# dense layers, normal for attention, N(0, 1) for the token embedding.
dense_init = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
attention_init = nn.initializers.variance_scaling(1.0, "fan_in", "normal")
embedding_init = nn.initializers.normal(stddev=1.0)
relpos_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def dropout(rate: float, x: Array, deterministic: bool, broadcast_dims=(1,)) -> Array:
  """Dropout whose mask is shared along `broadcast_dims` (by default the length axis,
  as in t5x, so a dropped feature is dropped for the whole sequence)."""
  return nn.Dropout(rate=rate, broadcast_dims=broadcast_dims)(x, deterministic=deterministic)


class Dense(nn.Module):
  """`inputs[..., *in] @ kernel[*in, features]` with no bias.

  `contract_dims` trailing input axes are contracted, so a K-block representation
  `[..., K, d]` can feed one `[K, d, vocab]` kernel; fan-in counts all of them.
  """
  features: int
  kernel_axes: tuple[str, ...]
  dtype: jnp.dtype = jnp.float32
  contract_dims: int = 1
  kernel_init: Callable = dense_init

  @nn.compact
  def __call__(self, inputs: Array) -> Array:
    n = self.contract_dims
    kernel_shape = tuple(inputs.shape[-n:]) + (self.features,)
    init = self.kernel_init
    if n > 1:  # fan-in over every contracted axis, not just the first one
      init = nn.initializers.variance_scaling(
          1.0, "fan_in", "truncated_normal", in_axis=tuple(range(n)), out_axis=-1)
    kernel = param_with_axes("kernel", init, kernel_shape, jnp.float32,
                             axes=self.kernel_axes)
    # One contracting axis: [..., *in] -> [..., prod(in)] and [*in, features] ->
    # [prod(in), features] are free reshapes, while a dot over several axes makes
    # XLA:CPU copy the (vocab-sized, for AltUp's logits) kernel on every call.
    # The leading axes are flattened too, to one row axis: the kernel's gradient is then
    # one [rows, in]^T x [rows, features] matmul. With [batch, length, in] inputs,
    # XLA:CPU transposes the whole output gradient before that matmul and runs it
    # outside its library fusions: 2x slower for T5's vocabulary head (bitwise equal).
    leading = inputs.shape[:inputs.ndim - n]
    rows = inputs.astype(self.dtype).reshape((-1, int(np.prod(kernel_shape[:-1]))))
    kernel = kernel.astype(self.dtype).reshape((-1, self.features))
    # [rows, prod(in)] x [prod(in), features] -> [*leading, features]
    out = lax.dot_general(rows, kernel, (((1,), (0,)), ((), ())))
    return out.reshape(leading + (self.features,))


class RMSNorm(nn.Module):
  """T5's layer norm: scale by the root mean square, no mean, no bias.

  Normalises over the trailing `len(axes)` axes: one axis (`embed`) for a d-wide
  vector, two (`altup_blocks`, `embed`) for AltUp's final norm over all K*d features.
  """
  axes: tuple[str, ...] = ("embed",)
  dtype: jnp.dtype = jnp.float32
  epsilon: float = 1e-6

  @nn.compact
  def __call__(self, x: Array) -> Array:
    n = len(self.axes)
    reduce = tuple(range(x.ndim - n, x.ndim))
    x32 = x.astype(jnp.float32)
    mean_square = jnp.mean(jnp.square(x32), axis=reduce, keepdims=True)
    y = (x32 * lax.rsqrt(mean_square + self.epsilon)).astype(self.dtype)
    scale = param_with_axes("scale", nn.initializers.ones, x.shape[-n:], jnp.float32,
                            axes=self.axes)
    return y * scale.astype(self.dtype)


class Embed(nn.Module):
  """Token embedding `[vocab, *features]` looked up with a gather (a one-hot matmul,
  t5x's TPU choice, costs vocab x d multiply-adds per token on a CPU or GPU)."""
  num_embeddings: int
  features: tuple[int, ...]
  axes: tuple[str, ...]
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, ids: Array) -> Array:
    table = param_with_axes("embedding", embedding_init,
                            (self.num_embeddings,) + tuple(self.features), jnp.float32,
                            axes=("vocab",) + tuple(self.axes))
    # [batch, length] -> [batch, length, *features]
    return jnp.take(table, ids.astype(jnp.int32), axis=0).astype(self.dtype)


def relative_position_bucket(relative_position: np.ndarray, bidirectional: bool,
                             num_buckets: int, max_distance: int) -> np.ndarray:
  """T5's bucketing of `memory_position - query_position`: exact buckets for small
  distances, log-spaced ones up to `max_distance`, one bucket beyond. Causal stacks
  (bidirectional=False) map all future positions to bucket 0."""
  bucket = np.zeros_like(relative_position)
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    bucket += (n < 0).astype(np.int32) * num_buckets
    n = np.abs(n)
  else:
    n = np.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  # The epsilon matches T5 (Mesh TF and t5x) bucket for bucket at exact boundaries.
  log_ratio = np.log(n.astype(np.float32) / max_exact + np.finfo(np.float32).eps) / np.log(
      max_distance / max_exact)
  large = max_exact + (log_ratio * (num_buckets - max_exact)).astype(np.int32)
  large = np.minimum(large, num_buckets - 1)
  return bucket + np.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  """One `[heads, buckets]` table per stack, turned into `[1, heads, q_len, k_len]`."""
  config: T5Config
  bidirectional: bool

  @nn.compact
  def __call__(self, q_len: int, k_len: int) -> Array:
    cfg = self.config
    table = param_with_axes("rel_embedding", relpos_init,
                            (cfg.num_heads, cfg.relpos_num_buckets), jnp.float32,
                            axes=("heads", "relpos_buckets"))
    # The bias depends only on k - q: gather one value per relative position (a
    # [heads, q_len + k_len - 1] table, buckets computed in NumPy from the static
    # lengths), then lay it out as the Toeplitz matrix with slices and reshapes.
    # Gathering [heads, q_len, k_len] directly would make its gradient a scatter-add
    # of q_len * k_len values into 32 buckets per head: on a GPU, where those adds
    # are atomics on the same few addresses, that took most of T5.1.1-small's step.
    relative = np.arange(-(q_len - 1), k_len)  # k - q, from the last query's view
    buckets = relative_position_bucket(relative, self.bidirectional,
                                       cfg.relpos_num_buckets, cfg.relpos_max_distance)
    by_offset = jnp.take(table.astype(cfg.activation_dtype), buckets, axis=1)
    return toeplitz(by_offset, q_len, k_len)[None]  # [1, heads, q_len, k_len]


def toeplitz(by_offset: Array, q_len: int, k_len: int) -> Array:
  """[..., q_len + k_len - 1] values v, one per k - q, -> [..., q_len, k_len] with
  out[..., q, k] = v[..., k - q + q_len - 1], using only tiling, slicing and reshapes.

  Row q is v[q_len - 1 - q : q_len - 1 - q + k_len]. Laid end to end, q_len copies of
  v (n = q_len + k_len - 1 values each) put row q's start at q * (n - 1) + q_len - 1,
  so the rows are consecutive windows of stride n - 1 from offset q_len - 1.
  """
  n = q_len + k_len - 1
  if by_offset.shape[-1] != n:
    raise ValueError(f"toeplitz needs {n} values for {q_len} x {k_len}; got "
                     f"{by_offset.shape[-1]}")
  lead = by_offset.shape[:-1]
  if q_len == 1:  # one row, v itself (the windows below need n - 1 >= k_len)
    return by_offset[..., None, :]
  tiled = jnp.tile(by_offset, (1,) * len(lead) + (q_len,))  # [..., q_len * n]
  windows = tiled[..., q_len - 1:q_len - 1 + q_len * (n - 1)]
  return windows.reshape(lead + (q_len, n - 1))[..., :k_len]


class MultiHeadAttention(nn.Module):
  """T5 attention: no logit scaling (folded into the query initialiser, equivalent
  under Adafactor), additive bias for masks and relative positions, and in decode
  mode a `[batch, max_length, heads, head_dim]` key/value cache."""
  config: T5Config

  @nn.compact
  def __call__(self, inputs_q: Array, inputs_kv: Array, bias: Array | None, *,
               deterministic: bool, decode: bool = False,
               decode_memory: bool = False) -> Array:
    """`decode`: self-attention, one new token per call, keys/values appended to the
    cache. `decode_memory`: cross-attention while decoding, the memory's projected
    keys/values kept in the cache (see `_memory_cache`)."""
    cfg = self.config
    dtype = cfg.activation_dtype
    joined = cfg.num_heads * cfg.head_dim
    query_init = lambda *a: attention_init(*a) / np.sqrt(cfg.head_dim).astype(np.float32)

    def project(x, name, init):
      # [batch, length, emb_dim] -> [batch, length, heads, head_dim]
      y = Dense(joined, ("embed", "joined_kv"), dtype, kernel_init=init, name=name)(x)
      y = y.reshape(y.shape[:-1] + (cfg.num_heads, cfg.head_dim))
      return constrain(y, ("batch", "length", "heads", "kv"))

    query = project(inputs_q, "query", query_init)
    key = project(inputs_kv, "key", attention_init)
    value = project(inputs_kv, "value", attention_init)

    if decode:
      key, value, bias = self._use_cache(query, key, value, bias)

    # Heads-major [batch, heads, length, head_dim]: the layout of the two batched
    # matmuls below (XLA:CPU would otherwise transpose the keys and values itself).
    heads_major = lambda x: jnp.swapaxes(x, 1, 2)
    query = heads_major(query)
    if decode_memory:
      key, value = self._memory_cache(lambda: (heads_major(key), heads_major(value)))
    else:
      key, value = heads_major(key), heads_major(value)
    # [batch, heads, q_len, k_len]
    logits_dtype = jnp.float32 if cfg.float32_attention_logits else dtype
    logits = jnp.einsum("bhqd,bhkd->bhqk", query.astype(logits_dtype),
                        key.astype(logits_dtype))
    if bias is not None:
      logits = logits + bias.astype(logits_dtype)
    weights = jax.nn.softmax(logits).astype(dtype)
    # t5x drops attention weights with one mask shared by all queries.
    weights = dropout(cfg.dropout_rate, weights, deterministic, broadcast_dims=(2,))
    # [batch, q_len, heads, head_dim]
    out = jnp.einsum("bhqk,bhkd->bqhd", weights, value)
    out = out.reshape(out.shape[:-2] + (joined,))
    return Dense(inputs_q.shape[-1], ("joined_kv", "embed"), dtype,
                 kernel_init=attention_init, name="out")(out)

  def _use_cache(self, query, key, value, bias):
    """First call (cache creation, full-length inputs): store zeros. Later calls (one
    token): write this step's key/value at `cache_index` and attend to the prefix."""
    is_initialized = self.has_variable("cache", "cached_key")
    cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
    cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape,
                                 value.dtype)
    cache_index = self.variable("cache", "cache_index",
                                lambda: jnp.array(0, dtype=jnp.int32))
    if not is_initialized:
      return key, value, bias
    batch, max_length, heads, head_dim = cached_key.value.shape
    if query.shape != (batch, 1, heads, head_dim):
      raise ValueError(
          f"decode step expects one token per sequence: query shape {query.shape}, "
          f"cache shape {cached_key.value.shape}")
    index = cache_index.value
    key = lax.dynamic_update_slice(cached_key.value, key, (0, index, 0, 0))
    value = lax.dynamic_update_slice(cached_value.value, value, (0, index, 0, 0))
    cached_key.value, cached_value.value = key, value
    cache_index.value = index + 1
    # Attend only to positions already written; the rest of the cache is zeros.
    causal = jnp.where(jnp.arange(max_length) <= index, 0.0, NEG_INF)  # [max_length]
    if bias is None:
      bias = causal[None, None, None, :]
    else:
      # The stack passes the full [.., max_length, max_length] bias: take our row.
      if bias.shape[-1] != max_length:
        raise ValueError(
            f"decode steps need max_decode_length={max_length} (the cache length); the "
            f"attention bias covers {bias.shape[-1]} positions")
      bias = lax.dynamic_slice_in_dim(bias, index, 1, axis=-2) + causal
    return key, value, bias

  def _memory_cache(self, keys_values: Callable[[], tuple[Array, Array]]):
    """Cross-attention while decoding: the memory is the same at every step, so its
    heads-major keys/values `[batch, heads, memory_length, head_dim]` are computed once
    and kept in the cache (XLA:CPU hoists neither the projections nor the transposes
    out of the decode loop).

    The cache is created holding the projections of the memory it was created with.
    `decoding.init_cache` (which `decode_with_model` uses) creates it from the real
    memory and then removes the `memory_filled` flags: the steps only read. t5x creates caches from dummy inputs
    and keeps the flags: the first step projects the real memory and stores it, as a
    `lax.cond` that later steps pass through (copying the cache each step)."""
    if not self.has_variable("cache", "cached_key"):  # creation
      key, value = keys_values()
      self.variable("cache", "cached_key", lambda: key)
      self.variable("cache", "cached_value", lambda: value)
      # One flag per row, not a scalar: beam search (ours and t5x's) expands and
      # re-orders every cache leaf along its leading batch axis.
      self.variable("cache", "memory_filled", jnp.zeros, key.shape[:1], jnp.bool_)
      return key, value
    cached_key = self.variable("cache", "cached_key")
    cached_value = self.variable("cache", "cached_value")
    if not self.has_variable("cache", "memory_filled"):  # filled when created
      return cached_key.value, cached_value.value
    filled = self.variable("cache", "memory_filled")
    # Only the branch taken runs: the transposes happen at the first step alone.
    # Rows are filled together, at the first step: all flags are equal.
    key, value = lax.cond(jnp.all(filled.value),
                          lambda: (cached_key.value, cached_value.value), keys_values)
    cached_key.value, cached_value.value = key, value
    filled.value = jnp.ones_like(filled.value)
    return key, value


class MlpBlock(nn.Module):
  """T5.1.1's gated-GELU FFN: `wo(gelu(x @ wi_0) * (x @ wi_1))`."""
  config: T5Config
  mlp_dim: int | None = None  # None: config.mlp_dim (experts may be narrower)

  @nn.compact
  def __call__(self, x: Array, deterministic: bool) -> Array:
    cfg = self.config
    dtype = cfg.activation_dtype
    width = self.mlp_dim or cfg.mlp_dim
    hidden = None
    for i, activation in enumerate(cfg.mlp_activations):
      name = "wi" if len(cfg.mlp_activations) == 1 else f"wi_{i}"
      # [..., emb_dim] -> [..., mlp]
      h = Dense(width, ("embed", "mlp"), dtype, name=name)(x)
      h = h if activation == "linear" else getattr(nn, activation)(h)
      hidden = h if hidden is None else hidden * h
    hidden = dropout(cfg.dropout_rate, hidden, deterministic, broadcast_dims=(-2,))
    return Dense(x.shape[-1], ("mlp", "embed"), dtype, name="wo")(hidden)


# ---- masks: all additive biases, [batch, 1, q_len, k_len] ----

def attention_bias(query_valid: Array, key_valid: Array,
                   query_segments: Array | None = None,
                   key_segments: Array | None = None,
                   causal: bool = False) -> Array:
  """0 where a query may attend to a key, NEG_INF elsewhere.

  Valid = not padding; with packing, a query only sees keys of its own segment.
  """
  allowed = query_valid[:, :, None] & key_valid[:, None, :]  # [batch, q_len, k_len]
  if query_segments is not None:
    allowed &= query_segments[:, :, None] == key_segments[:, None, :]
  if causal:
    q_len, k_len = allowed.shape[-2:]
    allowed &= jnp.tril(jnp.ones((q_len, k_len), dtype=bool))
  return jnp.where(allowed, 0.0, NEG_INF)[:, None].astype(jnp.float32)


def argmax(logits: Array) -> Array:
  """`jnp.argmax(logits, axis=-1)`, NaN handling included (the first maximum, or the
  first NaN), written as a max and a min: plain reductions that XLA fuses, where
  argmax's variadic reduction runs 4x slower on CPU (30 ms per T5-small train step
  over a 32128-word vocabulary)."""
  largest = jnp.max(logits, axis=-1, keepdims=True)  # NaN if any logit is NaN
  hit = (logits == largest) | jnp.isnan(logits)
  index = lax.broadcasted_iota(jnp.int32, logits.shape, logits.ndim - 1)
  return jnp.min(jnp.where(hit, index, logits.shape[-1]), axis=-1)
