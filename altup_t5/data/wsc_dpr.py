"""WSC and DPR as T5 trained and scored them: predict the pronoun's referent as text.

Tasks (importing this module registers them):
  dpr_v001_simple                   TFDS definite_pronoun_resolution:1.1.0, all splits
  super_glue_wsc_v102_simple_train  super_glue/wsc.fixed:1.0.2 train, correct referents only
  super_glue_wsc_v102_simple_eval   super_glue/wsc.fixed:1.0.2 validation/test, scored by
                                    whether the prediction names the candidate (`wsc_simple`)

  DPR:  "Bob asked Tom if he can lend some money.", pronoun "he", candidates
        [Bob, Tom], label 1      ->  "wsc: Bob asked Tom if *he* can lend some money." -> "Tom"
  WSC:  text "Mitchell asked Tom if he could lend some money.", span2 "he" at word 4,
        span1 "Tom"              ->  "wsc: Mitchell asked Tom if *he* could lend some money." -> "Tom"

The target of a WSC example is always its candidate (span1), right or wrong; the label
says whether the candidate is the referent. So training keeps the positives only, and
evaluation asks whether the prediction names the candidate and compares that with the
label (accuracy). T5 special-cases two WSC texts whose span2_index points at the wrong
word; here a pronoun that is not at its index is left unmarked instead (no error).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import seqio
import tensorflow as tf

from altup_t5.data import glue
from altup_t5.data import metrics
from altup_t5.data import postprocessors

DPR_TFDS = "definite_pronoun_resolution:1.1.0"
WSC_TFDS = "super_glue/wsc.fixed:1.0.2"
PREFIX = "wsc:"


def _escaped(text: tf.Tensor) -> tf.Tensor:
  """`text` as a literal inside an RE2 pattern (spans may hold metacharacters)."""
  return tf.strings.regex_replace(text, r"([\\.^$|?*+()\[\]{}])", r"\\\1")


@seqio.map_over_dataset
def dpr_simple_text(x):
  """The pronoun's first occurrence (as a word before " ", "." or ",") in *asterisks*;
  target: the candidate the label picks."""
  pattern = tf.strings.join([" (", _escaped(x["pronoun"]), r")( |\.|,)"])
  marked = tf.strings.regex_replace(x["sentence"], pattern, r" *\1*\2",
                                    replace_global=False)
  return {"inputs": tf.strings.join([PREFIX, marked], separator=" "),
          "targets": tf.gather(x["candidates"], tf.cast(x["label"], tf.int32))}


def _mark_pronoun(text: tf.Tensor, pronoun: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
  """The word at `index` (space-separated) as *pronoun* when it is the pronoun."""
  words = tf.strings.split(text, sep=" ")
  n = tf.size(words, out_type=index.dtype)
  at_index = (index >= 0) & (index < n)
  safe = tf.clip_by_value(index, 0, tf.maximum(n - 1, 0))
  matches = at_index & tf.equal(tf.gather(words, safe), pronoun)
  marked = tf.tensor_scatter_nd_update(
      words, [[safe]], [tf.strings.join(["*", pronoun, "*"])])
  return tf.cond(matches, lambda: tf.strings.reduce_join(marked, separator=" "),
                 lambda: text)


def wsc_simple_text(dataset: tf.data.Dataset, correct_referent_only: bool
                    ) -> tf.data.Dataset:
  """"wsc: ... *he* ..." -> the candidate's text (span1), keeping label and idx."""
  if correct_referent_only:
    dataset = dataset.filter(lambda x: tf.cast(x["label"], tf.bool))

  def one(x):
    marked = _mark_pronoun(x["text"], x["span2_text"], x["span2_index"])
    return {"inputs": tf.strings.join([PREFIX, marked], separator=" "),
            "targets": tf.reshape(x["span1_text"], []),
            "label": x["label"], "idx": x["idx"]}
  return dataset.map(one, num_parallel_calls=tf.data.AUTOTUNE)


# Words ignored when comparing a prediction with the candidate (T5's list).
DETERMINERS = frozenset(
    "a an few her his each every many much my our some that the their these this those "
    "which whose your".split())


def _content(text: str) -> str:
  return " ".join(w for w in text.strip().lower().split(" ") if w not in DETERMINERS)


def wsc_simple(prediction: Any, example: Mapping[str, Any] | None = None,
               is_target: bool = False) -> int:
  """1 if `prediction` names the example's candidate, else 0; -1 if it is empty after
  dropping case and determiners. Targets map to the example's label, so accuracy
  compares "names the candidate" with "the candidate is the referent". The words of one
  must be a subset of the other's ("fuzzy bunny" names "bunny"), and a possessive on
  one side only never matches ("Bob" does not name "Bob's hat")."""
  if is_target:
    return postprocessors._as_int(  # pylint: disable=protected-access
        postprocessors._required(example, "label", "wsc_simple"))  # pylint: disable=protected-access
  predicted = _content(postprocessors._as_text(prediction))  # pylint: disable=protected-access
  if not predicted:
    return -1
  candidate = _content(postprocessors._as_text(  # pylint: disable=protected-access
      postprocessors._required(example, "targets_pretokenized", "wsc_simple")))  # pylint: disable=protected-access
  if ("'" in predicted) != ("'" in candidate):
    return 0
  ours, theirs = set(predicted.split(" ")), set(candidate.split(" "))
  return int(ours <= theirs or theirs <= ours)


# ---------------------------------------------------------------------- the tasks

# Training-set sizes, the mixing rates T5 gives them in super_glue_v102_proportional.
DPR_TRAIN_EXAMPLES = 1_322
WSC_SIMPLE_TRAIN_EXAMPLES = 259  # wsc.fixed's 554 train examples, positives only

glue.register_text_task("dpr_v001_simple", DPR_TFDS, ("train", "test"), dpr_simple_text,
                        (metrics.accuracy,), None)
glue.register_text_task("super_glue_wsc_v102_simple_train", WSC_TFDS, ("train",),
                        functools.partial(wsc_simple_text, correct_referent_only=True),
                        (), None)
glue.register_text_task("super_glue_wsc_v102_simple_eval", WSC_TFDS,
                        ("validation", "test"),
                        functools.partial(wsc_simple_text, correct_referent_only=False),
                        (metrics.accuracy,), wsc_simple)
