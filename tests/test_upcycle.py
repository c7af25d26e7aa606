"""Upcycling a dense tree into AltUp / Recycled-AltUp / AltUp+MoE (model/upcycle.py and
jobs/load.py's UPCYCLE_FROM_DENSE path): the widened models start as the dense function."""

import jax
import numpy as np
import pytest

from model_helpers import init_params, logits, micro_config, random_batch

from altup_t5.jobs import load
from altup_t5.model import network, upcycle
from altup_t5.t5x import checkpoints as t5x_checkpoints
from altup_t5.t5x import hf_checkpoints


def _packed_batch(cfg):
  """Two segments per row: the masks and relative positions of packing are exercised."""
  batch = random_batch(cfg, pad=False)
  seg = lambda n: np.asarray([[1] * (n // 2) + [2] * (n - n // 2)] * 2, np.int32)
  pos = lambda n: np.asarray([list(range(n // 2)) + list(range(n - n // 2))] * 2, np.int32)
  e, d = batch["encoder_input_tokens"].shape[1], batch["decoder_input_tokens"].shape[1]
  return dict(batch, encoder_segment_ids=seg(e), decoder_segment_ids=seg(d),
              encoder_positions=pos(e), decoder_positions=pos(d))


@pytest.fixture(scope="module")
def dense():
  cfg = micro_config("dense")
  batch = random_batch(cfg)
  model = network.Transformer(cfg)
  params = jax.tree_util.tree_map(np.asarray, init_params(model, batch, seed=3))
  return cfg, params


def _abstract(cfg):
  model = network.Transformer(cfg)
  return model, jax.eval_shape(lambda: init_params(model, random_batch(cfg)))


def _assert_same_logits(ours, reference):
  ours, reference = np.asarray(ours), np.asarray(reference)
  scale = np.abs(reference).max()
  np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-5 * scale)


def _try_packed(model, params, cfg):
  return logits(model, params, _packed_batch(cfg))


@pytest.mark.parametrize("variant", ["altup", "recycled_altup"])
def test_upcycled_altup_is_the_dense_function(dense, variant):
  dense_cfg, dense_params = dense
  cfg = micro_config(variant)
  model, abstract = _abstract(cfg)
  widened = upcycle.upcycle(dense_params, cfg, abstract)
  for batch_fn in (random_batch, None):
    if batch_fn is None:
      ours = _try_packed(model, widened, cfg)
      reference = _try_packed(network.Transformer(dense_cfg), dense_params, dense_cfg)
    else:
      ours = logits(model, widened, batch_fn(cfg))
      reference = logits(network.Transformer(dense_cfg), dense_params, batch_fn(dense_cfg))
    _assert_same_logits(ours, reference)


def test_upcycled_shapes_and_values(dense):
  _, dense_params = dense
  cfg = micro_config("altup")
  _, abstract = _abstract(cfg)
  w = upcycle.upcycle(dense_params, cfg, abstract)
  emb = dense_params["token_embedder"]["embedding"]
  np.testing.assert_array_equal(w["token_embedder"]["embedding"], np.stack([emb, emb], 1))
  kernel = dense_params["decoder"]["logits_dense"]["kernel"]
  np.testing.assert_array_equal(w["decoder"]["logits_dense"]["kernel"],
                                np.stack([kernel / 2, kernel / 2]))
  np.testing.assert_array_equal(w["encoder"]["layers_1"]["altup"]["predict_coefs"], np.eye(2))
  np.testing.assert_array_equal(w["encoder"]["layers_1"]["altup"]["correct_coefs"], np.ones(2))


def test_upcycled_moe_experts_copy_the_dense_mlp(dense):
  dense_cfg, dense_params = dense
  cfg = micro_config("altup_moe", expert_mlp_dim=48)
  model, abstract = _abstract(cfg)
  w = upcycle.upcycle(dense_params, cfg, abstract)
  sparse = [i for i in range(cfg.num_encoder_layers) if cfg.is_sparse_layer(i)]
  assert sparse
  for i in range(cfg.num_encoder_layers):
    mlp, dense_mlp = w["encoder"][f"layers_{i}"]["mlp"], dense_params["encoder"][f"layers_{i}"]["mlp"]
    if i in sparse:
      for name in ("wi_0", "wi_1", "wo"):
        stacked = mlp["expert"][name]["kernel"]
        assert stacked.shape[0] == cfg.num_experts
        for e in range(cfg.num_experts):
          np.testing.assert_array_equal(stacked[e], dense_mlp[name]["kernel"])
      router = mlp["router"]["kernel"]
      assert router.shape == (cfg.emb_dim, cfg.num_experts) and 0 < router.std() < 0.05
    else:
      np.testing.assert_array_equal(mlp["wo"]["kernel"], dense_mlp["wo"]["kernel"])
  # With the default k=2 of 4 experts it is not the dense function: the router's
  # kept probabilities scale each sparse output (the test above gives the relation).
  reference = logits(network.Transformer(dense_cfg), dense_params, random_batch(dense_cfg))
  assert np.abs(np.asarray(logits(model, w, random_batch(cfg))) - np.asarray(
      reference)).max() > 1e-3 * np.abs(np.asarray(reference)).max()


def test_other_size_is_refused(dense):
  _, dense_params = dense
  cfg = micro_config("altup", emb_dim=16)
  _, abstract = _abstract(cfg)
  with pytest.raises(ValueError, match="cannot upcycle .* dense checkpoint has shape"):
    upcycle.upcycle(dense_params, cfg, abstract)


# AltUp+MoE is the dense function only where every token's kept router probabilities
# sum to 1: all experts chosen (k = E) and none dropped (the eval capacity, factor 2.0,
# then holds every token). test_upcycled_moe_layer_scales_the_dense_mlp covers k < E.
EXACT = {"altup": {}, "recycled_altup": {},
         "altup_moe": dict(num_selected_experts=4, expert_mlp_dim=48)}


def _write(layout, dense_cfg, dense_params, tmp_path):
  """`dense_params` as a checkpoint of `layout`: ours (orbax, as our trainer saves a
  TrainState), t5x's (msgpack) or HuggingFace's (config.json + safetensors)."""
  if layout == "ours":
    import optax  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from altup_t5.training import checkpoints, trainer  # pylint: disable=import-outside-toplevel
    path = str(tmp_path / "run" / "checkpoints")
    saver = checkpoints.Checkpoints(path, checkpoints.CheckpointSettings(async_save=False))
    params = jax.tree_util.tree_map(jax.numpy.asarray, dense_params)
    saver.save(2, trainer.TrainState(step=jax.numpy.int32(2), params=params,
                                     opt_state=optax.adafactor(1e-3).init(params)),
               iter(tf.data.Dataset.range(3)), 0)
    saver.close()
    return path
  if layout == "t5x":
    return t5x_checkpoints.write_params(dense_params, str(tmp_path / "t5x"), 7)
  return hf_checkpoints.write_hf_directory(dense_params, dense_cfg, str(tmp_path / "hf"))


@pytest.mark.parametrize("layout", ["ours", "t5x", "hf"])
@pytest.mark.parametrize("variant", ["altup", "recycled_altup", "altup_moe"])
def test_load_params_upcycles_each_layout(dense, tmp_path, layout, variant):
  dense_cfg, dense_params = dense
  path = _write(layout, dense_cfg, dense_params, tmp_path)
  cfg = micro_config(variant, **EXACT[variant])
  model, abstract = _abstract(cfg)
  with pytest.raises(ValueError, match="missing from the checkpoint") as error:
    load.load_params(path, abstract, cfg)  # without the switch: today's clear error
  assert "\n" not in str(error.value)
  params = load.load_params(path, abstract, cfg, upcycle_from_dense=True)
  assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(abstract)
  # float32 throughout (micro_config), packed rows of two segments each.
  assert cfg.activation_dtype == np.float32
  ours = logits(model, params, _packed_batch(cfg))
  reference = logits(network.Transformer(dense_cfg), dense_params, _packed_batch(dense_cfg))
  _assert_same_logits(ours, reference)
  # Not a coincidence of the batch: a dense model of other weights differs.
  other = jax.tree_util.tree_map(lambda x: x * 1.5, dense_params)
  assert np.abs(np.asarray(logits(network.Transformer(dense_cfg), other,
                                  _packed_batch(dense_cfg))) - np.asarray(ours)).max() > (
      1e-2 * np.abs(np.asarray(ours)).max())


def _gelu_tanh(x):
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


@pytest.mark.parametrize("k", [1, 2])
def test_upcycled_moe_layer_scales_the_dense_mlp(dense, k):
  """With k < E chosen experts, a sparse layer of copies gives each token the dense
  MLP's output times the sum of its top-k router probabilities (not renormalised,
  as flaxformer), as long as no token is dropped (eval capacity here)."""
  from altup_t5.model import moe  # pylint: disable=import-outside-toplevel
  _, dense_params = dense
  cfg = micro_config("altup_moe", num_selected_experts=k, expert_mlp_dim=48)
  _, abstract = _abstract(cfg)
  widened = upcycle.upcycle(dense_params, cfg, abstract)
  layer = next(i for i in range(cfg.num_encoder_layers) if cfg.is_sparse_layer(i))
  mlp = widened["encoder"][f"layers_{layer}"]["mlp"]
  dense_mlp = dense_params["encoder"][f"layers_{layer}"]["mlp"]
  x = np.random.default_rng(5).standard_normal((2, 10, cfg.emb_dim)).astype(np.float32)
  out = moe.MoeMlp(cfg, router="tokens_choose").apply({"params": mlp}, x, None, True)
  # NumPy reference: the dense gated-GELU MLP, scaled by the top-k probability mass.
  h = _gelu_tanh(x @ dense_mlp["wi_0"]["kernel"]) * (x @ dense_mlp["wi_1"]["kernel"])
  dense_out = h @ dense_mlp["wo"]["kernel"]
  z = x @ mlp["router"]["kernel"]
  probs = np.exp(z - z.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  mass = np.sort(probs, -1)[..., -k:].sum(-1)  # [batch, length], < 1 for k < E
  assert (mass < 0.99).all()
  np.testing.assert_allclose(np.asarray(out), mass[..., None] * dense_out,
                             rtol=1e-5, atol=1e-5 * np.abs(dense_out).max())


def test_upcycling_a_dense_model_is_refused(dense, tmp_path):
  dense_cfg, dense_params = dense
  path = hf_checkpoints.write_hf_directory(dense_params, dense_cfg, str(tmp_path / "hf"))
  _, abstract = _abstract(dense_cfg)
  with pytest.raises(ValueError, match="UPCYCLE_FROM_DENSE needs an altup"):
    load.load_params(path, abstract, dense_cfg, upcycle_from_dense=True)
