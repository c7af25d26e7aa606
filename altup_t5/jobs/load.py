"""Parameters for a job from a checkpoint path of any kind: a run of ours (orbax),
t5x's (`checkpoint_<step>`, or a t5x MODEL_DIR) or a HuggingFace T5.1.1 directory
(config.json + model.safetensors / pytorch_model.bin), laid out for the model on its
mesh; with `upcycle_from_dense`, a dense checkpoint of any of those kinds widened into
an AltUp / Recycled-AltUp / AltUp+MoE model that starts as the dense function
(model/upcycle.py).

This is the one place a checkpoint path becomes parameters (INITIAL_CHECKPOINT_PATH
for fine-tuning, CHECKPOINT_PATH for eval and infer).
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from altup_t5.data import vocabularies
from altup_t5.errors import SettingError
import jax
import numpy as np

from altup_t5.inference.predictor import DecodeSettings, Predictor
from altup_t5.model import upcycle
from altup_t5.model.config import T5Config
from altup_t5.t5x import checkpoints as t5x_checkpoints
from altup_t5.t5x import hf_checkpoints
from altup_t5.training import checkpoints
from altup_t5.training import input_pipeline
from altup_t5.training import seq2seq
from altup_t5.training.input_pipeline import DataSettings


def load_params(path: str, abstract_params, config: T5Config | None = None,
                upcycle_from_dense: bool = False):
  """The parameters at `path`, with `abstract_params`' shapes, dtypes and shardings;
  a `ValueError` naming the path when it holds no readable checkpoint.

  `config` (the model's) is needed for HuggingFace directories and for upcycling;
  `upcycle_from_dense` reads `path` as the dense counterpart of `config` and widens it.
  """
  if upcycle_from_dense:
    if config is None or not config.uses_altup:
      raise ValueError("UPCYCLE_FROM_DENSE needs an altup, recycled_altup or altup_moe "
                       "model")
    dense_abstract = _dense_abstract(config)
    dense = _read(path, dense_abstract, upcycle.dense_config(config))
    dense = jax.tree_util.tree_map(np.asarray, dense)
    widened = upcycle.upcycle(dense, config, abstract_params)
    return _place(widened, abstract_params)
  return _read(path, abstract_params, config)


def _read(path: str, abstract_params, config: T5Config | None):
  if hf_checkpoints.is_hf_directory(path):
    cfg = config or hf_checkpoints.config_from_params(abstract_params)
    return _place(hf_checkpoints.read_dense_params(path, cfg), abstract_params)
  # t5x's trainer writes the same parameter tree under `target`, in either of its
  # layouts; t5x_checkpoints reads both.
  if t5x_checkpoints.is_t5x_checkpoint(path):
    return t5x_checkpoints.read_params(path, abstract_params)
  return checkpoints.load_params(path, abstract_params)


def _dense_abstract(config: T5Config):
  """Abstract (shape-only, unsharded) parameters of `config`'s dense counterpart."""
  from altup_t5.model import network  # pylint: disable=g-import-not-at-top
  dense = upcycle.dense_config(config)
  tokens = jax.ShapeDtypeStruct((1, 8), np.int32)
  shapes = jax.eval_shape(lambda t: network.Transformer(dense).init(
      jax.random.PRNGKey(0), t, t, t, enable_dropout=False), tokens)["params"]
  return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, np.float32),
                                _unbox(shapes))


def _unbox(tree):
  return jax.tree_util.tree_map(lambda x: getattr(x, "value", x), tree,
                                is_leaf=lambda x: hasattr(x, "value"))


def _place(tree, abstract_params):
  """numpy `tree` cast and laid out as `abstract_params` (checking the tree matches)."""
  flat_tree = dict(hf_checkpoints._flat(tree))  # pylint: disable=protected-access
  flat_abstract = dict(hf_checkpoints._flat(abstract_params))  # pylint: disable=protected-access
  missing = sorted(set(flat_abstract) - set(flat_tree))
  if missing:
    raise ValueError(f"{missing[0]} is missing from the checkpoint "
                     f"({len(missing)} parameters missing)")

  def put(name, wanted):
    value = np.asarray(flat_tree[name]).astype(wanted.dtype)
    if value.shape != tuple(wanted.shape):
      raise ValueError(f"{name} has shape {value.shape} in the checkpoint, the model "
                       f"needs {tuple(wanted.shape)}")
    sharding = getattr(wanted, "sharding", None)
    return value if sharding is None else jax.device_put(value, sharding)

  return upcycle._unflat({k: put(k, v) for k, v in flat_abstract.items()})  # pylint: disable=protected-access


def load_for_evaluation(model: seq2seq.Seq2SeqModel, data: DataSettings,
                        checkpoint_path: str, mesh,
                        decode: DecodeSettings = DecodeSettings(),
                        upcycle_from_dense: bool = False):
  """The predictor for `data`'s batches on `mesh`, and the checkpoint's parameters
  laid out for it (no optimiser state is built or read)."""
  predictor = Predictor.for_model(model, mesh, input_pipeline.batch_shapes(data),
                                  rows=data.batch_size, decode=decode)
  # An upcycled checkpoint is the model's dense counterpart by design.
  check_same_network(checkpoint_path, upcycle.dense_config(model.config)
                     if upcycle_from_dense else model.config)
  abstract = predictor.placement.abstract_params_with_shardings()
  return predictor, load_params(checkpoint_path, abstract, model.config,
                                 upcycle_from_dense)


# What makes two networks' parameters incompatible (size and variant).
_NETWORK_FIELDS = ("variant", "altup_k", "vocab_size", "emb_dim", "num_heads", "head_dim",
                   "mlp_dim", "num_encoder_layers", "num_decoder_layers")


def check_same_network(checkpoint_path: str, config) -> None:
  """A checkpoint of our runs against the network the configuration builds: one line
  naming both when size or variant differ (run_info.json is beside `checkpoints/`)."""
  path = os.path.abspath(checkpoint_path)
  for run_dir in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
    info_path = os.path.join(run_dir, "run_info.json")
    if os.path.isfile(info_path):
      break
  else:
    return  # t5x's checkpoints, or a copied step: the restore checks shapes
  try:
    saved = json.load(open(info_path, encoding="utf-8"))["config"]
  except (ValueError, KeyError, OSError):
    return
  def shown(value):
    return getattr(value, "value", value)
  ours = {f: shown(getattr(config, f)) for f in _NETWORK_FIELDS}
  if not ours["variant"] in ("altup", "recycled_altup", "altup_moe"):
    ours.pop("altup_k")
  theirs = {f: saved.get(f) for f in ours}
  if theirs != ours:
    diff = [f for f in ours if theirs[f] != ours[f]]
    describe = lambda values: " ".join(f"{f}={values[f]!r}" for f in diff)
    raise SettingError(f"CHECKPOINT_PATH={checkpoint_path} holds a network with "
                       f"{describe(theirs)}, but this configuration builds "
                       f"{describe(ours)}: use the size and variant it was trained with")


# ------------------------------------------------------------------ vocabulary

VOCABULARY_FILE = "vocabulary.json"  # in MODEL_DIR/checkpoints, beside the steps


def task_vocabulary(task, vocab_size: int, name: str) -> dict:
  """The identity of the task's vocabularies ({feature: identity}), after checking
  that each fits the model's embedding of `vocab_size` rows (`ValueError` otherwise)."""
  identities = {}
  for feature in ("inputs", "targets"):
    if feature in task.output_features:
      vocab = task.output_features[feature].vocabulary
      vocabularies.check_fits(vocab, vocab_size,
                              f"the vocabulary of {name}'s {feature}")
      identities[feature] = vocabularies.identity(vocab)
  return identities


def _recorded_vocabulary(checkpoint_path: str) -> dict | None:
  """The vocabulary a run of ours recorded for `checkpoint_path` (its MODEL_DIR, its
  checkpoints/ or one step in it), or None (t5x's checkpoints, older runs)."""
  path = os.path.abspath(checkpoint_path)
  parent = os.path.dirname(path)
  for candidate in (os.path.join(path, VOCABULARY_FILE),
                    os.path.join(path, "checkpoints", VOCABULARY_FILE),
                    os.path.join(parent, VOCABULARY_FILE)):
    if os.path.isfile(candidate):
      try:
        return json.load(open(candidate, encoding="utf-8"))
      except (ValueError, OSError):
        return None
  return None


def check_same_vocabulary(checkpoint_path: str, identities: dict,
                          what: str = "CHECKPOINT_PATH") -> None:
  """One line naming both vocabularies when the checkpoint was trained with another
  vocabulary than the task's (nothing to check where none was recorded)."""
  recorded = _recorded_vocabulary(checkpoint_path)
  if recorded is None or recorded == identities:
    return
  feature = next((f for f in identities if recorded.get(f) != identities[f]), "targets")
  theirs = recorded.get(feature) or {}
  raise SettingError(
      f"{what}={checkpoint_path} was trained with the {feature} vocabulary "
      f"{vocabularies.describe(theirs)}, but this task's is "
      f"{vocabularies.describe(identities[feature])}: use the vocabulary it was "
      f"trained with")


def write_vocabulary(checkpoint_dir: str, identities: dict) -> None:
  """Records the vocabulary beside the checkpoints (as t5x keeps it in its config)."""
  tf.io.gfile.makedirs(checkpoint_dir)
  with tf.io.gfile.GFile(os.path.join(checkpoint_dir, VOCABULARY_FILE), "w") as f:
    json.dump(identities, f, indent=2)
