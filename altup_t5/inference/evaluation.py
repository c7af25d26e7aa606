"""Evaluation: teacher-forced loss/accuracy on a split, and inference evaluation
(decode, the task's postprocessor, the task's seqio metrics) through seqio's
`Evaluator`, which also writes every prediction to JSON lines."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import seqio
import tensorflow as tf

from altup_t5 import errors
from altup_t5.training import input_pipeline
from altup_t5.training import seq2seq
from altup_t5.training.input_pipeline import DataSettings
from altup_t5.inference.predictor import DecodeSettings, Predictor  # DecodeSettings: gin's name


@dataclasses.dataclass(frozen=True)
class EvalSettings:
  """What a training run evaluates, and how often."""
  period: int = 1000  # steps between evaluations (and one at the end)
  # Teacher-forced metrics on these examples (None: no teacher-forced evaluation).
  data: DataSettings | None = None
  steps: int | None = 20  # batches of `data` per evaluation (None: the whole split)
  # Inference evaluation with the task's metrics on `data`'s task and split.
  infer: bool = False
  infer_examples: int | None = None  # None: the whole split
  decode: DecodeSettings = DecodeSettings()

  def __post_init__(self):
    errors.check_int("eval period", self.period, minimum=1)
    errors.check_type("eval data", self.data, (DataSettings, type(None)),
                      "@input_pipeline.DataSettings() or None")
    errors.check_int("eval steps", self.steps, minimum=1, allow_none=True)
    errors.check_type("infer", self.infer, bool, "True or False")
    errors.check_int("infer_examples", self.infer_examples, minimum=1, allow_none=True)
    errors.check_type("decode", self.decode, DecodeSettings,
                      "@evaluation.DecodeSettings()")


def teacher_forced(predictor: Predictor, params, settings: DataSettings,
                   steps: int | None) -> dict[str, float]:
  """Loss, accuracy and z-loss over `steps` batches of the split, no dropout."""
  rows = input_pipeline.local_batch_size(settings)
  ds = input_pipeline.get_dataset(settings, repeat=False)
  if steps is not None:
    ds = ds.take(steps)
  total = None
  for batch in input_pipeline.global_batches(ds, predictor.placement.mesh, rows):
    total = seq2seq.add_metrics(total, predictor.score(params, batch))
  if total is None:
    raise ValueError(f"split {settings.split!r} of {settings.mixture_or_task_name!r} "
                     "yielded no examples")
  return seq2seq.summarize(total)


class InferenceEvaluator:
  """Decodes a task's split and scores it with the task's postprocessor and metrics.

  Built once per run: seqio caches the split's examples and targets.
  """

  def __init__(self, predictor: Predictor, settings: DataSettings,
               num_examples: int | None, log_dir: str):
    self.predictor = predictor
    self.settings = settings
    self.max_decode_length = settings.task_feature_lengths["targets"]
    tf.io.gfile.makedirs(log_dir)
    self.evaluator = seqio.Evaluator(
        mixture_or_task_name=settings.mixture_or_task_name,
        feature_converter=seqio.EncDecFeatureConverter(pack=False),
        eval_split=settings.split, use_cached=settings.use_cached, seed=settings.seed,
        sequence_length=dict(settings.task_feature_lengths), num_examples=num_examples,
        shuffle=False, logger_cls=[functools.partial(seqio.JSONLogger)],
        log_dir=log_dir, async_compute_metrics=False)
    tasks = self.evaluator.eval_tasks
    if not tasks:
      raise ValueError(f"{settings.mixture_or_task_name!r} has no task with split "
                       f"{settings.split!r} and predict metrics to evaluate")
    self.eos_id = tasks[0].output_features["targets"].vocabulary.eos_id

  def _predict_fn(self, params, ds):
    """seqio's predict_fn: (index, token ids) for every example of `ds`."""
    indices, inputs = [], []
    for index, features in ds.as_numpy_iterator():
      indices.append(int(index))
      inputs.append(features["encoder_input_tokens"])
    if not inputs:
      return []
    tokens = self.predictor.predict(params, np.stack(inputs),
                                    max_decode_length=self.max_decode_length,
                                    eos_id=self.eos_id)
    # Full fixed-length rows (0 after EOS): seqio stacks them into one array, and
    # the vocabulary's decode stops at EOS.
    return [(i, t.tolist()) for i, t in zip(indices, tokens)]

  def __call__(self, params, step: int) -> dict[str, float]:
    """Metrics as {"task/metric": value}; predictions go to the JSON logs."""
    metrics, _ = self.evaluator.evaluate(
        compute_metrics=True, step=step,
        predict_fn=functools.partial(self._predict_fn, params),
        score_fn=functools.partial(self._score_fn, params))
    results = metrics.result() if hasattr(metrics, "result") else metrics
    return {f"{task}/{name}": float(value) for task, task_metrics in results.items()
            for name, value in task_metrics.items() if np.ndim(value) == 0}

  def _score_fn(self, params, ds):
    raise NotImplementedError("score-based metrics are not supported yet")
