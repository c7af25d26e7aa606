r"""The timing phase of a study: every finished run's inference speed, measured after
training, in one process of its own, all runs' models interleaved.

  python -m altup_t5.compare configs/cpu_quick.toml --out /tmp/cpu_quick --timing_only

`compare` runs this in a child process of its own after the training runs (nothing
else of the study is running then), and the report reads OUT/timing.json. The paper's speedup is read off quality
against inference speed (studies/speedup.py), so this is the speed it needs:

- *scoring*: teacher-forced scoring (the forward pass and the metrics of one
  evaluation batch: the study's batch size at its feature lengths, full-length rows
  of random ids), in examples per second, for every pretraining and fine-tuning run;
- *decoding*: greedy decoding with the cache of one batch of the fine-tuning task (its
  batch size), forced to the task's full target length, in new tokens per second, for
  fine-tuning runs.

Each run's model is built from its own gin configuration and its last checkpoint
(speed does not depend on the values, but a run whose checkpoint cannot be read is
reported, not timed with made-up weights). Every unit of work is compiled and run
once before timing; then each round times every run once in a rotating order, so a
shared machine's noise falls on all runs alike, and the medians over rounds are
kept. A round's sample of a run is the mean of a few calls made right after an
untimed one (`measure` says why). A run that cannot be timed gets its error's first
line; the others go on.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import platform
import time
from typing import Callable, Sequence

import numpy as np

from altup_t5.studies import study as study_lib
from altup_t5.studies import results as study_results

PROG = "python -m altup_t5.compare"
TIMING_FILE = "timing.json"
CALLS_PER_SAMPLE = 3  # timed calls per sample, after one untimed call


@dataclasses.dataclass
class Timed:
  """One run's units of work and their wall-time samples (seconds)."""
  name: str
  work: dict[str, Callable[[], None]]  # "score", "decode"
  amount: dict[str, float]  # examples per score call, new tokens per decode call
  samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)

  def rates(self) -> dict[str, float]:
    unit = {"score": "score_examples_per_second", "decode": "decode_tokens_per_second"}
    return {unit[k]: self.amount[k] / float(np.median(v))
            for k, v in self.samples.items() if v}


def build_model(run: study_lib.Run):
  """(network config, mesh) of the run, from its own gin flags."""
  import gin  # pylint: disable=g-import-not-at-top
  from altup_t5 import cli  # pylint: disable=g-import-not-at-top
  from altup_t5.model import config  # pylint: disable=g-import-not-at-top
  from altup_t5.training import partitioning  # pylint: disable=g-import-not-at-top
  files, paths, bindings = cli.parse_flags(run.flags(), PROG)
  try:
    cli.parse_gin(files, paths, bindings)
    cfg = gin.get_configurable(config.config_for)()
    mesh = gin.get_configurable(partitioning.MeshSettings)().make()
  finally:
    gin.clear_config()
  return cfg, mesh


def random_rows(rng, rows: int, length: int, vocab_size: int) -> np.ndarray:
  """[rows, length] ids in [2, vocab_size): no padding, no EOS."""
  return rng.integers(2, vocab_size, (rows, length)).astype(np.int32)


def prepare(run: study_lib.Run, rows: int, lengths: dict[str, int],
            decode_rows: int | None) -> Timed:
  """Compiles the run's scoring (and, given `decode_rows`, decoding) and runs each
  once. Raises on a run that cannot be built or loaded."""
  import jax  # pylint: disable=g-import-not-at-top
  from altup_t5.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  from altup_t5.jobs import load  # pylint: disable=g-import-not-at-top
  from altup_t5.model import network  # pylint: disable=g-import-not-at-top
  from altup_t5.training import batches  # pylint: disable=g-import-not-at-top
  from altup_t5.training import seq2seq  # pylint: disable=g-import-not-at-top

  cfg, mesh = build_model(run)
  model = seq2seq.Seq2SeqModel(network.Transformer(cfg))
  rng = np.random.default_rng(0)
  targets = random_rows(rng, rows, lengths["targets"], cfg.vocab_size)
  batch = {  # one evaluation batch, every row full length
      "encoder_input_tokens": random_rows(rng, rows, lengths["inputs"], cfg.vocab_size),
      "decoder_input_tokens": np.concatenate(
          [np.zeros((rows, 1), np.int32), targets[:, :-1]], axis=1),
      "decoder_target_tokens": targets,
  }
  shapes = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in batch.items()}
  predictor = predictor_lib.Predictor.for_model(model, mesh, shapes,
                                                rows=decode_rows or rows)
  abstract = predictor.placement.abstract_params_with_shardings()
  params = load.load_params(os.path.join(run.model_dir, "checkpoints"), abstract, cfg)
  device_batch = batches.to_global(batch, mesh)

  def score():
    jax.block_until_ready(predictor.score(params, device_batch))

  work, amount = {"score": score}, {"score": float(rows)}
  if decode_rows:
    prompt = batches.to_global(
        {"x": batch["encoder_input_tokens"][:1].repeat(decode_rows, axis=0)}, mesh)["x"]

    def decode():  # eos_id = vocab_size is never chosen: always the full length
      jax.block_until_ready(predictor.decode_batch(
          params, prompt, max_decode_length=lengths["targets"], eos_id=cfg.vocab_size))
    work["decode"] = decode
    amount["decode"] = float(decode_rows * lengths["targets"])
  for fn in work.values():
    fn()  # compile outside the samples
  return Timed(run.name, work, amount)


def measure(timed: Sequence[Timed], rounds: int, calls: int = CALLS_PER_SAMPLE) -> None:
  """Times every subject once per round, in a rotating order. A sample is the mean of
  `calls` calls made right after one untimed call: the speed of a model in use. The
  first call after the other models ran is slower (cold caches and buffers; at a
  study's 108 models, cpu_full measured micro's scoring several times slower that
  way than alone), and a server does not pay that on every request.

  Python's garbage collector is off meanwhile: a full collection walks every live
  object, and with dozens of models loaded one took longer than a small model's
  scoring call (cpu_full under py-spy), landing on whichever sample was running.
  What setup made is frozen out of the collector's sight first, so turning it back
  on costs nothing either."""
  was_enabled = gc.isenabled()
  gc.collect()
  gc.freeze()
  gc.disable()
  try:
    for round_ in range(rounds):
      shift = round_ % len(timed)
      for subject in list(timed[shift:]) + list(timed[:shift]):
        for kind, fn in subject.work.items():
          fn()  # warm: see above
          start = time.perf_counter()
          for _ in range(calls):
            fn()
          subject.samples.setdefault(kind, []).append(
              (time.perf_counter() - start) / calls)
  finally:
    if was_enabled:
      gc.enable()
    gc.unfreeze()


def finished_runs(study: study_lib.Study, out_dir: str) -> list[study_lib.Run]:
  return [r for r in study.all_runs(out_dir)
          if study_results.read_status(r.model_dir).get("status")
          == study_results.FINISHED]


def time_study(study: study_lib.Study, out_dir: str, rounds: int = 5,
               log=print) -> dict:
  """Times every finished run; writes and returns OUT/timing.json's content."""
  entries, timed = {}, []
  for run in finished_runs(study, out_dir):
    if run.stage == study_lib.PRETRAIN:
      rows, lengths, decode_rows = (study.budget.batch_size, study.feature_lengths,
                                    None)
    else:
      f = study.finetune
      rows, lengths, decode_rows = f.batch_size, f.feature_lengths, f.batch_size
    try:
      timed.append(prepare(run, rows, dict(lengths), decode_rows))
      log(f"timing: {run.name} compiled")
    except Exception as error:  # pylint: disable=broad-except
      message = (str(error).strip().splitlines() or [type(error).__name__])[0]
      entries[run.name] = {"error": f"{type(error).__name__}: {message}"}
      log(f"timing: {run.name} cannot be timed: {entries[run.name]['error']}")
  if timed:
    measure(timed, rounds)
  for subject in timed:
    entries[subject.name] = {"error": "", **subject.rates()}
  content = {
      "rounds": rounds, "calls_per_sample": CALLS_PER_SAMPLE,
      "machine": f"{platform.platform()}, {os.cpu_count()} CPU cores",
      "written": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": entries,
  }
  path = os.path.join(out_dir, TIMING_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(content, f, indent=2)
  os.replace(path + ".tmp", path)
  return content


def read_timing(out_dir: str) -> dict[str, dict]:
  """{run name: {"score_examples_per_second": .., "decode_tokens_per_second": ..,
  "error": ..}} from OUT/timing.json ({} if there is none)."""
  path = os.path.join(out_dir, TIMING_FILE)
  if not os.path.exists(path):
    return {}
  with open(path, encoding="utf-8") as f:
    return json.load(f).get("runs", {})
