"""Parameters for a job from a checkpoint path of any kind: a run of ours (orbax) or
t5x's (`checkpoint_<step>`, or a t5x MODEL_DIR), laid out for the model on its mesh.

This is the one place a checkpoint path becomes parameters (INITIAL_CHECKPOINT_PATH
for fine-tuning, CHECKPOINT_PATH for eval and infer).
"""

from __future__ import annotations

import json
import os

from altup_t5.errors import SettingError
from altup_t5.inference.predictor import DecodeSettings, Predictor
from altup_t5.t5x import checkpoints as t5x_checkpoints
from altup_t5.training import checkpoints
from altup_t5.training import input_pipeline
from altup_t5.training import seq2seq
from altup_t5.training.input_pipeline import DataSettings


def load_params(path: str, abstract_params):
  """The parameters at `path`, with `abstract_params`' shapes, dtypes and shardings;
  a `ValueError` naming the path when it holds no readable checkpoint."""
  # t5x's trainer writes the same parameter tree under `target`, in either of its
  # layouts; t5x_checkpoints reads both.
  if t5x_checkpoints.is_t5x_checkpoint(path):
    return t5x_checkpoints.read_params(path, abstract_params)
  return checkpoints.load_params(path, abstract_params)


def load_for_evaluation(model: seq2seq.Seq2SeqModel, data: DataSettings,
                        checkpoint_path: str, mesh,
                        decode: DecodeSettings = DecodeSettings()):
  """The predictor for `data`'s batches on `mesh`, and the checkpoint's parameters
  laid out for it (no optimiser state is built or read)."""
  predictor = Predictor.for_model(model, mesh, input_pipeline.batch_shapes(data),
                                  rows=data.batch_size, decode=decode)
  check_same_network(checkpoint_path, model.config)
  abstract = predictor.placement.abstract_params_with_shardings()
  return predictor, load_params(checkpoint_path, abstract)


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
