"""Parameters for a job from a checkpoint path of any kind: a run of ours (orbax) or
t5x's (`checkpoint_<step>`, or a t5x MODEL_DIR), laid out for the model on its mesh.

This is the one place a checkpoint path becomes parameters (INITIAL_CHECKPOINT_PATH
for fine-tuning, CHECKPOINT_PATH for eval and infer).
"""

from __future__ import annotations

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
  abstract = predictor.placement.abstract_params_with_shardings()
  return predictor, load_params(checkpoint_path, abstract)
