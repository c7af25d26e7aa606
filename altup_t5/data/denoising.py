"""T5's span-corruption pretraining objective, as seqio preprocessors.

Raffel et al. (2020), section 3.1.4: drop ~15% of the tokens in spans of mean length 3;
the input keeps the rest with one sentinel per dropped span, the target lists each
sentinel followed by the span it replaced:

  original: The cat sat on the mat and purred .
  inputs:   The <extra_id_0> on the mat <extra_id_1> .
  targets:  <extra_id_0> cat sat <extra_id_1> and purred

Sentinels are the vocabulary's extra ids counted down from the top: `<extra_id_0>` is
`vocab_size - 1`, `<extra_id_1>` is `vocab_size - 2`, ... (seqio numbers extra ids this
way). A T5 span-corruption task is

  rekey {"targets": "text"} -> seqio.preprocessors.tokenize -> span_corruption
  -> seqio.preprocessors.append_eos_after_trim

and `span_corruption` itself chunks the token stream: one random chunk of at most 65536
tokens per document, documents concatenated 128 at a time, cut into pieces of the raw
length that corrupts to exactly the configured inputs length (568 raw tokens -> 512
inputs and 114 targets, both with EOS, at density 0.15 and mean span 3).

Every random choice uses stateless TF ops fed by `seqio.map_over_dataset` seeds, so a
pipeline is reproducible given seqio's seed. The `t5` package (unmaintained) was read
for the semantics; this is an independent implementation.
"""

from __future__ import annotations

from typing import Mapping

import seqio
import tensorflow as tf

# T5's constants for the chunking steps before corruption.
MAX_CHUNK_TOKENS = 65536  # one random piece per very long document
CONCAT_DOCUMENTS = 128  # documents concatenated before cutting into raw-length pieces


# ----------------------------------------------------------------------------------
# Length arithmetic (plain Python: it sizes the pipeline, no randomness involved).
# ----------------------------------------------------------------------------------


def noise_counts(raw_length: int, noise_density: float,
                 mean_noise_span_length: float) -> tuple[int, int]:
  """(noise tokens, noise spans) in `raw_length` tokens, as the mask below draws them.

  Python's `round` (half to even) matches the mask's `tf.round`.
  """
  num_noise = round(raw_length * noise_density)
  return num_noise, round(num_noise / mean_noise_span_length)


def corrupted_lengths(raw_length: int, noise_density: float,
                      mean_noise_span_length: float) -> tuple[int, int]:
  """(inputs, targets) lengths, EOS included, that `raw_length` tokens corrupt into.

  Inputs keep the non-noise tokens plus one sentinel per noise span; targets hold the
  noise tokens plus one sentinel per span.
  """
  num_noise, num_spans = noise_counts(raw_length, noise_density, mean_noise_span_length)
  return raw_length - num_noise + num_spans + 1, num_noise + num_spans + 1


def raw_length_for(inputs_length: int, noise_density: float = 0.15,
                   mean_noise_span_length: float = 3.0) -> tuple[int, int]:
  """The raw token count whose corruption fills `inputs_length`, and the targets length.

  T5's `random_spans_helper` arithmetic: grow the raw length from `inputs_length - 1`
  while the corrupted inputs still fit. `raw_length_for(512) == (568, 114)`.
  """
  if inputs_length < 2:
    raise ValueError(f"span corruption needs an inputs length of at least 2, got {inputs_length}")
  raw = inputs_length - 1
  while corrupted_lengths(raw + 1, noise_density, mean_noise_span_length)[0] <= inputs_length:
    raw += 1
  targets_length = corrupted_lengths(raw, noise_density, mean_noise_span_length)[1]
  # T5 trims one token at density 0.5 so that targets are no longer than inputs (which
  # are more likely to be a round number).
  if noise_density == 0.5 and targets_length > inputs_length:
    raw -= 1
    targets_length -= 1
  return raw, targets_length


# ----------------------------------------------------------------------------------
# The noise mask and the sentinel rewrite (TF, one example at a time).
# ----------------------------------------------------------------------------------


def _random_composition(total: tf.Tensor, parts: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """`parts` positive ints summing to `total`, uniform over all such compositions.

  A composition is fixed by which `parts - 1` of the `total - 1` gaps between items are
  cut; choosing the cut gaps uniformly without replacement makes every composition
  equally likely (T5's distribution of span lengths).
  """
  scores = tf.random.stateless_uniform([total - 1], seed=seed)  # [total - 1]
  cuts = tf.sort(tf.math.top_k(scores, k=parts - 1).indices + 1)  # [parts - 1]
  bounds = tf.concat([[0], cuts, [total]], axis=0)  # [parts + 1]
  return bounds[1:] - bounds[:-1]  # [parts]


def random_spans_noise_mask(length: tf.Tensor, noise_density: float, seeds,
                            mean_noise_span_length: float = 3.0) -> tf.Tensor:
  """A [length] bool mask of noise spans alternating with non-noise spans.

  round(length * noise_density) noise tokens (at least 1, at most length - 1) in
  round(noise / mean_noise_span_length) spans (at least 1); the mask starts with a
  non-noise span and ends with a noise span; span lengths are uniform over the
  compositions of each total. `seeds` are two stateless seeds of shape [2].
  """
  orig_length = length
  length = tf.maximum(length, 2)  # a 1-token example still gets one clean token
  # float64, like the Python arithmetic of `raw_length_for`, so that the two agree on
  # every rounding (T5's float32 could round 70 * 0.15 up where Python rounds down).
  to_float = lambda x: tf.cast(x, tf.float64)
  num_noise = tf.cast(tf.round(to_float(length) * noise_density), tf.int32)
  num_noise = tf.clip_by_value(num_noise, 1, length - 1)
  num_spans = tf.cast(tf.round(to_float(num_noise) / mean_noise_span_length), tf.int32)
  # Every span, noisy or not, needs at least one token.
  num_spans = tf.clip_by_value(num_spans, 1, tf.minimum(num_noise, length - num_noise))
  noise_lengths = _random_composition(num_noise, num_spans, seeds[0])  # [spans]
  clean_lengths = _random_composition(length - num_noise, num_spans, seeds[1])  # [spans]
  span_lengths = tf.reshape(tf.stack([clean_lengths, noise_lengths], axis=1), [-1])  # [2 spans]
  span_is_noise = tf.tile([False, True], [num_spans])  # [2 spans]
  mask = tf.repeat(span_is_noise, span_lengths)  # [length]
  return mask[:orig_length]


def replace_spans_with_sentinels(tokens: tf.Tensor, span_mask: tf.Tensor,
                                 vocab_size: int) -> tf.Tensor:
  """Each run of masked tokens becomes one sentinel: vocab_size - 1, then - 2, ..."""
  previous_masked = tf.pad(span_mask[:-1], [[1, 0]])  # [length]
  starts_span = tf.logical_and(span_mask, tf.logical_not(previous_masked))  # [length]
  sentinels = vocab_size - tf.cumsum(tf.cast(starts_span, tokens.dtype))  # [length]
  tokens = tf.where(starts_span, sentinels, tokens)  # [length]
  inside_span = tf.logical_and(span_mask, previous_masked)
  return tf.boolean_mask(tokens, tf.logical_not(inside_span))  # [kept]


# ----------------------------------------------------------------------------------
# Dataset transforms.
# ----------------------------------------------------------------------------------


def select_random_chunk(dataset: tf.data.Dataset, max_length: int = MAX_CHUNK_TOKENS,
                        feature_key: str = "targets") -> tf.data.Dataset:
  """One random piece of at most `max_length` tokens per document; drops empty ones.

  The piece is one of the max_length-aligned pieces of the document, chosen uniformly
  (short documents are kept whole). Only `feature_key` is kept.
  """

  @seqio.map_over_dataset(num_seeds=1)
  def _chunk(example, seed):
    tokens = example[feature_key]
    num_pieces = (tf.size(tokens) + max_length - 1) // max_length
    start = max_length * tf.random.stateless_uniform(
        [], maxval=num_pieces, dtype=tf.int32, seed=seed)
    return {feature_key: tokens[start:start + max_length]}

  dataset = dataset.filter(lambda x: tf.size(x[feature_key]) > 0)
  return _chunk(dataset)


def reduce_concat_tokens(dataset: tf.data.Dataset, feature_key: str = "targets",
                         batch_size: int = CONCAT_DOCUMENTS) -> tf.data.Dataset:
  """Concatenates `batch_size` consecutive documents into one token sequence."""
  dataset = dataset.map(lambda x: {feature_key: x[feature_key]},
                        num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.ragged_batch(batch_size)
  return dataset.map(lambda x: {feature_key: x[feature_key].flat_values},
                     num_parallel_calls=tf.data.AUTOTUNE)


def split_tokens(dataset: tf.data.Dataset, max_tokens_per_segment: int,
                 feature_key: str = "targets") -> tf.data.Dataset:
  """Cuts each sequence into consecutive pieces of `max_tokens_per_segment` tokens
  (the last piece of each sequence may be shorter); drops empty sequences."""
  length = max_tokens_per_segment

  def _pieces(example):
    tokens = example[feature_key]
    num_pieces = (tf.size(tokens) + length - 1) // length
    starts = tf.data.Dataset.range(tf.cast(num_pieces, tf.int64))
    return starts.map(lambda i: {
        feature_key: tokens[tf.cast(i, tf.int32) * length:(tf.cast(i, tf.int32) + 1) * length]})

  dataset = dataset.filter(lambda x: tf.size(x[feature_key]) > 0)
  return dataset.flat_map(_pieces)


def corrupt_spans(dataset: tf.data.Dataset, vocab_size: int, noise_density: float,
                  mean_noise_span_length: float) -> tf.data.Dataset:
  """`targets` tokens -> span-corrupted `inputs` and sentinel-delimited `targets`."""

  @seqio.map_over_dataset(num_seeds=2)
  def _corrupt(example, seeds):
    tokens = example["targets"]  # [raw]
    noise = random_spans_noise_mask(tf.size(tokens), noise_density, seeds,
                                    mean_noise_span_length)  # [raw]
    return {
        "inputs": replace_spans_with_sentinels(tokens, noise, vocab_size),
        "targets": replace_spans_with_sentinels(tokens, tf.logical_not(noise), vocab_size),
    }

  return _corrupt(dataset)


def span_corruption(dataset: tf.data.Dataset, sequence_length: Mapping[str, int],
                    output_features: Mapping[str, seqio.Feature],
                    noise_density: float = 0.15,
                    mean_noise_span_length: float = 3.0) -> tf.data.Dataset:
  """seqio preprocessor: tokenized documents in `targets` -> span-corruption examples.

  Output `inputs`/`targets` have no EOS yet (follow with
  `seqio.preprocessors.append_eos_after_trim`); a full-length example then has exactly
  `sequence_length["inputs"]` inputs and `raw_length_for(...)[1]` targets.
  """
  if not 0.0 < noise_density < 1.0:
    raise ValueError(f"noise_density must be in (0, 1), got {noise_density}")
  if mean_noise_span_length < 1.0:
    raise ValueError(f"mean_noise_span_length must be >= 1, got {mean_noise_span_length}")
  raw_length, targets_length = raw_length_for(sequence_length["inputs"], noise_density,
                                              mean_noise_span_length)
  if sequence_length["targets"] < targets_length:
    raise ValueError(
        f"span corruption of {raw_length} raw tokens needs a targets length of "
        f"{targets_length}, but sequence_length['targets'] is {sequence_length['targets']}")
  vocabulary = output_features["targets"].vocabulary
  if "inputs" in output_features and output_features["inputs"].vocabulary != vocabulary:
    raise ValueError("span corruption needs the same vocabulary for inputs and targets")
  num_spans = noise_counts(raw_length, noise_density, mean_noise_span_length)[1]
  if num_spans > vocabulary.extra_ids:
    raise ValueError(
        f"span corruption of {raw_length} tokens makes {num_spans} spans but the vocabulary "
        f"has only {vocabulary.extra_ids} extra ids for sentinels")

  dataset = select_random_chunk(dataset)
  dataset = reduce_concat_tokens(dataset)
  dataset = split_tokens(dataset, raw_length)
  return corrupt_spans(dataset, vocabulary.vocab_size, noise_density, mean_noise_span_length)
