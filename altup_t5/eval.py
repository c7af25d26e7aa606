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


from altup_t5 import cli, evaluation, input_pipeline, models, partitioning
from altup_t5.evaluation import DecodeSettings
from altup_t5.input_pipeline import DataSettings


def evaluate(*, model: models.Seq2SeqModel, checkpoint_path: str, data: DataSettings,
             output_dir: str, teacher_forced: bool = True, infer: bool = True,
             infer_examples: int | None = None, eval_steps: int | None = None,
             decode: DecodeSettings = DecodeSettings(), mesh_model: int = 1
             ) -> dict[str, float]:
  """Metrics of the checkpoint's parameters on `data` (its task and split)."""
  try:
    from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
    tasks.get_task_or_mixture(data.mixture_or_task_name)
    mesh = partitioning.make_mesh(model=mesh_model)
    input_pipeline.check_batch_fits_mesh(data.batch_size, mesh)
    if not (teacher_forced or infer):
      raise ValueError("nothing to evaluate: teacher_forced and infer are both False")
  except ValueError as error:
    raise cli.UsageError(str(error)) from None

  try:
    engine, params = evaluation.load_for_evaluation(model, data, checkpoint_path, mesh)
  except ValueError as error:
    raise cli.UsageError(str(error)) from None

  results: dict[str, float] = {}
  if teacher_forced:
    results.update({f"teacher_forced/{k}": v for k, v in evaluation.teacher_forced(
        engine, params, data, eval_steps, mesh).items()})
  if infer:
    evaluator = evaluation.InferenceEvaluator(
        model, data, decode, infer_examples, os.path.join(output_dir, "inference_eval"))
    results.update({f"infer/{k}": v for k, v in evaluator(params, step=0).items()})

  tf.io.gfile.makedirs(output_dir)
  with tf.io.gfile.GFile(os.path.join(output_dir, "eval_results.json"), "w") as f:
    json.dump({"checkpoint": os.path.abspath(checkpoint_path),
               "task": data.mixture_or_task_name, "split": data.split,
               "metrics": results}, f, indent=2)
  for name, value in sorted(results.items()):
    print(f"{name}: {value:.6g}")
  return results


if __name__ == "__main__":
  from altup_t5 import eval as eval_module  # pylint: disable=g-import-not-at-top
  cli.run(eval_module.evaluate, prog="python -m altup_t5.eval")
