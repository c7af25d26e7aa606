r"""What each variant costs, side by side: `python -m altup_t5.bench`.

  python -m altup_t5.bench --sizes small,tiny --steps 10 --json /tmp/bench.json
  python -m altup_t5.bench --sizes small --variants dense,altup --peer hf
  python -m altup_t5.bench --sizes small,base --dtype bfloat16 --decode_batch 1,8,32

For every size and variant, in ONE process: the median time of the real train step
(`trainer.Trainer`: forward, backward, Adafactor), of its forward pass alone (train
mode), of teacher-forced *scoring* (the eval-mode forward and metrics, no dropout:
`Predictor.score`, i.e. `model.loss_and_metrics(params, batch, None)` jitted, on the
bench batch, in examples/s), and of greedy decoding with the KV cache (at each
`--decode_batch`, that many copies of the first prompt, `--decode_tokens` new tokens,
forced to the full length); parameters; FLOPs per step, both XLA's cost analysis and
the *model FLOPs* counted here from the architecture (`model_flops`); achieved FLOP/s
as a fraction of a matmul peak measured in the same process and the same dtype
(`--dtype`: the activations' dtype; parameters stay float32); and memory. Every time
is also printed as a ratio to `dense` measured in the same run.

Scoring is the speed the studies' paper-style speedup is read against:
`altup_t5/studies/timing.py` scores a study's runs the same way (the same
`Predictor.score` on full-length rows of random ids).

Measurements are interleaved: each round times every variant once (in a rotating
order, with the matmul peak and the optional HF peer in the same round), so noise
from a shared machine hits all of them alike; the table shows medians over rounds.
Process CPU seconds per step are printed too: they move far less than wall time
when other jobs compete for the cores. Nothing here is a pass/fail check.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import os
import platform
import resource
import sys
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from altup_t5.bench import cpu_tuning
from altup_t5.inference import predictor as predictor_lib
from altup_t5.bench import hf_peer
from altup_t5.training import seq2seq
from altup_t5.model import flops
from altup_t5.model import network
from altup_t5.training import partitioning
from altup_t5.training import trainer
from altup_t5.model.config import SIZES, T5Config, Variant, config_for

VARIANTS = tuple(v.value for v in Variant)
DTYPES = ("float32", "bfloat16")
# The side of the square matmul whose speed is "peak": 2048 keeps a CPU round short;
# an accelerator finishes that in microseconds, where dispatch would dominate.
PEAK_MATMUL_SIZE = 2048  # on a CPU
PEAK_MATMUL_SIZE_ACCELERATOR = 8192
PEAK_REPEATS = 3  # matmuls timed per round


model_flops = flops.model_flops  # re-exported: reports and tests use bench.model_flops


# ---------------------------------------------------------------- settings

@dataclasses.dataclass(frozen=True)
class BenchSettings:
  sizes: tuple[str, ...] = ("small", "tiny")
  variants: tuple[str, ...] = VARIANTS  # dense is always measured (the reference)
  steps: int = 10  # timed rounds; every measurement is the median over them
  warmup: int = 2  # untimed rounds first (each function already ran once)
  batch: int = 2
  inputs_length: int = 512
  targets_length: int = 114
  decode_tokens: int = 64
  # Sequences decoded together, one measurement each (multiples of the data-parallel size).
  decode_batch: tuple[int, ...] = (1,)
  dtype: str = "float32"  # activations (and the peak matmul); parameters stay float32
  peer: str | None = None  # "hf": also time HuggingFace's T5 (torch)
  json_path: str | None = None
  seed: int = 0
  # Variants prepared (traced, compiled, run once) side by side: XLA compiles each
  # program on about one core, so a many-core accelerator host compiles 6 variants
  # in the time of 2. The timed rounds always run one thing at a time.
  compile_workers: int = 1


class _Parser(argparse.ArgumentParser):
  def error(self, message):  # one line and status 2, not argparse's usage block
    sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
    sys.exit(2)


def _names(text: str, allowed: Sequence[str], flag: str) -> tuple[str, ...]:
  names = tuple(n.strip() for n in text.split(",") if n.strip())
  unknown = [n for n in names if n not in allowed]
  if not names or unknown:
    raise ValueError(f"{flag}={text!r}: {'unknown ' + ', '.join(map(repr, unknown)) if unknown else 'empty'}; "
                     f"allowed: {','.join(allowed)}")
  return tuple(dict.fromkeys(names))  # drop repeats, keep order


def _batches(text: str) -> tuple[int, ...]:
  """`--decode_batch`: positive integers, comma-separated, each once."""
  parts = [p.strip() for p in text.split(",")]
  if not all(p.isdigit() and int(p) > 0 for p in parts):
    raise ValueError(f"--decode_batch={text!r} must be positive integers separated by "
                     "commas, e.g. 1,8,32")
  batches = tuple(int(p) for p in parts)
  repeated = sorted({b for b in batches if batches.count(b) > 1})
  if repeated:
    raise ValueError(f"--decode_batch={text!r} repeats {','.join(map(str, repeated))}")
  return batches


def parse_args(argv: Sequence[str] | None = None) -> BenchSettings:
  parser = _Parser(prog="python -m altup_t5.bench",
                   description=__doc__.split("\n\n")[0].split(": ")[0])
  parser.add_argument("--sizes", default="small,tiny", help=f"of {','.join(SIZES)}")
  parser.add_argument("--variants", default=",".join(VARIANTS),
                      help=f"of {','.join(VARIANTS)} (dense is always added)")
  parser.add_argument("--steps", type=int, default=10, help="timed rounds (>= 1)")
  parser.add_argument("--warmup", type=int, default=2, help="untimed rounds (>= 0)")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--lengths", default="512,114", help="inputs,targets lengths")
  parser.add_argument("--decode_tokens", type=int, default=64)
  parser.add_argument("--decode_batch", default="1",
                      help="sequences decoded together, a comma list timed one by one "
                      "(default 1), e.g. 1,8,32")
  parser.add_argument("--dtype", choices=DTYPES, default="float32",
                      help="activation dtype of the models and the peak matmul "
                      "(parameters stay float32)")
  parser.add_argument("--peer", choices=["hf"], default=None,
                      help="also time HuggingFace transformers' T5 (needs torch)")
  parser.add_argument("--json", default=None, help="also write every number here")
  parser.add_argument("--compile_workers", type=int, default=None,
                      help="variants compiled side by side before the timed rounds "
                      "(default: a quarter of the CPUs, at least 1)")
  args = parser.parse_args(argv)
  workers = args.compile_workers
  if workers is None:
    workers = max(1, (os.cpu_count() or 1) // 4)
  try:
    sizes = _names(args.sizes, tuple(SIZES), "--sizes")
    variants = _names(args.variants, VARIANTS, "--variants")
    decode_batch = _batches(args.decode_batch)
    lengths = args.lengths.split(",")
    if len(lengths) != 2 or not all(x.strip().isdigit() and int(x) > 0 for x in lengths):
      raise ValueError(f"--lengths={args.lengths!r} must be two positive integers "
                       "INPUTS,TARGETS, e.g. 512,114")
    for flag, value, low in (("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
                             ("--batch", args.batch, 1),
                             ("--decode_tokens", args.decode_tokens, 1),
                             ("--compile_workers", workers, 1)):
      if value < low:
        raise ValueError(f"{flag}={value} must be >= {low}")
  except ValueError as error:
    parser.error(str(error))
  if "dense" not in variants:
    variants = ("dense",) + variants
  return BenchSettings(sizes=sizes, variants=variants, steps=args.steps,
                       warmup=args.warmup, batch=args.batch,
                       inputs_length=int(lengths[0]), targets_length=int(lengths[1]),
                       decode_tokens=args.decode_tokens,
                       decode_batch=decode_batch, dtype=args.dtype, peer=args.peer,
                       json_path=args.json,
                       compile_workers=workers)


# ---------------------------------------------------------------- what is timed

@dataclasses.dataclass
class Subject:
  """One model under test: callables that each run one unit of work to completion,
  and the (wall seconds, process CPU seconds) samples of each."""
  name: str
  num_params: int
  model_flops: float  # per train step
  # "train_step", "forward", "score", "decode_<batch>" (`kinds`); each returns None,
  # or its own (wall, CPU) sample
  work: dict[str, Callable[[], tuple[float, float] | None]]
  xla: dict[str, float] = dataclasses.field(default_factory=dict)
  samples: dict[str, list[tuple[float, float]]] = dataclasses.field(default_factory=dict)
  # The last outputs of the work (e.g. "decoded": {batch: token ids}), for checks.
  outputs: dict[str, object] = dataclasses.field(default_factory=dict)

  def median(self, kind: str, index: int = 0) -> float:
    return float(np.median([s[index] for s in self.samples[kind]]))


def kinds(settings: BenchSettings) -> tuple[str, ...]:
  """The units of work timed for every subject, in the order of each round."""
  return hf_peer.KINDS + tuple(hf_peer.decode_kind(b) for b in settings.decode_batch)


def _process_cpu_seconds() -> float:
  t = os.times()
  return t.user + t.system


def _time(fn: Callable[[], tuple[float, float] | None]) -> tuple[float, float]:
  """(wall, CPU) seconds of `fn()`, or what `fn` returns: work done in another
  process (the HF peer) is timed there."""
  cpu, start = _process_cpu_seconds(), time.perf_counter()
  measured_elsewhere = fn()
  sample = (time.perf_counter() - start, _process_cpu_seconds() - cpu)
  return measured_elsewhere if isinstance(measured_elsewhere, tuple) else sample


def random_batch(cfg: T5Config, settings: BenchSettings) -> dict[str, np.ndarray]:
  """Full-length sequences (no padding) of random non-special ids."""
  rng = np.random.default_rng(settings.seed)
  shape_in = (settings.batch, settings.inputs_length)
  targets = rng.integers(2, cfg.vocab_size, (settings.batch, settings.targets_length))
  decoder_inputs = np.concatenate([np.zeros((settings.batch, 1)), targets[:, :-1]], 1)
  return {"encoder_input_tokens": rng.integers(2, cfg.vocab_size, shape_in).astype(np.int32),
          "decoder_input_tokens": decoder_inputs.astype(np.int32),
          "decoder_target_tokens": targets.astype(np.int32)}


def make_subject(cfg: T5Config, settings: BenchSettings, mesh) -> Subject:
  """Compiles the variant's train step, forward pass, scoring and greedy decoders."""
  model = seq2seq.Seq2SeqModel(network.Transformer(cfg))
  batch = random_batch(cfg, settings)
  engine = trainer.Trainer(model, trainer.OptimizerSettings(), mesh,
                           trainer.batch_spec(batch))
  box = {"state": engine.init_state(settings.seed)}
  device_batch = jax.device_put(batch, engine.batch_shardings)
  dropout_key = jax.random.PRNGKey(settings.seed)

  def train_step():
    box["state"], _ = engine.train_step(box["state"], device_batch, settings.seed)
    jax.block_until_ready(box["state"])

  # The train step's forward half: train mode (MoE's train capacity; dropout is 0).
  loss = jax.jit(lambda params, b: model.loss_and_metrics(params, b, dropout_key)[0])

  def forward():
    jax.block_until_ready(loss(box["state"].params, device_batch))

  # Scoring through the one predict path (as eval and the studies' timing score):
  # eval mode (MoE's eval capacity), no dropout rng.
  scorer = predictor_lib.Predictor(engine.placement, rows=settings.batch)

  def score():
    jax.block_until_ready(scorer.score(box["state"].params, device_batch))

  work = {"train_step": train_step, "forward": forward, "score": score}
  # Decoding through the same path (as eval and infer decode), `rows` copies of the
  # first prompt. eos_id = vocab_size can never be chosen, so every variant decodes
  # the full length.
  box["decoded"] = {}
  for rows in settings.decode_batch:
    predictor = predictor_lib.Predictor(engine.placement, rows=rows)
    prompt = jax.device_put(  # [rows, inputs_length]
        np.repeat(batch["encoder_input_tokens"][:1], rows, axis=0),
        engine.placement.batch_sharding(2))

    def decode(predictor=predictor, prompt=prompt, rows=rows):
      box["decoded"][rows] = jax.block_until_ready(predictor.decode_batch(
          box["state"].params, prompt, max_decode_length=settings.decode_tokens,
          eos_id=cfg.vocab_size))
    work[hf_peer.decode_kind(rows)] = decode
  for fn in work.values():
    fn()  # compiles: keep compilation out of every sample, warm-up or not
  params = jax.tree_util.tree_leaves(engine.abstract_state.params)
  return Subject(
      name=cfg.variant.value, num_params=sum(int(np.prod(p.shape)) for p in params),
      model_flops=model_flops(cfg, settings.batch, settings.inputs_length,
                              settings.targets_length),
      work=work, xla=engine.step_cost(), outputs=box)


def prepare_subjects(size: str, settings: BenchSettings, mesh, log) -> list[Subject]:
  """Every variant's subject, in order, `settings.compile_workers` at a time."""
  def prepare(variant: str) -> Subject:
    start = time.perf_counter()
    subject = make_subject(config_for(size, variant, dtype=settings.dtype), settings, mesh)
    log(f"  {variant}: ready in {time.perf_counter() - start:.0f} s")
    return subject
  with concurrent.futures.ThreadPoolExecutor(settings.compile_workers) as pool:
    return list(pool.map(prepare, settings.variants))


def peak_matmul_size() -> int:
  cpu = jax.devices()[0].platform == "cpu"
  return PEAK_MATMUL_SIZE if cpu else PEAK_MATMUL_SIZE_ACCELERATOR


def matmul_peak(dtype: str = "float32") -> Callable[[], None]:
  """A jitted [n, n] x [n, n] matmul in `dtype`: the machine's attainable FLOP/s in
  the dtype the models compute in."""
  n = peak_matmul_size()
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
  matmul = jax.jit(jnp.matmul)

  def run():
    jax.block_until_ready(matmul(a, a))
  run()
  return run


def measure(subjects: list[Subject], peak: Callable[[], None], settings: BenchSettings,
            log=print) -> list[float]:
  """Interleaved rounds; returns the peak matmul's wall times (seconds)."""
  peak_times = []
  for round_ in range(settings.warmup + settings.steps):
    timed = round_ >= settings.warmup
    shift = round_ % len(subjects)
    order = subjects[shift:] + subjects[:shift]  # no variant always goes first
    for _ in range(PEAK_REPEATS):
      wall, _ = _time(peak)
      if timed:
        peak_times.append(wall)
    for kind in kinds(settings):
      for subject in order:
        sample = _time(subject.work[kind])
        if timed:
          subject.samples.setdefault(kind, []).append(sample)
    log(f"  round {round_ + 1}/{settings.warmup + settings.steps}"
        f"{'' if timed else ' (warm-up)'} done")
  return peak_times


# ---------------------------------------------------------------- report

def summarize(subjects: list[Subject], peak_flops: float,
              settings: BenchSettings) -> list[dict]:
  """One dict of numbers per subject; ratios are to the subject named 'dense'."""
  dense = next(s for s in subjects if s.name == "dense")
  tokens = settings.batch * (settings.inputs_length + settings.targets_length)
  rows = []
  for s in subjects:
    step, fwd, score = (s.median(k) for k in ("train_step", "forward", "score"))
    row = {
        "variant": s.name, "params": s.num_params,
        "model_flops_per_step": s.model_flops,
        "xla_flops_per_step": s.xla.get("xla_flops_per_step"),
        "model_flops_ratio": s.model_flops / dense.model_flops,
        "step_seconds": step, "step_ratio": step / dense.median("train_step"),
        "step_cpu_seconds": s.median("train_step", 1),
        "step_cpu_ratio": s.median("train_step", 1) / dense.median("train_step", 1),
        "forward_seconds": fwd, "forward_ratio": fwd / dense.median("forward"),
        "score_seconds": score, "score_examples_per_second": settings.batch / score,
        "score_ratio": score / dense.median("score"),
        "decode": [{"batch": b, "seconds": s.median(hf_peer.decode_kind(b)),
                    "tokens_per_second": (settings.decode_tokens * b
                                          / s.median(hf_peer.decode_kind(b))),
                    "ratio": (s.median(hf_peer.decode_kind(b))
                              / dense.median(hf_peer.decode_kind(b)))}
                   for b in settings.decode_batch],
        "train_tokens_per_second": tokens / step,
        "model_flops_per_second": s.model_flops / step,
        "fraction_of_peak": s.model_flops / step / peak_flops,
    }
    row["time_over_flops_ratio"] = row["step_ratio"] / row["model_flops_ratio"]
    row["cpu_time_over_flops_ratio"] = row["step_cpu_ratio"] / row["model_flops_ratio"]
    row["samples"] = {kind: [list(x) for x in xs] for kind, xs in s.samples.items()}
    if s.xla:  # live bytes of the compiled step: its inputs (outputs reuse them,
      # the state is donated) plus XLA's temporaries
      row["step_memory_bytes"] = (s.xla.get("argument_size_in_bytes", 0.0)
                                  + s.xla.get("temp_size_in_bytes", 0.0))
    rows.append(row)
  return rows


def format_table(rows: list[dict]) -> str:
  decode_columns = "".join(f"| decode tok/s, batch {d['batch']} (×dense time) "
                           for d in rows[0]["decode"])
  header = ("| variant | params | model GFLOP/step (×dense) | XLA GFLOP/step "
            "| train step s (×dense) | CPU s/step (×dense) | time÷FLOP ratio: wall, CPU "
            "| forward s (×dense) | score ex/s (×dense time) " + decode_columns
            + "| train tok/s | % of peak | XLA step MB |")
  lines = [header, "|" + "---|" * (header.count("|") - 1)]
  for r in rows:
    xla = r["xla_flops_per_step"]
    memory = r.get("step_memory_bytes")
    lines.append(
        f"| {r['variant']} | {r['params'] / 1e6:.1f}M "
        f"| {r['model_flops_per_step'] / 1e9:.1f} ({r['model_flops_ratio']:.3f}×) "
        f"| {'-' if xla is None else f'{xla / 1e9:.1f}'} "
        f"| {r['step_seconds']:.3f} ({r['step_ratio']:.3f}×) "
        f"| {r['step_cpu_seconds']:.2f} ({r['step_cpu_ratio']:.3f}×) "
        f"| {r['time_over_flops_ratio']:.3f}, {r['cpu_time_over_flops_ratio']:.3f} "
        f"| {r['forward_seconds']:.3f} ({r['forward_ratio']:.3f}×) "
        f"| {r['score_examples_per_second']:.2f} ({r['score_ratio']:.3f}×) "
        + "".join(f"| {d['tokens_per_second']:.1f} ({d['ratio']:.3f}×) "
                  for d in r["decode"]) +
        f"| {r['train_tokens_per_second']:.0f} "
        f"| {100 * r['fraction_of_peak']:.1f}% "
        f"| {'-' if memory is None else f'{memory / 2**20:.0f}'} |")
  return "\n".join(lines)


# ---------------------------------------------------------------- the run

def run(settings: BenchSettings, log=print) -> dict:
  """Measures every size; returns (and logs) the tables and all numbers."""
  skip_peer = hf_peer.missing_requirement() if settings.peer == "hf" else None
  if skip_peer:
    log(skip_peer)
  mesh = partitioning.make_mesh()
  results = {"settings": dataclasses.asdict(settings),
             "environment": _environment(settings.dtype),
             "sizes": {}}
  load_before = os.getloadavg()
  for size in settings.sizes:
    log(f"[{size}] compiling {len(settings.variants)} variants "
        f"(batch {settings.batch}, lengths {settings.inputs_length}/"
        f"{settings.targets_length})")
    subjects = prepare_subjects(size, settings, mesh, log)
    peer = None
    if settings.peer == "hf" and not skip_peer:
      dense_cfg = config_for(size, "dense", dtype=settings.dtype)
      batch = random_batch(dense_cfg, settings)
      start = time.perf_counter()
      peer = hf_peer.PeerProcess(dense_cfg, batch["encoder_input_tokens"],
                                 batch["decoder_target_tokens"], settings.decode_tokens,
                                 settings.decode_batch, settings.seed)
      subjects.append(Subject(
          name=peer.name, num_params=peer.num_params, model_flops=subjects[0].model_flops,
          work={kind: functools.partial(peer.run, kind) for kind in kinds(settings)}))
      log(f"  {peer.name}: ready in {time.perf_counter() - start:.0f} s "
          f"(a child process: {peer.versions})")
    peak = matmul_peak(settings.dtype)
    peak_times = measure(subjects, peak, settings, log)
    peak_flops = 2 * peak_matmul_size() ** 3 / float(np.median(peak_times))
    if peer:
      peer.close()
    rows = summarize(subjects, peak_flops, settings)
    results["sizes"][size] = {"peak_flops": peak_flops, "peak_dtype": settings.dtype,
                              "peak_matmul_size": peak_matmul_size(), "rows": rows,
                              "peer": peer.versions if peer else None}
    log("")
    log(_size_report(size, rows, peak_flops, settings, peer))
    log("")
    del subjects
  rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
  results["process_max_rss_bytes"] = rss
  results["load_average"] = {"before": load_before, "after": os.getloadavg()}
  log(f"process max RSS {rss / 2**30:.2f} GiB; load average (1, 5, 15 min) "
      f"{_load(load_before)} before, {_load(os.getloadavg())} after; "
      f"{results['environment']['summary']}")
  if settings.json_path:
    with open(settings.json_path, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
    log(f"wrote {settings.json_path}")
  return results


def _load(values) -> str:
  return "/".join(f"{v:.1f}" for v in values)


def _environment(dtype: str) -> dict:
  devices = jax.devices()
  tuning = "; ".join(cpu_tuning.applied) or "none"
  summary = (f"jax {jax.__version__} on {len(devices)} {devices[0].platform} "
             f"device(s) ({devices[0].device_kind}), {os.cpu_count()} CPUs "
             f"({platform.machine()}), {dtype} activations, float32 parameters; "
             f"CPU tuning (altup_t5/bench/cpu_tuning.py): {tuning}")
  return {"summary": summary, "jax": jax.__version__, "platform": devices[0].platform,
          "device_kind": devices[0].device_kind, "dtype": dtype,
          "devices": len(devices), "cpus": os.cpu_count(), "cpu_tuning": tuning}


def _size_report(size: str, rows: list[dict], peak_flops: float,
                 settings: BenchSettings, peer) -> str:
  dense = rows[0]
  lines = [
      f"## {size}: batch {settings.batch}, lengths {settings.inputs_length}/"
      f"{settings.targets_length}, {settings.dtype} activations, medians of "
      f"{settings.steps} interleaved rounds",
      "",
      format_table(rows),
      "",
      f"(×dense) = time ratio to dense in this run (> 1 is slower); time÷FLOP ratio = "
      f"train-step time ratio (wall, then process CPU) / model-FLOP ratio (1.000 = no "
      f"overhead beyond arithmetic). CPU seconds hardly move when other jobs share the "
      f"cores; wall seconds do. Scoring: teacher-forced, eval mode, no dropout, "
      f"the bench batch ({settings.batch} rows), as the studies' timing scores. "
      f"Decoding: batch {','.join(map(str, settings.decode_batch))}, "
      f"{settings.decode_tokens} new tokens, greedy, KV cache; train tok/s counts "
      f"inputs + targets.",
      f"{settings.dtype} matmul peak ({peak_matmul_size()}³, median of "
      f"{PEAK_REPEATS * settings.steps}): {peak_flops / 1e9:.1f} GFLOP/s; dense "
      f"train step: {dense['model_flops_per_second'] / 1e9:.1f} GFLOP/s = "
      f"{100 * dense['fraction_of_peak']:.1f}% of it.",
  ]
  if peer:
    lines.append(peer_summary(rows, peer.versions))
  return "\n".join(lines)


def peer_summary(rows: list[dict], versions: str) -> str:
  """Our dense row (first) against the peer's (last), as throughput ratios."""
  dense, hf = rows[0], rows[-1]
  decode = ", ".join(
      f"{ours['tokens_per_second'] / theirs['tokens_per_second']:.2f}× at batch "
      f"{ours['batch']}" for ours, theirs in zip(dense["decode"], hf["decode"]))
  return (f"HF peer ({versions}; Adafactor from transformers): our dense train "
          f"step {dense['train_tokens_per_second'] / hf['train_tokens_per_second']:.2f}× "
          f"its tokens/s; our scoring "
          f"{dense['score_examples_per_second'] / hf['score_examples_per_second']:.2f}× "
          f"its examples/s; our greedy decoding {decode} its `generate` tokens/s.")


def main(argv: Sequence[str] | None = None) -> None:
  settings = parse_args(sys.argv[1:] if argv is None else argv)
  run(settings, log=lambda line: print(line, flush=True))

