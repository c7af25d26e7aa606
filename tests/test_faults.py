"""Bad input and faults, tried systematically: every misuse is one line and exit
status 2 before any work; every fault is survived with nothing lost. Each test's
name says the try; README's "Behaviour worth knowing" lists what the suite proves."""

import os
import subprocess
import sys

import pytest

import toy_tasks  # pylint: disable=unused-import  (registers toy_reverse)
from test_train import ENV, RUNNER, TOY_GIN, command, run_in_process, saved_steps
from altup_t5 import cli
from altup_t5 import errors
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
