"""The vocabulary must match the model: train, eval and infer refuse, in one line with
exit status 2 and before any work, a task whose ids do not all have an embedding row,
and a checkpoint trained with another vocabulary (recorded in MODEL_DIR/checkpoints)."""

import hashlib
import json
import os

import pytest
import seqio

import toy_tasks  # pylint: disable=unused-import  (registers toy_reverse)
from corpus_fixtures import prepared_data_dir, shakespeare_archive  # fixtures
from test_faults import INFER_FLAGS, one_line_exit_2
from test_train import TOY_GIN, run_in_process
from altup_t5 import cli
from altup_t5.data import local_corpus
from altup_t5.data import paths
from altup_t5.data import vocabularies
from altup_t5.jobs import evaluate as eval_lib
from altup_t5.jobs import infer as infer_lib
from altup_t5.jobs import train as train_lib

# The toy task with 50 sentinels instead of 100: 309 ids, which fit the toy model's
# 384 rows, but the ids of its sentinels are not those the checkpoint learnt.
OTHER = "toy_reverse_50_extra_ids"
if OTHER not in seqio.TaskRegistry.names():
  _vocab = seqio.ByteVocabulary(extra_ids=50)
  seqio.TaskRegistry.add(
      OTHER, source=seqio.FunctionDataSource(toy_tasks._dataset_fn,  # pylint: disable=protected-access
                                             splits=["train", "validation"]),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
      output_features={"inputs": seqio.Feature(_vocab), "targets": seqio.Feature(_vocab)})


def test_identity_is_stable_and_tells_vocabularies_apart():
  byte = vocabularies.identity(vocabularies.byte_vocabulary())
  assert byte == {"kind": "byte", "size": 359, "extra_ids": 100}
  assert vocabularies.identity(vocabularies.byte_vocabulary()) == byte
  assert vocabularies.identity(seqio.ByteVocabulary(extra_ids=50)) == {
      "kind": "byte", "size": 309, "extra_ids": 50}
  vocabularies.choose("byte")
  assert vocabularies.identity(vocabularies.CHOSEN) == byte  # the chosen one, unwrapped


def test_a_sentencepiece_identity_is_the_hash_of_its_model_file(prepared_data_dir):
  vocab = vocabularies.local_vocabulary(prepared_data_dir)
  with open(local_corpus.vocab_model_path(prepared_data_dir), "rb") as f:
    sha = hashlib.sha256(f.read()).hexdigest()
  ident = vocabularies.identity(vocab)
  assert ident == {"kind": "sentencepiece", "size": 8100, "extra_ids": 100, "sha256": sha}
  assert vocabularies.identity(vocabularies.local_vocabulary(prepared_data_dir)) == ident


def test_check_fits_names_both_sizes():
  vocabularies.check_fits(vocabularies.byte_vocabulary(), 359, "bytes")  # exactly fits
  with pytest.raises(ValueError, match=r"^bytes has 359 ids \(with 100 extra ids\), more "
                     r"than the model's vocab_size=358: choose a model with "
                     r"vocab_size >= 359 or another vocabulary$"):
    vocabularies.check_fits(vocabularies.byte_vocabulary(), 358, "bytes")


def test_tiny_with_1000_rows_on_the_offline_task_is_refused_before_training(
    prepared_data_dir, tmp_path, capsys, monkeypatch):
  monkeypatch.setenv(paths.DATA_DIR_ENV, prepared_data_dir)
  model_dir = tmp_path / "run"
  err = one_line_exit_2(capsys, lambda: cli.run(train_lib.train, [
      "--gin_file=experiments/quickstart.gin", f"--gin.MODEL_DIR={model_dir}",
      "--gin.config_for.vocab_size=1000"], prog="train"))
  assert err == ("train: error: the vocabulary of local_span_corruption's inputs has "
                 "8100 ids (with 100 extra ids), more than the model's vocab_size=1000: "
                 "choose a model with vocab_size >= 8100 or another vocabulary"), err
  assert not os.path.exists(model_dir / "checkpoints")  # no work was done


@pytest.fixture(scope="module")
def byte_checkpoint(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("bytes")
  run_in_process(model_dir, "--gin.TRAIN_STEPS=2")
  return model_dir


def test_training_records_the_vocabulary_in_run_info_and_beside_the_checkpoints(
    byte_checkpoint):
  byte = {"kind": "byte", "size": 359, "extra_ids": 100}
  recorded = json.load(open(byte_checkpoint / "checkpoints" / "vocabulary.json"))
  assert recorded == {"inputs": byte, "targets": byte}
  assert json.load(open(byte_checkpoint / "run_info.json"))["vocabulary"] == recorded


MISMATCH = ("was trained with the inputs vocabulary byte of 359 ids (100 extra), but "
            "this task's is byte of 309 ids (50 extra): use the vocabulary it was "
            "trained with")


@pytest.mark.parametrize("where", ["checkpoints", "checkpoints/2"])
def test_infer_with_another_vocabulary_names_both(byte_checkpoint, where, tmp_path,
                                                  capsys):
  path = byte_checkpoint / where
  err = one_line_exit_2(capsys, lambda: cli.run(infer_lib.infer, [
      *INFER_FLAGS, f"--gin.CHECKPOINT_PATH='{path}'", f"--gin.MIXTURE_OR_TASK_NAME='{OTHER}'",
      f"--gin.INFER_OUTPUT='{tmp_path / 'o.jsonl'}'"], prog="infer"))
  assert err == f"infer: error: CHECKPOINT_PATH={path} {MISMATCH}", err
  assert not os.path.exists(tmp_path / "o.jsonl")


def test_eval_with_another_vocabulary_names_both(byte_checkpoint, tmp_path, capsys):
  path = byte_checkpoint / "checkpoints"
  flags = [f if "runs/infer.gin" not in f else "--gin_file=runs/eval.gin"
           for f in INFER_FLAGS]
  err = one_line_exit_2(capsys, lambda: cli.run(eval_lib.evaluate, [
      *flags, f"--gin.CHECKPOINT_PATH='{path}'", f"--gin.MIXTURE_OR_TASK_NAME='{OTHER}'",
      f"--gin.EVAL_OUTPUT_DIR='{tmp_path / 'eval'}'"], prog="eval"))
  assert err == f"eval: error: CHECKPOINT_PATH={path} {MISMATCH}", err


def test_fine_tuning_and_resuming_with_another_vocabulary_name_both(byte_checkpoint,
                                                                     tmp_path, capsys):
  path = byte_checkpoint / "checkpoints"
  err = one_line_exit_2(capsys, lambda: run_in_process(
      tmp_path / "ft", f"--gin.INITIAL_CHECKPOINT_PATH='{path}'",
      f"--gin.MIXTURE_OR_TASK_NAME='{OTHER}'"))
  assert err == f"train: error: INITIAL_CHECKPOINT_PATH={path} {MISMATCH}", err
  err = one_line_exit_2(capsys, lambda: run_in_process(
      byte_checkpoint, f"--gin.MIXTURE_OR_TASK_NAME='{OTHER}'"))
  assert err == (f"train: error: MODEL_DIR={byte_checkpoint / 'checkpoints'} "
                 f"{MISMATCH}"), err
