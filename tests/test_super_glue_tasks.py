"""SuperGLUE tasks: T5's exact text formats (incl. MultiRC, ReCoRD and WSC), the whole
seqio pipeline on TFDS mock data, postprocessor/metric wiring and the mixture."""

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from altup_t5.data import super_glue
from altup_t5.data import vocabularies
from test_glue_tasks import LENGTHS, _decode, evaluate_on_mock_data, preprocess  # pylint: disable=g-bad-import-order

TASKS = {t.name: t for t in super_glue.SUPER_GLUE_TASKS}


@pytest.fixture(autouse=True)
def byte_vocabulary():
  """The tasks encode with the process-wide chosen vocabulary; bytes need no file."""
  vocabularies.choose("byte")


def labelled(label, **features):
  return {**features, "label": np.int64(label), "idx": np.int32(3)}


def wsc_example(text, span1, span1_index, span2, span2_index, label=1):
  return labelled(label, text=text, span1_text=span1, span1_index=np.int32(span1_index),
                  span2_text=span2, span2_index=np.int32(span2_index))


RECORD_EXAMPLE = {
    "passage": "The senator spoke in Ohio.\n@highlight\nCrowds cheered\n@highlight\nA long day",
    "query": "@placeholder spoke to voters in Ohio.",
    "entities": ["Ohio", "The senator"],
    "answers": ["The senator", "senator"],
    "idx": {"passage": np.int32(4), "query": np.int32(9)},
}
RECORD_INPUTS = ("record query: @placeholder spoke to voters in Ohio. entities: Ohio, The senator "
                 "passage: The senator spoke in Ohio. Crowds cheered. A long day")

MULTIRC_EXAMPLE = {
    "paragraph": "<b>Sent 1: </b>Mary went home.<br><b>Sent 2: </b>She slept.<br>",
    "question": "Where did Mary go?", "answer": "home", "label": np.int64(1),
    "idx": {"paragraph": np.int32(2), "question": np.int32(7), "answer": np.int32(11)},
}

# One hand-written example per task -> [(inputs, targets), ...] in T5's format.
HAND_WRITTEN = {
    "super_glue_boolq_v102": (
        labelled(1, question="is the sky blue", passage="The sky is blue on clear days."),
        [("boolq passage: The sky is blue on clear days. question: is the sky blue", "True")]),
    "super_glue_cb_v102": (
        labelled(1, premise="It is raining.", hypothesis="It is dry."),
        [("cb hypothesis: It is dry. premise: It is raining.", "contradiction")]),
    "super_glue_copa_v102": (
        labelled(0, premise="The man broke his toe.", question="cause",
                 choice1="He dropped a hammer on his foot.", choice2="He got a hole in his sock."),
        [("copa choice1: He dropped a hammer on his foot. choice2: He got a hole in his sock. "
          "premise: The man broke his toe. question: cause", "choice1")]),
    "super_glue_multirc_v102": (
        MULTIRC_EXAMPLE,
        # <br> becomes a space and <b>, </b> vanish (hence the final space).
        [("multirc question: Where did Mary go? answer: home paragraph: "
          "Sent 1: Mary went home. Sent 2: She slept. ", "True")]),
    "super_glue_record_v102": (
        RECORD_EXAMPLE, [(RECORD_INPUTS, "The senator"), (RECORD_INPUTS, "senator")]),
    "super_glue_rte_v102": (
        labelled(1, premise="Cats purr.", hypothesis="Dogs purr."),
        [("rte hypothesis: Dogs purr. premise: Cats purr.", "not_entailment")]),
    "super_glue_wic_v102": (
        {**labelled(0, word="bank", sentence1="I sat on the river bank.",
                    sentence2="I went to the bank to pay."),
         "start1": np.int32(19), "end1": np.int32(23), "start2": np.int32(14),
         "end2": np.int32(18)},
        [("wic sentence1: I sat on the river bank. sentence2: I went to the bank to pay. "
          "word: bank", "False")]),
    "super_glue_wsc_v102": (
        wsc_example("Mitchell asked Tom if he could lend some money.", "Tom", 2, "he", 4),
        [("wsc text: Mitchell asked * Tom * if # he # could lend some money.", "True")]),
    "super_glue_axb_v102": (
        labelled(-1, sentence1="The cat sat.", sentence2="A cat sat."),
        [("rte hypothesis: A cat sat. premise: The cat sat.", "<unk>")]),
    "super_glue_axg_v102": (
        labelled(0, premise="The nurse said she was tired.", hypothesis="The nurse was tired."),
        [("rte hypothesis: The nurse was tired. premise: The nurse said she was tired.",
          "entailment")]),
}


def test_every_super_glue_task_has_a_hand_written_example():
  assert sorted(HAND_WRITTEN) == sorted(TASKS)
  assert len(TASKS) == 10


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_text_format_matches_t5(task_name):
  example, expected = HAND_WRITTEN[task_name]
  assert preprocess(task_name, example) == expected


@pytest.mark.parametrize("example, inputs", [
    # Pronoun before the referent: no shift of span 2's index.
    (wsc_example("This is a test sentence .", "test", 3, "This", 0, label=0),
     "wsc text: # This # is a * test * sentence ."),
    # A multi-word referent with regex metacharacters; span 2 moves 2 words right.
    (wsc_example("Dr. Lee (the vet) saw Max because he was ill.", "Dr. Lee (the vet)", 0,
                 "he", 7),
     "wsc text: * Dr. Lee (the vet) * saw Max because # he # was ill."),
    # A span that is not where its index says stays unmarked (as in T5).
    (wsc_example("Anna thanked Bea because she helped.", "Bea", 0, "she", 99),
     "wsc text: Anna thanked Bea because she helped."),
    # An index beyond what a regex can count (RE2 stops at 1000) is not an error either.
    (wsc_example("Anna thanked Bea because she helped.", "Bea", 2, "she", 5000),
     "wsc text: Anna thanked * Bea * because she helped."),
])
def test_wsc_marks_referent_and_pronoun(example, inputs):
  [(got, _)] = preprocess("super_glue_wsc_v102", example)
  assert got == inputs


def _raw_examples(task_name, example):
  task = seqio.get_mixture_or_task(task_name)
  return list(task.preprocess_precache(tf.data.Dataset.from_tensors(example)).as_numpy_iterator())


def test_multirc_keeps_the_ids_that_group_answers_by_question():
  [ex] = _raw_examples("super_glue_multirc_v102", MULTIRC_EXAMPLE)
  assert (ex["idx/paragraph"], ex["idx/question"], ex["idx/answer"]) == (2, 7, 11)


def test_record_copies_answers_and_ids_onto_every_example():
  examples = _raw_examples("super_glue_record_v102", RECORD_EXAMPLE)
  assert len(examples) == 2
  for ex in examples:
    assert ex["answers"].tolist() == [b"The senator", b"senator"]
    assert (ex["idx/passage"], ex["idx/query"]) == (4, 9)


def test_record_query_without_answers_gives_one_unk_example():
  unanswered = {**RECORD_EXAMPLE, "answers": tf.constant([], tf.string)}
  assert preprocess("super_glue_record_v102", unanswered) == [(RECORD_INPUTS, "<unk>")]


@pytest.mark.parametrize("task", super_glue.SUPER_GLUE_TASKS, ids=lambda t: t.name)
def test_label_names_are_tfds_class_labels(task):
  builder = tfds.builder(f"super_glue/{task.config}:{super_glue.SUPER_GLUE_TFDS_VERSION}")
  if task.label_names is None:  # ReCoRD: the targets are answers, not classes
    assert "label" not in builder.info.features
  else:
    assert tuple(builder.info.features["label"].names) == task.label_names


@pytest.mark.parametrize("task", super_glue.SUPER_GLUE_TASKS, ids=lambda t: t.name)
def test_whole_pipeline_on_mock_data(task):
  """Every split through get_dataset and the EncDecFeatureConverter."""
  seqio_task = seqio.get_mixture_or_task(task.name)
  assert seqio_task.splits == task.splits
  prefix = HAND_WRITTEN[task.name][1][0][0].split(":")[0] + ":"  # e.g. "wsc text:"
  with tfds.testing.mock_data(num_examples=2):
    for split in task.splits:
      dataset = seqio_task.get_dataset(LENGTHS, split=split, shuffle=False,
                                       try_in_mem_cache=False)
      raw = list(dataset.as_numpy_iterator())
      converted = list(seqio.EncDecFeatureConverter(pack=False)(dataset, LENGTHS)
                       .as_numpy_iterator())
      assert len(converted) == len(raw)
      if task.config == "record":  # one example per mock answer
        assert len(raw) > 2
        assert all(ex["targets_pretokenized"] in ex["answers"] for ex in raw)
      else:
        assert len(raw) == 2, split
      for ex in converted:
        assert ex["encoder_input_tokens"].shape == (LENGTHS["inputs"],)
        assert ex["decoder_target_tokens"].shape == (LENGTHS["targets"],)
        assert _decode(ex["encoder_input_tokens"]).startswith(prefix)
        if task.label_names is not None:
          assert _decode(ex["decoder_target_tokens"]) in task.label_names


@pytest.mark.parametrize("task_name, perfect, nonsense", [
    ("super_glue_multirc_v102", {"f1": 100.0, "exact_match": 100.0},
     {"f1": 0.0, "exact_match": 0.0}),
    ("super_glue_record_v102", {"em": 100.0, "f1": 100.0}, {"em": 0.0, "f1": 0.0}),
])
def test_seqio_evaluator_finds_the_groups_in_the_examples(task_name, perfect, nonsense,
                                                         monkeypatch):
  assert evaluate_on_mock_data(task_name, monkeypatch) == (perfect, nonsense)


# What T5 evaluates each task with (t5.data.glue_utils.SUPERGLUE_METRICS).
EXPECTED_METRICS = {
    "super_glue_boolq_v102": {"accuracy"},
    "super_glue_cb_v102": {"mean_3class_f1", "accuracy"},
    "super_glue_copa_v102": {"accuracy"},
    "super_glue_multirc_v102": {"f1", "exact_match"},
    "super_glue_record_v102": {"em", "f1"},
    "super_glue_rte_v102": {"accuracy"},
    "super_glue_wic_v102": {"accuracy"},
    "super_glue_wsc_v102": {"accuracy"},
    "super_glue_axb_v102": set(),
    "super_glue_axg_v102": set(),
    "super_glue_wsc_v102_simple_eval": {"accuracy"},  # tests/test_wsc_dpr.py
}


@pytest.mark.parametrize("task", super_glue.SUPER_GLUE_TASKS, ids=lambda t: t.name)
def test_postprocessor_and_metrics_wiring(task):
  """Targets and predictions made by the task's postprocessor feed its metrics."""
  seqio_task = seqio.get_mixture_or_task(task.name)
  if task.config == "record":
    example = {"answers": [b"The senator"], "idx/passage": 4, "idx/query": 9}
    targets = [seqio_task.postprocess_fn("The senator", example=example, is_target=True)]
    predictions = [seqio_task.postprocess_fn("the senator")]
    assert targets == [{"value": ["The senator"], "group": (4, 9)}]
    assert predictions == [{"value": "the senator"}]
  elif task.config == "multirc":
    example = {"idx/paragraph": 2, "idx/question": 7}
    targets = [seqio_task.postprocess_fn(t, example=example, is_target=True)
               for t in ("True", "False")]
    predictions = [seqio_task.postprocess_fn(p) for p in ("True", "maybe")]
    assert targets == [{"value": 1, "group": (2, 7)}, {"value": 0, "group": (2, 7)}]
    assert predictions == [{"value": 1}, {"value": -1}]
  else:
    targets = [seqio_task.postprocess_fn(n, is_target=True) for n in task.label_names]
    assert targets == list(range(len(task.label_names)))
    assert seqio_task.postprocess_fn("banana") == -1
    predictions = targets[::-1]
  names = set()
  for metric_fn in seqio_task.metric_fns:
    names |= set(metric_fn(targets, predictions))
  assert names == EXPECTED_METRICS[task.name]


def test_proportional_mixture_rates_and_members():
  mixture = seqio.get_mixture_or_task(super_glue.SUPER_GLUE_MIXTURE)
  assert {t.name: mixture.get_rate(t) for t in mixture.tasks} == {
      "super_glue_boolq_v102": 9427, "super_glue_cb_v102": 250, "super_glue_copa_v102": 400,
      "super_glue_multirc_v102": 27243, "super_glue_record_v102": 138854,
      "super_glue_rte_v102": 2490, "super_glue_wic_v102": 5428,
      "super_glue_axb_v102": 0, "super_glue_axg_v102": 0,
      "dpr_v001_simple": 1322, "super_glue_wsc_v102_simple_train": 259,
      "super_glue_wsc_v102_simple_eval": 0}


def test_axb_reads_as_the_rte_task_it_diagnoses():
  """T5 renames AX-b's sentence1/sentence2 to premise/hypothesis before formatting it as
  RTE, so the hypothesis (sentence2) comes first, exactly as in RTE's inputs."""
  example = labelled(1, sentence1="No dog has ever flown.", sentence2="A dog flew, once.")
  assert preprocess("super_glue_axb_v102", example) == [
      ("rte hypothesis: A dog flew, once. premise: No dog has ever flown.", "not_entailment")]
  rte = labelled(1, premise="No dog has ever flown.", hypothesis="A dog flew, once.")
  assert preprocess("super_glue_rte_v102", rte) == preprocess("super_glue_axb_v102", example)
