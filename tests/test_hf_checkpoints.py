"""HuggingFace T5.1.1 directories in and out (t5x/hf_checkpoints.py, jobs/load.py)."""

import json
import os
import pickle

import jax
import numpy as np
import pytest
from safetensors.numpy import save_file

from model_helpers import init_params, logits, micro_config, random_batch

from altup_t5.jobs import load
from altup_t5.model import network
from altup_t5.t5x import hf_checkpoints as hf


def _abstract(cfg):
  model = network.Transformer(cfg)
  return jax.eval_shape(lambda: init_params(model, random_batch(cfg)))


def _known_hf_dir(tmp_path, cfg, **config_changes):
  """An HF directory whose every tensor holds a distinct, known value."""
  tensors, expected = {}, {}
  abstract = dict(hf._flat(_abstract(cfg)))
  for i, (ours, (name, transposed)) in enumerate(sorted(hf.name_map(cfg).items())):
    shape = abstract[ours].shape
    value = (np.arange(np.prod(shape), dtype=np.float32).reshape(shape) + 1000 * i) / 7
    expected[ours] = value
    tensors[name] = np.ascontiguousarray(value.T if transposed else value)
  path = tmp_path / "hf"
  path.mkdir()
  save_file(tensors, str(path / hf.SAFETENSORS_FILE))
  (path / hf.CONFIG_FILE).write_text(json.dumps(dict(hf.hf_config(cfg), **config_changes)))
  return str(path), expected


def test_known_arrays_land_in_place(tmp_path):
  cfg = micro_config("dense")
  path, expected = _known_hf_dir(tmp_path, cfg)
  params = load.load_params(path, _abstract(cfg), cfg)
  flat = dict(hf._flat(params))
  assert set(flat) == set(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(flat[name], value, err_msg=name)


def test_export_then_read_round_trips(tmp_path):
  cfg = micro_config("dense")
  params = jax.tree_util.tree_map(np.asarray, init_params(network.Transformer(cfg),
                                                          random_batch(cfg)))
  out = hf.write_hf_directory(params, cfg, str(tmp_path / "out"))
  back = hf.read_dense_params(out, cfg)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, dict(params))
  assert hf.config_from_params(params).emb_dim == cfg.emb_dim


@pytest.mark.parametrize("changes, message", [
    (dict(feed_forward_proj="relu", tie_word_embeddings=True), "is not a T5.1.1 checkpoint"),
    (dict(d_model=64), "is another size than the model: d_model=64"),
    (dict(num_layers=4), "num_layers=4"),
])
def test_bad_configs_are_refused(tmp_path, changes, message):
  cfg = micro_config("dense")
  path, _ = _known_hf_dir(tmp_path, cfg, **changes)
  with pytest.raises(ValueError, match=message) as error:
    load.load_params(path, _abstract(cfg), cfg)
  assert "\n" not in str(error.value)


def test_bad_weights_are_refused(tmp_path):
  cfg = micro_config("dense")
  path, _ = _known_hf_dir(tmp_path, cfg)
  weights = os.path.join(path, hf.SAFETENSORS_FILE)
  data = open(weights, "rb").read()
  open(weights, "wb").write(data[: len(data) // 2])  # truncated
  with pytest.raises(ValueError, match="is not a readable safetensors file"):
    hf.read_dense_params(path, cfg)
  with open(weights, "wb") as f:  # a pickle where safetensors are expected: never unpickled
    pickle.dump({"shared.weight": np.zeros(3)}, f)
  with pytest.raises(ValueError, match="is not a readable safetensors file"):
    hf.read_dense_params(path, cfg)
  os.remove(weights)
  assert not hf.is_hf_directory(path)
  with pytest.raises(ValueError, match="holds no model.safetensors or pytorch_model.bin"):
    hf.read_dense_params(path, cfg)


def test_export_refuses_altup_and_bad_paths(tmp_path, capsys):
  cfg = micro_config("altup")
  params = jax.tree_util.tree_map(np.asarray, init_params(network.Transformer(cfg),
                                                          random_batch(cfg)))
  with pytest.raises(ValueError, match="has no HuggingFace T5 class"):
    hf.config_from_params(params)
  with pytest.raises(ValueError, match="has no HuggingFace T5 class"):
    hf.write_hf_directory(params, cfg, str(tmp_path / "x"))
  assert not (tmp_path / "x").exists()
  assert hf.main(["export-hf", str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("python -m altup_t5.t5x.hf_checkpoints: error: no altup_t5 checkpoint")
  assert "\n" not in err and not (tmp_path / "out").exists()


def test_transformers_logits_match(tmp_path):
  torch = pytest.importorskip("torch", reason="torch not installed")
  transformers = pytest.importorskip("transformers", reason="transformers not installed")
  cfg = micro_config("dense")
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**{
      k: v for k, v in hf.hf_config(cfg).items() if k != "architectures"})).eval()
  model.save_pretrained(str(tmp_path / "hf"), safe_serialization=True)
  batch = random_batch(cfg, pad=False)
  ours = logits(network.Transformer(cfg), load.load_params(str(tmp_path / "hf"),
                                                           _abstract(cfg), cfg), batch)
  with torch.no_grad():
    theirs = model(input_ids=torch.tensor(np.asarray(batch["encoder_input_tokens"])),
                   decoder_input_ids=torch.tensor(np.asarray(batch["decoder_input_tokens"]))
                   ).logits.numpy()
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
  params = load.load_params(str(tmp_path / "hf"), _abstract(cfg), cfg)
  out = hf.write_hf_directory(jax.tree_util.tree_map(np.asarray, params), cfg,
                              str(tmp_path / "out"))
  again = transformers.T5ForConditionalGeneration.from_pretrained(out).eval()
  with torch.no_grad():
    back = again(input_ids=torch.tensor(np.asarray(batch["encoder_input_tokens"])),
                 decoder_input_ids=torch.tensor(np.asarray(batch["decoder_input_tokens"]))
                 ).logits.numpy()
  np.testing.assert_allclose(back, theirs, rtol=0, atol=1e-6 * np.abs(theirs).max())
