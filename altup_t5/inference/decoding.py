"""Autoregressive decoding with a cache: greedy, temperature sampling, beam search.

Model-agnostic, in the spirit of t5x's `decoding.py`. A model is seen only through

  tokens_to_logits(token_ids [batch', 1] int32, cache)
      -> (logits [batch', vocab] float32, new_cache)

which feeds one token per sequence and returns next-token logits and the updated
cache; `batch'` is `batch` for greedy and sampling and `batch * beam_size` for beam
search. Each search is one `jax.lax.while_loop` (one jit, no per-token Python) that
stops as soon as nothing can change any more.

Conventions shared by all searches:
- step 0 feeds `initial_token` (T5's BOS is the pad id 0); the returned sequences do
  not contain it: position i holds the token chosen at step i;
- a sequence ends with its first `eos_id` (kept in the output); later positions are 0;
- log-probabilities are the model's own (float32 log-softmax of the unscaled logits),
  whatever temperature, top-k or top-p shaped the choice, so scores of different
  methods compare directly.

Encoder outputs are the caller's business: a `tokens_to_logits` for beam search closes
over encoder outputs already expanded with `expand_batch(x, beam_size)`. The cache, in
contrast, is expanded here (`map_cache`), because beam search re-orders it every step.
`decode_with_model` wires all this to a model with t5x's `encode`/`decode` methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from altup_t5.model.layers import argmax  # the fused argmax (greedy and metrics)

Array = jax.Array
Cache = Any  # a pytree of arrays, e.g. flax's `cache` collection
TokensToLogits = Callable[[Array, Cache], tuple[Array, Cache]]

METHODS = ("greedy", "beam", "sample")


# ---------------------------------------------------------------- cache helpers

def _leaf_name(path) -> str:
  key = path[-1] if path else None
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _is_per_sequence(path, leaf) -> bool:
  return _leaf_name(path) != "cache_index" and np.ndim(leaf) > 0


def map_cache(fn: Callable[[Array], Array], cache: Cache) -> Cache:
  """Applies `fn` to every per-sequence leaf of `cache`, leaving the others alone.

  Per-sequence leaves have a leading batch axis (`cached_key`, `cached_value`:
  `[batch, length, heads, head_dim]`). Left alone: leaves named `cache_index` (the
  decode position, shared by all sequences: expanding or gathering it would change
  its shape and break the attention layer's `dynamic_update_slice`) and any 0-d leaf.
  Works on dicts and FrozenDicts alike and keeps the container types.
  """
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: fn(leaf) if _is_per_sequence(path, leaf) else leaf, cache)


def _without_leaves(cache: Cache, name: str) -> Cache:
  """`cache` without the leaves called `name` (a plain dict of dicts)."""
  if not isinstance(cache, Mapping):
    return cache
  return {k: _without_leaves(v, name) for k, v in cache.items() if k != name}


def _check_cache_batch(cache: Cache, batch_size: int) -> Cache:
  """Raises if a leaf `map_cache` would touch has no leading axis of `batch_size`."""
  def check(path, leaf):
    if _is_per_sequence(path, leaf) and leaf.shape[0] != batch_size:
      raise ValueError(f"cache leaf {jax.tree_util.keystr(path)} has shape "
                       f"{tuple(leaf.shape)}; expected a leading batch axis of "
                       f"batch_size={batch_size}")
  jax.tree_util.tree_map_with_path(check, cache)
  return cache


def expand_batch(x: Array, beam_size: int) -> Array:
  """[batch, ...] -> [batch * beam_size, ...], each row repeated `beam_size` times in
  a row, so row `b * beam_size + j` is beam j of example b (the flat beam layout)."""
  return jnp.repeat(x, beam_size, axis=0)


def _gather_beams(x: Array, beam_indices: Array) -> Array:
  """x [batch, old_beams, ...], beam_indices [batch, new_beams] -> [batch, new_beams, ...].

  A gather along the beam axis within each example, so the batch axis (the one that
  is sharded) never mixes."""
  index = beam_indices.reshape(beam_indices.shape + (1,) * (x.ndim - 2))
  return jnp.take_along_axis(x, index, axis=1)


def _gather_flat_beams(x: Array, beam_indices: Array) -> Array:
  """Same for a flat [batch * beams, ...] leaf (the layout the model sees)."""
  batch, beams = beam_indices.shape
  x = x.reshape((batch, -1) + x.shape[1:])  # [batch, beams, ...]
  return _gather_beams(x, beam_indices).reshape((batch * beams,) + x.shape[2:])


# ---------------------------------------------------------------- argument checks

def _is_concrete(value) -> bool:
  return not isinstance(value, jax.core.Tracer)


def _check_common(batch_size: int, max_decode_length: int, eos_id: int) -> None:
  for name, value in (("batch_size", batch_size), ("max_decode_length", max_decode_length)):
    if not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name}={value!r} must be a positive integer")
  if not isinstance(eos_id, (int, np.integer)) or eos_id < 0:
    raise ValueError(f"eos_id={eos_id!r} must be a non-negative integer token id")


def _step_logits(tokens_to_logits: TokensToLogits, tokens: Array, cache: Cache,
                 rows: int) -> tuple[Array, Cache]:
  """Calls the model and checks that it returned one row of logits per sequence."""
  logits, cache = tokens_to_logits(tokens, cache)
  if logits.ndim != 2 or logits.shape[0] != rows:
    raise ValueError(f"tokens_to_logits must return logits [{rows}, vocab] for token_ids "
                     f"{tuple(tokens.shape)}; got {tuple(logits.shape)}")
  return logits.astype(jnp.float32), cache  # [rows, vocab]


def _token_log_prob(log_probs: Array, tokens: Array) -> Array:
  # [rows, vocab], [rows] -> [rows]
  return jnp.take_along_axis(log_probs, tokens[:, None], axis=-1)[:, 0]


# ---------------------------------------------------------------- greedy and sampling

class _SamplingState(NamedTuple):
  step: Array  # scalar int32: the position written by the next iteration
  sequences: Array  # [batch, max_decode_length] int32
  tokens: Array  # [batch, 1] int32: the next model input
  ended: Array  # [batch] bool: emitted EOS
  log_probs: Array  # [batch] float32: sum of log p(token) up to and including EOS
  cache: Cache
  rng: Array | None


def _sampling_loop(tokens_to_logits: TokensToLogits, cache: Cache, rng: Array | None,
                   choose: Callable[[Array, Array | None], Array], batch_size: int,
                   max_decode_length: int, eos_id: int,
                   initial_token: int) -> tuple[Array, Array]:
  """One token per sequence per step, chosen by `choose(logits, rng) -> [batch]`."""

  def cond(state: _SamplingState) -> Array:
    return (state.step < max_decode_length) & ~jnp.all(state.ended)

  def body(state: _SamplingState) -> _SamplingState:
    rng, step_rng = (None, None) if state.rng is None else jax.random.split(state.rng)
    logits, cache = _step_logits(tokens_to_logits, state.tokens, state.cache, batch_size)
    log_probs = jax.nn.log_softmax(logits)  # [batch, vocab]
    token = choose(logits, step_rng).astype(jnp.int32)  # [batch]
    # Sequences that already ended emit padding and add nothing to their score.
    log_prob = jnp.where(state.ended, 0.0, _token_log_prob(log_probs, token))
    token = jnp.where(state.ended, 0, token)
    sequences = lax.dynamic_update_slice(state.sequences, token[:, None], (0, state.step))
    return _SamplingState(state.step + 1, sequences, token[:, None],
                          state.ended | (token == eos_id), state.log_probs + log_prob,
                          cache, rng)

  init = _SamplingState(
      step=jnp.array(0, jnp.int32),
      sequences=jnp.zeros((batch_size, max_decode_length), jnp.int32),
      tokens=jnp.full((batch_size, 1), initial_token, jnp.int32),
      ended=jnp.zeros((batch_size,), bool),
      log_probs=jnp.zeros((batch_size,), jnp.float32),
      cache=cache, rng=rng)
  final = lax.while_loop(cond, body, init)
  return final.sequences, final.log_probs


def greedy(tokens_to_logits: TokensToLogits, cache: Cache, *, batch_size: int,
           max_decode_length: int, eos_id: int,
           initial_token: int = 0) -> tuple[Array, Array]:
  """Picks the most likely token at every step.

  Returns sequences `[batch, max_decode_length]` int32 and their log-probabilities
  `[batch]` (sum over tokens up to and including EOS).
  """
  _check_common(batch_size, max_decode_length, eos_id)
  choose = lambda logits, _: argmax(logits)
  return _sampling_loop(tokens_to_logits, cache, None, choose, batch_size,
                        max_decode_length, eos_id, initial_token)


def filter_logits(logits: Array, topk: int = 0, topp: float | Array = 0.0) -> Array:
  """Sets logits outside the top-k, or outside the nucleus, to -inf (as t5x).

  topk > 0 keeps the k largest logits (ties with the k-th are kept too). topp > 0
  keeps the smallest set of most likely tokens whose probability mass reaches topp
  (always at least the most likely one). 0 disables either filter.
  """
  neg_inf = jnp.array(-jnp.inf, logits.dtype)
  if topk:
    kth_largest = lax.top_k(logits, topk)[0][..., -1:]  # [batch, 1]
    logits = jnp.where(logits < kth_largest, neg_inf, logits)
  if not _is_concrete(topp) or topp:
    sorted_logits = -jnp.sort(-logits, axis=-1)  # [batch, vocab], descending
    sorted_probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(sorted_probs, axis=-1) - sorted_probs
    # A token is in the nucleus if the more likely ones do not reach topp yet.
    num_kept = jnp.maximum(jnp.sum(mass_before < topp, axis=-1, keepdims=True), 1)
    threshold = jnp.take_along_axis(sorted_logits, num_kept - 1, axis=-1)  # [batch, 1]
    logits = jnp.where(logits < threshold, neg_inf, logits)
  return logits


def temperature_sample(tokens_to_logits: TokensToLogits, cache: Cache, rng: Array, *,
                       batch_size: int, max_decode_length: int, eos_id: int,
                       temperature: float | Array = 1.0, topk: int = 0,
                       topp: float | Array = 0.0,
                       initial_token: int = 0) -> tuple[Array, Array]:
  """Samples each token from softmax(logits / temperature), optionally restricted to
  the top-k tokens or the top-p nucleus (at most one of the two).

  temperature 0 is greedy decoding. temperature and topp may be traced values;
  topk must be a Python int (it sets an array shape). Same outputs as `greedy`; the
  log-probabilities are the model's, not the tempered distribution's.
  """
  _check_common(batch_size, max_decode_length, eos_id)
  if not isinstance(topk, (int, np.integer)) or topk < 0:
    raise ValueError(f"topk={topk!r} must be a non-negative Python int (0 disables it)")
  if _is_concrete(temperature) and not np.all(np.asarray(temperature) >= 0):
    raise ValueError(f"temperature={temperature!r} must be >= 0 (0 is greedy)")
  if _is_concrete(topp) and not 0.0 <= float(topp) <= 1.0:
    raise ValueError(f"topp={topp!r} must be in [0, 1] (0 disables it)")
  if topk and (not _is_concrete(topp) or topp):
    raise ValueError(f"at most one of topk={topk} and topp={topp} may be non-zero")

  def choose(logits, rng):
    if topk > logits.shape[-1]:
      raise ValueError(f"topk={topk} exceeds the vocabulary size {logits.shape[-1]}")
    greedy_tokens = argmax(logits)
    if _is_concrete(temperature) and np.all(np.asarray(temperature) == 0):
      return greedy_tokens
    # Divide by a floor so a traced temperature of 0 gives no inf/NaN; its rows take
    # the argmax below.
    scaled = logits / jnp.maximum(temperature, 1e-6)
    sampled = jax.random.categorical(rng, filter_logits(scaled, topk, topp), axis=-1)
    return jnp.where(temperature > 0, sampled, greedy_tokens)

  return _sampling_loop(tokens_to_logits, cache, rng, choose, batch_size,
                        max_decode_length, eos_id, initial_token)


# ---------------------------------------------------------------- beam search

def length_penalty(length: Array | int, alpha: float) -> Array:
  """GNMT's length normalisation, used by T5: ((5 + length) / 6) ** alpha."""
  return jnp.power((5.0 + jnp.asarray(length, jnp.float32)) / 6.0, alpha)


class _BeamState(NamedTuple):
  step: Array  # scalar int32: the position written by the next iteration
  alive_seqs: Array  # [batch, beam, length] int32: best unfinished prefixes
  alive_log_probs: Array  # [batch, beam] float32, descending; -inf marks an empty slot
  tokens: Array  # [batch, beam] int32: last token of each alive prefix (next input)
  finished_seqs: Array  # [batch, beam, length] int32
  finished_scores: Array  # [batch, beam] float32, descending; -inf marks an empty slot
  cache: Cache  # per-sequence leaves [batch * beam, ...], one row per alive beam


def beam_search(tokens_to_logits: TokensToLogits, cache: Cache, *, batch_size: int,
                max_decode_length: int, eos_id: int, beam_size: int = 4,
                alpha: float = 0.6, initial_token: int = 0) -> tuple[Array, Array]:
  """Beam search with T5's length penalty, keeping finished hypotheses apart (as t5x).

  `cache` has per-sequence leaves `[batch, ...]`; they are expanded here to
  `[batch * beam_size, ...]` (see `map_cache`) and re-ordered with the beams. Encoder
  outputs that `tokens_to_logits` closes over must be expanded by the caller with
  `expand_batch`.

  Each step extends every alive beam by every token and takes the 2 * beam_size most
  likely candidates (enough that beam_size of them do not end, since each beam has
  one EOS). Of those, the ones ending in EOS enter the finished set with score
  log p / length_penalty(length), length counting the EOS; the others compete for
  the beam_size alive slots. At the last position the alive candidates are finished
  too (truncated hypotheses of length max_decode_length). The loop stops early when
  the finished set is full and no alive beam can beat its worst entry even with the
  most favourable length (alpha >= 0 makes the penalty grow with length).

  Returns sequences `[batch, beam_size, max_decode_length]` and scores
  `[batch, beam_size]`, both sorted BEST FIRST (t5x returns the best last). A slot
  with no hypothesis (possible only with a tiny vocabulary and length) has score
  -inf and an all-zero sequence.
  """
  _check_common(batch_size, max_decode_length, eos_id)
  if not isinstance(beam_size, (int, np.integer)) or beam_size < 1:
    raise ValueError(f"beam_size={beam_size!r} must be a positive integer")
  if not alpha >= 0:
    raise ValueError(f"alpha={alpha!r} must be >= 0 (the early stop assumes a length "
                     "penalty that grows with length)")
  length, beams, neg_inf = max_decode_length, beam_size, jnp.array(-jnp.inf, jnp.float32)

  def cond(state: _BeamState) -> Array:
    # The best an alive beam can still reach: its log-probability only falls, and
    # the longest length divides it by the largest penalty.
    best_alive = state.alive_log_probs[:, 0] / length_penalty(length, alpha)  # [batch]
    worst_finished = state.finished_scores[:, -1]  # [batch]; -inf while not full
    can_improve = best_alive > worst_finished
    return (state.step < length) & jnp.any(can_improve)

  def body(state: _BeamState) -> _BeamState:
    step = state.step
    logits, cache = _step_logits(tokens_to_logits, state.tokens.reshape(-1, 1),
                                 state.cache, batch_size * beams)
    vocab = logits.shape[-1]
    if vocab < 2:
      raise ValueError(f"beam search needs a vocabulary of at least 2 tokens, got {vocab}")
    log_probs = jax.nn.log_softmax(logits).reshape(batch_size, beams, vocab)
    totals = state.alive_log_probs[:, :, None] + log_probs  # [batch, beam, vocab]

    # The 2 * beam most likely extensions of all alive beams.
    # [batch, 2 * beam] each
    cand_log_probs, flat_index = lax.top_k(totals.reshape(batch_size, beams * vocab),
                                           2 * beams)
    cand_parent, cand_token = flat_index // vocab, flat_index % vocab
    cand_seqs = _gather_beams(state.alive_seqs, cand_parent)  # [batch, 2 * beam, length]
    cand_seqs = lax.dynamic_update_slice(cand_seqs, cand_token[:, :, None], (0, 0, step))
    ends = cand_token == eos_id

    # Finished set: the best `beams` of the old finished and the newly finished.
    finishing = ends | (step == length - 1)
    cand_scores = jnp.where(finishing, cand_log_probs / length_penalty(step + 1, alpha),
                            neg_inf)
    finished_scores, pick = lax.top_k(
        jnp.concatenate([state.finished_scores, cand_scores], axis=1), beams)
    finished_seqs = _gather_beams(
        jnp.concatenate([state.finished_seqs, cand_seqs], axis=1), pick)

    # Alive set: the best `beams` candidates that did not emit EOS, with their cache.
    alive_log_probs, pick = lax.top_k(jnp.where(ends, neg_inf, cand_log_probs), beams)
    parent = _gather_beams(cand_parent, pick)  # [batch, beam]
    cache = map_cache(lambda leaf: _gather_flat_beams(leaf, parent), cache)
    return _BeamState(step + 1, _gather_beams(cand_seqs, pick), alive_log_probs,
                      _gather_beams(cand_token, pick), finished_seqs, finished_scores,
                      cache)

  # Only beam 0 starts alive: identical copies would fill the beam with duplicates.
  first_beam = jnp.arange(beams) == 0
  init = _BeamState(
      step=jnp.array(0, jnp.int32),
      alive_seqs=jnp.zeros((batch_size, beams, length), jnp.int32),
      alive_log_probs=jnp.broadcast_to(jnp.where(first_beam, 0.0, neg_inf),
                                       (batch_size, beams)),
      tokens=jnp.full((batch_size, beams), initial_token, jnp.int32),
      finished_seqs=jnp.zeros((batch_size, beams, length), jnp.int32),
      finished_scores=jnp.full((batch_size, beams), neg_inf),
      cache=map_cache(lambda leaf: expand_batch(leaf, beams),
                      _check_cache_batch(cache, batch_size)))
  final = lax.while_loop(cond, body, init)
  empty = final.finished_scores == neg_inf  # [batch, beam]
  return jnp.where(empty[:, :, None], 0, final.finished_seqs), final.finished_scores


# ---------------------------------------------------------------- a model with t5x's API

def init_cache(model, params, encoded: Array, encoder_input_tokens: Array,
               max_decode_length: int) -> Cache:
  """The decode cache of a model with t5x's `decode` method, for this memory.

  Zeros for the decoder's keys/values, `[batch, max_decode_length, heads, head_dim]`,
  and for cross-attention the memory's keys/values, projected once here (a
  full-length call on dummy decoder tokens, whose logits jit compiles away). Without
  their `memory_filled` flags (which t5x's dummy-input caches keep, to fill at the
  first step), every step only reads them.
  """
  batch_size = encoder_input_tokens.shape[0]
  dummy_targets = jnp.ones((batch_size, max_decode_length), jnp.int32)
  _, variables = model.apply(
      {"params": params}, encoded, encoder_input_tokens, dummy_targets, dummy_targets,
      decode=True, enable_dropout=False, mutable=["cache"], method="decode")
  return _without_leaves(variables["cache"], "memory_filled")


def decode_with_model(model, params, encoder_input_tokens: Array, *,
                      max_decode_length: int, eos_id: int, method: str = "greedy",
                      beam_size: int = 4, alpha: float = 0.6,
                      temperature: float | Array = 1.0, topk: int = 0,
                      topp: float | Array = 0.0, rng: Array | None = None,
                      return_all_beams: bool = False,
                      initial_token: int = 0) -> tuple[Array, Array]:
  """Decodes `encoder_input_tokens [batch, inputs_length]` with a flax module that has
  t5x's `__call__`/`encode`/`decode` methods (e.g. `network.Transformer`).

  Encodes once, creates the cache for that memory (`init_cache`), then runs `method`:
  'greedy', 'beam' (`beam_size`, `alpha`) or 'sample' (`temperature`, `topk`, `topp`,
  `rng`). jit-compatible: everything but params, tokens and rng should be static.

  Returns the best sequence per example `[batch, max_decode_length]` and its score
  `[batch]`: the log-probability for greedy and sample, the length-penalised score for
  beam. With `return_all_beams` (beam only), returns all beams best first:
  `[batch, beam_size, max_decode_length]` and `[batch, beam_size]`.
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r} is not one of {', '.join(map(repr, METHODS))}")
  if return_all_beams and method != "beam":
    raise ValueError(f"return_all_beams=True needs method='beam', got method={method!r}")
  if method == "sample" and rng is None:
    raise ValueError("method='sample' needs an rng (a jax.random key)")
  if np.ndim(encoder_input_tokens) != 2:
    raise ValueError("encoder_input_tokens must be [batch, length]; got shape "
                     f"{np.shape(encoder_input_tokens)}")
  encoder_input_tokens = jnp.asarray(encoder_input_tokens, jnp.int32)
  batch_size = encoder_input_tokens.shape[0]

  # [batch, inputs_length, emb_dim]
  encoded = model.apply({"params": params}, encoder_input_tokens, enable_dropout=False,
                        method="encode")
  cache = init_cache(model, params, encoded, encoder_input_tokens, max_decode_length)
  if method == "beam":  # one copy of the memory per beam, in the flat beam layout
    encoded = expand_batch(encoded, beam_size)
    encoder_input_tokens = expand_batch(encoder_input_tokens, beam_size)

  def tokens_to_logits(token_ids, cache):
    logits, new_variables = model.apply(
        {"params": params, "cache": cache}, encoded, encoder_input_tokens, token_ids,
        token_ids, enable_dropout=False, decode=True,
        max_decode_length=max_decode_length, mutable=["cache"], method="decode")
    return logits[:, 0], new_variables["cache"]  # [batch', vocab]

  settings = dict(batch_size=batch_size, max_decode_length=max_decode_length,
                  eos_id=eos_id, initial_token=initial_token)
  if method == "greedy":
    return greedy(tokens_to_logits, cache, **settings)
  if method == "sample":
    return temperature_sample(tokens_to_logits, cache, rng, temperature=temperature,
                              topk=topk, topp=topp, **settings)
  sequences, scores = beam_search(tokens_to_logits, cache, beam_size=beam_size,
                                  alpha=alpha, **settings)
  if return_all_beams:
    return sequences, scores
  return sequences[:, 0], scores[:, 0]
