"""WSC and DPR as T5 trained and scored them (`wsc_simple`), against examples written by
hand in T5's documented format."""

import numpy as np
import pytest
import tensorflow as tf

from altup_t5.data import metrics
from altup_t5.data import super_glue  # pylint: disable=unused-import  (the mixtures)
from altup_t5.data import wsc_dpr
from test_glue_tasks import byte_vocabulary, preprocess  # pylint: disable=g-bad-import-order,unused-import  (a fixture)


def dpr(sentence, pronoun, candidates, label):
  return {"sentence": sentence, "pronoun": pronoun, "candidates": candidates,
          "label": np.int64(label)}


def wsc(text, span1, span2, span2_index, label, idx=7):
  return {"text": text, "span1_text": span1, "span1_index": np.int32(0),
          "span2_text": span2, "span2_index": np.int32(span2_index),
          "label": np.int64(label), "idx": np.int32(idx)}


@pytest.mark.parametrize("example, expected", [
    # T5's docstring example.
    (dpr("Bob asked Tom if he can lend some money.", "he", ["Bob", "Tom"], 1),
     ("wsc: Bob asked Tom if *he* can lend some money.", "Tom")),
    # Only the first occurrence, and only as a whole word before " ", "." or ",".
    (dpr("The hen laid eggs, and then it slept. Later it woke.", "it", ["hen", "eggs"], 0),
     ("wsc: The hen laid eggs, and then *it* slept. Later it woke.", "hen")),
    (dpr("Ann told Sue that she won.", "she", ["Ann", "Sue"], 0),
     ("wsc: Ann told Sue that *she* won.", "Ann")),
    # A pronoun with a regex metacharacter is matched literally.
    (dpr("Jo met Al. (he) was late, he said.", "(he)", ["Jo", "Al"], 1),
     ("wsc: Jo met Al. *(he)* was late, he said.", "Al")),
])
def test_dpr_simple_format(example, expected):
  assert preprocess("dpr_v001_simple", example) == [expected]


def test_wsc_simple_eval_marks_the_pronoun_and_targets_the_candidate():
  positive = wsc("Mitchell asked Tom if he could lend some money.", "Tom", "he", 4, 1)
  negative = wsc("Mitchell asked Tom if he could lend some money.", "Mitchell", "he", 4, 0)
  expected = "wsc: Mitchell asked Tom if *he* could lend some money."
  assert preprocess("super_glue_wsc_v102_simple_eval", positive) == [(expected, "Tom")]
  assert preprocess("super_glue_wsc_v102_simple_eval", negative) == [(expected, "Mitchell")]
  # Training keeps the correct referents only.
  assert preprocess("super_glue_wsc_v102_simple_train", positive) == [(expected, "Tom")]
  assert preprocess("super_glue_wsc_v102_simple_train", negative) == []


@pytest.mark.parametrize("index", [2, 99, -1])
def test_a_pronoun_not_at_its_index_is_left_unmarked(index):
  example = wsc("Anna thanked Bea because she helped.", "Bea", "she", index, 1)
  assert preprocess("super_glue_wsc_v102_simple_eval", example) == [
      ("wsc: Anna thanked Bea because she helped.", "Bea")]


def test_a_pronoun_with_regex_metacharacters_is_marked_literally():
  example = wsc("Max saw (it) at night.", "Max", "(it)", 2, 1)
  assert preprocess("super_glue_wsc_v102_simple_eval", example) == [
      ("wsc: Max saw *(it)* at night.", "Max")]


def test_the_eval_examples_keep_label_and_idx():
  ds = tf.data.Dataset.from_tensors(wsc("A b c.", "A", "b", 1, 0, idx=11))
  [ex] = list(wsc_dpr.wsc_simple_text(ds, correct_referent_only=False).as_numpy_iterator())
  assert ex["label"] == 0 and ex["idx"] == 11


@pytest.mark.parametrize("prediction, candidate, expected", [
    ("Tom", "Tom", 1),
    ("tom ", "Tom", 1),                      # case and surrounding space ignored
    ("the fuzzy bunny", "bunny", 1),         # one word set inside the other
    ("bunny", "The fuzzy bunny", 1),
    ("Bob", "Bob's hat", 0),                 # a possessive on one side only
    ("Bob's hat", "Bob's hat", 1),
    ("Mitchell", "Tom", 0),
    ("", "Tom", -1),                         # empty: never equal to a label
    ("the", "Tom", -1),                      # only determiners: empty too
    (b"\xc3\xa9mile", "\u00c9mile", 1),      # bytes from the decoder
])
def test_wsc_simple_postprocessor(prediction, candidate, expected):
  example = {"targets_pretokenized": candidate.encode(), "label": np.int64(1)}
  assert wsc_dpr.wsc_simple(prediction, example) == expected


def test_wsc_simple_targets_are_labels_and_accuracy_compares_naming_with_label():
  examples = [{"targets_pretokenized": b"Tom", "label": np.int64(1)},
              {"targets_pretokenized": b"Mitchell", "label": np.int64(0)},
              {"targets_pretokenized": b"the dog", "label": np.int64(1)}]
  targets = [wsc_dpr.wsc_simple("", ex, is_target=True) for ex in examples]
  assert targets == [1, 0, 1]
  # Names Tom (right), names Mitchell though wrong (wrong), says nothing (wrong).
  predictions = [wsc_dpr.wsc_simple(p, ex) for p, ex in zip(["Tom", "Mitchell", ""],
                                                            examples)]
  assert predictions == [1, 1, -1]
  assert metrics.accuracy(targets, predictions) == {"accuracy": pytest.approx(100 / 3)}
  with pytest.raises(ValueError, match="wsc_simple targets need the example's 'label'"):
    wsc_dpr.wsc_simple("Tom", {"targets_pretokenized": b"Tom"}, is_target=True)


def test_the_registered_tasks_metrics_and_postprocessors():
  import seqio  # pylint: disable=g-import-not-at-top
  evaluated = seqio.get_mixture_or_task("super_glue_wsc_v102_simple_eval")
  assert evaluated.postprocessor is wsc_dpr.wsc_simple
  assert [f.__name__ for f in evaluated.metric_fns] == ["accuracy"]
  assert [f.__name__ for f in seqio.get_mixture_or_task("dpr_v001_simple").metric_fns] == [
      "accuracy"]
  assert seqio.get_mixture_or_task("super_glue_wsc_v102_simple_train").metric_fns == []


def test_t5s_wsc_dpr_and_mnli_mixtures():
  import seqio  # pylint: disable=g-import-not-at-top
  def rates(name):
    mixture = seqio.get_mixture_or_task(name)
    return {t.name: mixture.get_rate(t) for t in mixture.tasks}
  assert rates("wsc_dpr_simple_proportional") == {
      "dpr_v001_simple": 1322, "super_glue_wsc_v102_simple_train": 259,
      "super_glue_wsc_v102_simple_eval": 0}
  assert rates("glue_mnli_and_dev_v002") == {
      "glue_mnli_v002": 1.0, "glue_mnli_matched_v002": 1.0, "glue_mnli_mismatched_v002": 1.0}


def wnli(sentence1, sentence2, label=1, idx=4):
  return {"sentence1": sentence1, "sentence2": sentence2, "label": np.int64(label),
          "idx": np.int32(idx)}


@pytest.mark.parametrize("example, expected", [
    # T5's documented example: the hypothesis repeats "was tasty" after the pronoun.
    (wnli("The fish ate the worm. It was tasty.", "The worm was tasty.", 0),
     ("wsc: The fish ate the worm. *It* was tasty.", "The worm")),
    # A pronoun with final punctuation: the mark closes before it, then a space.
    (wnli("Sam put the vase on the shelf and Kim dusted it.", "Kim dusted the shelf."),
     ("wsc: Sam put the vase on the shelf and Kim dusted *it* .", "the shelf")),
    # Of two pronouns, the one whose neighbours the hypothesis repeats; a possessive
    # referent loses its "'s".
    (wnli("Jane told Ann that she liked her hat.", "Jane told Ann that she liked Ann's hat."),
     ("wsc: Jane told Ann that she liked *her* hat.", "Ann")),
    # The referent keeps the hypothesis's capitals, from its last article on.
    (wnli("The dog chased the Cat until it was tired.", "The dog chased the Cat until the "
          "Cat was tired."),
     ("wsc: The dog chased the Cat until *it* was tired.", "the Cat")),
    # Words that are regex metacharacters are matched literally.
    (wnli("Bo paid (cash) to Al so he could go.", "Bo paid (cash) to Al so Al could go."),
     ("wsc: Bo paid (cash) to Al so *he* could go.", "Al")),
])
def test_wnli_simple_eval_format(example, expected):
  assert preprocess("glue_wnli_v002_simple_eval", example) == [expected]


def test_wnli_simple_eval_keeps_what_wsc_simple_scores():
  ds = tf.data.Dataset.from_tensors(wnli("The fish ate the worm. It was tasty.",
                                         "The worm was tasty.", 0, idx=9))
  [ex] = list(wsc_dpr.wnli_simple_text(ds).as_numpy_iterator())
  assert (ex["premise"], ex["hypothesis"]) == (b"The fish ate the worm. It was tasty.",
                                               b"The worm was tasty.")
  assert ex["label"] == 0 and ex["idx"] == 9
  import seqio  # pylint: disable=g-import-not-at-top
  task = seqio.get_mixture_or_task("glue_wnli_v002_simple_eval")
  assert task.postprocessor is wsc_dpr.wsc_simple
  assert [f.__name__ for f in task.metric_fns] == ["accuracy"]
  assert task.source.tfds_dataset.name == "glue/wnli:1.0.0"
  assert task.splits == ("validation", "test")


def test_wnli_without_a_pronoun_is_a_clear_error():
  with pytest.raises(ValueError, match=r"^WNLI: no pronoun \(he, she, .*\) in the premise "
                                       r"'Rain fell\.'$"):
    wsc_dpr.wnli_simple_strings("Rain fell.", "Rain fell.")
