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
  # Runs, finite (not the dense function exactly: router probabilities scale outputs).
  assert np.isfinite(np.asarray(logits(model, w, random_batch(cfg)))).all()


def test_other_size_is_refused(dense):
  _, dense_params = dense
  cfg = micro_config("altup", emb_dim=16)
  _, abstract = _abstract(cfg)
  with pytest.raises(ValueError, match="cannot upcycle .* dense checkpoint has shape"):
    upcycle.upcycle(dense_params, cfg, abstract)


@pytest.mark.parametrize("layout", ["t5x", "hf"])
@pytest.mark.parametrize("variant", ["altup", "recycled_altup"])
def test_load_params_upcycles_each_layout(dense, tmp_path, layout, variant):
  dense_cfg, dense_params = dense
  if layout == "t5x":
    path = t5x_checkpoints.write_params(dense_params, str(tmp_path / "t5x"), 7)
  else:
    path = hf_checkpoints.write_hf_directory(dense_params, dense_cfg, str(tmp_path / "hf"))
  cfg = micro_config(variant)
  model, abstract = _abstract(cfg)
  if layout == "t5x":  # without the switch: today's clear error
    with pytest.raises(ValueError, match="missing from the checkpoint|altup"):
      load.load_params(path, abstract, cfg)
  params = load.load_params(path, abstract, cfg, upcycle_from_dense=True)
  batch = random_batch(cfg)
  _assert_same_logits(logits(model, params, batch),
                      logits(network.Transformer(dense_cfg), dense_params, batch))


def test_upcycling_a_dense_model_is_refused(dense, tmp_path):
  dense_cfg, dense_params = dense
  path = hf_checkpoints.write_hf_directory(dense_params, dense_cfg, str(tmp_path / "hf"))
  _, abstract = _abstract(dense_cfg)
  with pytest.raises(ValueError, match="UPCYCLE_FROM_DENSE needs an altup"):
    load.load_params(path, abstract, dense_cfg, upcycle_from_dense=True)
