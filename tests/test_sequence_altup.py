"""Sequence-AltUp (model/sequence_altup.py): the strided predict/correct against NumPy,
its initial relation, packing, optimisation, parameter count, bad strides and
combinations, and its row in the studies' report."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from altup_t5.errors import SettingError
from altup_t5.model import sequence_altup as sa
from altup_t5.model.config import config_for
from altup_t5.model.network import Transformer
from model_helpers import init_params, logits, micro_config, random_batch


def numpy_sequence_altup(x, valid, segments, stride, p, g, layer):
  """Token by token: a = s*floor(t/s); x_hat_t = p0 x_t + p1 x_a; x_t <- x_hat_t +
  g (y_a - x_hat_a), both terms dropped where a is padding or another segment."""
  batch, length, _ = x.shape
  y = layer(x[:, ::stride])
  out = np.empty_like(x)
  for b in range(batch):
    for t in range(length):
      a = stride * (t // stride)
      ok = valid[b, a] and valid[b, t] and segments[b, a] == segments[b, t]
      hat = lambda i: p[0] * x[b, i] + (p[1] * x[b, a] if ok else 0.0)
      out[b, t] = hat(t) + (g * (y[b, t // stride] - hat(a)) if ok else 0.0)
  return out


@pytest.mark.parametrize("stride, length", [(2, 9), (3, 9), (4, 10)])
def test_strided_predict_correct_matches_numpy(stride, length):
  rng = np.random.default_rng(stride)
  x = rng.normal(size=(2, length, 5)).astype(np.float32)
  valid = np.ones((2, length), bool)
  valid[1, length - 3:] = False  # padding
  segments = np.ones((2, length), np.int32)
  segments[0, 4:] = 2  # packed: a second example starting off-stride for s=3, 4
  segments = np.where(valid, segments, 0)
  w = rng.normal(size=(5, 5)).astype(np.float32)
  # A layer that mixes positions (like attention), so which tokens it sees matters.
  layer = lambda h: np.tanh(h @ w + np.cumsum(h, axis=1))
  p, g = np.array([0.7, -0.4], np.float32), np.float32(1.3)  # non-initial

  module = sa.SequenceAltUp()
  params = {"predict_coefs": jnp.asarray(p), "correct_coefs": jnp.asarray([g])}
  jlayer = lambda h: jnp.tanh(h @ w + jnp.cumsum(h, axis=1))
  got = module.apply(
      {"params": params},
      method=lambda m: sa.sequence_alternating_update(
          m, jnp.asarray(x), sa.anchored_mask(jnp.asarray(valid), jnp.asarray(segments),
                                              stride), stride, jlayer))
  want = numpy_sequence_altup(x, valid, segments, stride, p, g, layer)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_initial_coefficients_give_anchors_the_layer_and_others_its_update():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(1, 6, 4)), jnp.float32)
  layer = lambda h: jnp.sin(h) * 2 + jnp.cumsum(h, axis=1)
  module = sa.SequenceAltUp()
  params = module.init(jax.random.PRNGKey(0), method=lambda m: m.predict_coefs)
  ok = jnp.ones((1, 6), bool)
  got = np.asarray(module.apply(
      params, method=lambda m: sa.sequence_alternating_update(m, x, ok, 2, layer)))
  y = np.asarray(layer(x[:, ::2]))
  np.testing.assert_allclose(got[:, ::2], y, rtol=1e-6)  # anchors: exactly L's output
  np.testing.assert_allclose(got[:, 1::2], np.asarray(x[:, 1::2]) + y - np.asarray(x[:, ::2]),
                             rtol=1e-5, atol=1e-6)  # skipped: own x + anchor's update


def _model(**overrides):
  cfg = micro_config("sequence_altup", **overrides)
  return cfg, Transformer(cfg)


def test_packing_isolates_examples():
  cfg, model = _model(sequence_altup_stride=2)
  a, b = random_batch(cfg, 1, 6, 4, seed=1, pad=False), random_batch(cfg, 1, 6, 4, seed=2,
                                                                     pad=False)
  params = init_params(model, a)
  # Randomise the scalars so the test does not rest on the initial values.
  for i in range(cfg.num_encoder_layers):
    params["encoder"][f"layers_{i}"]["sequence_altup"] = {
        "predict_coefs": jnp.array([0.8, 0.3]), "correct_coefs": jnp.array([0.9])}
  cat = lambda k: jnp.concatenate([a[k], b[k]], axis=1)
  packed = {k: cat(k) for k in a}
  seg = lambda n, m: jnp.asarray([[1] * n + [2] * m], jnp.int32)
  packed["encoder_segment_ids"] = seg(6, 6)
  packed["decoder_segment_ids"] = seg(4, 4)
  # Decoder inputs restart at 0 for the second example, as packing does.
  out = np.asarray(logits(model, params, packed))
  np.testing.assert_allclose(out[:, :4], np.asarray(logits(model, params, a)),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out[:, 4:], np.asarray(logits(model, params, b)),
                             rtol=1e-4, atol=1e-4)
  # Off-stride packing: changing example 1 never changes example 2's logits.
  packed["encoder_input_tokens"] = packed["encoder_input_tokens"].at[0, :5].set(7)
  packed["encoder_segment_ids"] = seg(5, 7)
  first = np.asarray(logits(model, params, packed))[:, 4:]
  packed["encoder_input_tokens"] = packed["encoder_input_tokens"].at[0, :5].set(9)
  np.testing.assert_allclose(np.asarray(logits(model, params, packed))[:, 4:], first,
                             rtol=1e-5, atol=1e-5)


def test_skipped_tokens_are_not_attended_in_the_first_layer():
  # With one encoder layer at initialisation, the memory at an anchor depends only on
  # anchors; a skipped token (odd position) changes only its own output.
  cfg, model = _model(num_encoder_layers=1)
  batch = random_batch(cfg, 1, 8, 4, pad=False)
  params = init_params(model, batch)
  enc = lambda b: np.asarray(model.apply({"params": params}, b["encoder_input_tokens"],
                                         enable_dropout=False, method=model.encode))
  before = enc(batch)
  changed = dict(batch, encoder_input_tokens=batch["encoder_input_tokens"].at[0, 3].set(5))
  after = enc(changed)
  diff = np.abs(after - before).max(axis=-1)[0]
  assert diff[3] > 1e-4
  np.testing.assert_allclose(np.delete(diff, 3), 0.0, atol=1e-6)


def test_a_few_steps_lower_the_loss():
  cfg, model = _model()
  batch = random_batch(cfg)
  params = init_params(model, batch)
  opt = optax.adam(3e-3)
  state = opt.init(params)

  def loss_fn(p):
    out = model.apply({"params": p}, **batch, enable_dropout=False)
    targets = batch["decoder_target_tokens"]
    ce = optax.softmax_cross_entropy_with_integer_labels(out, targets)
    return jnp.sum(ce * (targets > 0)) / jnp.sum(targets > 0)

  @jax.jit
  def step(p, s):
    loss, grads = jax.value_and_grad(loss_fn)(p)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, updates), s, loss, grads

  params, state, first, grads = step(params, state)
  # The scalars get gradients (they are trained).
  assert np.abs(np.asarray(grads["encoder"]["layers_1"]["sequence_altup"]
                           ["predict_coefs"])).max() > 0
  for _ in range(15):
    params, state, loss, _ = step(params, state)
  assert float(loss) < 0.8 * float(first)


def test_parameter_count_is_dense_plus_three_scalars_per_encoder_layer():
  count = lambda cfg: sum(x.size for x in jax.tree_util.tree_leaves(
      init_params(Transformer(cfg), random_batch(cfg))))
  dense, seq = micro_config(), micro_config("sequence_altup")
  assert count(seq) == count(dense) + 3 * seq.num_encoder_layers


@pytest.mark.parametrize("stride, message", [
    (1, "sequence_altup_stride=1 must be an integer >= 2 (and <= the encoder input "
        "length) for variant 'sequence_altup'"),
    (0, "sequence_altup_stride=0 must be an integer >= 2"),
])
def test_small_strides_are_refused(stride, message):
  with pytest.raises(ValueError) as error:
    config_for("small", "sequence_altup", sequence_altup_stride=stride)
  assert message in str(error.value)


def test_a_stride_longer_than_the_inputs_is_refused():
  cfg, model = _model(sequence_altup_stride=13)
  # SettingError (a ValueError): the entry points print it as one line and exit 2.
  with pytest.raises(SettingError) as error:
    init_params(model, random_batch(cfg, inputs_length=12))
  # (jax appends a note on its traceback filtering after the first line)
  assert str(error.value).splitlines()[0] == (
      "sequence_altup_stride=13 must be between 2 and the encoder input length 12")


def test_a_stride_equal_to_the_inputs_leaves_token_0_the_only_anchor():
  cfg, model = _model(sequence_altup_stride=12, num_encoder_layers=1)
  batch = random_batch(cfg, 1, 12, 4, pad=False)
  params = init_params(model, batch)
  enc = lambda b: np.asarray(model.apply({"params": params}, b["encoder_input_tokens"],
                                         enable_dropout=False, method=model.encode))
  before = enc(batch)
  # Token 5 is skipped: changing it changes only its own output row.
  after = enc(dict(batch, encoder_input_tokens=batch["encoder_input_tokens"].at[0, 5].set(3)))
  diff = np.abs(after - before).max(axis=-1)[0]
  assert diff[5] > 1e-4
  np.testing.assert_allclose(np.delete(diff, 5), 0.0, atol=1e-6)


def test_computing_on_the_prediction_is_refused():
  with pytest.raises(SettingError) as error:
    config_for("small", "sequence_altup", altup_compute_on="prediction")
  assert str(error.value) == ("altup_compute_on='prediction' is not defined for variant "
                              "'sequence_altup'; allowed: 'input'")
  # AltUp itself keeps the ablation.
  assert config_for("small", "altup", altup_compute_on="prediction").uses_altup


def test_fields_of_other_variants_do_not_apply():
  # altup_k and num_experts belong to AltUp and MoE; Sequence-AltUp ignores them (as
  # dense does), and there is no Sequence-AltUp + MoE variant to misconfigure.
  cfg = config_for("small", "sequence_altup", altup_k=4, num_experts=3)
  assert (cfg.representation_blocks, cfg.uses_moe, cfg.uses_altup) == (1, False, False)


def test_every_study_variant_has_a_report_row_and_label():
  from altup_t5.studies import report, study
  assert "sequence_altup" in study.VARIANTS
  assert set(study.VARIANTS) <= set(report.METHODS)
  assert report.method_label("sequence_altup") == "Sequence-AltUp (stride 2)"
  # Studies cannot set the stride, so the label's 2 must be the config's default.
  assert config_for("tiny", "sequence_altup").sequence_altup_stride == 2


def test_other_variants_ignore_the_stride_field():
  assert not config_for("small", "altup", sequence_altup_stride=1).uses_sequence_altup
  assert not config_for("small", "sequence_altup").uses_altup


def test_flops_of_an_encoder_layer_are_those_of_a_dense_layer_on_the_anchors():
  from altup_t5.model.flops import model_flops
  layer = lambda variant, length: (
      model_flops(config_for("small", variant, num_encoder_layers=2), 4, length, 114)
      - model_flops(config_for("small", variant, num_encoder_layers=1), 4, length, 114))
  assert layer("sequence_altup", 512) == layer("dense", 256)
  assert layer("sequence_altup", 511) == layer("dense", 256)  # ceil(511 / 2) anchors
