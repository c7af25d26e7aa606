"""The shipped gin files: every one parses and builds its model; the quickstart
pretrains with a falling loss; fine-tuning from it reports inference metrics."""

import glob
import json
import os
import re

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from altup_t5 import cli
from altup_t5.training import seq2seq
from altup_t5.jobs import evaluate as eval_lib
from altup_t5.jobs import infer as infer_lib
from altup_t5.jobs import train as train_lib
from altup_t5.model.network import Transformer

GIN_DIR = cli.PROJECT_GIN_DIR
REQUIRED = ["MODEL_DIR='/tmp/unused'", "MIXTURE_OR_TASK_NAME='local_span_corruption'",
            "TASK_FEATURE_LENGTHS={'inputs': 16, 'targets': 8}", "TRAIN_STEPS=1",
            "INITIAL_CHECKPOINT_PATH='/tmp/unused'", "CHECKPOINT_PATH='/tmp/unused'",
            "EVAL_OUTPUT_DIR='/tmp/unused'", "INFER_OUTPUT='/tmp/unused.jsonl'"]


def gin_files(sub):
  return sorted(os.path.relpath(p, GIN_DIR)
                for p in glob.glob(os.path.join(GIN_DIR, sub, "*.gin")))


def build_model():
  model = gin.get_configurable(seq2seq.Seq2SeqModel)()
  assert isinstance(model.module, Transformer)
  ids = jnp.ones((1, 8), jnp.int32)
  shapes = jax.eval_shape(lambda: model.module.init(
      jax.random.PRNGKey(0), ids, ids, ids, enable_dropout=False))
  return sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(shapes["params"]))


SIZE_FILES = [f for f in gin_files("models/t5_1_1") if not f.endswith("/model.gin")]


@pytest.mark.parametrize("size_file", SIZE_FILES)
@pytest.mark.parametrize("variant_file", [None] + gin_files("models"))
def test_model_files_compose_and_build(size_file, variant_file):
  cli.parse_gin([size_file] + ([variant_file] if variant_file else []), [], [])
  assert build_model() > 0


@pytest.mark.parametrize("run_file", gin_files("runs"))
def test_run_files_parse_with_a_model(run_file):
  cli.parse_gin(["models/t5_1_1/tiny.gin", run_file], [], REQUIRED_FOR[run_file])
  assert build_model() > 0


REQUIRED_FOR = {
    "runs/pretrain.gin": REQUIRED[:4],
    "runs/finetune.gin": REQUIRED[:5],
    "runs/eval.gin": REQUIRED[1:3] + [REQUIRED[5], REQUIRED[6]],
    "runs/infer.gin": REQUIRED[1:3] + [REQUIRED[5], REQUIRED[7]],
}


def _run_file_of(experiment: str) -> str:
  """The run file an experiment includes, directly or through another experiment."""
  text = open(os.path.join(GIN_DIR, experiment)).read()
  runs = [f for f in REQUIRED_FOR if f"include '{f}'" in text]
  if runs:
    (run_file,) = runs
    return run_file
  (inner,) = re.findall(r"include '(experiments/[^']+)'", text)
  return _run_file_of(inner)


@pytest.mark.parametrize("experiment", gin_files("experiments"))
def test_experiments_parse_and_build(experiment):
  text = open(os.path.join(GIN_DIR, experiment)).read()
  # What the command in its header passes: the macros its run file leaves open (and
  # those an experiment built on another experiment re-requires, e.g. upcycling's
  # INITIAL_CHECKPOINT_PATH).
  run_file = _run_file_of(experiment)
  bindings = {"runs/pretrain.gin": [REQUIRED[0]], "runs/finetune.gin": REQUIRED[0:5:4],
              "runs/eval.gin": REQUIRED[5:7], "runs/infer.gin": REQUIRED[5:8:2]}[run_file]
  if "INITIAL_CHECKPOINT_PATH = %gin.REQUIRED" in text and REQUIRED[4] not in bindings:
    bindings = bindings + [REQUIRED[4]]
  cli.parse_gin([experiment], [], bindings)
  assert build_model() > 0
  assert text.startswith("#") and "python -m altup_t5." in text  # the command to run it


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
  """A short quickstart pretraining (the README's main job with TRAIN_STEPS=30)."""
  model_dir = tmp_path_factory.mktemp("quickstart")
  last = cli.run(train_lib.train, [
      "--gin_file=experiments/quickstart.gin", f"--gin.MODEL_DIR={model_dir}",
      "--gin.TRAIN_STEPS=30", "--gin.EVAL_PERIOD=30", "--gin.EVAL_STEPS=2"],
      prog="train")
  return model_dir, last


@pytest.mark.registry
def test_quickstart_runs_end_to_end_and_its_loss_falls(quickstart):
  model_dir, last = quickstart
  records = [json.loads(line) for line in open(model_dir / "metrics.jsonl")]
  losses = [r["train/loss"] for r in records if "train/loss" in r]
  assert len(losses) == 3  # logged every 10 steps
  assert losses[-1] < losses[0] - 0.5, losses
  assert 0.0 < last["eval/accuracy"] <= 1.0
  info = json.load(open(model_dir / "run_info.json"))
  assert info["config"]["variant"] == "altup" and info["xla_flops_per_step"] > 0


@pytest.mark.registry
def test_fine_tuning_on_the_offline_tasks_reports_inference_metrics(quickstart, tmp_path):
  pretrain_dir, _ = quickstart
  last = cli.run(train_lib.train, [
      "--gin_file=experiments/quickstart_finetune.gin", f"--gin.MODEL_DIR={tmp_path}",
      f"--gin.INITIAL_CHECKPOINT_PATH={pretrain_dir / 'checkpoints'}",
      "--gin.TRAIN_STEPS=4", "--gin.EVAL_PERIOD=4", "--gin.INFER_EXAMPLES=8",
      "--gin.BATCH_SIZE=8"], prog="train")
  for metric in ("local_author/accuracy", "local_same_work/accuracy",
                 "local_same_work/f1"):
    assert 0.0 <= last[f"eval/infer/{metric}"] <= 100.0
  predictions = [json.loads(line) for line in
                 open(tmp_path / "inference_eval" / "local_author-000004.jsonl")]
  assert len(predictions) == 8
  # The postprocessor turned label strings into class ids (-1 for anything else).
  assert all(p["prediction"] in (-1, 0, 1) for p in predictions)

  # The quickstart's eval and infer files compose with their run files and read
  # the fine-tuned checkpoint (the README's commands, on fewer examples).
  checkpoints = tmp_path / "checkpoints"
  results = cli.run(eval_lib.evaluate, [
      "--gin_file=experiments/quickstart_eval.gin", f"--gin.CHECKPOINT_PATH={checkpoints}",
      f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'eval'}", "--gin.INFER_EXAMPLES=8"], prog="eval")
  assert 0.0 <= results["infer/local_author/accuracy"] <= 100.0
  output = tmp_path / "infer.jsonl"
  cli.run(infer_lib.infer, [
      "--gin_file=experiments/quickstart_infer.gin", f"--gin.CHECKPOINT_PATH={checkpoints}",
      f"--gin.INFER_OUTPUT={output}", "--gin.INFER_EXAMPLES=4"], prog="infer")
  records = [json.loads(line) for line in open(output)]
  assert len(records) == 4
  # The offline tasks keep no pretokenized text: inputs and targets are decoded tokens.
  assert all(r["input"].startswith(("same_work passage1: ", "author passage: "))
             for r in records)
  assert all(r["target"] in ("same", "different", "shakespeare", "milton") for r in records)
  assert all(p["target"] in (0, 1) for p in predictions)
