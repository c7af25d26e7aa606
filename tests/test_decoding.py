"""Decoding: greedy, sampling and beam search against NumPy references on a toy
Markov model, and `decode_with_model` against a loop over the teacher-forced network."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.core import freeze

from altup_t5.inference import decoding
from altup_t5.model.network import Transformer
from model_helpers import init_params, micro_config, random_batch

EOS = 1


# ---------------------------------------------------------------- the toy model

class ToyModel:
  """A second-order Markov chain with a position term and a per-example term:

    logits[row] = A[input] + B[previous input] + C[position] + D[row]

  Its cache holds what an attention cache would: a per-sequence leaf (the previous
  input, which beam search must re-order with the beams) and a shared scalar
  `cache_index` (the position, which it must not expand). D plays the encoder
  memory that the caller expands for beams.
  """

  def __init__(self, seed, vocab=5, batch=2, length=4, eos_logit=0.0, scale=1.5):
    rng = np.random.default_rng(seed)
    self.vocab, self.batch = vocab, batch
    self.A, self.B, self.D = (rng.normal(size=s) * scale for s in
                              [(vocab, vocab), (vocab, vocab), (batch, vocab)])
    self.C = rng.normal(size=(length, vocab)) * scale
    self.A[:, EOS] += eos_logit

  def cache(self):
    return {"decoder": {"layers_0": {"prev_input": jnp.zeros((self.batch,), jnp.int32),
                                     "cache_index": jnp.array(0, jnp.int32)}}}

  def tokens_to_logits(self, beam_size=1, on_step=None):
    A, B, C = (jnp.asarray(x, jnp.float32) for x in (self.A, self.B, self.C))
    D = decoding.expand_batch(jnp.asarray(self.D, jnp.float32), beam_size)

    def fn(token_ids, cache):
      layer = cache["decoder"]["layers_0"]
      if on_step is not None:
        jax.debug.callback(on_step)
      inputs, position = token_ids[:, 0], layer["cache_index"]
      logits = A[inputs] + B[layer["prev_input"]] + C[position] + D  # [batch', vocab]
      return logits, {"decoder": {"layers_0": {"prev_input": inputs,
                                               "cache_index": position + 1}}}
    return fn

  # NumPy references, one example at a time.
  def next_log_probs(self, row, prefix):
    """log p(. | prefix) in float64; step 0 feeds the BOS token 0."""
    fed = [0] + list(prefix)
    previous = fed[-2] if len(fed) >= 2 else 0  # the cache starts at 0
    logits = self.A[fed[-1]] + self.B[previous] + self.C[len(prefix)] + self.D[row]
    return logits - np.logaddexp.reduce(logits)

  def log_prob(self, row, sequence):
    """Sum of log p up to and including the first EOS; tokens after it ignored."""
    total, prefix = 0.0, []
    for token in sequence:
      total += self.next_log_probs(row, prefix)[token]
      prefix.append(int(token))
      if token == EOS:
        break
    return total


def pad(sequence, length):
  return list(sequence) + [0] * (length - len(sequence))


def numpy_greedy(model, length):
  sequences, log_probs = [], []
  for row in range(model.batch):
    prefix, total = [], 0.0
    while len(prefix) < length:
      lp = model.next_log_probs(row, prefix)
      token = int(np.argmax(lp))
      prefix.append(token)
      total += lp[token]
      if token == EOS:
        break
    sequences.append(pad(prefix, length))
    log_probs.append(total)
  return np.array(sequences), np.array(log_probs)


def penalty(length, alpha):
  return ((5.0 + length) / 6.0) ** alpha


def all_hypotheses(vocab, length):
  """Every sequence beam search can return: EOS at position n-1 (n = 1..length),
  or `length` tokens without EOS (truncated)."""
  others = [t for t in range(vocab) if t != EOS]
  for n in range(1, length + 1):
    for prefix in itertools.product(others, repeat=n - 1):
      yield prefix + (EOS,)
  yield from itertools.product(others, repeat=length)


def brute_force_ranking(model, row, length, alpha):
  """All hypotheses sorted by length-penalised score, best first."""
  scored = [(model.log_prob(row, h) / penalty(len(h), alpha), pad(h, length))
            for h in all_hypotheses(model.vocab, length)]
  return sorted(scored, key=lambda s: -s[0])


# A flat enough toy model that the best hypothesis of row 0 changes with alpha.
PENALTY_MATTERS = dict(seed=5, vocab=5, batch=2, length=4, eos_logit=1.0, scale=0.8)


def run_beam(model, beam_size, length, alpha, **kwargs):
  return decoding.beam_search(model.tokens_to_logits(beam_size, **kwargs), model.cache(),
                              batch_size=model.batch, max_decode_length=length,
                              eos_id=EOS, beam_size=beam_size, alpha=alpha)


class StepCounter:
  """Counts model calls at run time (inside the compiled while loop)."""

  def __init__(self):
    self.calls = 0

  def __call__(self):
    self.calls += 1

  def count(self, outputs):
    jax.block_until_ready(outputs)
    jax.effects_barrier()
    return self.calls


# ---------------------------------------------------------------- greedy

def test_greedy_equals_numpy_argmax_loop():
  model = ToyModel(seed=0, vocab=7, batch=3, length=6)
  sequences, log_probs = jax.jit(lambda cache: decoding.greedy(
      model.tokens_to_logits(), cache, batch_size=3, max_decode_length=6,
      eos_id=EOS))(model.cache())
  expected, expected_log_probs = numpy_greedy(model, 6)
  assert sequences.dtype == jnp.int32 and sequences.shape == (3, 6)
  np.testing.assert_array_equal(sequences, expected)
  np.testing.assert_allclose(log_probs, expected_log_probs, rtol=1e-5)


def test_greedy_pads_after_eos_and_stops_when_every_row_has_ended():
  length = 10
  model = ToyModel(seed=3, vocab=6, batch=4, length=length, eos_logit=2.5)
  expected, _ = numpy_greedy(model, length)
  ends = [list(row).index(EOS) if EOS in row else None for row in expected]
  # The setting exercises what it claims: every row ends, at different steps, early.
  assert None not in ends and len(set(ends)) > 1 and max(ends) < length - 2, ends
  counter = StepCounter()
  sequences, _ = decoding.greedy(model.tokens_to_logits(on_step=counter), model.cache(),
                                 batch_size=4, max_decode_length=length, eos_id=EOS)
  np.testing.assert_array_equal(sequences, expected)
  for row, end in zip(np.asarray(sequences), ends):
    assert (row[end + 1:] == 0).all()
  assert counter.count(sequences) == max(ends) + 1


def test_greedy_runs_to_max_length_without_eos():
  model = ToyModel(seed=1, vocab=6, batch=2, length=5, eos_logit=-30.0)
  counter = StepCounter()
  sequences, _ = decoding.greedy(model.tokens_to_logits(on_step=counter), model.cache(),
                                 batch_size=2, max_decode_length=5, eos_id=EOS)
  np.testing.assert_array_equal(sequences, numpy_greedy(model, 5)[0])
  assert (np.asarray(sequences) != EOS).all()
  assert counter.count(sequences) == 5


# ---------------------------------------------------------------- sampling

def sample(model, rng, length=6, **kwargs):
  return decoding.temperature_sample(model.tokens_to_logits(), model.cache(), rng,
                                     batch_size=model.batch, max_decode_length=length,
                                     eos_id=EOS, **kwargs)


def test_sampling_is_deterministic_for_a_key_and_scores_with_the_model():
  model = ToyModel(seed=4, vocab=7, batch=6, length=6)
  run = jax.jit(lambda rng: sample(model, rng, temperature=1.3))
  first, first_log_probs = run(jax.random.PRNGKey(0))
  again, _ = run(jax.random.PRNGKey(0))
  other, _ = run(jax.random.PRNGKey(1))
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  # The log-probability is the model's, not the tempered distribution's.
  expected = [model.log_prob(row, seq) for row, seq in enumerate(np.asarray(first))]
  np.testing.assert_allclose(first_log_probs, expected, rtol=1e-5)
  for row in np.asarray(first):  # padding after EOS
    if EOS in row:
      assert (row[list(row).index(EOS) + 1:] == 0).all()


@pytest.mark.parametrize("settings", [dict(temperature=0.0), dict(topk=1),
                                      dict(temperature=0.5, topp=1e-6)])
def test_sampling_degenerates_to_greedy(settings):
  model = ToyModel(seed=5, vocab=7, batch=4, length=6, eos_logit=1.0)
  sequences, log_probs = sample(model, jax.random.PRNGKey(7), **settings)
  expected, expected_log_probs = numpy_greedy(model, 6)
  np.testing.assert_array_equal(sequences, expected)
  np.testing.assert_allclose(log_probs, expected_log_probs, rtol=1e-5)


def test_a_traced_temperature_of_zero_is_greedy():
  model = ToyModel(seed=5, vocab=7, batch=4, length=6)
  run = jax.jit(lambda t: sample(model, jax.random.PRNGKey(7), temperature=t)[0])
  np.testing.assert_array_equal(run(0.0), numpy_greedy(model, 6)[0])
  assert not np.array_equal(run(5.0), numpy_greedy(model, 6)[0])


def test_topk_two_only_ever_picks_the_two_most_likely_tokens():
  model = ToyModel(seed=6, vocab=8, batch=64, length=6, scale=0.5)
  sequences, _ = sample(model, jax.random.PRNGKey(3), temperature=2.0, topk=2)
  seen_third = False
  for row, seq in enumerate(np.asarray(sequences)):
    prefix = []
    for token in seq:
      ranking = np.argsort(-model.next_log_probs(row, prefix))
      assert token in ranking[:2], (row, prefix, token)
      seen_third |= token == ranking[1]
      prefix.append(int(token))
      if token == EOS:
        break
  assert seen_third  # the runner-up does get picked: this is sampling, not greedy


def test_filter_logits_by_hand():
  logits = jnp.array([[3.0, 1.0, 3.0, 0.0, 2.0]])
  ninf = -np.inf
  # top-k keeps ties with the k-th largest.
  np.testing.assert_array_equal(decoding.filter_logits(logits, topk=1),
                                [[3.0, ninf, 3.0, ninf, ninf]])
  np.testing.assert_array_equal(decoding.filter_logits(logits, topk=3),
                                [[3.0, ninf, 3.0, ninf, 2.0]])
  # probabilities 0.3917, 0.0530, 0.3917, 0.0195, 0.1441; sorted running mass
  # 0.3917, 0.7834, 0.9275, 0.9805, 1
  np.testing.assert_array_equal(decoding.filter_logits(logits, topp=0.8),
                                [[3.0, ninf, 3.0, ninf, 2.0]])  # 0.7834 < 0.8 <= 0.9275
  np.testing.assert_array_equal(decoding.filter_logits(logits, topp=0.95),
                                [[3.0, 1.0, 3.0, ninf, 2.0]])  # 0.9275 < 0.95 <= 0.9805
  np.testing.assert_array_equal(decoding.filter_logits(logits), logits)


def first_token_frequencies(model, **kwargs):
  sequences, _ = sample(model, jax.random.PRNGKey(11), length=1, **kwargs)
  return np.bincount(np.asarray(sequences)[:, 0], minlength=model.vocab) / model.batch


def within_five_sigma(frequencies, probs, n):
  sigma = np.sqrt(probs * (1 - probs) / n)
  np.testing.assert_array_less(np.abs(frequencies - probs), 5 * sigma + 1e-9)


def test_sample_frequencies_match_the_tempered_softmax():
  n, temperature = 20000, 0.7
  model = ToyModel(seed=8, vocab=6, batch=n, length=1, scale=0.6)
  model.D[:] = 0.0  # every row samples from the same distribution
  logits = model.next_log_probs(0, []) / temperature
  probs = np.exp(logits - np.logaddexp.reduce(logits))
  within_five_sigma(first_token_frequencies(model, temperature=temperature), probs, n)


def test_top_p_samples_from_the_renormalised_nucleus():
  n = 20000
  model = ToyModel(seed=9, vocab=6, batch=n, length=1, scale=0.8)
  model.D[:] = 0.0
  probs = np.exp(model.next_log_probs(0, []))
  order = np.argsort(-probs)
  # Smallest set of most likely tokens holding 70% of the mass.
  keep = order[:np.searchsorted(np.cumsum(probs[order]), 0.7) + 1]
  assert 1 < len(keep) < model.vocab
  nucleus = np.zeros_like(probs)
  nucleus[keep] = probs[keep] / probs[keep].sum()
  within_five_sigma(first_token_frequencies(model, topp=0.7), nucleus, n)


# ---------------------------------------------------------------- beam search

@pytest.mark.parametrize("seed", [11, 14, 19])  # seeds where some rows end, some do not
def test_beam_size_one_equals_greedy(seed):
  """With alpha = 0 and EOS never the runner-up, a single beam follows the greedy
  path (EOS is only considered among the top 2 * beam candidates, as in t5x)."""
  length = 8
  model = ToyModel(seed=seed, vocab=6, batch=4, length=length)
  model.A[:, EOS] = -50.0  # EOS is last everywhere...
  model.A[3, EOS] = 50.0  # ...except after token 3, where it is certain
  expected, expected_log_probs = numpy_greedy(model, length)
  assert any(EOS in row for row in expected) and not all(EOS in row for row in expected)
  sequences, scores = run_beam(model, 1, length, alpha=0.0)
  np.testing.assert_array_equal(sequences[:, 0], expected)
  np.testing.assert_allclose(scores[:, 0], expected_log_probs, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 3.0])
def test_a_beam_covering_every_candidate_finds_the_brute_force_ranking(alpha):
  """vocab 5, length 4: at most 4^3 * 5 = 320 candidates per step, so with
  2 * beam >= 320 nothing is ever pruned and the beams must be the exact top 160 of
  all 341 hypotheses, in order."""
  length, beam = 4, 160
  model = ToyModel(**PENALTY_MATTERS)
  sequences, scores = run_beam(model, beam, length, alpha)
  for row in range(model.batch):
    ranking = brute_force_ranking(model, row, length, alpha)[:beam]
    np.testing.assert_allclose(scores[row], [s for s, _ in ranking], rtol=1e-5)
    # Compare sequences where scores are not near-ties (float32 may swap those).
    expected = np.array([seq for _, seq in ranking])
    distinct = np.abs(np.diff([s for s, _ in ranking], prepend=np.inf,
                              append=-np.inf))
    clear = np.minimum(distinct[:-1], distinct[1:]) > 1e-4
    np.testing.assert_array_equal(np.asarray(sequences[row])[clear], expected[clear])


def hypothesis_length(sequence):
  sequence = list(sequence)
  return sequence.index(EOS) + 1 if EOS in sequence else len(sequence)


def test_length_penalty_changes_the_winner_and_beam_search_follows():
  length, beam = 4, 160
  model = ToyModel(**PENALTY_MATTERS)
  winners = {}
  for alpha in (0.0, 0.6, 3.0):
    best = [brute_force_ranking(model, row, length, alpha)[0][1] for row in range(2)]
    sequences, _ = run_beam(model, beam, length, alpha)
    np.testing.assert_array_equal(sequences[:, 0], best)
    winners[alpha] = [hypothesis_length(seq) for seq in best]
  assert winners[0.0] != winners[0.6]  # the toy model makes T5's penalty matter
  # A larger alpha can only favour longer hypotheses.
  assert (np.diff([winners[a] for a in (0.0, 0.6, 3.0)], axis=0) >= 0).all()


@pytest.mark.parametrize("seed", range(4))
def test_beam_of_four_returns_sorted_distinct_correctly_scored_hypotheses(seed):
  """vocab 5, length 4, beam 4 prunes, so it need not find the brute-force best;
  every beam must still be a real hypothesis scored exactly, best first."""
  length = 4
  model = ToyModel(seed=seed, vocab=5, batch=2, length=length, eos_logit=1.0)
  sequences, scores = run_beam(model, 4, length, alpha=0.6)
  assert sequences.shape == (2, 4, length) and scores.shape == (2, 4)
  for row in range(model.batch):
    best_possible = brute_force_ranking(model, row, length, 0.6)[0][0]
    seqs = [tuple(s) for s in np.asarray(sequences[row])]
    assert len(set(seqs)) == 4
    assert (np.diff(np.asarray(scores[row])) <= 0).all()  # best first
    for seq, score in zip(seqs, np.asarray(scores[row])):
      n = hypothesis_length(seq)
      assert all(t == 0 for t in seq[n:])  # padding after EOS
      np.testing.assert_allclose(score, model.log_prob(row, seq) / penalty(n, 0.6),
                                 rtol=1e-5)
      assert score <= best_possible + 1e-5


def test_beam_search_stops_once_no_alive_beam_can_win():
  """EOS is almost certain: after two steps both finished slots hold hypotheses
  (log p ~ 0 and ~ -10) that no alive beam (log p <= -20) can beat."""
  model = ToyModel(seed=0, vocab=5, batch=2, length=10, scale=0.0)
  model.A[:, EOS] = 10.0
  counter = StepCounter()
  sequences, scores = run_beam(model, 2, 10, alpha=0.0, on_step=counter)
  assert counter.count(scores) == 2
  np.testing.assert_array_equal(sequences[:, 0, :2], [[EOS, 0], [EOS, 0]])
  assert (np.asarray(sequences)[:, 1, 1] == EOS).all()


def test_empty_beam_slots_score_minus_infinity():
  # vocab 2, length 1: only two hypotheses exist ([EOS] and [0]) for three slots.
  model = ToyModel(seed=0, vocab=2, batch=1, length=1)
  sequences, scores = run_beam(model, 3, 1, alpha=0.6)
  assert np.isfinite(scores[0, :2]).all() and scores[0, 2] == -np.inf
  assert sorted(np.asarray(sequences[0, :2, 0]).tolist()) == [0, EOS]
  np.testing.assert_array_equal(sequences[0, 2], [0])


# ---------------------------------------------------------------- cache helpers

def test_map_cache_repeats_batch_leaves_and_leaves_scalars_alone():
  cache = freeze({"layers_0": {"cached_key": jnp.arange(6.0).reshape(2, 3),
                               "cache_index": jnp.array(4, jnp.int32)},
                  "layers_1": {"cache_index": jnp.array([5, 6], jnp.int32),  # scanned
                               "step": jnp.array(7)}})
  out = decoding.map_cache(functools.partial(decoding.expand_batch, beam_size=3), cache)
  assert type(out) is type(cache)
  np.testing.assert_array_equal(out["layers_0"]["cached_key"],
                                [[0, 1, 2]] * 3 + [[3, 4, 5]] * 3)
  assert out["layers_0"]["cache_index"].shape == () and out["layers_0"]["cache_index"] == 4
  np.testing.assert_array_equal(out["layers_1"]["cache_index"], [5, 6])
  assert out["layers_1"]["step"] == 7


def test_expand_batch_lays_out_beams_of_one_example_together():
  x = jnp.array([[1, 2], [3, 4]])
  np.testing.assert_array_equal(decoding.expand_batch(x, 2),
                                [[1, 2], [1, 2], [3, 4], [3, 4]])


# ---------------------------------------------------------------- bad input

def toy_call(function, **kwargs):
  model = ToyModel(seed=0)
  settings = dict(batch_size=2, max_decode_length=4, eos_id=EOS)
  settings.update(kwargs)
  args = (jax.random.PRNGKey(0),) if function is decoding.temperature_sample else ()
  return function(model.tokens_to_logits(), model.cache(), *args, **settings)


@pytest.mark.parametrize("function, kwargs, message", [
    (decoding.greedy, dict(max_decode_length=0), "max_decode_length=0 must be a positive"),
    (decoding.greedy, dict(eos_id=-1), "eos_id=-1 must be a non-negative integer"),
    (decoding.temperature_sample, dict(temperature=-1.0), "temperature=-1.0 must be >= 0"),
    (decoding.temperature_sample, dict(topk=2, topp=0.9),
     "at most one of topk=2 and topp=0.9 may be non-zero"),
    (decoding.temperature_sample, dict(topp=1.5), "topp=1.5 must be in [0, 1]"),
    (decoding.temperature_sample, dict(topk=9), "topk=9 exceeds the vocabulary size 5"),
    (decoding.beam_search, dict(alpha=-0.5), "alpha=-0.5 must be >= 0"),
    (decoding.beam_search, dict(beam_size=0), "beam_size=0 must be a positive integer"),
    (decoding.beam_search, dict(batch_size=3),
     "cache leaf ['decoder']['layers_0']['prev_input'] has shape (2,); expected a "
     "leading batch axis of batch_size=3"),
])
def test_bad_arguments_get_one_line_errors(function, kwargs, message):
  with pytest.raises(ValueError) as error:
    toy_call(function, **kwargs)
  assert message in str(error.value)


def test_logits_of_the_wrong_shape_are_reported():
  model = ToyModel(seed=0)
  three_d = lambda ids, cache: (model.tokens_to_logits()(ids, cache)[0][:, None], cache)
  with pytest.raises(ValueError, match=r"must return logits \[2, vocab\] for token_ids "
                                       r"\(2, 1\); got \(2, 1, 5\)"):
    decoding.greedy(three_d, model.cache(), batch_size=2, max_decode_length=3, eos_id=EOS)


# ---------------------------------------------------------------- a real Transformer

def _with_sequence_altup_scalars(params, cfg, predict, correct):
  encoder = dict(params["encoder"])
  for i in range(cfg.num_encoder_layers):
    encoder[f"layers_{i}"] = dict(encoder[f"layers_{i}"], sequence_altup={
        "predict_coefs": jnp.asarray(predict, jnp.float32),
        "correct_coefs": jnp.asarray(correct, jnp.float32)})
  return dict(params, encoder=encoder)


def teacher_forced(model, params):
  """The full (uncached) network as a jitted function of `(encoder_tokens, prefixes
  [rows, length])` -> log-softmax `[rows, length, vocab]`, row t predicting the token
  after `prefixes[:, :t]`: decoder inputs are BOS + prefix, none masked as padding,
  and causal attention keeps later (unused) prefix positions from mattering."""
  @jax.jit
  def log_probs(encoder_tokens, prefixes):
    decoder_inputs = jnp.pad(prefixes[:, :-1], ((0, 0), (1, 0)))  # shift right
    logits = model.apply({"params": params}, encoder_tokens, decoder_inputs,
                         jnp.ones_like(decoder_inputs), enable_dropout=False)
    return jax.nn.log_softmax(logits.astype(jnp.float32))
  return lambda enc, prefixes: np.asarray(log_probs(enc, jnp.asarray(prefixes, jnp.int32)),
                                          np.float64)


def reference_greedy(network, encoder_tokens, length, eos_id):
  """Re-runs the whole network on the growing prefix and takes the argmax. Also
  returns each step's log-probabilities, and the total log-probability."""
  batch = encoder_tokens.shape[0]
  prefix = np.zeros((batch, length), np.int64)
  ended = np.zeros(batch, bool)
  total, steps = np.zeros(batch), []
  for t in range(length):
    log_probs = network(encoder_tokens, prefix)[:, t]  # [batch, vocab]
    token = np.where(ended, 0, log_probs.argmax(-1))
    total += np.where(ended, 0.0, log_probs[np.arange(batch), token])
    steps.append(log_probs)
    prefix[:, t] = token
    ended |= token == eos_id
  return prefix, total, steps


def choose_eos(network, encoder_tokens, length):
  """An EOS that row 0 emits early but not every row emits, and that is never the
  runner-up on the greedy path (so one beam follows greedy, see the toy test)."""
  free_run, _, _ = reference_greedy(network, encoder_tokens, length, eos_id=-1)
  for eos in free_run[0, 1:length - 2]:
    sequences, _, steps = reference_greedy(network, encoder_tokens, length, eos)
    active = np.cumsum(sequences == eos, axis=1) - (sequences == eos) == 0  # [batch, L]
    runner_up = np.stack([np.argsort(-s, axis=-1)[:, 1] for s in steps], axis=1)
    some_but_not_all_end = 0 < (sequences == eos).any(1).sum() < len(sequences)
    if eos and some_but_not_all_end and not ((runner_up == eos) & active).any():
      return int(eos)
  raise AssertionError("no usable EOS on this greedy path; change the seed")


# sequence_altup: its decoder is dense, so this checks that the strided encoder's
# memory feeds the cached decoder as it feeds the teacher-forced one.
@pytest.mark.parametrize("variant", ["dense", "altup", "sequence_altup"])
def test_decode_with_model_equals_loops_over_the_teacher_forced_network(variant):
  cfg = micro_config(variant)
  batch = random_batch(cfg, batch=3, inputs_length=10, pad=True)
  encoder_tokens = batch["encoder_input_tokens"]
  model = Transformer(cfg)
  params = jax.jit(functools.partial(init_params, model))(batch)  # faster than eager
  if variant == "sequence_altup":  # non-initial scalars, so the skipped tokens matter
    params = _with_sequence_altup_scalars(params, cfg, [0.8, 0.3], [0.9])
  length = 8
  network = teacher_forced(model, params)
  eos = choose_eos(network, encoder_tokens, length)
  expected, expected_log_probs, _ = reference_greedy(network, encoder_tokens, length, eos)

  def run(method, **kwargs):
    fn = functools.partial(decoding.decode_with_model, model, max_decode_length=length,
                           eos_id=eos, method=method, **kwargs)
    return jax.jit(fn)(params, encoder_tokens)

  sequences, log_probs = run("greedy")
  assert sequences.shape == (3, length)
  np.testing.assert_array_equal(sequences, expected)
  np.testing.assert_allclose(log_probs, expected_log_probs, rtol=1e-4)

  beam_sequences, beam_scores = run("beam", beam_size=1, alpha=0.0)
  np.testing.assert_array_equal(beam_sequences, expected)
  np.testing.assert_allclose(beam_scores, expected_log_probs, rtol=1e-4)

  # Four beams re-order the cache every step: each beam's score must be what the
  # uncached network gives its sequence.
  all_sequences, all_scores = run("beam", beam_size=4, alpha=0.6, return_all_beams=True)
  assert all_sequences.shape == (3, 4, length)
  assert (np.diff(np.asarray(all_scores), axis=1) <= 0).all()
  assert all(len({tuple(s) for s in np.asarray(row)}) == 4 for row in all_sequences)
  for beam in range(4):
    sequences = np.asarray(all_sequences[:, beam])
    step_log_probs = network(encoder_tokens, sequences)  # [batch, length, vocab]
    for row, seq in enumerate(sequences):
      n = list(seq).index(eos) + 1 if eos in seq else length
      log_prob = sum(step_log_probs[row, t, seq[t]] for t in range(n))
      np.testing.assert_allclose(all_scores[row, beam], log_prob / penalty(n, 0.6),
                                 rtol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(method="nucleus"), "method='nucleus' is not one of 'greedy', 'beam', 'sample'"),
    (dict(method="sample"), "method='sample' needs an rng"),
    (dict(return_all_beams=True), "return_all_beams=True needs method='beam'"),
])
def test_decode_with_model_rejects_bad_settings(kwargs, message):
  with pytest.raises(ValueError, match=message):
    decoding.decode_with_model(None, None, jnp.ones((1, 3), jnp.int32),
                               max_decode_length=4, eos_id=EOS, **kwargs)
