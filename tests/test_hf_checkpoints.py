"""HuggingFace T5.1.1 directories in and out (t5x/hf_checkpoints.py, jobs/load.py)."""

import importlib.util
import json
import os
import pickle
import subprocess
import sys

import jax
import numpy as np
import pytest
import safetensors.numpy
from safetensors.numpy import save_file

from model_helpers import init_params, logits, micro_config, random_batch

import toy_tasks  # pylint: disable=unused-import  (registers toy_reverse)
from altup_t5 import cli
from altup_t5.jobs import evaluate as eval_lib
from altup_t5.model.config import config_for

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
  config = dict(hf.hf_config(cfg), **config_changes)  # a change to None drops the key
  (path / hf.CONFIG_FILE).write_text(json.dumps({k: v for k, v in config.items()
                                                 if v is not None}))
  return str(path), expected


def test_known_arrays_land_in_place(tmp_path):
  cfg = micro_config("dense")
  path, expected = _known_hf_dir(tmp_path, cfg)
  params = load.load_params(path, _abstract(cfg), cfg)
  flat = dict(hf._flat(params))
  assert set(flat) == set(expected)
  for name, value in expected.items():
    np.testing.assert_array_equal(flat[name], value, err_msg=name)


def test_tied_unscaled_head_of_transformers_5(tmp_path):
  """transformers 5 saves a T5.1.1 it built itself with `tie_word_embeddings: true`,
  `scale_decoder_outputs: false` and no lm_head.weight: the head is `shared`."""
  cfg = micro_config("dense")
  path, expected = _known_hf_dir(tmp_path, cfg, tie_word_embeddings=True,
                                 scale_decoder_outputs=False)
  tensors = safetensors.numpy.load_file(os.path.join(path, hf.SAFETENSORS_FILE))
  del tensors["lm_head.weight"]
  safetensors.numpy.save_file(tensors, os.path.join(path, hf.SAFETENSORS_FILE))
  flat = dict(hf._flat(load.load_params(path, _abstract(cfg), cfg)))
  np.testing.assert_array_equal(flat["decoder/logits_dense/kernel"],
                                expected["token_embedder/embedding"].T)
  np.testing.assert_array_equal(flat["token_embedder/embedding"],
                                expected["token_embedder/embedding"])


def test_export_then_read_round_trips(tmp_path):
  cfg = micro_config("dense")
  params = jax.tree_util.tree_map(np.asarray, init_params(network.Transformer(cfg),
                                                          random_batch(cfg)))
  out = hf.write_hf_directory(params, cfg, str(tmp_path / "out"))
  back = hf.read_dense_params(out, cfg)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, dict(params))
  assert hf.config_from_params(params).emb_dim == cfg.emb_dim


@pytest.mark.parametrize("changes, message", [
    # original T5 as transformers 4 writes it: ReLU, tied and so rescaled head
    (dict(feed_forward_proj="relu", tie_word_embeddings=True, scale_decoder_outputs=None),
     "is not a T5.1.1 checkpoint .feed_forward_proj='relu', tie_word_embeddings=True"),
    (dict(feed_forward_proj="relu"), "is not a T5.1.1 checkpoint"),
    # gated-gelu but a tied, rescaled head (transformers 4's reading of tied)
    (dict(tie_word_embeddings=True, scale_decoder_outputs=None), "is not a T5.1.1"),
    (dict(scale_decoder_outputs=True), "scale_decoder_outputs=True"),
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
  assert hf.is_hf_directory(path)  # config.json: told what is missing
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


# transformers' side runs in a child process: importing torch's and transformers'
# modelling code after TensorFlow (which jobs/load.py imports) crashes the process
# (a segfault in transformers.masking_utils, transformers 5.24 / torch 2.14), and the
# child keeps the reference free of anything of ours.
_PEER = r"""
import json, sys
import numpy as np, torch, transformers
mode, directory, arrays, config = sys.argv[1:5]
if mode == "save":  # a random T5.1.1, written with save_pretrained (safetensors)
  torch.manual_seed(0)
  model = transformers.T5ForConditionalGeneration(transformers.T5Config(**json.loads(config)))
  # An untied head of its own, as google/t5-v1_1-* store it (transformers 5 ties a
  # model it builds to `shared` whatever the config says; 4 honours the config).
  model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.lm_head.weight))
  model.config.tie_word_embeddings = False
  getattr(model, "all_tied_weights_keys", {}).pop("lm_head.weight", None)
  model.save_pretrained(directory)
  assert "lm_head.weight" in __import__("safetensors.numpy").numpy.load_file(
      directory + "/model.safetensors")
else:
  model = transformers.T5ForConditionalGeneration.from_pretrained(directory)
data = np.load(arrays)
with torch.no_grad():
  out = model.eval()(input_ids=torch.tensor(data["inputs"]),
                     decoder_input_ids=torch.tensor(data["decoder_inputs"])).logits
np.save(arrays + ".logits.npy", out.numpy())
"""


def _transformers_logits(mode, directory, batch, cfg, tmp_path):
  arrays = str(tmp_path / f"{mode}.npz")
  np.savez(arrays, inputs=np.asarray(batch["encoder_input_tokens"], np.int64),
           decoder_inputs=np.asarray(batch["decoder_input_tokens"], np.int64))
  config = {k: v for k, v in hf.hf_config(cfg).items() if k != "architectures"}
  env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run([sys.executable, "-c", _PEER, mode, directory, arrays,
                         json.dumps(config)], env=env, capture_output=True, text=True,
                        timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  return np.load(arrays + ".logits.npy")


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("torch", "transformers")),
                    reason="torch or transformers not installed")
def test_transformers_logits_match(tmp_path):
  cfg = micro_config("dense")
  batch = random_batch(cfg, pad=False)
  saved = str(tmp_path / "hf")
  theirs = _transformers_logits("save", saved, batch, cfg, tmp_path)
  params = load.load_params(saved, _abstract(cfg), cfg)
  ours = np.asarray(logits(network.Transformer(cfg), params, batch))
  assert ours.shape == theirs.shape == (2, 7, cfg.vocab_size)
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5 * np.abs(theirs).max())
  # ... and back: our export loads into transformers and gives the same logits.
  out = hf.write_hf_directory(jax.tree_util.tree_map(np.asarray, params), cfg,
                              str(tmp_path / "out"))
  back = _transformers_logits("load", out, batch, cfg, tmp_path)
  np.testing.assert_allclose(back, theirs, rtol=0, atol=1e-6 * np.abs(theirs).max())


# ------------------------------------------------------------------ bad input, end to end

GIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gin")
# tests/gin/toy_model.gin's network, which the eval entry point builds below.
TOY = dict(vocab_size=384, emb_dim=64, num_heads=2, mlp_dim=128, num_encoder_layers=2,
           num_decoder_layers=2, num_experts=4)


def _eval(checkpoint_path, out_dir):
  return cli.run(eval_lib.evaluate, [
      f"--gin_file={GIN}/toy_model.gin", "--gin_file=runs/eval.gin",
      "--gin.MIXTURE_OR_TASK_NAME='toy_reverse'",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 48}", "--gin.VOCABULARY='byte'",
      "--gin.BATCH_SIZE=32", "--gin.INFER=False", f"--gin.CHECKPOINT_PATH={checkpoint_path}",
      f"--gin.EVAL_OUTPUT_DIR={out_dir}"], prog="eval")


def _toy_hf_dir(tmp_path, name="hf", cfg=None, **config_changes):
  cfg = cfg or config_for("tiny", "dense", **TOY)
  params = jax.tree_util.tree_map(np.asarray, init_params(network.Transformer(cfg),
                                                          random_batch(cfg)))
  path = hf.write_hf_directory(params, cfg, str(tmp_path / name))
  if config_changes:
    config = json.load(open(os.path.join(path, hf.CONFIG_FILE)))
    json.dump(dict(config, **config_changes), open(os.path.join(path, hf.CONFIG_FILE), "w"))
  return path


def _ours_dir(tmp_path, cfg):
  """`cfg`'s parameters saved as our trainer saves a TrainState (orbax)."""
  import optax  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from altup_t5.training import checkpoints, trainer  # pylint: disable=import-outside-toplevel
  params = init_params(network.Transformer(cfg), random_batch(cfg))
  path = str(tmp_path / "run" / "checkpoints")
  saver = checkpoints.Checkpoints(path, checkpoints.CheckpointSettings(async_save=False))
  saver.save(3, trainer.TrainState(step=jax.numpy.int32(3), params=params,
                                   opt_state=optax.adafactor(1e-3).init(params)),
             iter(tf.data.Dataset.range(3)), 0)
  saver.close()
  return path


def _truncated(tmp_path):
  path = _toy_hf_dir(tmp_path)
  weights = os.path.join(path, hf.SAFETENSORS_FILE)
  data = open(weights, "rb").read()
  open(weights, "wb").write(data[: len(data) - 1000])
  return path


def _pickled(tmp_path):
  path = _toy_hf_dir(tmp_path)
  with open(os.path.join(path, hf.SAFETENSORS_FILE), "wb") as f:
    pickle.dump({"shared.weight": np.zeros(3)}, f)  # never unpickled
  return path


def _no_weights(tmp_path):
  path = _toy_hf_dir(tmp_path)
  os.remove(os.path.join(path, hf.SAFETENSORS_FILE))
  return path


BAD_CHECKPOINTS = {
    "relu_tied_config": (lambda t: _toy_hf_dir(t, feed_forward_proj="relu",
                                               tie_word_embeddings=True),
                         "is not a T5.1.1 checkpoint (feed_forward_proj='relu'"),
    "tied_rescaled_head": (lambda t: _toy_hf_dir(t, tie_word_embeddings=True,
                                                 scale_decoder_outputs=True),
                           "is not a T5.1.1 checkpoint"),
    "hf_of_another_size": (lambda t: _toy_hf_dir(t, cfg=config_for("tiny", "dense", **dict(
        TOY, emb_dim=32))), "is another size than the model: d_model=32 (model: 64)"),
    "ours_of_another_size": (lambda t: _ours_dir(t, micro_config("dense")),
                             "does not fit the model"),
    "no_weights": (_no_weights, "holds no model.safetensors or pytorch_model.bin"),
    "pickle_for_safetensors": (_pickled, "is not a readable safetensors file"),
    "truncated_safetensors": (_truncated, "is not a readable safetensors file"),
}


@pytest.mark.parametrize("case", sorted(BAD_CHECKPOINTS))
def test_bad_checkpoints_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, case):
  make, message = BAD_CHECKPOINTS[case]
  path = make(tmp_path)
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    _eval(path, tmp_path / "out")
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("eval: error: ") and message in err and "\n" not in err, err
  assert not (tmp_path / "out").exists()


def test_a_good_hf_directory_evaluates(tmp_path):
  """The control for the cases above: the same directory, unbroken, is evaluated."""
  results = _eval(_toy_hf_dir(tmp_path), tmp_path / "out")
  assert 0 <= results["teacher_forced/accuracy"] < 0.5  # random weights
  assert (tmp_path / "out" / "eval_results.json").exists()


def test_export_hf_of_an_altup_run_is_refused(tmp_path, capsys):
  path = _ours_dir(tmp_path, micro_config("altup"))
  capsys.readouterr()
  assert hf.main(["export-hf", path, str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err == ("python -m altup_t5.t5x.hf_checkpoints: error: an AltUp or MoE "
                 "checkpoint has no HuggingFace T5 class; only dense checkpoints can be "
                 "exported")
  assert not (tmp_path / "out").exists()
  # A dense run of ours exports, and reads back to the same parameters.
  dense = _ours_dir(tmp_path / "d", micro_config("dense"))
  assert hf.main(["export-hf", dense, str(tmp_path / "dense_hf")]) == 0
  assert capsys.readouterr().out.strip() == str(tmp_path / "dense_hf")
  assert hf.config_from_params(hf.read_dense_params(
      str(tmp_path / "dense_hf"), micro_config("dense"))).emb_dim == 32
