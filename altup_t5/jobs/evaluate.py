r"""Evaluate a checkpoint on a task: teacher-forced metrics and inference metrics.

  python -m altup_t5.eval --gin_file=experiments/quickstart_finetune.gin \
      --gin_file=runs/eval.gin --gin.CHECKPOINT_PATH=\"/tmp/ft/checkpoints\" \
      --gin.EVAL_OUTPUT_DIR=\"/tmp/ft/eval\"

Writes `eval_results.json` (and the predictions, as JSON lines, under
`inference_eval/`) to EVAL_OUTPUT_DIR, and prints the metrics.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


from altup_t5.errors import UsageError
from altup_t5.inference import evaluation
from altup_t5.jobs import load
from altup_t5.training import batches
from altup_t5.training import seq2seq
from altup_t5.training import partitioning
from altup_t5.inference.evaluation import DecodeSettings
from altup_t5.training.input_pipeline import DataSettings


def evaluate(*, model: seq2seq.Seq2SeqModel, checkpoint_path: str, data: DataSettings,
             output_dir: str, teacher_forced: bool = True, infer: bool = True,
             infer_examples: int | None = None, eval_steps: int | None = None,
             decode: DecodeSettings = DecodeSettings(),
             mesh: partitioning.MeshSettings = partitioning.MeshSettings(),
             upcycle_from_dense: bool = False) -> dict[str, float]:
  """Metrics of the checkpoint's parameters on `data` (its task and split).

  `upcycle_from_dense` reads a dense checkpoint into `model`'s AltUp variant as
  training's UPCYCLE_FROM_DENSE does (jobs/load.py): the step-0 upcycled model."""
  try:
    from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
    task = tasks.get_task_or_mixture(data.mixture_or_task_name)
    vocabulary = load.task_vocabulary(task, model.config.vocab_size,
                                      data.mixture_or_task_name)
    load.check_same_vocabulary(checkpoint_path, vocabulary)
    device_mesh = mesh.make()
    batches.check_batch_fits_mesh(data.batch_size, device_mesh)
    if not (teacher_forced or infer):
      raise ValueError("nothing to evaluate: teacher_forced and infer are both False")
  except ValueError as error:
    raise UsageError(str(error)) from None

  try:
    predictor, params = load.load_for_evaluation(model, data, checkpoint_path,
                                                 device_mesh, decode, upcycle_from_dense)
  except ValueError as error:
    raise UsageError(str(error)) from None

  results: dict[str, float] = {}
  if teacher_forced:
    results.update({f"teacher_forced/{k}": v for k, v in evaluation.teacher_forced(
        predictor, params, data, eval_steps).items()})
  if infer:
    evaluator = evaluation.InferenceEvaluator(
        predictor, data, infer_examples, os.path.join(output_dir, "inference_eval"))
    results.update({f"infer/{k}": v for k, v in evaluator(params, step=0).items()})

  tf.io.gfile.makedirs(output_dir)
  with tf.io.gfile.GFile(os.path.join(output_dir, "eval_results.json"), "w") as f:
    json.dump({"checkpoint": os.path.abspath(checkpoint_path),
               "task": data.mixture_or_task_name, "split": data.split,
               "metrics": results}, f, indent=2)
  for name, value in sorted(results.items()):
    print(f"{name}: {value:.6g}")
  return results

