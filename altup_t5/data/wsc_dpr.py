"""WSC and DPR as T5 trained and scored them: predict the pronoun's referent as text.

Tasks (importing this module registers them):
  dpr_v001_simple                   TFDS definite_pronoun_resolution:1.1.0, all splits
  super_glue_wsc_v102_simple_train  super_glue/wsc.fixed:1.0.2 train, correct referents only
  super_glue_wsc_v102_simple_eval   super_glue/wsc.fixed:1.0.2 validation/test, scored by
                                    whether the prediction names the candidate (`wsc_simple`)
  glue_wnli_v002_simple_eval        glue/wnli:<GLUE's version, 1.0.0> validation/test, WNLI's
                                    pairs rewritten in this format (see `wnli_simple_text`)

  DPR:  "Bob asked Tom if he can lend some money.", pronoun "he", candidates
        [Bob, Tom], label 1      ->  "wsc: Bob asked Tom if *he* can lend some money." -> "Tom"
  WSC:  text "Mitchell asked Tom if he could lend some money.", span2 "he" at word 4,
        span1 "Tom"              ->  "wsc: Mitchell asked Tom if *he* could lend some money." -> "Tom"

The target of a WSC example is always its candidate (span1), right or wrong; the label
says whether the candidate is the referent. So training keeps the positives only, and
evaluation asks whether the prediction names the candidate and compares that with the
label (accuracy). WNLI is evaluated the same way, its hypothesis read as the premise
with the pronoun replaced. T5 special-cases two WSC texts whose span2_index points at the wrong
word; here a pronoun that is not at its index is left unmarked instead (no error).
"""

from __future__ import annotations

import functools
import re
from typing import Any, Mapping

import seqio
import tensorflow as tf

from altup_t5.data import glue
from altup_t5.data import metrics
from altup_t5.data import postprocessors

DPR_TFDS = "definite_pronoun_resolution:1.1.0"
WSC_TFDS = "super_glue/wsc.fixed:1.0.2"
PREFIX = "wsc:"


@seqio.map_over_dataset
def dpr_simple_text(x):
  """The pronoun's first occurrence (as a word before " ", "." or ",") in *asterisks*;
  target: the candidate the label picks."""
  pattern = tf.strings.join([" (", glue.regex_literal(x["pronoun"]), r")( |\.|,)"])
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


# ----------------------------------------------------------------------- WNLI

PRONOUNS = ("he", "she", "they", "it", "her", "his", "their", "them", "him")  # T5's list
_END_PUNCTUATION = ".,?!"


def _bare_words(text: str) -> list[str]:
  """Lower-case words split on single spaces, one final .,?! dropped, empties removed."""
  words = (w[:-1] if w[-1:] and w[-1] in _END_PUNCTUATION else w
           for w in text.strip().lower().split(" "))
  return [w for w in words if w]


def _longest_prefix_inside(words: list[str], text: str) -> int:
  """How many of `words`, from the first, joined by spaces, are a substring of `text`."""
  n = 0
  while n < len(words) and " ".join(words[:n + 1]) in text:
    n += 1
  return n


def _referent(premise: list[str], hypothesis: list[str], index: int) -> tuple[int, str]:
  """(score, candidate) for the pronoun at `index`: the score counts the premise's words
  next to the pronoun that the hypothesis repeats (before it, with word order reversed
  on both sides, and after it); the candidate is what the hypothesis has in their place."""
  before, after = premise[:index], premise[index + 1:]
  n_before = _longest_prefix_inside(before[::-1], " ".join(hypothesis[::-1]))
  n_after = _longest_prefix_inside(after, " ".join(hypothesis))
  if n_before + n_after == 0:
    return 0, ""
  left = [re.escape(w) for w in before[len(before) - n_before:]]
  right = [re.escape(w) for w in after[:n_after]]
  text = " ".join(hypothesis)
  # Both neighbours, then only the right (referent first), then only the left (last).
  for pattern in (" ".join(left + ["(.+)"] + right), " ".join(["^(.+)"] + right),
                  " ".join(left + ["(.+)$"])):
    found = re.search(pattern, text)
    if found:
      return n_before + n_after, found.group(1)
  return n_before + n_after, ""


def _as_written(candidate: str, hypothesis: str) -> str:
  """The candidate as the hypothesis writes it (case, punctuation), from its last article
  on, with a final .,?! and a possessive "'s" or "'" removed."""
  words = candidate.split(" ")
  articles = [words.index(a) for a in ("a", "an", "the") if a in words]
  words = words[max(articles, default=0):]
  pattern = " ".join(re.escape(w) + r"[.,?!]?" for w in words)
  found = re.search(f"({pattern})", hypothesis, re.IGNORECASE)
  if not found:
    raise ValueError(f"WNLI: cannot find the referent {' '.join(words)!r} in the "
                     f"hypothesis {hypothesis!r}")
  text = found.group(1)
  text = text[:-1] if text[-1:] and text[-1] in _END_PUNCTUATION else text
  for possessive in ("'s", "'"):
    if text.endswith(possessive):
      return text[:-len(possessive)]
  return text


def _highlight(premise: str, index: int) -> str:
  """The `index`-th space-separated word as *word*, a final .,?! moved after it."""
  words = premise.split(" ")
  word = words[index]
  words[index] = (f"*{word[:-1]}* {word[-1]}" if word[-1:] and word[-1] in _END_PUNCTUATION
                  else f"*{word}*")
  return " ".join(words)


def wnli_simple_strings(premise: str, hypothesis: str) -> tuple[str, str]:
  """("wsc: premise with the pronoun in *asterisks*", referent) for a WNLI pair.

  The pronoun is the one whose neighbouring words the hypothesis repeats most (the first
  of equals); its referent is the hypothesis's text in the pronoun's place. E.g.
  "The fish ate the worm. It was tasty." / "The worm was tasty." ->
  ("wsc: The fish ate the worm. *It* was tasty.", "The worm"). As in T5, the pronoun's
  index among the cleaned words is applied to the premise split on single spaces.
  """
  words, hypothesis_words = _bare_words(premise), _bare_words(hypothesis)
  pronouns = [i for i, w in enumerate(words) if w in PRONOUNS]
  if not pronouns:
    raise ValueError(f"WNLI: no pronoun ({', '.join(PRONOUNS)}) in the premise {premise!r}")
  best, candidate = pronouns[0], None
  best_score = -1
  for i in pronouns:
    score, text = _referent(words, hypothesis_words, i)
    if score > best_score:
      best, best_score, candidate = i, score, text
  return f"{PREFIX} {_highlight(premise, best)}", _as_written(candidate, hypothesis)


@seqio.map_over_dataset
def wnli_simple_text(x):
  """A GLUE WNLI pair -> {"inputs": "wsc: ... *it* ...", "targets": referent, ...},
  keeping premise, hypothesis, label and idx (an evaluation-only format, as in T5)."""

  def strings(premise, hypothesis):
    return wnli_simple_strings(premise.numpy().decode("utf-8"),
                               hypothesis.numpy().decode("utf-8"))

  inputs, targets = tf.py_function(strings, [x["sentence1"], x["sentence2"]],
                                   [tf.string, tf.string])
  return {"inputs": tf.reshape(inputs, []), "targets": tf.reshape(targets, []),
          "premise": x["sentence1"], "hypothesis": x["sentence2"],
          "label": x["label"], "idx": x["idx"]}


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
# WNLI reads GLUE's TFDS version (glue.GLUE_TFDS_VERSION, T5's 1.0.0 by default).
glue.register_text_task("glue_wnli_v002_simple_eval",
                        f"glue/wnli:{glue.GLUE_TFDS_VERSION}", ("validation", "test"),
                        wnli_simple_text, (metrics.accuracy,), wsc_simple)
