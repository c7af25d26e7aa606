"""The network: parameter counts, equivalences between variants, decoding with the
cache, packing, dtypes and config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from flax.linen import partitioning as nn_partitioning

from altup_t5.inference import decoding
from altup_t5.training import partitioning
from altup_t5.model.config import SIZES, T5Config, config_for
from altup_t5.model.network import Transformer
from model_helpers import VARIANTS, init_params, logits, micro_config, random_batch

PAPER_SIZES = ("small", "base", "large", "xl", "xxl")


# ---------------------------------------------------------------- parameter counts

def dense_t5_1_1_params(v, d, heads, head_dim, mlp, enc, dec, buckets=32):
  """T5.1.1 from the architecture: shared embedding, untied logits, no biases,
  gated-GELU MLP (3 matrices), RMSNorm scales, one relative bias table per stack."""
  attention = 4 * d * heads * head_dim  # q, k, v, out
  ffn = 3 * d * mlp
  encoder_layer = attention + ffn + 2 * d  # 2 pre-norms
  decoder_layer = 2 * attention + ffn + 3 * d  # 3 pre-norms
  return (v * d  # token embedding
          + enc * encoder_layer + heads * buckets + d  # encoder + relpos + final norm
          + dec * decoder_layer + heads * buckets + d  # decoder + relpos + final norm
          + d * v)  # logits


def count(cfg):
  shapes = jax.eval_shape(lambda: Transformer(cfg).init(
      jax.random.PRNGKey(0), jnp.ones((1, 8), jnp.int32), jnp.ones((1, 4), jnp.int32),
      jnp.ones((1, 4), jnp.int32), enable_dropout=False))
  return sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes["params"]))


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_dense_parameter_count_matches_the_architecture(size):
  s = SIZES[size]
  expected = dense_t5_1_1_params(32128, s["emb_dim"], s["num_heads"], s["head_dim"],
                                 s["mlp_dim"], s["num_encoder_layers"],
                                 s["num_decoder_layers"])
  assert count(config_for(size)) == expected


CPU_SIZES = ("micro", "tiny", "tiny2x")  # ours, with the offline 8192-row vocabulary


@pytest.mark.parametrize("size", CPU_SIZES)
def test_cpu_size_parameter_counts_match_the_architecture_and_grow(size):
  s = SIZES[size]
  assert count(config_for(size)) == dense_t5_1_1_params(
      8192, s["emb_dim"], s["num_heads"], s["head_dim"], s["mlp_dim"],
      s["num_encoder_layers"], s["num_decoder_layers"])
  # A frontier of sizes: each CPU size is larger than the one before it.
  i = CPU_SIZES.index(size)
  if i:
    assert count(config_for(size)) > count(config_for(CPU_SIZES[i - 1]))


def test_t5_1_1_small_and_base_have_their_published_sizes():
  # t5x's T5.1.1 Small is 76,961,152 parameters and Base 247,577,856.
  assert count(config_for("small")) == 76_961_152
  assert count(config_for("base")) == 247_577_856


@pytest.mark.parametrize("size", PAPER_SIZES)
def test_variant_parameter_counts(size):
  s, k, v = SIZES[size], 2, 32128
  d, layers = s["emb_dim"], s["num_encoder_layers"] + s["num_decoder_layers"]
  dense = count(config_for(size))
  coefs = layers * (k * k + k)
  # AltUp: K-1 more embedding blocks, K-1 more final-norm and logits blocks.
  assert count(config_for(size, "altup")) == dense + (k - 1) * (v * d + d + d * v) + coefs
  assert count(config_for(size, "recycled_altup")) == dense + coefs
  wide = dense_t5_1_1_params(v, k * d, k * s["num_heads"], s["head_dim"],
                             k * s["mlp_dim"], s["num_encoder_layers"],
                             s["num_decoder_layers"])
  assert count(config_for(size, "wide")) == wide
  # MoE: every 2nd layer's MLP becomes 8 experts plus a [d, 8] router.
  e, sparse = 8, layers // 2
  moe_extra = sparse * ((e - 1) * 3 * d * s["mlp_dim"] + d * e)
  assert count(config_for(size, "moe")) == dense + moe_extra
  assert count(config_for(size, "altup_moe")) == count(config_for(size, "altup")) + moe_extra
  # Sequence-AltUp: 2 predict scalars and 1 correct scalar per encoder layer.
  assert count(config_for(size, "sequence_altup")) == dense + 3 * s["num_encoder_layers"]


def test_recycled_tree_is_dense_tree_plus_coefficients():
  cfg = micro_config()
  batch = random_batch(cfg)
  dense = traverse_util.flatten_dict(init_params(Transformer(cfg), batch), sep="/")
  recycled = traverse_util.flatten_dict(
      init_params(Transformer(cfg.replace(variant="recycled_altup")), batch), sep="/")
  extra = set(recycled) - set(dense)
  assert set(dense) <= set(recycled)
  assert all(k.rsplit("/", 1)[-1] in ("predict_coefs", "correct_coefs") for k in extra)
  assert len(extra) == 2 * (cfg.num_encoder_layers + cfg.num_decoder_layers)
  assert all(recycled[k].shape == dense[k].shape for k in dense)


# ---------------------------------------------------------------- equivalences

def packed_batch(cfg, seed=0):
  """Two examples packed into row 0 (segments 1 and 2, then padding) and a second
  row holding one example, as seqio's EncDecFeatureConverter packs them."""
  rng = np.random.default_rng(seed)
  enc_len, dec_len = 14, 9
  tok = lambda n: rng.integers(2, cfg.vocab_size, size=n)
  a_in, a_out, b_in, b_out, c_in, c_out = tok(5), tok(4), tok(6), tok(3), tok(9), tok(7)

  def row(pairs, enc_len, dec_len):
    enc = np.zeros(enc_len, int); enc_seg = np.zeros(enc_len, int)
    tgt = np.zeros(dec_len, int); dec_in = np.zeros(dec_len, int)
    dec_seg = np.zeros(dec_len, int)
    e = t = 0
    for s, (inp, out) in enumerate(pairs, start=1):
      enc[e:e + len(inp)] = inp; enc_seg[e:e + len(inp)] = s; e += len(inp)
      tgt[t:t + len(out)] = out; dec_seg[t:t + len(out)] = s
      dec_in[t + 1:t + len(out)] = out[:-1]; t += len(out)
    return enc, enc_seg, tgt, dec_in, dec_seg

  rows = [row([(a_in, a_out), (b_in, b_out)], enc_len, dec_len),
          row([(c_in, c_out)], enc_len, dec_len)]
  enc, enc_seg, tgt, dec_in, dec_seg = (jnp.asarray(np.stack(x), jnp.int32)
                                        for x in zip(*rows))
  batch = {"encoder_input_tokens": enc, "decoder_input_tokens": dec_in,
           "decoder_target_tokens": tgt, "encoder_segment_ids": enc_seg,
           "decoder_segment_ids": dec_seg}
  alone = [row([pair], enc_len, dec_len)[:4:1] for pair in
           [(a_in, a_out), (b_in, b_out)]]
  return batch, (a_out, b_out), alone


def relative_error(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.abs(a - b).max() / np.abs(b).max()


def dense_and_variant_params(cfg_variant, batch):
  """Dense weights, and the variant's initial params overwritten with them."""
  dense_cfg = cfg_variant.replace(variant="dense")
  dense = init_params(Transformer(dense_cfg), batch, seed=1)
  variant = init_params(Transformer(cfg_variant), batch, seed=2)
  flat_dense = traverse_util.flatten_dict(dense)
  flat_variant = traverse_util.flatten_dict(variant)
  k = cfg_variant.altup_k
  for path, value in flat_dense.items():
    target = flat_variant[path]
    if target.shape == value.shape:
      flat_variant[path] = value
    elif path[-2:] == ("token_embedder", "embedding"):  # [V, d] -> K copies [V, K, d]
      flat_variant[path] = jnp.repeat(value[:, None], k, axis=1)
    elif path[-2:] == ("decoder_norm", "scale"):  # [d] -> [K, d]
      flat_variant[path] = jnp.broadcast_to(value, (k,) + value.shape)
    elif path[-2:] == ("logits_dense", "kernel"):  # [d, V] -> [K, d, V], summing to W
      flat_variant[path] = jnp.broadcast_to(value / k, (k,) + value.shape)
    else:
      raise AssertionError(f"unexpected shape change at {path}")
  return dense, traverse_util.unflatten_dict(flat_variant)


@pytest.mark.parametrize("variant", ["recycled_altup", "altup"])
@pytest.mark.parametrize("k", [2, 3])
def test_altup_at_initialisation_computes_the_dense_model(variant, k):
  cfg = micro_config(variant, altup_k=k)
  batch, _, _ = packed_batch(cfg)
  dense_params, params = dense_and_variant_params(cfg, batch)
  expected = logits(Transformer(cfg.replace(variant="dense")), dense_params, batch)
  got = logits(Transformer(cfg), params, batch)
  assert relative_error(got, expected) < 1e-5


def test_altup_with_trained_coefficients_differs_from_dense():
  """The equivalence above is not vacuous: moving one coefficient changes the logits."""
  cfg = micro_config("recycled_altup")
  batch, _, _ = packed_batch(cfg)
  dense_params, params = dense_and_variant_params(cfg, batch)
  params["encoder"]["layers_1"]["altup"]["predict_coefs"] = jnp.array(
      [[1.0, 0.3], [0.0, 1.0]])
  expected = logits(Transformer(cfg.replace(variant="dense")), dense_params, batch)
  assert relative_error(logits(Transformer(cfg), params, batch), expected) > 1e-3


@pytest.mark.parametrize("variant", ["dense", "altup", "recycled_altup", "moe", "altup_moe"])
def test_packing_isolates_examples(variant):
  # Generous capacity so MoE routes every token in both layouts.
  cfg = micro_config(variant, eval_capacity_factor=4.0)
  batch, (a_out, b_out), alone = packed_batch(cfg)
  model = Transformer(cfg)
  params = init_params(model, batch)
  packed = logits(model, params, batch)
  start = 0
  for out, (enc, _, tgt, dec_in) in zip((a_out, b_out), alone):
    single = {"encoder_input_tokens": jnp.asarray(enc[None], jnp.int32),
              "decoder_input_tokens": jnp.asarray(dec_in[None], jnp.int32),
              "decoder_target_tokens": jnp.asarray(tgt[None], jnp.int32)}
    expected = logits(model, params, single)[0, :len(out)]
    np.testing.assert_allclose(packed[0, start:start + len(out)], expected,
                               rtol=1e-5, atol=1e-5)
    start += len(out)


@pytest.mark.parametrize("cache_from", ["t5x", "init_cache"])
@pytest.mark.parametrize("variant", ["dense", "altup", "recycled_altup", "moe",
                                     "sequence_altup"])
def test_incremental_decoding_equals_teacher_forcing(variant, cache_from):
  # Capacity factor = experts / k: no token is ever dropped, with groups of any size.
  cfg = micro_config(variant, eval_capacity_factor=2.0)
  batch = random_batch(cfg, pad=False)
  model = Transformer(cfg)
  params = init_params(model, batch)
  expected = logits(model, params, batch)  # [batch, length, vocab]

  length = batch["decoder_input_tokens"].shape[1]
  encoded = model.apply({"params": params}, batch["encoder_input_tokens"],
                        enable_dropout=False, method=Transformer.encode)
  if cache_from == "t5x":  # from dummy inputs: the first step fills the memory's part
    dummy = {k: jnp.ones_like(v) for k, v in batch.items()}
    _, cache = model.apply({"params": params}, **dummy, enable_dropout=False,
                           decode=True, mutable=["cache"])
    cache = cache["cache"]
  else:  # from the real memory, read-only at every step
    cache = decoding.init_cache(model, params, encoded, batch["encoder_input_tokens"],
                                length)
  flags = [k for k in traverse_util.flatten_dict(cache) if k[-1] == "memory_filled"]
  assert bool(flags) == (cache_from == "t5x")
  step = jax.jit(lambda cache, token: model.apply(
      {"params": params, "cache": cache}, encoded, batch["encoder_input_tokens"], token,
      token, enable_dropout=False, decode=True, max_decode_length=length,
      mutable=["cache"], method=Transformer.decode))
  for i in range(length):
    token = batch["decoder_input_tokens"][:, i:i + 1]
    step_logits, variables = step(cache, token)
    cache = variables["cache"]
    np.testing.assert_allclose(step_logits[:, 0], expected[:, i], rtol=1e-5, atol=1e-5)


def test_decode_step_without_cache_length_is_rejected():
  cfg = micro_config()
  batch = random_batch(cfg, pad=False)
  model = Transformer(cfg)
  params = init_params(model, batch)
  _, cache = model.apply({"params": params}, **batch, enable_dropout=False, decode=True,
                         mutable=["cache"])
  encoded = model.apply({"params": params}, batch["encoder_input_tokens"],
                        enable_dropout=False, method=Transformer.encode)
  token = batch["decoder_input_tokens"][:, :1]
  with pytest.raises(ValueError, match="max_decode_length"):
    model.apply({"params": params, "cache": cache["cache"]}, encoded,
                batch["encoder_input_tokens"], token, token, enable_dropout=False,
                decode=True, mutable=["cache"], method=Transformer.decode)


# ---------------------------------------------------------------- axes, dtypes, dropout

@pytest.mark.parametrize("variant", VARIANTS + ("sequence_altup",))
def test_every_parameter_has_logical_axes_from_the_table(variant):
  cfg = micro_config(variant)
  batch = random_batch(cfg)
  variables = jax.eval_shape(lambda: Transformer(cfg).init(
      jax.random.PRNGKey(0), batch["encoder_input_tokens"], batch["decoder_input_tokens"],
      batch["decoder_target_tokens"], enable_dropout=False))
  params = traverse_util.flatten_dict(variables["params"], sep="/")
  axes = traverse_util.flatten_dict(
      nn_partitioning.get_axis_names(variables["params_axes"]), sep="/")
  assert set(axes) == set(params)
  for name, spec in axes.items():
    assert len(spec) == len(params[name].shape), name
    assert set(spec) <= partitioning.LOGICAL_AXIS_NAMES, (name, spec)
    assert params[name].dtype == jnp.float32


@pytest.mark.parametrize("variant", ["dense", "altup", "moe"])
def test_bfloat16_activations_keep_float32_params_and_track_float32(variant):
  cfg = micro_config(variant)
  batch = random_batch(cfg)
  params = init_params(Transformer(cfg), batch)
  full = logits(Transformer(cfg), params, batch)
  half = logits(Transformer(cfg.replace(dtype="bfloat16")), params, batch)
  assert half.dtype == jnp.float32  # logits are always computed in float32
  assert relative_error(half, full) < 0.05


def test_dropout_is_active_only_when_enabled():
  cfg = micro_config("altup", dropout_rate=0.3)
  batch = random_batch(cfg)
  model = Transformer(cfg)
  params = init_params(model, batch)
  run = lambda seed: model.apply({"params": params}, **batch, enable_dropout=True,
                                 rngs={"dropout": jax.random.PRNGKey(seed)})
  assert not np.allclose(run(0), run(1))
  np.testing.assert_array_equal(logits(model, params, batch), logits(model, params, batch))


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("call, message", [
    (lambda: config_for("medium"), "size='medium' is not one of 'tiny', 'small', 'base', "
                                   "'large', 'xl', 'xxl', 'micro', 'tiny2x'"),
    (lambda: config_for("small", "sparse"), "variant='sparse' is not one of 'dense', "
                                            "'wide', 'moe', 'altup', 'recycled_altup', "
                                            "'altup_moe'"),
    (lambda: config_for("small", "altup", altup_k=1), "altup_k=1 must be >= 2"),
    (lambda: config_for("small", "wide", width_factor=1), "width_factor=1 must be an integer >= 2"),
    (lambda: config_for("small", attention_dim=500), "attention_dim=500 is not a multiple "
                                                     "of head_dim=64"),
    (lambda: config_for("small", num_heads=6, attention_dim=512),
     "num_heads=6 x head_dim=64 = 384 does not match attention_dim=512"),
    (lambda: config_for("small", "moe", num_selected_experts=9),
     "num_selected_experts=9 must be between 1 and num_experts=8"),
    (lambda: config_for("small", altup_schedule="random"),
     "altup_schedule='random' is not one of 'alternating', 'same'"),
    (lambda: config_for("small", emb_size=3), "unknown T5Config field(s) ['emb_size']"),
])
def test_bad_configs_name_the_field_and_the_allowed_values(call, message):
  with pytest.raises(ValueError) as error:
    call()
  assert message in str(error.value)


def test_attention_dim_sets_heads_and_wide_multiplies_widths():
  assert config_for("small", attention_dim=512).num_heads == 8
  wide = config_for("base", "wide")
  assert (wide.emb_dim, wide.num_heads, wide.mlp_dim) == (1536, 24, 4096)
  assert isinstance(config_for("tiny"), T5Config)
