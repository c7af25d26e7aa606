r"""Where one compiled train step's time goes, on this machine.

  python scripts/profile_step.py --size tiny --variant dense --batch 8 --lengths 128,32
  python scripts/profile_step.py --size tiny --trace   # also the per-op breakdown

Two views, both of the real step (`trainer.Trainer`: forward, backward, Adafactor):
1. Components, timed in interleaved rounds (medians; wall and process CPU seconds):
   the forward pass, forward + backward (the gradient), Adafactor's update alone, the
   whole step. "step - gradient - Adafactor" is what the step costs beyond them
   (dispatch, the metrics, copying the state).
2. With --trace: the JAX profiler's trace of a few steps, each XLA:CPU op's time
   summed over the worker threads and grouped by what the op computes, read from the
   compiled HLO's op_name metadata (the flax module path): attention's projections,
   attention's scores/softmax/mixing (and its relative-position bias), the gated-GELU
   MLP, RMSNorm, the vocabulary head with the loss, Adafactor. Tracing slows the step;
   the shares, not the milliseconds, are the result.
Expected on 2 CPU cores: about 1 minute at tiny. Nothing here is a pass/fail check.
"""

from __future__ import annotations

import argparse
import collections
import glob
import os
import re
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from altup_t5.bench import cpu_tuning  # pylint: disable=g-import-not-at-top

cpu_tuning.apply()  # as the entry points do, before JAX starts its threads

import jax  # pylint: disable=g-import-not-at-top
import numpy as np

from altup_t5.bench import bench
from altup_t5.model import network
from altup_t5.model.config import config_for
from altup_t5.training import partitioning
from altup_t5.training import seq2seq
from altup_t5.training import trainer

# (label, pattern on the op_name metadata), first match wins.
CATEGORIES = (
    ("Adafactor", r"^jit\(_train_step_fn\)/(?!.*(jvp|Transformer))"),
    ("vocabulary head and loss", r"logits_dense|^jit\(_train_step_fn\)/(transpose\()?jvp\(\)"
     r"|^jit\(eval_metrics\)/(?!.*Transformer)"),
    ("embedding", r"token_embedder|embed"),
    ("attention projections", r"attention/(query|key|value|out)"),
    ("relative-position bias", r"relpos|relative_attention"),
    ("attention scores, softmax, mixing", r"attention"),
    ("MLP (gated GELU)", r"mlp"),
    ("RMSNorm", r"norm"),
    ("AltUp predict/correct", r"altup"),
)


def _cpu_seconds() -> float:
  t = os.times()
  return t.user + t.system


def build(size: str, variant: str, batch_size: int, lengths: tuple[int, int]):
  cfg = config_for(size, variant)
  settings = bench.BenchSettings(batch=batch_size, inputs_length=lengths[0],
                                 targets_length=lengths[1])
  model = seq2seq.Seq2SeqModel(network.Transformer(cfg))
  batch = bench.random_batch(cfg, settings)
  engine = trainer.Trainer(model, trainer.OptimizerSettings(), partitioning.make_mesh(),
                           trainer.batch_spec(batch))
  return model, engine, jax.device_put(batch, engine.batch_shardings)


def components(model, engine, batch, rounds: int) -> dict[str, tuple[float, float]]:
  """Median (wall, CPU) seconds of each part of the step."""
  key = jax.random.PRNGKey(0)
  loss = lambda params, b: model.loss_and_metrics(params, b, key)[0]
  forward, gradient = jax.jit(loss), jax.jit(jax.grad(loss))
  update = jax.jit(engine.tx.update)
  frozen = engine.init_state(1)  # read by the parts; the step donates its own state
  grads = gradient(frozen.params, batch)
  box = {"state": engine.init_state(0)}

  def step():
    box["state"], _ = engine.train_step(box["state"], batch, 0)
    return box["state"]

  work = {"forward": lambda: forward(frozen.params, batch),
          "gradient": lambda: gradient(frozen.params, batch),
          "Adafactor": lambda: update(grads, frozen.opt_state, frozen.params),
          "step": step}
  for fn in work.values():
    jax.block_until_ready(fn())  # compiles
  samples = collections.defaultdict(list)
  for _ in range(rounds):
    for name, fn in work.items():
      cpu, start = _cpu_seconds(), time.perf_counter()
      jax.block_until_ready(fn())
      samples[name].append((time.perf_counter() - start, _cpu_seconds() - cpu))
  return {k: (float(np.median([w for w, _ in v])), float(np.median([c for _, c in v])))
          for k, v in samples.items()}


def op_shares(engine, batch, steps: int) -> tuple[float, dict[str, float]]:
  """(op milliseconds per train step summed over threads, {category: share})."""
  box = {"state": engine.init_state(0)}

  def step():
    box["state"], _ = engine.train_step(box["state"], batch, 0)
    return box["state"]

  return traced_op_shares(step, engine.compiled_train_step().as_text(), steps)


def score_op_shares(model, batch, params, steps: int) -> tuple[float, dict[str, float]]:
  """The same for teacher-forced scoring (eval mode, as `Predictor.score` and the
  studies' timing run it)."""
  score = jax.jit(model.eval_metrics)
  hlo = score.lower(params, batch).compile().as_text()
  return traced_op_shares(lambda: score(params, batch), hlo, steps)


def traced_op_shares(run, hlo: str, steps: int) -> tuple[float, dict[str, float]]:
  """(op milliseconds per call of `run` summed over threads, {category: share}),
  reading each op's flax module path from the compiled program's text `hlo`."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  op_names = dict(re.findall(r"^\s*(?:ROOT )?%?([\w.\-]+) = .*?op_name=\"([^\"]*)\"",
                             hlo, re.M))
  for _ in range(2):
    jax.block_until_ready(run())
  with tempfile.TemporaryDirectory() as trace_dir:
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        jax.block_until_ready(run())
    path = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)[0]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
  totals = collections.Counter()
  for plane in space.planes:
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if "XLAEigen" not in line.name:  # XLA:CPU's worker threads run the ops
        continue
      for event in line.events:
        op = names.get(event.metadata_id, "")
        if op.startswith("ThunkExecutor"):  # the executor's own span around the ops
          continue
        meta = op_names.get(op, "")
        label = next((l for l, p in CATEGORIES if re.search(p, meta)), "other")
        totals[label] += event.duration_ps / 1e9 / steps  # ms per step
  total = sum(totals.values())
  return total, {k: v / total for k, v in totals.most_common()}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", default="tiny")
  parser.add_argument("--variant", default="dense")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--lengths", default="128,32", help="inputs,targets")
  parser.add_argument("--rounds", type=int, default=15)
  parser.add_argument("--trace", action="store_true", help="also the per-op breakdown")
  args = parser.parse_args()
  lengths = tuple(int(x) for x in args.lengths.split(","))
  model, engine, batch = build(args.size, args.variant, args.batch, lengths)
  print(f"{args.size} {args.variant}, batch {args.batch}, lengths "
        f"{lengths[0]}/{lengths[1]}; medians of {args.rounds} interleaved rounds")
  parts = components(model, engine, batch, args.rounds)
  for name, (wall, cpu) in parts.items():
    print(f"  {name:10s} {1e3 * wall:7.1f} ms wall  {1e3 * cpu:7.1f} ms CPU")
  rest = parts["step"][0] - parts["gradient"][0] - parts["Adafactor"][0]
  print(f"  step - gradient - Adafactor: {1e3 * rest:.1f} ms")
  if args.trace:
    for what, (total, shares) in (
        ("train step", op_shares(engine, batch, steps=5)),
        ("scoring call", score_op_shares(model, batch, engine.init_state(1).params, 5))):
      print(f"XLA:CPU op time under the profiler: {total:.1f} ms per {what} over all "
            "threads")
      for label, share in shares.items():
        print(f"  {100 * share:5.1f}%  {label}")


if __name__ == "__main__":
  main()
