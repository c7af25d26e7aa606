"""What a study's runs produced: each run directory read back, and the speedup at
equal quality of every variant over its size's dense baseline.

A run directory (MODEL_DIR) holds `run_info.json` (parameters, XLA's cost of one train
step, compiled memory), `metrics.jsonl` (training and evaluation records) and
`study_run.json`, written by `compare` when the training process ends (status, exit
code, the error's last line, wall time, peak resident memory).

*Training speedup* (this project's measure; the paper's own speedup is inference
speed at equal quality, `studies/speedup.py`): the quality target is the dense
baseline's final held-out accuracy (same size, same seed); the steps (or training
seconds) each run needs to first reach it are read off its evaluation curve,
interpolating linearly between the two evaluations around the crossing; speedup =
baseline's / variant's. A run whose curve never reaches the target has no speedup
(`None`, shown as "not reached"); one already past it at its first evaluation has a
lower bound (shown as ">= 1.50x"). Only finished pretraining runs get speedups. The
same is computed for the held-out loss (lower is better), which separates small
models long before their accuracy does.

A fine-tuning run's quality is its last inference evaluation: the mean of the study's
chosen "task/metric" values (all of them by default), each on the metric's own scale.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from typing import Sequence

import numpy as np

from altup_t5.training import summaries

STATUS_FILE = "study_run.json"
FINISHED, FAILED, INTERRUPTED, NOT_RUN = "finished", "failed", "interrupted", "not run"


@dataclasses.dataclass
class EvalPoint:
  step: int
  accuracy: float
  loss: float
  train_seconds: float  # training time (no evaluation or checkpointing) up to `step`
  num_tokens: float = float("nan")  # held-out target tokens the accuracy counts
  nonsentinel_accuracy: float = float("nan")  # accuracy on targets that are not trivial
  trivial_floor: float = float("nan")  # share of targets that are sentinels or EOS


@dataclasses.dataclass
class Speedup:
  """How fast one run reaches its size's baseline quality, and the ratio."""
  target: float  # the dense baseline's final accuracy (or loss)
  steps: float | None  # steps to first reach it (None: never)
  seconds: float | None  # training seconds to first reach it
  speedup_steps: float | None = None  # baseline's steps / this run's
  speedup_time: float | None = None  # baseline's seconds / this run's
  # Already there at its first evaluation: it may have got there earlier, so the
  # speedups are lower bounds (evaluate more often to pin them down).
  lower_bound: bool = False


@dataclasses.dataclass
class RunResult:
  """One run as read from its directory; numbers are None when not (yet) known."""
  size: str
  variant: str
  model_dir: str
  seed: int = 0
  stage: str = "pretrain"
  status: str = NOT_RUN
  error: str = ""
  altup_k: int = 2
  devices: list[str] = dataclasses.field(default_factory=list)  # as jax listed them
  parameters: int | None = None
  xla_flops_per_step: float | None = None
  xla_memory_bytes: float | None = None  # arguments + temporaries of the compiled step
  peak_rss_bytes: float | None = None  # the training process's peak resident memory
  wall_seconds: float | None = None  # the last attempt, start to exit
  code_digest: str = ""  # digest of the altup_t5 sources the last attempt ran
  median_step_seconds: float | None = None
  tokens_per_second: float | None = None
  evals: list[EvalPoint] = dataclasses.field(default_factory=list)
  train_steps: list[int] = dataclasses.field(default_factory=list)
  train_loss: list[float] = dataclasses.field(default_factory=list)
  # The last inference evaluation ({"task/metric": value}) and the downstream quality
  # the study reads from it (fine-tuning runs).
  infer_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
  downstream: float | None = None
  # The timing phase (`studies/timing.py`): teacher-forced scoring at the evaluation
  # shape, and greedy decoding at the task's target length (fine-tuning runs).
  score_examples_per_second: float | None = None
  decode_tokens_per_second: float | None = None
  timing_error: str = ""
  # Filled by `add_speedups`: at the baseline's final accuracy, and final loss.
  by_accuracy: Speedup | None = None
  by_loss: Speedup | None = None

  @property
  def group(self) -> str:
    return f"{self.size}_{self.variant}"

  @property
  def name(self) -> str:
    suffix = "_finetune" if self.stage == "finetune" else ""
    return f"{self.group}_seed{self.seed}{suffix}"

  @property
  def final(self) -> EvalPoint | None:
    return self.evals[-1] if self.evals else None


# --------------------------------------------------------------------- reading
def read_status(model_dir: str) -> dict:
  path = os.path.join(model_dir, STATUS_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def write_status(model_dir: str, status: dict) -> None:
  os.makedirs(model_dir, exist_ok=True)
  path = os.path.join(model_dir, STATUS_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(status, f, indent=2)
  os.replace(path + ".tmp", path)  # never a half-written status


def read_metrics(model_dir: str, with_inference: bool = False):
  """-> (train records, eval records) by step, and with `with_inference` the inference
  evaluations' records too. A resumed run logs again the steps after its last
  checkpoint; the later record of a step wins."""
  train, evals, inferred = {}, {}, {}
  for record in summaries.read_records(model_dir):
    if any(k.startswith("eval/") for k in record):
      evals[record["step"]] = record
    elif any(k.startswith(INFER_PREFIX) for k in record):
      inferred[record["step"]] = record
    elif "train/loss" in record:
      train[record["step"]] = record
  return (train, evals, inferred) if with_inference else (train, evals)


INFER_PREFIX = "infer_eval/"  # the training loop's inference-evaluation records


def last_checkpoint_step(model_dir: str) -> int:
  """The newest finished checkpoint's step (orbax names finished steps by number)."""
  directory = os.path.join(model_dir, "checkpoints")
  if not os.path.isdir(directory):
    return 0
  return max((int(n) for n in os.listdir(directory) if n.isdigit()), default=0)


def is_complete(model_dir: str, task: str, train_steps: int) -> bool:
  """Whether the run trained to `train_steps` and evaluated there."""
  _, evals = read_metrics(model_dir)
  return f"eval/{task}/accuracy" in evals.get(train_steps, {})


def read_run(run, metrics: Sequence[str] = ()) -> RunResult:
  """`run` (a `study.Run`) as its directory has it; `metrics` chooses the
  "task/metric" values averaged into a fine-tuning run's downstream quality."""
  model_dir, task = run.model_dir, run.task
  result = RunResult(run.size, run.variant, model_dir, seed=run.seed, stage=run.stage)
  status = read_status(model_dir)
  result.status = status.get("status", NOT_RUN)
  result.error = status.get("error", "")
  result.wall_seconds = status.get("wall_seconds")
  result.peak_rss_bytes = status.get("peak_rss_bytes")
  result.code_digest = status.get("code_digest", "")

  info_path = os.path.join(model_dir, "run_info.json")
  if os.path.exists(info_path):
    with open(info_path, encoding="utf-8") as f:
      info = json.load(f)
    result.parameters = info.get("parameters")
    result.altup_k = info.get("config", {}).get("altup_k", 2)
    result.devices = info.get("devices", [])
    result.xla_flops_per_step = info.get("xla_flops_per_step")
    sizes = [info.get(k) for k in ("argument_size_in_bytes", "temp_size_in_bytes")]
    if all(isinstance(s, (int, float)) for s in sizes):
      result.xla_memory_bytes = float(sum(sizes))

  train, evals, inferred = read_metrics(model_dir, with_inference=True)
  if inferred:
    last = inferred[max(inferred)]
    result.infer_metrics = {k[len(INFER_PREFIX):]: v for k, v in last.items()
                            if k.startswith(INFER_PREFIX)}
    result.downstream = downstream_quality(result.infer_metrics, metrics)
  prefix = f"eval/{task}/"
  for step in sorted(evals):
    record = evals[step]
    if prefix + "accuracy" in record:
      result.evals.append(EvalPoint(
          step=step, accuracy=record[prefix + "accuracy"],
          loss=record.get(prefix + "loss", float("nan")),
          train_seconds=record.get(prefix + "train_seconds", float("nan")),
          num_tokens=record.get(prefix + "num_tokens", float("nan")),
          nonsentinel_accuracy=record.get(prefix + "nonsentinel_accuracy", float("nan")),
          trivial_floor=record.get(prefix + "trivial_floor", float("nan"))))
  steps = sorted(train)
  result.train_steps = steps
  result.train_loss = [train[s]["train/loss"] for s in steps]
  # Each training record covers the steps since the previous one; the first also
  # holds the warm-up of the compiled step, so it is left out of the medians.
  rates = [train[s]["train/steps_per_second"] for s in steps[1:]
           if train[s].get("train/steps_per_second")]
  if rates:
    result.median_step_seconds = statistics.median(1.0 / r for r in rates)
  tokens = [train[s]["train/tokens_per_second"] for s in steps[1:]
            if train[s].get("train/tokens_per_second")]
  if tokens:
    result.tokens_per_second = statistics.median(tokens)
  return result


def downstream_quality(values: dict[str, float], chosen: Sequence[str] = ()
                       ) -> float | None:
  """The mean of the `chosen` "task/metric" values (all of them when none is chosen);
  None when one of the chosen is missing."""
  names = list(chosen) or sorted(values)
  if not names or any(n not in values for n in names):
    return None
  return float(np.mean([values[n] for n in names]))


# --------------------------------------------------------------------- speedup
def first_reach(xs: Sequence[float], values: Sequence[float], target: float,
                higher_is_better: bool = True) -> float | None:
  """The x (step or seconds) at which the curve first reaches `target`, linearly
  interpolated between the two evaluations around the crossing; None if it never
  does. The first evaluation is the earliest point known, so a curve already at
  the target there reaches it at that evaluation."""
  sign = 1.0 if higher_is_better else -1.0
  for i, (x, value) in enumerate(zip(xs, values)):
    if sign * value >= sign * target:
      if i == 0:
        return float(x)
      x0, v0 = xs[i - 1], values[i - 1]
      return float(x0 + (target - v0) / (value - v0) * (x - x0))
  return None


def _speedup(result: RunResult, base: RunResult, quality: str) -> Speedup:
  higher = quality == "accuracy"
  values = [getattr(p, quality) for p in result.evals]
  target = getattr(base.final, quality)
  reach = lambda xs: first_reach(xs, values, target, higher)
  return Speedup(
      target=target, steps=reach([p.step for p in result.evals]),
      seconds=reach([p.train_seconds for p in result.evals]),
      lower_bound=(result is not base and
                   (values[0] >= target if higher else values[0] <= target)))


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
  if not numerator or not denominator or not np.isfinite(denominator):
    return None
  return numerator / denominator


def add_speedups(results: Sequence[RunResult]) -> None:
  """Fill each finished pretraining run's training speedups at equal accuracy and at
  equal loss, against the finished dense run of its size and seed (none without one)."""
  results = [r for r in results if r.stage == "pretrain"]
  key = lambda r: (r.size, r.seed)
  baselines = {key(r): r for r in results
               if r.variant == "dense" and r.status == FINISHED and r.evals}
  for quality in ("accuracy", "loss"):
    field = f"by_{quality}"
    for result in results:  # the baseline's own crossing first: it is the numerator
      base = baselines.get(key(result))
      if base is not None and result.status == FINISHED and result.evals:
        setattr(result, field, _speedup(result, base, quality))
    for result in results:
      speedup, base = getattr(result, field), baselines.get(key(result))
      if speedup is not None:
        own = getattr(base, field)
        speedup.speedup_steps = _ratio(own.steps, speedup.steps)
        speedup.speedup_time = _ratio(own.seconds, speedup.seconds)
