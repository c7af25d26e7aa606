r"""Pretrain or fine-tune a T5 with gin, on one CPU or a TPU pod.

  python -m altup_t5.train --gin_file=experiments/quickstart.gin \
      --gin.MODEL_DIR=\"/tmp/quickstart\"

`train()` reads top to bottom: mesh, input, model and optimiser, state (resume,
fine-tune or fresh), the loop (step, metrics, checkpoints, evaluation), the end. A
restarted run resumes from MODEL_DIR's newest readable checkpoint, including the
input position, and ends with exactly the parameters of an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time

import jax
import numpy as np
import tensorflow as tf

from altup_t5.training import checkpoints as checkpoints_lib
from altup_t5 import errors
from altup_t5.errors import UsageError
from altup_t5.inference import evaluation
from altup_t5.inference import predictor as predictor_lib
from altup_t5.jobs import load
from altup_t5.training import batches
from altup_t5.training import input_pipeline
from altup_t5.training import seq2seq
from altup_t5.training import partitioning
from altup_t5.training import trainer
from altup_t5.training import summaries as summaries_lib
from altup_t5.training.checkpoints import CheckpointSettings
from altup_t5.inference.evaluation import EvalSettings
from altup_t5.training.input_pipeline import DataSettings
from altup_t5.training.partitioning import MeshSettings  # gin: train.MeshSettings
from altup_t5.training.trainer import OptimizerSettings


@dataclasses.dataclass(frozen=True)
class RunSettings:
  model_dir: str  # checkpoints, summaries and metrics.jsonl go here
  total_steps: int  # train until the state's step reaches this
  random_seed: int = 0  # parameter init and dropout
  # Fine-tune from this checkpoint's parameters (fresh optimiser); ignored once
  # MODEL_DIR has checkpoints of its own, so a restarted fine-tune resumes.
  initial_checkpoint_path: str | None = None
  # Read INITIAL_CHECKPOINT_PATH as a dense model and widen it into this AltUp /
  # Recycled-AltUp / AltUp+MoE model so it starts as the dense function
  # (model/upcycle.py). Explicit, so a mismatched checkpoint otherwise still fails.
  upcycle_from_dense: bool = False
  log_period: int = 10  # steps between training summaries

  def __post_init__(self):
    errors.check_type("MODEL_DIR", self.model_dir, str, "a directory path (a string)")
    if not self.model_dir:
      raise UsageError("MODEL_DIR is empty: pass --gin.MODEL_DIR=/path/to/run")
    errors.check_int("TRAIN_STEPS", self.total_steps, minimum=1)
    errors.check_int("RANDOM_SEED", self.random_seed)
    errors.check_type("INITIAL_CHECKPOINT_PATH", self.initial_checkpoint_path,
                      (str, type(None)), "a checkpoint path (a string) or None")
    errors.check_int("LOG_PERIOD", self.log_period, minimum=1)
    if self.upcycle_from_dense and not self.initial_checkpoint_path:
      raise UsageError("UPCYCLE_FROM_DENSE=True needs INITIAL_CHECKPOINT_PATH (the dense "
                       "checkpoint to upcycle)")


class _Stop:
  """SIGTERM (a preempted VM, `kill`) asks the loop to save and exit cleanly.
  Used as a context manager, so the previous handler comes back afterwards."""

  def __enter__(self):
    self.requested = False
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True


def maybe_initialize_distributed() -> None:
  """Join the other hosts before any jax computation, when launched on several.

  scripts/gpu_multiprocess.sh sets JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and
  JAX_PROCESS_ID; on a Cloud TPU pod (several TPU_WORKER_HOSTNAMES) jax finds its
  peers itself. A single process needs nothing.
  """
  num_processes = int(os.environ.get("JAX_NUM_PROCESSES", "1"))
  if num_processes > 1:
    jax.distributed.initialize(num_processes=num_processes,
                               process_id=int(os.environ["JAX_PROCESS_ID"]))
  elif "," in os.environ.get("TPU_WORKER_HOSTNAMES", ""):
    jax.distributed.initialize()


def train(*, model: seq2seq.Seq2SeqModel, run: RunSettings, data: DataSettings,
          optimizer: OptimizerSettings = OptimizerSettings(),
          mesh: MeshSettings = MeshSettings(),
          checkpoint: CheckpointSettings = CheckpointSettings(),
          evaluate: EvalSettings | None = None) -> dict[str, float]:
  """Train `model` on `data` for `run.total_steps`; returns the last metrics."""
  # ------------------------------------------------------------------ mesh
  maybe_initialize_distributed()
  try:
    device_mesh = mesh.make()
    batches.check_batch_fits_mesh(data.batch_size, device_mesh)
    input_pipeline.local_batch_size(data)
    from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
    task = tasks.get_task_or_mixture(data.mixture_or_task_name)
    vocab_size = model.config.vocab_size
    vocabulary = load.task_vocabulary(task, vocab_size, data.mixture_or_task_name)
    model = model.with_trivial_ids(seq2seq.TrivialIds.of_vocabulary(
        task.output_features["targets"].vocabulary))
    if evaluate and evaluate.data:
      load.task_vocabulary(tasks.get_task_or_mixture(evaluate.data.mixture_or_task_name),
                           vocab_size, evaluate.data.mixture_or_task_name)
    # A resumed run and a fine-tuning's start were trained with the same ids.
    load.check_same_vocabulary(os.path.join(run.model_dir, "checkpoints"), vocabulary,
                               "MODEL_DIR")
    if run.initial_checkpoint_path:
      load.check_same_vocabulary(run.initial_checkpoint_path, vocabulary,
                                 "INITIAL_CHECKPOINT_PATH")
  except ValueError as error:
    raise UsageError(str(error)) from None

  # ------------------------------------------------------------------ input
  def make_iterator(skip: int = 0):
    return iter(input_pipeline.get_dataset(data, repeat=True).skip(skip))

  # ------------------------------------------------------------------ model, optimiser
  engine = trainer.Trainer(model, optimizer, device_mesh,
                           input_pipeline.batch_shapes(data))
  # What this run creates, so a refused initial checkpoint leaves nothing behind.
  created = [d for d in (run.model_dir, os.path.join(run.model_dir, "checkpoints"))
             if not os.path.exists(d)]
  checkpoints = checkpoints_lib.Checkpoints(
      os.path.join(run.model_dir, "checkpoints"), checkpoint)

  # ------------------------------------------------------------------ state
  abstract_state = partitioning.with_shardings(engine.abstract_state,
                                               engine.state_shardings)
  restored = checkpoints.restore_latest(abstract_state, make_iterator)
  if restored is not None:
    state, iterator = restored
    note = f"resumed from step {int(state.step)} in {checkpoints.directory}"
  elif run.initial_checkpoint_path:
    try:
      params = load.load_params(run.initial_checkpoint_path, abstract_state.params,
                                model.config, run.upcycle_from_dense)
    except ValueError as error:
      checkpoints.close()
      for directory in reversed(created):  # innermost first; only if still empty
        if os.path.isdir(directory) and not os.listdir(directory):
          os.rmdir(directory)
      raise UsageError(str(error)) from None
    state, iterator = engine.state_from_params(params), make_iterator()
    note = (f"upcycled from the dense checkpoint {run.initial_checkpoint_path}"
            if run.upcycle_from_dense else
            f"fine-tuning from {run.initial_checkpoint_path}")
  else:
    state, iterator = engine.init_state(run.random_seed), make_iterator()
    note = "initialised from scratch"
  start_step = int(state.step)

  summaries = _open_summaries(run, start_step)
  summaries.message(f"{note}; training to step {run.total_steps} on "
                    f"{jax.device_count()} device(s), mesh {dict(device_mesh.shape)}")
  _write_run_info(run.model_dir, engine, data, device_mesh, vocabulary, run)
  if jax.process_index() == 0:
    load.write_vocabulary(checkpoints.directory, vocabulary)
  evaluators = _Evaluators(engine, evaluate, run.model_dir)

  # ------------------------------------------------------------------ loop
  tokens_per_step = data.batch_size * sum(
      v.shape[1] for k, v in engine.example_batch.items()
      if k in ("encoder_input_tokens", "decoder_target_tokens"))
  # Seconds spent training (not evaluating or saving), carried over a resume.
  train_seconds = _previous_train_seconds(run.model_dir, start_step)
  step, pending, window, last = start_step, None, None, {}
  window_start, window_steps = time.time(), 0
  with _Stop() as stop:
    while step < run.total_steps:
      batch = batches.to_global(
          {k: v.numpy() for k, v in next(iterator).items()}, device_mesh)
      state, metrics = engine.train_step(state, batch, run.random_seed)
      step += 1
      # Check the previous step's loss while this one runs: no stall, and a
      # non-finite loss is caught before any checkpoint could store its effect.
      if pending is not None:
        _check_finite(*pending, checkpoints)
      pending = (step, metrics["loss"][0])
      window = seq2seq.add_metrics(window, metrics)
      window_steps += 1

      stopping = stop.requested  # read once: the signal may arrive at any moment
      save = step % checkpoint.period == 0 or step == run.total_steps or stopping
      log = step % run.log_period == 0 or save
      if log:
        _check_finite(*pending, checkpoints)
        elapsed = max(time.time() - window_start, 1e-9)
        train_seconds += elapsed
        last = seq2seq.summarize(window)
        last.update(steps_per_second=window_steps / elapsed,
                    examples_per_second=window_steps * data.batch_size / elapsed,
                    tokens_per_second=window_steps * tokens_per_step / elapsed,
                    train_seconds=train_seconds,
                    elapsed_seconds=time.time() - summaries.start_time)
        summaries.write(step, last, "train")
        summaries.advance(window_steps, last)
        window, window_steps = None, 0
      if save:
        if not engine.params_finite(state.params):
          _stop_diverged(f"parameters became non-finite at step {step}", checkpoints)
        # Every run's data stream starts at step 0 (fine-tuning too): batches = steps.
        checkpoints.save(step, state, iterator, batches=step)
      if evaluators.due(step, run.total_steps):
        results = evaluators(state.params, step, summaries, train_seconds)
        last.update({f"eval/{k}": v for k, v in results.items()})
      if stopping:
        summaries.message(f"SIGTERM: saved step {step}; exiting")
        break
      if log:  # the next window times training steps only
        window_start = time.time()

  # ------------------------------------------------------------------ end
  checkpoints.close()
  summaries.close()
  return last


def _open_summaries(run: RunSettings, start_step: int) -> summaries_lib.Summaries:
  return summaries_lib.Summaries(run.model_dir, total_steps=run.total_steps,
                                 start_step=start_step)


def _write_run_info(model_dir: str, engine, data: DataSettings, mesh,
                    vocabulary: dict, run: RunSettings | None = None) -> None:
  """What the run is and what one step costs, for studies and benchmarks."""
  if jax.process_index() != 0:
    return
  params = sum(int(np.prod(x.shape)) for x in
               jax.tree_util.tree_leaves(engine.abstract_state.params))
  info = {"parameters": params, "config": _jsonable(engine.model.config),
          "data": _jsonable(data), "vocabulary": vocabulary, "mesh": dict(mesh.shape),
          "devices": [str(d) for d in jax.devices()], **engine.step_cost()}
  if run is not None and run.initial_checkpoint_path:
    info["initial_checkpoint"] = {"path": run.initial_checkpoint_path,
                                  "upcycled_from_dense": run.upcycle_from_dense}
  with tf.io.gfile.GFile(os.path.join(model_dir, "run_info.json"), "w") as f:
    json.dump(info, f, indent=2)


def _jsonable(obj):
  if dataclasses.is_dataclass(obj):
    return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(x) for x in obj]
  if isinstance(obj, dict):
    return {str(k): _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (int, float, str, bool)) or obj is None:
    return obj
  return str(getattr(obj, "value", obj))


def _previous_train_seconds(model_dir: str, start_step: int) -> float:
  """The training time logged at the resumed step (0 for a fresh run)."""
  seconds = 0.0
  for record in (summaries_lib.read_records(model_dir) if start_step else []):
    if record.get("step", 0) <= start_step and "train/train_seconds" in record:
      seconds = record["train/train_seconds"]
  return seconds


def _check_finite(step: int, loss_total, checkpoints) -> None:
  value = float(loss_total)
  if not np.isfinite(value):
    _stop_diverged(f"loss is {value} at step {step}", checkpoints)


def _stop_diverged(what: str, checkpoints) -> None:
  checkpoints.close()  # let pending saves (all of finite states) finish
  saved = checkpoints.steps()
  where = (f"the last good checkpoint is step {saved[-1]} in {checkpoints.directory}"
           if saved else "no checkpoint was saved")
  raise FloatingPointError(f"{what}; {where} (not overwritten)")


class _Evaluators:
  """Teacher-forced and inference evaluation, every `period` steps and at the end,
  through the predict/score step built on the trainer's parameter placement."""

  def __init__(self, engine, settings: EvalSettings | None, model_dir):
    self.settings = settings
    self.predictor = self.infer = None
    if settings and settings.data:
      self.predictor = predictor_lib.Predictor(engine.placement, settings.data.batch_size,
                                               settings.decode)
      if settings.infer:
        self.infer = evaluation.InferenceEvaluator(
            self.predictor, settings.data, settings.infer_examples,
            os.path.join(model_dir, "inference_eval"))

  def due(self, step: int, total: int) -> bool:
    s = self.settings
    return bool(s and s.data) and (step % s.period == 0 or step == total)

  def __call__(self, params, step: int, summaries, train_seconds: float
               ) -> dict[str, float]:
    s = self.settings
    results = evaluation.teacher_forced(self.predictor, params, s.data, s.steps)
    results["train_seconds"] = train_seconds
    summaries.write(step, results, f"eval/{s.data.mixture_or_task_name}")
    if self.infer is not None:
      inferred = self.infer(params, step)
      summaries.write(step, inferred, "infer_eval")
      results.update({f"infer/{k}": v for k, v in inferred.items()})
    summaries.message(f"step {step} eval: " + ", ".join(
        f"{k}={v:.4g}" for k, v in sorted(results.items()) if k != "num_tokens"))
    return results

