"""Where metrics go: TensorBoard (clu's metric writers), a JSON-lines file in
MODEL_DIR, and a progress bar on the console. Only the first host writes.

MODEL_DIR may be local or remote (gs://, through tf.io.gfile). A local run appends to
`metrics.jsonl`; object stores cannot append, so there each start of the run writes
`metrics-<start step>.jsonl`. `read_records` reads either layout.
"""

from __future__ import annotations

import json
import os
import time
from typing import Mapping

import jax
import tensorflow as tf
from clu import metric_writers
from tqdm import tqdm


def is_local(path: str) -> bool:
  return "://" not in path


def read_records(model_dir: str) -> list[dict]:
  """Every metrics record of a run, in the order written (a line cut short by a
  killed process is skipped)."""
  paths = sorted(tf.io.gfile.glob(os.path.join(model_dir, "metrics*.jsonl")))
  records = []
  for path in paths:
    with tf.io.gfile.GFile(path) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          continue
  return records


class Summaries:
  """One run's metric sinks: `write(step, metrics, prefix)` and a progress bar."""

  def __init__(self, model_dir: str, *, total_steps: int, start_step: int,
               show_progress: bool = True):
    self.primary = jax.process_index() == 0
    tf.io.gfile.makedirs(model_dir)
    self.writer = metric_writers.create_default_writer(
        model_dir, just_logging=not self.primary, asynchronous=False)
    self._jsonl = None
    if self.primary:
      if is_local(model_dir):
        self._jsonl = open(os.path.join(model_dir, "metrics.jsonl"), "a", encoding="utf-8")
      else:
        self._jsonl = tf.io.gfile.GFile(
            os.path.join(model_dir, f"metrics-{start_step:08d}.jsonl"), "w")
    self.progress = tqdm(total=total_steps, initial=start_step, unit="step",
                         dynamic_ncols=True, mininterval=2.0,
                         disable=not (show_progress and self.primary))
    self.start_time = time.time()

  def write(self, step: int, metrics: Mapping[str, float], prefix: str) -> None:
    scalars = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
    self.writer.write_scalars(step, scalars)
    if self._jsonl:
      self._jsonl.write(json.dumps({"step": step, "time": time.time(), **scalars}) + "\n")
      self._jsonl.flush()

  def advance(self, steps: int, metrics: Mapping[str, float] | None = None) -> None:
    """Move the bar; show loss, accuracy and throughput when given."""
    if metrics:
      shown = {k: metrics[k] for k in ("loss", "accuracy") if k in metrics}
      if "tokens_per_second" in metrics:
        shown["tok/s"] = metrics["tokens_per_second"]
      self.progress.set_postfix({k: f"{v:.4g}" for k, v in shown.items()}, refresh=False)
    self.progress.update(steps)

  def message(self, text: str) -> None:
    """A line above the bar (so the bar is not broken)."""
    if self.primary:
      self.progress.write(text)

  def close(self) -> None:
    self.progress.close()
    self.writer.flush()
    self.writer.close()
    if self._jsonl:
      self._jsonl.close()
