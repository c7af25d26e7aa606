r"""Run a study side by side and report it: the paper's table, cost, speedup, plots.

  python -m altup_t5.compare configs/cpu_small.toml --out /tmp/cpu_small
  python -m altup_t5.compare configs/cpu_small.toml --out /tmp/cpu_small --dry_run
  python -m altup_t5.compare configs/cpu_small.toml --out /tmp/cpu_small \
      --report_only --doc docs/REPRODUCTION.md

Each run of the study (sizes x variants x seeds, see `altup_t5.studies.study`) trains
in its own `python -m altup_t5.train` process with MODEL_DIR =
OUT/<size>_<variant>_seed<seed>, so a crash is contained: it is recorded (exit code and
the error's last line) and the other runs go on. With a [finetune] table, every
finished pretraining run is then fine-tuned (OUT/<...>_finetune). Then the timing
phase (`studies/timing.py`) measures every finished run's inference speed in a child
process of its own. Rerunning the same command continues an interrupted study:
finished runs are skipped, a half-finished run resumes from its checkpoints, and the
timing phase runs again only if a finished run has no timing yet. Everything that can
be checked -- the study file, sizes, variants, seeds, every run's gin bindings, the
tasks and the fine-tuning task's metrics -- is checked before the first run starts
(exit status 2, one line).

Writes OUT/report.md, OUT/results.csv (one row per run), OUT/groups.csv (intervals
over seeds), OUT/curves.csv, OUT/timing.json and PNG plots; with --doc, a
REPRODUCTION.md skeleton with the plots copied next to it.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import hashlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Sequence

from altup_t5 import resources
from altup_t5.studies import plots
from altup_t5.studies import report
from altup_t5.studies import study as study_lib
from altup_t5.studies import results as study_results
from altup_t5.studies import timing
from altup_t5.studies.results import FAILED, FINISHED, INTERRUPTED, NOT_RUN

PROG = "python -m altup_t5.compare"
TRAIN_MODULE = "altup_t5.train"


class _UsageError(ValueError):
  pass


# --------------------------------------------------------------------- checks
def check_runs(study: study_lib.Study, runs: Sequence[study_lib.Run]) -> None:
  """Parse every run's gin configuration and build its network config, then look
  the task up (gin files may import the modules that register it)."""
  import gin  # pylint: disable=g-import-not-at-top
  from altup_t5 import cli  # pylint: disable=g-import-not-at-top
  from altup_t5.model import config  # pylint: disable=g-import-not-at-top
  try:
    for run in runs:
      files, paths, bindings = cli.parse_flags(run.flags(), PROG)
      try:
        cli.parse_gin(files, paths, bindings)
        gin.get_configurable(config.config_for)()
      except ValueError as error:  # cli.UsageError, or a T5Config the run cannot build
        message = str(error).strip().splitlines()[0]
        raise _UsageError(f"run {run.name}: {message}") from None
  finally:
    gin.clear_config()

  from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
  names = tasks.registered_names()
  if study.task not in names:
    raise _UsageError(f"study {study.path}: [task] name {study.task!r} is not a "
                      f"registered task or mixture; allowed: {', '.join(names)}")
  if study.finetune is not None:
    name = study.finetune.task
    if name not in names:
      raise _UsageError(f"study {study.path}: [finetune] task {name!r} is not a "
                        f"registered task or mixture; allowed: {', '.join(names)}")
    members = tasks.get_task_or_mixture(name)
    members = getattr(members, "tasks", [members])
    if not any(t.metric_fns for t in members):
      raise _UsageError(f"study {study.path}: [finetune] task {name!r} has no metrics "
                        "to evaluate its decoded outputs with; choose a labelled task")


def _select(option: str | None, allowed: Sequence[str], what: str):
  if option is None:
    return None
  chosen = [name.strip() for name in option.split(",") if name.strip()]
  unknown = [name for name in chosen if name not in allowed]
  if unknown or not chosen:
    raise _UsageError(f"--{what}: {', '.join(map(repr, unknown)) or 'nothing'} is not "
                      f"in the study; allowed: {', '.join(allowed)}")
  return chosen


# --------------------------------------------------------------------- one run
def display_command(run: study_lib.Run) -> str:
  return shlex.join(["python", "-m", TRAIN_MODULE, *run.flags()])


class _Interrupted(Exception):
  pass


class _Forwarder:
  """SIGTERM to `compare` (a preempted VM, `kill`) is passed to the training process,
  which saves a checkpoint and exits; the study then stops after that run."""

  def __init__(self):
    self.child = None
    self.requested = False

  def __enter__(self):
    self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def __exit__(self, *exc):
    signal.signal(signal.SIGTERM, self._previous)

  def _handle(self, signum, frame):
    del frame
    self.requested = True
    if self.child is not None and self.child.poll() is None:
      self.child.send_signal(signum)


# A tqdm bar ("33%|███▎      | 2/6 [00:40<01:14, ...]") that an error line may follow.
_PROGRESS_BAR = re.compile(r"^\s*\d+%\|[^|]*\|\s*\d+/\d+\s*\[[^\]]*\]")


def error_line(output_tail: str, returncode: int) -> str:
  """The error of a failed training process: the last line of its output that reads
  like one (the trainer's one-line error, an exception), else its last line."""
  if returncode < 0:
    return f"killed by signal {signal.Signals(-returncode).name}"
  lines = [_PROGRESS_BAR.sub("", l).strip()
           for l in output_tail.replace("\r", "\n").splitlines()]
  lines = [l for l in lines if l]
  markers = ("error:", "stopped:", "Error", "Exception", "Traceback")
  for line in reversed(lines):
    if any(m in line for m in markers):
      return line
  return lines[-1] if lines else f"exit status {returncode}"


def code_digest() -> str:
  """A short digest of the library's sources: a study whose runs trained with
  different code (edited mid-study) is not a fair comparison, and the report says so."""
  digest = hashlib.sha256()
  package = os.path.dirname(os.path.abspath(__file__))
  for root, dirs, files in os.walk(package):
    dirs.sort()
    for name in sorted(f for f in files if f.endswith(".py")):
      path = os.path.join(root, name)
      digest.update(os.path.relpath(path, package).encode())
      with open(path, "rb") as f:
        digest.update(f.read())
  return digest.hexdigest()[:12]


COMPILATION_CACHE = ".jax_cache"  # under OUT: shared by the study's processes


def child_env(out_dir: str) -> dict[str, str]:
  """The environment of a study's child processes. Runs that differ only in their
  seed compile the same programs, so JAX's persistent compilation cache lets every
  seed after the first load them instead (measured at `tiny`: a 20-step run's wall
  time 39.5 s -> 24.6 s). A cached executable is the one compiled, so the numbers
  are unchanged. A JAX_COMPILATION_CACHE_DIR the user set wins."""
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  env.setdefault("JAX_COMPILATION_CACHE_DIR",
                 os.path.join(os.path.abspath(out_dir), COMPILATION_CACHE))
  return env


def train_run(run: study_lib.Run, study: study_lib.Study, forwarder: _Forwarder) -> dict:
  """Train one run in its own process, passing its output (progress bar included)
  through to stderr and into MODEL_DIR/train.log; returns its status record."""
  os.makedirs(run.model_dir, exist_ok=True)
  command = [sys.executable, "-m", TRAIN_MODULE, *run.flags()]
  env = child_env(os.path.dirname(run.model_dir))
  resumed_from = study_results.last_checkpoint_step(run.model_dir)
  digest = code_digest()  # the code the training process is about to import
  start = time.time()
  tail = collections.deque(maxlen=200)  # recent output chunks, for the error line
  decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
  with open(os.path.join(run.model_dir, "train.log"), "a", encoding="utf-8") as log:
    log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {display_command(run)}\n")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=env)
    forwarder.child = proc
    try:
      while chunk := os.read(proc.stdout.fileno(), 65536):
        text = decoder.decode(chunk)
        sys.stderr.write(text)
        sys.stderr.flush()
        log.write(text)
        tail.append(text)
    finally:
      # Waiting with wait4 also gives the process's peak resident memory.
      _, wait_status, usage = os.wait4(proc.pid, 0)
      proc.returncode = os.waitstatus_to_exitcode(wait_status)
      proc.stdout.close()
      forwarder.child = None
  complete = study_results.is_complete(run.model_dir, run.task, run.train_steps)
  if proc.returncode == 0 and complete:
    status, error = FINISHED, ""
  elif proc.returncode == 0:  # SIGTERM: saved and exited early
    status, error = INTERRUPTED, "stopped before the last step; rerun to resume"
  else:
    status, error = FAILED, error_line("".join(tail), proc.returncode)
  record = {
      "status": status, "error": error, "returncode": proc.returncode,
      "train_steps": run.train_steps, "resumed_from_step": resumed_from,
      "wall_seconds": time.time() - start,
      "peak_rss_bytes": usage.ru_maxrss * 1024,  # Linux reports KiB
      "flags": run.flags(), "code_digest": digest,
      "ended": time.strftime("%Y-%m-%d %H:%M:%S"),
  }
  study_results.write_status(run.model_dir, record)
  return record


def _finished(run: study_lib.Run) -> bool:
  return (study_results.read_status(run.model_dir).get("status") == FINISHED and
          study_results.is_complete(run.model_dir, run.task, run.train_steps))


def _state(run: study_lib.Run) -> tuple[bool, str]:
  """(finished already?, a few words on where the run stands)."""
  if _finished(run):
    flags = study_results.read_status(run.model_dir).get("flags")
    note = "" if flags == run.flags() else (
        " (with other flags than the study's now; delete its directory to redo it)")
    return True, "finished earlier, skipped" + note
  step = study_results.last_checkpoint_step(run.model_dir)
  if step:
    return False, f"resumed at step {step} of {run.train_steps}"
  return False, f"new, {run.train_steps} steps"


def _head(i: int, n: int, run: study_lib.Run) -> str:
  stage = " finetune" if run.stage == study_lib.FINETUNE else ""
  return f"[{i}/{n}] {run.size} {run.variant} seed {run.seed}{stage}"


def _pretraining_of(run: study_lib.Run) -> str:
  return run.model_dir[:-len("_finetune")]


def _minutes(seconds: float) -> str:
  return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# --------------------------------------------------------------------- study
def run_study(study: study_lib.Study, runs: Sequence[study_lib.Run]) -> bool:
  """Train every run not finished yet (pretraining runs first); True if all finish.
  A fine-tuning run whose pretraining did not finish is not started."""
  all_finished, start = True, time.time()
  with _Forwarder() as forwarder:
    for i, run in enumerate(runs, 1):
      head = _head(i, len(runs), run)
      finished, where = _state(run)
      if finished:
        print(f"{head}: {where}", flush=True)
        continue
      if run.stage == study_lib.FINETUNE:
        pretraining = study_results.read_status(_pretraining_of(run)).get("status")
        if pretraining != FINISHED:
          all_finished = False
          reason = f"not started: its pretraining run is {pretraining or NOT_RUN}"
          study_results.write_status(run.model_dir, {
              "status": NOT_RUN, "error": reason, "flags": run.flags()})
          print(f"{head}: {reason}", flush=True)
          continue
      print(f"{head}: running ({where}); study time so far "
            f"{_minutes(time.time() - start)}", flush=True)
      try:
        record = train_run(run, study, forwarder)
      except KeyboardInterrupt:
        study_results.write_status(run.model_dir, {
            "status": INTERRUPTED, "error": "interrupted (Ctrl-C); rerun to resume",
            "flags": run.flags()})
        raise _Interrupted() from None
      took = _minutes(record["wall_seconds"])
      if record["status"] == FINISHED:
        result = study_results.read_run(run)
        accuracy = result.final.accuracy if result.final else float("nan")
        print(f"{head}: finished in {took}, held-out accuracy {100 * accuracy:.2f}%",
              flush=True)
      else:
        all_finished = False
        print(f"{head}: {record['status']} (exit {record['returncode']}) after "
              f"{took}: {record['error']}", flush=True)
      if forwarder.requested:
        print(f"{PROG}: SIGTERM: stopping after {run.name}; rerun to continue",
              flush=True)
        return False
  return all_finished


def needs_timing(study: study_lib.Study, out_dir: str) -> bool:
  """Whether a finished run has no timing yet (or its timing failed)."""
  timed = timing.read_timing(out_dir)
  return any(timed.get(r.name, {}).get("error", "missing")
             for r in timing.finished_runs(study, out_dir))


def run_timing(study_path: str, out_dir: str, rounds: int) -> str:
  """The timing phase in a child process (a quiet process with only the timed models
  in it); returns "" or the error line of a failed phase."""
  command = [sys.executable, "-m", "altup_t5.compare", study_path, "--out", out_dir,
             "--timing_only", "--rounds", str(rounds)]
  print(f"timing phase: {shlex.join(command[1:])}", flush=True)
  proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        text=True, check=False, env=child_env(out_dir))
  sys.stderr.write(proc.stdout)
  return "" if proc.returncode == 0 else error_line(proc.stdout, proc.returncode)


def _attach_timing(results, out_dir: str, phase_error: str) -> None:
  timed = timing.read_timing(out_dir)
  for r in results:
    entry = timed.get(r.name)
    if r.status != FINISHED:
      continue
    if entry is None:
      r.timing_error = f"timing phase failed: {phase_error}" if phase_error else \
          "not timed"
      continue
    r.timing_error = entry.get("error", "")
    r.score_examples_per_second = entry.get("score_examples_per_second")
    r.decode_tokens_per_second = entry.get("decode_tokens_per_second")


def write_outputs(study: study_lib.Study, out_dir: str, doc: str | None,
                  timing_error: str = "") -> list[study_results.RunResult]:
  runs = study.all_runs(out_dir)
  metrics = study.finetune.metrics if study.finetune else ()
  results = [study_results.read_run(r, metrics) for r in runs]
  study_results.add_speedups(results)
  _attach_timing(results, out_dir, timing_error)
  commands = [display_command(r) for r in runs]
  os.makedirs(out_dir, exist_ok=True)
  figures = plots.plot_curves(results, out_dir, study.name)
  report.write_report(study, results, out_dir, commands, figures)
  if doc:
    study_command = shlex.join([*PROG.split(), study.path, "--out", out_dir])
    doc_command = shlex.join([*PROG.split(), study.path, "--out", out_dir,
                              "--report_only", "--doc", doc])
    # One seed's commands: the others differ only in RANDOM_SEED and MODEL_DIR.
    first_seed = [display_command(r) for r in runs if r.seed == runs[0].seed]
    report.write_reproduction_doc(study, results, out_dir, doc, first_seed, figures,
                                  study_command, doc_command)
  return results


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog=PROG, description="Train a study's runs side by side and report them.",
      epilog="Example: python -m altup_t5.compare configs/cpu_small.toml "
             "--out /tmp/cpu_small")
  parser.add_argument("study", help="study file, e.g. configs/cpu_small.toml")
  parser.add_argument("--out", required=True,
                      help="directory for the runs (OUT/<size>_<variant>) and the report")
  parser.add_argument("--only", metavar="VARIANTS",
                      help="comma-separated variants to train (the report covers all)")
  parser.add_argument("--sizes", metavar="SIZES",
                      help="comma-separated sizes to train (the report covers all)")
  parser.add_argument("--dry_run", action="store_true",
                      help="check the study and print its runs and commands; train nothing")
  parser.add_argument("--report_only", action="store_true",
                      help="train nothing; write the report from OUT's run directories")
  parser.add_argument("--doc", metavar="PATH",
                      help="also write a REPRODUCTION.md skeleton there, plots next to it")
  parser.add_argument("--timing_only", action="store_true",
                      help="train nothing; time every finished run into OUT/timing.json")
  parser.add_argument("--skip_timing", action="store_true",
                      help="train, but leave the timing phase to a later call (e.g. "
                           "while another `--only` process still trains on the cores)")
  parser.add_argument("--rounds", type=int, default=5,
                      help="timing rounds, each timing every run once (default 5)")
  return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  args = parse_args(argv)
  # Absolute, so every run's MODEL_DIR is unambiguous.
  out_dir = os.path.abspath(args.out)
  try:
    if "://" in args.out:
      # The study streams each run's log into OUT and keeps its status files there,
      # which object stores cannot append to.
      raise _UsageError(f"--out={args.out!r}: must be a directory on a file system; for "
                        "a bucket, mount it (e.g. gcsfuse) and pass the mount point")
    args.study = resources.find_config(args.study)  # or the installed package's copy
    study = study_lib.load_study(args.study)
    variants = _select(args.only, study.variants, "only")
    sizes = _select(args.sizes, study.sizes, "sizes")
    runs = study.all_runs(out_dir, sizes=sizes, variants=variants)
    if args.rounds < 1:
      raise _UsageError(f"--rounds={args.rounds} must be >= 1")
    if not (args.report_only or args.timing_only):
      check_runs(study, runs)
  except (study_lib.StudyError, _UsageError) as error:
    print(f"{PROG}: error: {error}", file=sys.stderr)
    return 2

  if args.dry_run:
    for i, run in enumerate(runs, 1):
      print(f"{_head(i, len(runs), run)}: {_state(run)[1]}\n"
            f"  {display_command(run)}")
    return 0
  if args.timing_only:
    timing.time_study(study, out_dir, args.rounds)
    return 0

  ok, timing_error = True, ""
  if not args.report_only:
    os.makedirs(out_dir, exist_ok=True)
    shutil.copyfile(args.study, os.path.join(out_dir, "study.toml"))  # the record
    try:
      ok = run_study(study, runs)
    except _Interrupted:
      print(f"{PROG}: interrupted; rerun the same command to continue", file=sys.stderr)
      return 130
    if needs_timing(study, out_dir) and not args.skip_timing:
      timing_error = run_timing(args.study, out_dir, args.rounds)
  results = write_outputs(study, out_dir, args.doc, timing_error)
  print(f"\n{report.accuracy_table(results)}\n\nReport: "
        f"{os.path.join(out_dir, 'report.md')}" +
        (f"; reproduction notes: {args.doc}" if args.doc else ""), flush=True)
  return 0 if ok else 1


if __name__ == "__main__":
  sys.exit(main())
