"""The eval and infer entry points on a checkpoint of the toy task."""

import json
import os

import pytest

import toy_tasks  # pylint: disable=unused-import  (registers toy_reverse)
from altup_t5 import cli
from altup_t5.jobs import evaluate as eval_lib
from altup_t5.jobs import infer as infer_lib
from altup_t5.jobs import train as train_lib

GIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gin")
TASK = ["--gin.MIXTURE_OR_TASK_NAME='toy_reverse'",
        "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 48}",
        "--gin.VOCABULARY='byte'", "--gin.BATCH_SIZE=8"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  """The toy model trained until it reverses words well enough to score."""
  model_dir = tmp_path_factory.mktemp("toy")
  cli.run(train_lib.train, [f"--gin_file={GIN}/toy_pretrain.gin",
                            f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=150",
                            "--gin.CHECKPOINT_PERIOD=150", "--gin.LOG_PERIOD=50"],
          prog="train")
  return model_dir / "checkpoints"


def test_eval_writes_teacher_forced_and_inference_metrics(checkpoint, tmp_path):
  out = tmp_path / "eval"
  results = cli.run(eval_lib.evaluate, [
      f"--gin_file={GIN}/toy_model.gin", "--gin_file=runs/eval.gin", *TASK,
      f"--gin.CHECKPOINT_PATH={checkpoint}", f"--gin.EVAL_OUTPUT_DIR={out}",
      "--gin.INFER_EXAMPLES=16"], prog="eval")
  saved = json.load(open(out / "eval_results.json"))
  assert saved["metrics"] == pytest.approx(results)
  assert saved["task"] == "toy_reverse" and saved["split"] == "validation"
  assert 0.5 < results["teacher_forced/accuracy"] <= 1.0
  assert 0.0 <= results["infer/toy_reverse/exact_match"] <= 100.0
  # Every prediction of the 16 examples was logged with its input and target.
  lines = open(out / "inference_eval" / "toy_reverse-000000.jsonl").read().splitlines()
  assert len(lines) == 16
  assert {"input", "prediction", "target"} <= set(json.loads(lines[0]))


def test_infer_decodes_a_text_file_and_counts_what_it_skipped(checkpoint, tmp_path,
                                                              capsys):
  text = tmp_path / "inputs.txt"
  long_line = "reverse: " + "amber birch " * 40
  text.write_bytes(b"reverse: oak pine\n\n   \n\xff\xfe broken\n" + long_line.encode()
                   + b"\nreverse: moss reed sage\n")
  output = tmp_path / "out.jsonl"
  written = cli.run(infer_lib.infer, [
      f"--gin_file={GIN}/toy_model.gin", "--gin_file=runs/infer.gin", *TASK,
      f"--gin.CHECKPOINT_PATH={checkpoint}", f"--gin.INFER_OUTPUT={output}",
      f"--gin.INFER_TEXT_FILE={text}"], prog="infer")
  records = [json.loads(line) for line in open(output)]
  assert written == len(records) == 3
  assert [r["input"] for r in records] == ["reverse: oak pine", long_line.strip(),
                                           "reverse: moss reed sage"]
  assert all(isinstance(r["prediction"], str) for r in records)
  assert ("read 6 lines: 3 used, 2 empty, 1 not UTF-8 (skipped), 1 truncated to 64 "
          "tokens") in capsys.readouterr().out


def test_infer_decodes_a_tasks_split_with_beam_search(checkpoint, tmp_path):
  output = tmp_path / "out.jsonl"
  cli.run(infer_lib.infer, [
      f"--gin_file={GIN}/toy_model.gin", "--gin_file=runs/infer.gin", *TASK,
      f"--gin.CHECKPOINT_PATH={checkpoint}", f"--gin.INFER_OUTPUT={output}",
      "--gin.INFER_EXAMPLES=8", "--gin.DECODE_METHOD='beam'", "--gin.BEAM_SIZE=3"],
      prog="infer")
  records = [json.loads(line) for line in open(output)]
  assert len(records) == 8
  assert all(r["target"] and r["input"].startswith("reverse:") for r in records)


def test_eval_of_a_missing_checkpoint_is_a_usage_error(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    cli.run(eval_lib.evaluate, [
        f"--gin_file={GIN}/toy_model.gin", "--gin_file=runs/eval.gin", *TASK,
        f"--gin.CHECKPOINT_PATH={tmp_path / 'nothing'}",
        f"--gin.EVAL_OUTPUT_DIR={tmp_path / 'out'}"], prog="eval")
  assert exit_info.value.code == 2
  assert "is not a directory" in capsys.readouterr().err


def test_a_dense_checkpoint_upcycled_evaluates_and_decodes_as_the_dense_model(
    checkpoint, tmp_path, capsys):
  """UPCYCLE_FROM_DENSE in eval.gin / infer.gin reads the dense run into AltUp (K=2)
  through training's load path: the step-0 upcycled model is the dense function, so
  its metrics and greedy predictions are the dense model's."""
  def run_eval(*extra, out):
    return cli.run(eval_lib.evaluate, [
        f"--gin_file={GIN}/toy_model.gin", *extra, "--gin_file=runs/eval.gin", *TASK,
        f"--gin.CHECKPOINT_PATH={checkpoint}", f"--gin.EVAL_OUTPUT_DIR={tmp_path / out}",
        "--gin.INFER_EXAMPLES=8", "--gin.DECODE_METHOD='greedy'"], prog="eval")
  dense = run_eval(out="dense")
  upcycled = run_eval("--gin_file=models/altup.gin", "--gin.UPCYCLE_FROM_DENSE=True",
                      out="upcycled")
  assert set(upcycled) == set(dense)
  for name in ("teacher_forced/loss", "teacher_forced/accuracy"):
    assert upcycled[name] == pytest.approx(dense[name], rel=1e-5), name
  assert 0.5 < dense["teacher_forced/accuracy"]  # a trained model, not a blank one
  read = lambda out: [json.loads(line)["prediction"] for line in open(
      tmp_path / out / "inference_eval" / "toy_reverse-000000.jsonl")]
  assert read("upcycled") == read("dense")

  predictions = {}
  for name, extra in (("dense", []), ("upcycled", ["--gin_file=models/altup.gin",
                                                   "--gin.UPCYCLE_FROM_DENSE=True"])):
    output = tmp_path / f"{name}.jsonl"
    cli.run(infer_lib.infer, [
        f"--gin_file={GIN}/toy_model.gin", *extra, "--gin_file=runs/infer.gin", *TASK,
        f"--gin.CHECKPOINT_PATH={checkpoint}", f"--gin.INFER_OUTPUT={output}",
        "--gin.INFER_EXAMPLES=8"], prog="infer")
    predictions[name] = [json.loads(line)["prediction"] for line in open(output)]
  assert len(predictions["dense"]) == 8 and predictions["upcycled"] == predictions["dense"]

  # Without the switch the dense run does not fit AltUp: one line, exit 2, nothing written.
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    run_eval("--gin_file=models/altup.gin", out="refused")
  assert exit_info.value.code == 2
  err = capsys.readouterr().err.strip()
  assert "variant='dense'" in err and "variant='altup'" in err and "\n" not in err
  assert not (tmp_path / "refused").exists()
