"""Span corruption against T5's definition: lengths, sentinels, exact reconstruction,
the statistics of >= 10,000 produced examples, determinism, and the C4 tasks' pipeline.

No download: a synthetic token stream and seqio's ByteVocabulary (ids 3..258 are bytes,
259..358 the 100 extra ids; <extra_id_0> = 358).
"""

import collections
import math

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from altup_t5.data import denoising as sc
from altup_t5.data import vocabularies

VOCAB = seqio.ByteVocabulary(extra_ids=100)
FEATURES = {"inputs": seqio.Feature(VOCAB), "targets": seqio.Feature(VOCAB)}
FIRST_SENTINEL = VOCAB.vocab_size - 1  # 358
EOS = VOCAB.eos_id
LENGTHS = {"inputs": 512, "targets": 114}


def corrupt(documents, lengths=LENGTHS, seed=0, **kwargs):
  """Examples (dicts of numpy arrays) that span corruption + EOS makes of `documents`."""
  dataset = tf.data.Dataset.from_generator(
      lambda: ({"targets": np.asarray(d, np.int32)} for d in documents),
      output_signature={"targets": tf.TensorSpec([None], tf.int32)})
  with seqio.utils.map_seed_manager(seed):
    dataset = sc.span_corruption(dataset, lengths, FEATURES, **kwargs)
  dataset = seqio.preprocessors.append_eos_after_trim(dataset, FEATURES, lengths)
  return list(dataset.as_numpy_iterator())


def synthetic_documents(num_documents, seed=1):
  """Random byte tokens (never a sentinel), documents of 1..3000 tokens."""
  rng = np.random.default_rng(seed)
  lengths = rng.integers(1, 3000, size=num_documents)
  return [rng.integers(3, 259, size=n).astype(np.int32) for n in lengths]


def parse(example):
  """(inputs, targets) without EOS, checking that both end with exactly one EOS."""
  inputs, targets = example["inputs"].tolist(), example["targets"].tolist()
  assert inputs[-1] == EOS and targets[-1] == EOS
  assert EOS not in inputs[:-1] and EOS not in targets[:-1]
  return inputs[:-1], targets[:-1]


def is_sentinel(token):
  return token > FIRST_SENTINEL - VOCAB.extra_ids


def reconstruct(inputs, targets):
  """Each sentinel in the inputs replaced by the span after it in the targets."""
  spans, current = {}, None
  for token in targets:
    if is_sentinel(token):
      current = token
      spans[current] = []
    else:
      spans[current].append(token)
  out = []
  for token in inputs:
    out.extend(spans[token] if is_sentinel(token) else [token])
  return out


def exact_composition_pmf(total, parts):
  """P(a given part has length l) when `total` items are split uniformly at random into
  `parts` non-empty parts: C(total - l - 1, parts - 2) / C(total - 1, parts - 1)."""
  norm = math.comb(total - 1, parts - 1)
  return {l: math.comb(total - l - 1, parts - 2) / norm for l in range(1, total - parts + 2)}


def total_variation(counts, pmf):
  n = sum(counts.values())
  support = set(counts) | set(pmf)
  return 0.5 * sum(abs(counts.get(l, 0) / n - pmf.get(l, 0.0)) for l in support)


# ---------------------------------------------------------------- lengths


def test_raw_length_for_512_inputs_is_568_with_114_targets():
  # 568 * 0.15 = 85.2 -> 85 noise tokens in round(85 / 3) = 28 spans:
  # inputs 568 - 85 + 28 + EOS = 512, targets 85 + 28 + EOS = 114; 569 raw would give 513.
  assert sc.raw_length_for(512, 0.15, 3.0) == (568, 114)
  assert sc.corrupted_lengths(569, 0.15, 3.0)[0] == 513


@pytest.mark.parametrize("inputs_length", [16, 64, 100, 177, 512, 1024])
def test_raw_length_is_the_largest_that_fits(inputs_length):
  raw, targets = sc.raw_length_for(inputs_length)
  noise = round(raw * 0.15)
  spans = round(noise / 3)
  assert raw - noise + spans + 1 <= inputs_length
  assert targets == noise + spans + 1
  bigger = raw + 1
  assert bigger - round(bigger * 0.15) + round(round(bigger * 0.15) / 3) + 1 > inputs_length


def test_568_raw_tokens_give_512_inputs_and_114_targets():
  tokens = np.arange(568) % 256 + 3
  (example,) = corrupt([tokens])
  assert example["inputs"].shape == (512,) and example["targets"].shape == (114,)
  inputs, targets = parse(example)
  assert sum(map(is_sentinel, inputs)) == 28 and sum(map(is_sentinel, targets)) == 28
  assert reconstruct(inputs, targets) == tokens.tolist()


# ---------------------------------------------------------------- 10,000+ examples


@pytest.fixture(scope="module")
def many():
  documents = synthetic_documents(4000)
  examples = corrupt(documents, seed=7)
  return documents, examples


def test_at_least_10000_examples(many):
  _, examples = many
  assert len(examples) >= 10_000


def test_sentinels_in_t5_order(many):
  """Inputs and targets carry <extra_id_0> (the highest id), <extra_id_1>, ... in
  order; targets start with <extra_id_0>; inputs start with a kept token and end with
  a sentinel (spans alternate, starting with a kept span)."""
  for example in many[1]:
    inputs, targets = parse(example)
    input_sentinels = [t for t in inputs if is_sentinel(t)]
    target_sentinels = [t for t in targets if is_sentinel(t)]
    expected = list(range(FIRST_SENTINEL, FIRST_SENTINEL - len(input_sentinels), -1))
    assert input_sentinels == expected and target_sentinels == expected
    assert targets[0] == FIRST_SENTINEL
    if len(inputs) > 1:
      assert not is_sentinel(inputs[0]) and is_sentinel(inputs[-1])
    # No two sentinels in a row: every span is non-empty.
    assert not any(is_sentinel(a) and is_sentinel(b) for a, b in zip(inputs, inputs[1:]))
    assert not any(is_sentinel(a) and is_sentinel(b) for a, b in zip(targets, targets[1:]))


def test_interleaving_inputs_and_targets_reconstructs_the_stream(many):
  """Documents are concatenated and cut into raw-length pieces, in order: undoing the
  corruption of every example and concatenating gives back all documents exactly."""
  documents, examples = many
  rebuilt = np.concatenate([reconstruct(*parse(e)) for e in examples])
  np.testing.assert_array_equal(rebuilt, np.concatenate(documents))


def test_noise_density_and_mean_span_length(many):
  """Measured on the produced examples: noise tokens are the targets' non-sentinel
  tokens, spans are the targets' sentinels."""
  _, examples = many
  noise = spans = raw = 0
  for example in examples:
    inputs, targets = parse(example)
    num_spans = sum(map(is_sentinel, targets))
    noise += len(targets) - num_spans
    spans += num_spans
    raw += len(inputs) - num_spans + len(targets) - num_spans
  density, mean_span = noise / raw, noise / spans
  print(f"measured over {len(examples)} examples: noise density {density:.4f}, "
        f"mean noise span length {mean_span:.3f}")
  assert abs(density - 0.15) <= 0.01
  assert abs(mean_span - 3.0) <= 0.2


def test_span_lengths_follow_t5s_distribution(many):
  """In full-length examples (568 raw: 85 noise and 483 kept tokens, 28 spans each) span
  lengths are those of a uniformly random composition, computed exactly here."""
  noise_lengths, kept_lengths = collections.Counter(), collections.Counter()
  full = 0
  for example in many[1]:
    inputs, targets = parse(example)
    if len(inputs) != 511:
      continue
    full += 1
    runs = []
    for token in targets:
      if is_sentinel(token):
        runs.append(0)
      else:
        runs[-1] += 1
    noise_lengths.update(runs)
    run = 0
    for token in inputs:
      if is_sentinel(token):
        kept_lengths[run] += 1
        run = 0
      else:
        run += 1
  assert full >= 10_000
  assert total_variation(noise_lengths, exact_composition_pmf(85, 28)) < 0.01
  assert total_variation(kept_lengths, exact_composition_pmf(483, 28)) < 0.01


# ---------------------------------------------------------------- determinism and edges


def test_deterministic_given_seqio_seed():
  """Through a registered Task: the same seed gives the same examples, another seed
  other masks of the same tokens."""
  documents = synthetic_documents(40, seed=3)
  name = "test_span_corruption_determinism"
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(
          lambda split, shuffle_files, seed=None: tf.data.Dataset.from_generator(
              lambda: ({"targets": d} for d in documents),
              output_signature={"targets": tf.TensorSpec([None], tf.int32)}),
          splits=["train"]),
      preprocessors=[sc.span_corruption, seqio.preprocessors.append_eos_after_trim],
      output_features=FEATURES)
  try:
    def run(seed):
      ds = seqio.get_mixture_or_task(name).get_dataset(LENGTHS, shuffle=False, seed=seed)
      return [(e["inputs"].tolist(), e["targets"].tolist()) for e in ds.as_numpy_iterator()]
    first, again, other = run(11), run(11), run(12)
  finally:
    seqio.TaskRegistry.remove(name)
  assert first == again
  assert first != other
  assert [reconstruct(i[:-1], t[:-1]) for i, t in first] == [
      reconstruct(i[:-1], t[:-1]) for i, t in other]


def test_noise_mask_counts_match_the_length_arithmetic():
  """For every length the mask draws exactly the noise tokens and spans that
  `raw_length_for` counted on (T5's float32 mask could disagree, e.g. at 70 * 0.15)."""
  seeds = tf.constant([[5, 6], [7, 8]])
  mask_fn = tf.function(lambda n: sc.random_spans_noise_mask(n, 0.15, seeds))
  for length in range(2, 700):
    mask = mask_fn(tf.constant(length)).numpy()
    spans = int(mask[0]) + int((mask[1:] & ~mask[:-1]).sum())
    num_noise, num_spans = sc.noise_counts(length, 0.15, 3.0)
    assert (int(mask.sum()), spans) == (max(num_noise, 1), max(num_spans, 1)), length


@pytest.mark.parametrize("length", [1, 2, 3, 7, 20, 568])
def test_noise_mask_edges(length):
  seeds = tf.constant([[1, 2], [3, 4]])
  mask = sc.random_spans_noise_mask(tf.constant(length), 0.15, seeds).numpy()
  assert mask.shape == (length,)
  if length >= 2:
    assert not mask[0] and mask[-1] and 1 <= mask.sum() < length
  else:
    assert not mask.any()


def test_targets_too_short_is_a_clear_error():
  with pytest.raises(ValueError, match=r"needs a targets length of 114, but "
                                       r"sequence_length\['targets'\] is 100"):
    corrupt(synthetic_documents(1), lengths={"inputs": 512, "targets": 100})


def test_too_few_extra_ids_is_a_clear_error():
  vocab = seqio.ByteVocabulary(extra_ids=10)
  features = {"inputs": seqio.Feature(vocab), "targets": seqio.Feature(vocab)}
  dataset = tf.data.Dataset.from_tensors({"targets": tf.constant([5] * 600)})
  with pytest.raises(ValueError, match="makes 28 spans but the vocabulary has only 10 extra"):
    sc.span_corruption(dataset, LENGTHS, features)


# ---------------------------------------------------------------- the C4 tasks


@pytest.fixture
def byte_vocabulary(monkeypatch):
  monkeypatch.setattr(vocabularies, "_chosen", vocabularies.byte_vocabulary())


def test_c4_tasks_are_t5s(byte_vocabulary):
  from altup_t5.data import c4  # pylint: disable=g-import-not-at-top
  for name, version in [("c4_v220_span_corruption", "2.2.0"),
                        ("c4_v310_span_corruption", "3.1.0")]:
    task = seqio.get_mixture_or_task(name)
    assert task.source.tfds_dataset.name == f"c4/en:{version}"
    assert tuple(task.splits) == ("train", "validation")
    assert task.output_features == c4.FEATURES
    assert task.output_features["targets"].vocabulary is vocabularies.CHOSEN


@pytest.mark.parametrize("name", ["c4_v220_span_corruption", "c4_v310_span_corruption"])
def test_c4_pipeline_on_mock_data(byte_vocabulary, name):
  """TFDS's mock C4 through the task, seqio and the EncDecFeatureConverter."""
  from altup_t5.data import c4  # pylint: disable=g-import-not-at-top,unused-import
  lengths = {"inputs": 64, "targets": 16}
  with tfds.testing.mock_data(num_examples=200):
    dataset = seqio.get_dataset(name, lengths,
                                seqio.EncDecFeatureConverter(pack=False),
                                dataset_split="validation", shuffle=False, seed=5)
    examples = list(dataset.as_numpy_iterator())
  assert len(examples) > 10
  for example in examples:
    inputs = example["encoder_input_tokens"][example["encoder_input_tokens"] > 0].tolist()
    targets = example["decoder_target_tokens"][example["decoder_target_tokens"] > 0].tolist()
    sentinels = [t for t in inputs if is_sentinel(t)]
    assert sentinels == list(range(FIRST_SENTINEL, FIRST_SENTINEL - len(sentinels), -1))
    assert targets[0] == FIRST_SENTINEL and inputs[-1] == EOS and targets[-1] == EOS
  # raw_length_for(64) = (70, 14): full pieces give exactly 64 inputs and 14 targets.
  full = [e for e in examples if e["encoder_input_tokens"][-1] == EOS]
  assert full and all((e["decoder_target_tokens"] > 0).sum() == 14 for e in full)
