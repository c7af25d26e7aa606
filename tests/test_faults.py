"""Bad input and faults, tried systematically: every misuse is one line and exit
status 2 before any work; every fault is survived with nothing lost. Each test's
name says the try; README's "Behaviour worth knowing" lists what the suite proves."""

import json
import os
import random
import signal
import subprocess
import time

import pytest

import toy_tasks  # pylint: disable=unused-import  (registers toy_reverse)
from test_train import (ENV, TOY_GIN, command, final_params, finalized, run_in_process,
                        saved_steps, tree_bytes)
from corpus_fixtures import with_archive
from test_local_corpus import fake_archive  # pylint: disable=unused-import  (a fixture)
from altup_t5 import cli
from altup_t5 import errors
from altup_t5.data import local_corpus
from altup_t5.data import vocabularies
from altup_t5.jobs import train as train_lib

QUICKSTART = "experiments/quickstart.gin"


def one_line_exit_2(capsys, run) -> str:
  with pytest.raises(SystemExit) as exit_info:
    run()
  err = capsys.readouterr().err.strip()
  assert exit_info.value.code == 2, err
  assert len(err.splitlines()) == 1, err
  return err


# ------------------------------------------------------------------ bad flags and values

@pytest.mark.parametrize("flags, message", [
    # a misspelt macro, named with the closest used names
    (("--gin.TRAIN_STEP=10",), "`TRAIN_STEP` is bound but never used; did you mean "
                              "`TRAIN_STEPS`"),
    (("--gin.BATCH_SIZ=4",), "did you mean `BATCH_SIZE`?"),
    (("--gin.valdation/input_pipeline.DataSettings.batch_size=4",),
     "`valdation/input_pipeline.DataSettings.batch_size` binds a parameter of "
     "`DataSettings`, which this configuration never calls"),
    # values of the wrong type or range
    (('--gin.BATCH_SIZE="abc"',), "batch_size='abc' must be an integer >= 1"),
    (("--gin.BATCH_SIZE=abc",), "batch_size='abc' must be an integer >= 1"),
    (("--gin.BATCH_SIZE=0",), "batch_size=0 must be >= 1"),
    (("--gin.BATCH_SIZE=2.5",), "batch_size=2.5 must be an integer >= 1"),
    (("--gin.TRAIN_STEPS=-5",), "TRAIN_STEPS=-5 must be >= 1"),
    (("--gin.TRAIN_STEPS='ten'",), "TRAIN_STEPS='ten' must be an integer >= 1"),
    (('--gin.EVAL_PERIOD="often"',), "eval period='often' must be an integer >= 1"),
    (("--gin.CHECKPOINT_PERIOD=0",), "checkpoint period=0 must be >= 1"),
    (("--gin.LOG_PERIOD=x",), "LOG_PERIOD='x' must be an integer >= 1"),
    (("--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': -1}",),
     "task_feature_lengths['targets']=-1 must be >= 1"),
    (("--gin.TASK_FEATURE_LENGTHS=64",), "task_feature_lengths=64 must be a dict"),
    (("--gin.TASK_FEATURE_LENGTHS={inputs: 128",), "gin configuration error"),
    (("--gin.TASK_FEATURE_LENGTHS={'inputs': 128",), "gin configuration error"),
    (("--gin.train.MeshSettings.model=0",), "mesh model=0 must be >= 1"),
    (("--gin.train.MeshSettings.data='two'",), "mesh data='two' must be an integer"),
    (("--gin.optimizer.OptimizerSettings.base_learning_rate='fast'",),
     "base_learning_rate='fast' must be a number > 0"),
    (("--gin.optimizer.OptimizerSettings.base_learning_rate=-1.0",),
     "base_learning_rate=-1.0 must be a number > 0"),
    (("--gin.DROPOUT_RATE=1.5",), "dropout_rate=1.5 must be in [0, 1)"),
    (("--gin.DROPOUT_RATE='none'",), "dropout_rate='none' must be a number"),
    (("--gin.config_for.size='huge'",), "size='huge' is not one of 'tiny'"),
    (("--gin.config_for.variant='altupp'",), "variant='altupp' is not one of 'dense'"),
    (("--gin.ALTUP_K=1",), "altup_k=1 must be >= 2"),
    (("--gin.ALTUP_K='two'",), "altup_k='two' must be an integer"),
    (("--gin.MODEL_DIR=''",), "MODEL_DIR is empty"),
    # flags
    (("--steps=3",), "unrecognized argument '--steps=3'"),
    (("--gin.TRAIN_STEPS",), "bad flag '--gin.TRAIN_STEPS': use --gin.NAME=VALUE"),
    (("--gin_file",), "expected one argument"),
])
def test_bad_flags_and_values_are_one_line_and_exit_status_2(tmp_path, capsys, flags,
                                                             message):
  # The toy configuration with the quickstart model's knobs (ALTUP_K, DROPOUT_RATE).
  model_dir = tmp_path / "run"
  argv = [f"--gin_file={TOY_GIN}", "--gin_file=models/altup.gin",
          f"--gin.MODEL_DIR={model_dir}", *flags]
  err = one_line_exit_2(capsys, lambda: cli.run(train_lib.train, argv, prog="train"))
  assert message in err, err
  assert err.startswith("train: error: ")
  assert not model_dir.exists()  # no work started


def test_unused_bindings_are_allowed_with_the_escape_hatch(tmp_path, monkeypatch):
  monkeypatch.setenv(cli.ALLOW_UNUSED_ENV, "1")
  last = run_in_process(tmp_path / "run", "--gin.TRAIN_STEPS=1", "--gin.NOT_USED=3")
  assert last and saved_steps(tmp_path / "run" / "checkpoints") == [1]


@pytest.mark.parametrize("name, required, unused", [
    ("quickstart", ["MODEL_DIR='/unused'"], []),
    # Fine-tuning evaluates the whole validation split (EvalSettings.steps = None), so
    # the EVAL_STEPS it inherits binds nothing: binding it is refused.
    ("quickstart_finetune", ["MODEL_DIR='/unused'", "INITIAL_CHECKPOINT_PATH='/x'"],
     ["EVAL_STEPS"]),
    ("quickstart_eval", ["CHECKPOINT_PATH='/x'", "EVAL_OUTPUT_DIR='/x'"], []),
    ("quickstart_infer", ["CHECKPOINT_PATH='/x'", "INFER_OUTPUT='/x'"], []),
])
def test_every_macro_of_a_real_gin_file_counts_as_used(name, required, unused):
  """No false alarms on the project's own files: every macro they define and use is
  bindable; one they define but never use is refused."""
  files = [f"experiments/{name}.gin"]
  cli.parse_gin(files, [], required)
  import gin  # pylint: disable=g-import-not-at-top
  macros = [k[0] for k in gin.config._CONFIG if k[1] == "gin.macro"]  # pylint: disable=protected-access
  assert "BATCH_SIZE" in macros and "ALTUP_K" in macros
  values = {m: gin.query_parameter(f"{m}/gin.macro.value") for m in macros}
  bindings = [f"{m} = {v!r}" for m, v in values.items()
              if f"{m} =" not in " ".join(required) and not hasattr(v, "selector")
              and m not in unused]
  cli.parse_gin(files, [], [*required, *bindings])  # does not raise
  for macro in unused:
    with pytest.raises(cli.UsageError, match=f"`{macro}` is bound but never used"):
      cli.parse_gin(files, [], [*required, f"{macro} = 3"])


def test_validation_errors_are_setting_errors_and_library_value_errors_are_not():
  from altup_t5.model import config  # pylint: disable=g-import-not-at-top
  with pytest.raises(errors.SettingError, match="size='huge' is not one of"):
    config.config_for("huge")
  assert issubclass(errors.SettingError, ValueError)


# ------------------------------------------------------------------ checkpoints

def _watch_for_a_checkpoint_being_written(directory, proc, deadline):
  """Poll until orbax's temporary step directory appears (a save in progress)."""
  while proc.poll() is None and time.time() < deadline:
    if os.path.isdir(directory) and any("tmp" in n for n in os.listdir(directory)):
      return True
    time.sleep(0.005)
  return False


KILL_FLAGS = ("--gin.TRAIN_STEPS=12", "--gin.CHECKPOINT_PERIOD=2")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  """The parameters of the run that nothing interrupts."""
  model_dir = tmp_path_factory.mktemp("straight")
  subprocess.run(command(model_dir, *KILL_FLAGS), env=ENV, check=True,
                 capture_output=True)
  return final_params(model_dir)


def _finish_and_compare(model_dir, uninterrupted):
  restart = subprocess.run(command(model_dir, *KILL_FLAGS), env=ENV, capture_output=True,
                           text=True)
  assert restart.returncode == 0, restart.stderr[-2000:]
  step, params = final_params(model_dir)
  assert step == uninterrupted[0] == 12
  assert tree_bytes(params) == tree_bytes(uninterrupted[1])


@pytest.mark.slow
def test_sigkill_while_a_checkpoint_is_written_then_the_rerun_is_bitwise_equal(
    tmp_path, uninterrupted):
  killed = tmp_path / "killed"
  proc = subprocess.Popen(command(killed, *KILL_FLAGS), env=ENV,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  seen = _watch_for_a_checkpoint_being_written(killed / "checkpoints", proc,
                                               time.time() + 300)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert seen, "no temporary checkpoint directory was seen before the run ended"
  assert not finalized(killed, 12)
  _finish_and_compare(killed, uninterrupted)


@pytest.mark.slow
def test_sigkill_at_random_moments_then_the_rerun_is_bitwise_equal(tmp_path,
                                                                  uninterrupted):
  """Three kills at random moments of training (seeded), one run after another on the
  same MODEL_DIR; with the kill during a checkpoint write (above) and the one right
  after a checkpoint (test_train), five moments in all."""
  rng = random.Random(16)
  killed = tmp_path / "killed"
  for _ in range(3):
    proc = subprocess.Popen(command(killed, *KILL_FLAGS), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = killed / "metrics.jsonl"
    lines = metrics.read_text().count("\n") if metrics.exists() else 0
    deadline = time.time() + 300
    # Wait for one more logged step (training is under way), then a random while.
    while proc.poll() is None and time.time() < deadline and not (
        metrics.exists() and metrics.read_text().count("\n") > lines):
      time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  _finish_and_compare(killed, uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_and_exits_0_within_30_seconds(tmp_path):
  model_dir = tmp_path / "run"
  proc = subprocess.Popen(command(model_dir, "--gin.TRAIN_STEPS=100000",
                                  "--gin.CHECKPOINT_PERIOD=100000"),
                          env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  metrics = model_dir / "metrics.jsonl"
  deadline = time.time() + 300
  while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.05)
  sent = time.time()
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert time.time() - sent < 30
  assert proc.returncode == 0, out[-2000:]
  (saved,) = saved_steps(model_dir / "checkpoints")
  assert f"SIGTERM: saved step {saved}" in out


def test_garbled_checkpoint_metadata_falls_back_with_one_warning(tmp_path, capsys):
  model_dir = tmp_path / "run"
  run_in_process(model_dir, "--gin.TRAIN_STEPS=4")
  metadata = [p for p in (model_dir / "checkpoints" / "4").rglob("*METADATA*")
              if p.is_file()]
  assert metadata
  for path in metadata:
    path.write_bytes(b"\x00garbage{not json")
  capsys.readouterr()
  run_in_process(model_dir, "--gin.TRAIN_STEPS=6")
  text = "".join(capsys.readouterr())
  warnings = [l for l in text.splitlines() if l.startswith("WARNING: checkpoint")]
  assert len(warnings) == 1 and "checkpoint 4" in warnings[0] and "unreadable" in warnings[0]
  assert "resumed from step 2" in text
  assert saved_steps(model_dir / "checkpoints")[-1] == 6


@pytest.fixture
def tmpfs(tmp_path):
  mount_point = tmp_path / "tmpfs"
  mount_point.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs",
                     str(mount_point)], capture_output=True).returncode != 0:
    pytest.skip("cannot mount a tmpfs here (needs root)")
  yield mount_point
  subprocess.run(["umount", "-l", str(mount_point)], check=False)


@pytest.mark.slow
def test_read_only_model_dir_is_one_line_and_the_last_checkpoint_still_restores(
    tmpfs, capsys):
  model_dir = tmpfs / "run"
  run_in_process(model_dir, "--gin.TRAIN_STEPS=2")
  subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
  result = subprocess.run(command(model_dir, "--gin.TRAIN_STEPS=4"), env=ENV,
                          capture_output=True, text=True)
  assert result.returncode != 0
  last = result.stderr.strip().splitlines()[-1]
  assert "Read-only file system" in last or "read-only" in last.lower(), result.stderr[-3000:]
  subprocess.run(["mount", "-o", "remount,rw", str(tmpfs)], check=True)
  assert saved_steps(model_dir / "checkpoints") == [2]
  capsys.readouterr()
  run_in_process(model_dir, "--gin.TRAIN_STEPS=4")
  assert "resumed from step 2" in "".join(capsys.readouterr())


# ------------------------------------------------------------------ eval and infer

@pytest.fixture(scope="module")
def short_checkpoint(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("short")
  run_in_process(model_dir, "--gin.TRAIN_STEPS=2")
  return model_dir / "checkpoints"


INFER_FLAGS = [f"--gin_file={TOY_GIN.replace('toy_pretrain', 'toy_model')}",
               "--gin_file=runs/infer.gin", "--gin.MIXTURE_OR_TASK_NAME='toy_reverse'",
               "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 8}",
               "--gin.VOCABULARY='byte'", "--gin.BATCH_SIZE=8"]


def _infer(checkpoint, output, *flags):
  from altup_t5.jobs import infer as infer_lib  # pylint: disable=g-import-not-at-top
  return cli.run(infer_lib.infer, [*INFER_FLAGS, f"--gin.CHECKPOINT_PATH={checkpoint}",
                                   f"--gin.INFER_OUTPUT={output}", *flags], prog="infer")


def test_infer_on_an_empty_text_file_is_one_line(short_checkpoint, tmp_path, capsys):
  text = tmp_path / "empty.txt"
  text.write_bytes(b"")
  err = one_line_exit_2(capsys, lambda: _infer(short_checkpoint, tmp_path / "o.jsonl",
                                               f"--gin.INFER_TEXT_FILE={text}"))
  assert "has no usable line" in err and "'read': 0" in err


def test_infer_counts_blank_non_utf8_and_a_100000_character_line_in_its_summary(
    short_checkpoint, tmp_path):
  text = tmp_path / "inputs.txt"
  text.write_bytes(b"reverse: oak\n\n  \n\xff\xfe bad\n" + b"x" * 100_000 + b"\n")
  output = tmp_path / "out.jsonl"
  assert _infer(short_checkpoint, output, f"--gin.INFER_TEXT_FILE={text}") == 2
  summary = json.load(open(f"{output}.summary.json"))
  assert summary["lines"] == {"read": 5, "empty": 2, "not_utf8": 1, "truncated": 1}
  assert summary["used"] == 2 and summary["max_input_tokens"] == 64
  records = [json.loads(l) for l in open(output)]
  assert len(records) == 2 and len(records[1]["input"]) == 100_000


@pytest.mark.parametrize("flag, names", [
    ("--gin.config_for.emb_dim=32", "emb_dim=64, but this configuration builds emb_dim=32"),
    ("--gin.config_for.variant='altup'", "variant='dense'"),
])
def test_eval_and_infer_on_a_checkpoint_of_another_network_name_both(
    short_checkpoint, tmp_path, capsys, flag, names):
  err = one_line_exit_2(capsys, lambda: _infer(short_checkpoint, tmp_path / "o.jsonl",
                                               flag))
  assert "holds a network with" in err and names.split(",")[0] in err, err


@pytest.mark.slow
def test_a_full_filesystem_during_a_checkpoint_write_is_one_line_and_loses_nothing(
    tmpfs, capsys):
  model_dir = tmpfs / "run"
  run_in_process(model_dir, "--gin.TRAIN_STEPS=2")
  # Fill the disk but for a little room: the logs of two steps fit, a checkpoint not.
  stat = os.statvfs(tmpfs)
  filler = tmpfs / "filler"
  with open(filler, "wb") as f:
    f.write(b"\0" * (stat.f_bavail * stat.f_frsize - 256 * 1024))
  result = subprocess.run(command(model_dir, "--gin.TRAIN_STEPS=4"), env=ENV,
                          capture_output=True, text=True)
  assert result.returncode != 0
  # One line of ours says what happened (orbax's writer thread also logs its own
  # traceback through absl before the error reaches the loop).
  ours = [l for l in result.stderr.splitlines()
          if l.startswith("python -m altup_t5.train: stopped: ")]
  assert len(ours) == 1, result.stderr[-4000:]
  assert "ResourceExhaustedError" in ours[0] or "No space left" in ours[0], ours[0]
  filler.unlink()
  assert saved_steps(model_dir / "checkpoints") == [2]
  capsys.readouterr()
  run_in_process(model_dir, "--gin.TRAIN_STEPS=4")
  assert "resumed from step 2" in "".join(capsys.readouterr())


# ------------------------------------------------------------------ the offline corpus

@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage"])
@pytest.mark.parametrize("name", ["spm.model", "train.jsonl"])
def test_a_damaged_corpus_cache_is_detected_and_rebuilt(fake_archive, tmp_path, capsys,
                                                        damage, name):
  """In a temporary ALTUP_T5_DATA_DIR (never the user's cache): the file is found
  damaged by the SHA-256 recorded when it was prepared, and rebuilt to the same bytes;
  the vocabulary it gives is the one it gave before."""
  data_dir = with_archive(tmp_path / "data", fake_archive)
  local_corpus.prepare(data_dir)
  folder = local_corpus.corpus_dir(data_dir)
  path = os.path.join(folder, name)
  good = open(path, "rb").read()
  vocab = vocabularies.local_vocabulary(data_dir)
  ids = vocab.encode("thou art the king of night")
  if damage == "delete":
    os.remove(path)
  elif damage == "truncate":
    open(path, "wb").write(good[:len(good) // 2])
  else:
    open(path, "wb").write(os.urandom(len(good)))
  capsys.readouterr()
  assert local_corpus.read_manifest(data_dir) is None
  local_corpus.ensure_prepared(data_dir)
  err = capsys.readouterr().err
  if damage != "delete":  # a missing file is a plain unfinished preparation
    assert f"is damaged ({name}: SHA-256 differs" in err
    assert err.count("WARNING") == 1
  assert open(path, "rb").read() == good
  assert vocabularies.local_vocabulary(data_dir).encode("thou art the king of night") == ids


# ------------------------------------------------------------------ eval, infer, compare

def test_infer_with_a_misspelt_macro_is_one_line(short_checkpoint, tmp_path, capsys):
  err = one_line_exit_2(capsys, lambda: _infer(short_checkpoint, tmp_path / "o.jsonl",
                                               "--gin.INFER_EXAMPLE=3"))
  assert "`INFER_EXAMPLE` is bound but never used; did you mean `INFER_EXAMPLES`" in err
  assert not (tmp_path / "o.jsonl").exists()


def test_eval_with_a_misspelt_macro_is_one_line(short_checkpoint, tmp_path, capsys):
  from altup_t5.jobs import evaluate as eval_lib  # pylint: disable=g-import-not-at-top
  flags = [f if "runs/infer.gin" not in f else "--gin_file=runs/eval.gin"
           for f in INFER_FLAGS]
  err = one_line_exit_2(capsys, lambda: cli.run(eval_lib.evaluate, [
      *flags, f"--gin.CHECKPOINT_PATH={short_checkpoint}",
      f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'eval'}", "--gin.EVAL_SPLT='train'"],
      prog="eval"))
  assert "`EVAL_SPLT` is bound but never used; did you mean `EVAL_SPLIT`" in err
  assert not (tmp_path / "eval").exists()


def test_compare_refuses_a_misspelt_study_binding_before_any_run(tmp_path, capsys):
  from test_compare import toy_text, write_study  # pylint: disable=g-import-not-at-top
  from altup_t5.studies import runner  # pylint: disable=g-import-not-at-top
  path = write_study(tmp_path, toy_text(**{
      "[gin.by_variant.moe]": "[gin.bindings]\nLOSS_NORMALISING_FACTOR = 'NUM_REAL_"
                              "TARGET_TOKENS'\n[gin.by_variant.moe]"}))
  code = runner.main([path, "--out", str(tmp_path / "out")])
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert ("run tiny_dense_seed0: `LOSS_NORMALISING_FACTOR` is bound but never used; did you "
          "mean `LOSS_NORMALIZING_FACTOR`") in line
  assert not (tmp_path / "out").exists()
