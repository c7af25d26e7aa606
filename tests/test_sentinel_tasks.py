"""T5's one-sentinel task variants and `super_glue_v102_proportional_sentinel`: the first
sentinel ends the inputs and starts the targets, survives trimming, and is dropped from
predictions; names, members and rates against tables written here."""

import io

import numpy as np
import pytest
import seqio
import sentencepiece as spm
import tensorflow as tf

from altup_t5.data import super_glue
from altup_t5.data import vocabularies

BOOLQ = {"question": "is the sky blue", "passage": "The sky is blue.", "label": np.int64(1),
         "idx": np.int32(3)}
BOOLQ_INPUTS = "boolq passage: The sky is blue. question: is the sky blue"
WSC = {"text": "Bob asked Tom if he could lend money.", "span1_text": "Tom",
       "span1_index": np.int32(2), "span2_text": "he", "span2_index": np.int32(4),
       "label": np.int64(1), "idx": np.int32(0)}
WSC_INPUTS = "wsc: Bob asked Tom if *he* could lend money."


@pytest.fixture(scope="module")
def sentencepiece_model(tmp_path_factory):
  """A tiny SentencePiece model, so that the sentinels are real <extra_id_N> pieces (the
  byte vocabulary decodes them to nothing)."""
  text = [BOOLQ_INPUTS, WSC_INPUTS, "True False Tom Bob entailment"] * 20
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=model,
                                 vocab_size=60, hard_vocab_limit=False,
                                 character_coverage=1.0, pad_id=0, eos_id=1, unk_id=2,
                                 bos_id=-1, minloglevel=2)
  path = tmp_path_factory.mktemp("spm") / "tiny.model"
  path.write_bytes(model.getvalue())
  return str(path)


@pytest.fixture(autouse=True)
def tiny_vocabulary(sentencepiece_model):
  vocab = vocabularies.choose("t5", sentencepiece_model)  # 100 extra ids, as T5's
  yield vocab
  vocabularies.choose("byte")


def processed(task_name, example, lengths):
  """The task's examples after every preprocessor, as training sees them."""
  task = seqio.get_mixture_or_task(task_name)
  dataset = task.preprocess_precache(tf.data.Dataset.from_tensors(example))
  dataset = task.preprocess_postcache(dataset, sequence_length=lengths)
  return list(dataset.as_numpy_iterator())


def test_the_sentinel_is_extra_id_0_ending_inputs_and_starting_targets(tiny_vocabulary):
  sentinel, eos = tiny_vocabulary.vocab_size - 1, tiny_vocabulary.eos_id
  assert tiny_vocabulary.decode([sentinel]) == "<extra_id_0>"
  lengths = {"inputs": 96, "targets": 16}
  [plain] = processed("super_glue_boolq_v102", BOOLQ, lengths)
  [ex] = processed("super_glue_boolq_v102_1_sentinel", BOOLQ, lengths)
  # The text is the task's own; only the tokens change.
  assert ex["inputs_pretokenized"].decode() == BOOLQ_INPUTS
  assert ex["targets_pretokenized"].decode() == "True"
  text_inputs = tiny_vocabulary.encode(BOOLQ_INPUTS)
  assert list(plain["inputs"]) == text_inputs + [eos]
  assert list(ex["inputs"]) == text_inputs + [sentinel, eos]
  assert list(ex["targets"]) == [sentinel] + tiny_vocabulary.encode("True") + [eos]
  assert tiny_vocabulary.decode(ex["targets"][:-1].tolist()).startswith("<extra_id_0>")


def test_trimming_keeps_the_sentinel(tiny_vocabulary):
  sentinel, eos = tiny_vocabulary.vocab_size - 1, tiny_vocabulary.eos_id
  [ex] = processed("super_glue_boolq_v102_1_sentinel", BOOLQ, {"inputs": 6, "targets": 16})
  assert list(ex["inputs"]) == tiny_vocabulary.encode(BOOLQ_INPUTS)[:4] + [sentinel, eos]


def test_wsc_simple_sentinel_variants(tiny_vocabulary):
  sentinel = tiny_vocabulary.vocab_size - 1
  for name in ("super_glue_wsc_v102_simple_1_sentinel_train",
               "super_glue_wsc_v102_simple_1_sentinel_eval"):
    [ex] = processed(name, WSC, {"inputs": 96, "targets": 16})
    assert ex["inputs_pretokenized"].decode() == WSC_INPUTS
    assert list(ex["inputs"])[-2:] == [sentinel, tiny_vocabulary.eos_id]
    assert list(ex["targets"]) == [sentinel] + tiny_vocabulary.encode("Tom") + [1]


@pytest.mark.parametrize("prediction, expected", [
    ("<extra_id_0> True", 1), ("<extra_id_0>True", 1), ("True", 1),
    ("<extra_id_0> False", 0), ("<extra_id_0>", -1), ("", -1),
    ("<extra_id_0> <extra_id_0> True", -1),  # only one sentinel is dropped
])
def test_the_postprocessor_drops_the_sentinel_first(prediction, expected):
  postprocess = seqio.get_mixture_or_task("super_glue_boolq_v102_1_sentinel").postprocessor
  assert postprocess(prediction) == expected
  # The plain task's postprocessor would not read the label past the sentinel.
  assert seqio.get_mixture_or_task("super_glue_boolq_v102").postprocessor(
      "<extra_id_0> True") == -1


def test_wsc_simple_eval_sentinel_scores_as_wsc_simple():
  postprocess = seqio.get_mixture_or_task(
      "super_glue_wsc_v102_simple_1_sentinel_eval").postprocessor
  example = {"targets_pretokenized": b"Tom", "label": np.int64(1)}
  assert postprocess("<extra_id_0> Tom", example=example) == 1
  assert postprocess("<extra_id_0> Bob", example=example) == 0
  assert postprocess("<extra_id_0>", example=example) == -1  # nothing named


# T5's `SUPER_GLUE_WEIGHT_MAPPING_SENTINEL` (t5.data.glue_utils), written out.
T5_SENTINEL_MIXTURE = {
    "dpr_v001_simple_1_sentinel": 1322,
    "super_glue_wsc_v102_simple_1_sentinel_train": 259,
    "super_glue_wsc_v102_simple_1_sentinel_eval": 0,
    "super_glue_boolq_v102_1_sentinel": 9427,
    "super_glue_cb_v102_1_sentinel": 250,
    "super_glue_copa_v102_1_sentinel": 400,
    "super_glue_multirc_v102_1_sentinel": 27243,
    "super_glue_record_v102_1_sentinel": 138854,
    "super_glue_rte_v102_1_sentinel": 2490,
    "super_glue_wic_v102_1_sentinel": 5428,
    "super_glue_axb_v102_1_sentinel": 0,
    "super_glue_axg_v102_1_sentinel": 0,
}


def test_sentinel_mixture_members_and_rates_are_t5s():
  mixture = seqio.get_mixture_or_task("super_glue_v102_proportional_sentinel")
  assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == T5_SENTINEL_MIXTURE


def test_every_sentinel_variant_keeps_its_tasks_source_and_metrics():
  for name in T5_SENTINEL_MIXTURE:
    base = seqio.get_mixture_or_task(name.replace("_1_sentinel", ""))
    variant = seqio.get_mixture_or_task(name)
    assert variant.source is base.source and variant.metric_fns == base.metric_fns
  # T5 makes none for GLUE or for the project's binary WSC task.
  sentinel_names = {n for n in seqio.TaskRegistry.names() if "_1_sentinel" in n}
  assert sentinel_names == set(T5_SENTINEL_MIXTURE)


@pytest.mark.parametrize("name, expected", [
    ("super_glue_rte_v102", "super_glue_rte_v102_1_sentinel"),
    ("super_glue_wsc_v102_simple_train", "super_glue_wsc_v102_simple_1_sentinel_train"),
    ("x_eval", "x_1_sentinel_eval"), ("c4/en.noclean", "c4/en_1_sentinel.noclean")])
def test_sentinel_task_names(name, expected):
  assert super_glue.sentinel_task_name(name) == expected
