"""The training system on the toy task: exact resume after SIGKILL, SIGTERM, NaN,
corrupt checkpoints, fine-tuning from a checkpoint, and bad input."""

import glob
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import gin
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import toy_tasks  # pylint: disable=unused-import  (registers toy_reverse)
from altup_t5.training import checkpoints
from altup_t5 import cli
from altup_t5.training import input_pipeline
from altup_t5.training import seq2seq
from altup_t5.training import partitioning
from altup_t5.training import trainer
from altup_t5.jobs import train as train_lib

TESTS = os.path.dirname(os.path.abspath(__file__))
RUNNER = os.path.join(TESTS, "train_runner.py")
TOY_GIN = os.path.join(TESTS, "gin", "toy_pretrain.gin")
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu")


def command(model_dir, *flags):
  return [sys.executable, RUNNER, "train", f"--gin_file={TOY_GIN}",
          f"--gin.MODEL_DIR={model_dir}", *flags]


def run_in_process(model_dir, *flags):
  return cli.run(train_lib.train, [f"--gin_file={TOY_GIN}", f"--gin.MODEL_DIR={model_dir}",
                                   *flags], prog="train")


def saved_steps(directory):
  """Finalised checkpoint steps (orbax renames a step's directory when it is done)."""
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def final_params(model_dir):
  directory = os.path.join(model_dir, "checkpoints")
  step = max(saved_steps(directory))
  state = ocp.StandardCheckpointer().restore(os.path.join(directory, str(step), "state"))
  return step, state["params"]


def tree_bytes(tree):
  return [np.asarray(x).tobytes() for x in jax.tree_util.tree_leaves(tree)]


def finalized(model_dir, step):
  return os.path.isdir(os.path.join(model_dir, "checkpoints", str(step)))


def test_sigkill_then_restart_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path):
  flags = ("--gin.TRAIN_STEPS=24", "--gin.CHECKPOINT_PERIOD=4")
  straight = tmp_path / "straight"
  subprocess.run(command(straight, *flags), env=ENV, check=True, capture_output=True)

  killed = tmp_path / "killed"
  proc = subprocess.Popen(command(killed, *flags), env=ENV, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not finalized(killed, 4) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not finalized(killed, 24), "the run finished before it could be killed"

  restart = subprocess.run(command(killed, *flags), env=ENV, check=True,
                           capture_output=True, text=True)
  assert "resumed from step" in restart.stderr + restart.stdout
  step_a, params_a = final_params(straight)
  step_b, params_b = final_params(killed)
  assert step_a == step_b == 24
  assert tree_bytes(params_a) == tree_bytes(params_b)


def test_sigterm_saves_and_exits_0_and_the_run_resumes(tmp_path):
  model_dir = tmp_path / "run"
  proc = subprocess.Popen(command(model_dir, "--gin.TRAIN_STEPS=100000",
                                  "--gin.CHECKPOINT_PERIOD=100000"),
                          env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True)
  metrics = model_dir / "metrics.jsonl"
  deadline = time.time() + 300
  while not (metrics.exists() and metrics.read_text().count("\n") >= 3):
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-2000:]
  assert "SIGTERM: saved step" in out
  (saved,) = saved_steps(model_dir / "checkpoints")
  assert 3 <= saved < 100000
  last = run_in_process(model_dir, f"--gin.TRAIN_STEPS={saved + 2}")
  assert np.isfinite(last["loss"])
  assert saved_steps(model_dir / "checkpoints")[-1] == saved + 2


def directory_digest(path):
  digest = hashlib.sha256()
  for name in sorted(glob.glob(os.path.join(path, "**"), recursive=True)):
    if os.path.isfile(name):
      digest.update(name.encode())
      digest.update(open(name, "rb").read())
  return digest.hexdigest()


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
  model_dir = tmp_path / "run"
  run_in_process(model_dir, "--gin.TRAIN_STEPS=2")
  good = directory_digest(model_dir / "checkpoints" / "2")
  # A learning rate of 1e30 sends the parameters to ~1e28 in one step, so the loss of
  # the next step (step 4) overflows.
  with pytest.raises(SystemExit) as exit_info:
    run_in_process(model_dir, "--gin.TRAIN_STEPS=8",
                   "--gin.optimizer.OptimizerSettings.base_learning_rate=1e30")
  assert exit_info.value.code == 1
  message = capsys.readouterr().err.strip().splitlines()[-1]
  assert "at step 4" in message and "the last good checkpoint is step 2" in message
  assert saved_steps(model_dir / "checkpoints") == [2]
  assert directory_digest(model_dir / "checkpoints" / "2") == good


@pytest.mark.parametrize("damage", ["truncate_array_file", "remove_dataset_item"])
def test_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path, capsys, damage):
  model_dir = tmp_path / "run"
  run_in_process(model_dir, "--gin.TRAIN_STEPS=4")
  latest = model_dir / "checkpoints" / "4"
  if damage == "truncate_array_file":
    biggest = max((p for p in latest.glob("state/**/*") if p.is_file()),
                  key=lambda p: p.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:100])
  else:
    for path in sorted(latest.glob("dataset/**/*"), reverse=True):
      path.unlink() if path.is_file() else path.rmdir()
  capsys.readouterr()
  run_in_process(model_dir, "--gin.TRAIN_STEPS=6")
  out = capsys.readouterr()
  text = out.out + out.err
  assert "checkpoint 4" in text and "unreadable" in text
  assert "resumed from step 2" in text
  assert saved_steps(model_dir / "checkpoints")[-1] == 6


def test_fine_tuning_starts_from_exactly_the_pretrained_parameters(tmp_path):
  pretrain = tmp_path / "pretrain"
  run_in_process(pretrain, "--gin.TRAIN_STEPS=2")
  _, saved = final_params(pretrain)
  # The trainer's own loading path, with shapes and shardings from a fresh Trainer.
  cli.parse_gin([TOY_GIN], [], ["MODEL_DIR='/unused'"])
  model = gin.get_configurable(seq2seq.Seq2SeqModel)()
  data = input_pipeline.DataSettings("toy_reverse", {"inputs": 64, "targets": 48},
                                     batch_size=8)
  engine = trainer.Trainer(model, trainer.OptimizerSettings(), partitioning.make_mesh(),
                           input_pipeline.batch_shapes(data))
  abstract = jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      engine.abstract_state.params, engine.param_shardings)
  loaded = checkpoints.load_params(str(pretrain / "checkpoints"), abstract)
  assert tree_bytes(loaded) == tree_bytes(saved)
  state = engine.state_from_params(loaded)
  assert int(state.step) == 0  # a fresh optimiser
  assert tree_bytes(state.params) == tree_bytes(saved)

  finetune = tmp_path / "finetune"
  last = run_in_process(finetune, "--gin.TRAIN_STEPS=1",
                        f"--gin.INITIAL_CHECKPOINT_PATH='{pretrain / 'checkpoints'}'")
  assert np.isfinite(last["loss"])


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("flags, message", [
    (("--gin.MIXTURE_OR_TASK_NAME='toy_revrse'",), "toy_reverse"),
    (("--gin.train.MeshSettings.model=3",), "mesh model=3"),
    (("--gin.BATCH_SIZE=3", "--gin.train.MeshSettings.data=2"), "does not equal the"),
    (("--gin.train.RunSettigns.total_steps=3",), "No configurable matching"),
    (("--gin.train.RunSettings.total_stepz=3",), "doesn't have a parameter named 'total_stepz'"),
    (("--gin.TRAIN_STEPS=0",), "TRAIN_STEPS=0 must be >= 1"),
])
def test_bad_input_is_one_line_and_exit_status_2(tmp_path, capsys, flags, message):
  with pytest.raises(SystemExit) as exit_info:
    run_in_process(tmp_path / "run", *flags)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1, err
  assert message in err
  assert not (tmp_path / "run" / "checkpoints").exists()  # no work started


def test_an_unreadable_initial_checkpoint_leaves_no_model_dir(tmp_path, capsys):
  empty = tmp_path / "not_a_checkpoint"
  empty.mkdir()
  with pytest.raises(SystemExit) as exit_info:
    run_in_process(tmp_path / "run", f"--gin.INITIAL_CHECKPOINT_PATH='{empty}'")
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and str(empty) in err, err
  assert not (tmp_path / "run").exists()  # nothing written


def test_missing_model_dir_and_missing_gin_file(capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.run(train_lib.train, [f"--gin_file={TOY_GIN}"], prog="train")
  assert exit_info.value.code == 2
  assert "required gin macro MODEL_DIR is not set" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    cli.run(train_lib.train, ["--gin_file=nowhere.gin"], prog="train")
  assert exit_info.value.code == 2
  assert "gin file 'nowhere.gin' not found" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    cli.run(train_lib.train, [f"--gin_file={TOY_GIN}", "--steps=3"], prog="train")
  assert exit_info.value.code == 2
  assert "unrecognized argument '--steps=3'" in capsys.readouterr().err


def test_two_processes_train_one_model_and_resume_together(tmp_path):
  """Multi-host as the GPU launcher sets it up (JAX_NUM_PROCESSES, JAX_PROCESS_ID,
  JAX_COORDINATOR_ADDRESS), here with two CPU processes: one global mesh, each
  process reading its own data shard, one set of checkpoints, a joint resume."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]

  def launch(steps):
    procs = [subprocess.Popen(
        command(tmp_path / "run", f"--gin.TRAIN_STEPS={steps}"),
        env=dict(ENV, JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}", JAX_NUM_PROCESSES="2",
                 JAX_PROCESS_ID=str(i)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][-2000:] + outs[1][-2000:]
    return outs

  first = launch(4)
  assert "on 2 device(s), mesh {'data': 2" in first[0]
  assert saved_steps(tmp_path / "run" / "checkpoints") == [2, 4]
  positions = os.listdir(tmp_path / "run" / "checkpoints" / "4" / "dataset")
  assert {"process_0", "process_1"} <= set(positions)
  second = launch(6)
  assert "resumed from step 4" in second[0]
  assert saved_steps(tmp_path / "run" / "checkpoints")[-1] == 6
