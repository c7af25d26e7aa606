"""SQuAD and closed-book TriviaQA as seqio tasks in T5's format; importing this module
registers them.

  squad_v010_allanswers    squad/v1.1:3.0.0, train/validation
      "question: Who won ? context: Denver won , 24 - 10 . "  ->  "Denver"
  squad_v010_context_free  the same examples without the passage
      "squad trivia question: Who won ? "                     ->  "Denver"
  trivia_qa_open           trivia_qa/unfiltered.nocontext:1.1.0, closed book (no evidence)
      "trivia_qa question: Which planet is the Red Planet?"   ->  "Mars"

SQuAD is T5's (`t5.data.tasks`): the question, passage and answers have a space put
around every ASCII punctuation mark and runs of whitespace made one space (T5's
`_pad_punctuation`; hence the spaces above, and the final space after a passage's last
full stop); the target is the first answer, and every answer is kept (`answers`) for
EM/F1, the best over the answers (`metrics.squad`). The context-free variant is T5's
"squad trivia question:" task.

T5 registers no closed-book TriviaQA: its `trivia_qa_v010` reads `trivia_qa/rc` with
the evidence documents (one example per document that contains an answer alias) and has
no metrics. The paper's TriviaQA is closed-book (T5X's and the T5 closed-book QA work's
`trivia_qa_open`, Roberts et al. 2020), so that is the task here, with that work's name,
splits and format: the question as written after "trivia_qa question: ", the answer's
canonical value as the target, all its aliases kept for EM/F1 with TriviaQA's
normalisation (`metrics.trivia_qa`). TFDS's TriviaQA test answers are hidden, so the
open-domain setting trains on the first 78,785 training questions, validates on the
other 8,837 and tests on TFDS's validation split.

TFDS 4.9.10 builds exactly these versions (3.0.0 and 1.1.0), which are the ones T5
used, so unlike GLUE's they are not a setting.
"""

from __future__ import annotations

import functools

import seqio
import tensorflow as tf

from altup_t5.data import glue
from altup_t5.data import metrics
from altup_t5.data import postprocessors

SQUAD_TFDS = "squad/v1.1:3.0.0"
TRIVIA_QA_TFDS = "trivia_qa/unfiltered.nocontext:1.1.0"
TRIVIA_QA_TRAIN_QUESTIONS = 78_785  # of TFDS's 87,622; the rest is the validation split
TRIVIA_QA_SPLITS = {"train": f"train[:{TRIVIA_QA_TRAIN_QUESTIONS}]",
                    "validation": f"train[{TRIVIA_QA_TRAIN_QUESTIONS}:]",
                    "test": "validation"}


def pad_punctuation(text: tf.Tensor) -> tf.Tensor:
  """"Denver won, 24-10." -> "Denver won , 24 - 10 . " (spaces around ASCII punctuation,
  whitespace runs made one space; a leading or trailing space stays, as in T5)."""
  text = tf.strings.regex_replace(text, r"([[:punct:]])", r" \1 ")
  return tf.strings.regex_replace(text, r"\s+", " ")


def _join(parts) -> tf.Tensor:
  return tf.strings.regex_replace(tf.strings.join(parts, separator=" "), r"\s+", " ")


@seqio.map_over_dataset
def squad_text(x, include_context: bool = True):
  """A SQuAD question -> "question: {q} context: {c}" (or "squad trivia question: {q}")
  -> its first answer, all punctuation-padded; keeps id, question, context, answers."""
  answers = pad_punctuation(x["answers"]["text"])          # [num_answers]
  question = pad_punctuation(x["question"])
  context = pad_punctuation(x["context"])
  inputs = (_join(["question:", question, "context:", context]) if include_context
            else _join(["squad trivia question:", question]))
  return {"inputs": inputs, "targets": answers[0], "id": x["id"], "question": question,
          "context": context, "answers": answers}


@seqio.map_over_dataset
def trivia_qa_open_text(x):
  """A TriviaQA question -> "trivia_qa question: {q}" -> the answer's value; keeps the
  aliases as `answers` (the value is one of them)."""
  return {"inputs": tf.strings.join(["trivia_qa question: ", x["question"]]),
          "targets": x["answer"]["value"], "answers": x["answer"]["aliases"]}


glue.register_text_task("squad_v010_allanswers", SQUAD_TFDS, ("train", "validation"),
                        squad_text, (metrics.squad,), postprocessors.qa)
glue.register_text_task("squad_v010_context_free", SQUAD_TFDS, ("train", "validation"),
                        functools.partial(squad_text, include_context=False),
                        (metrics.squad,), postprocessors.qa)
glue.register_text_task("trivia_qa_open", TRIVIA_QA_TFDS, TRIVIA_QA_SPLITS,
                        trivia_qa_open_text, (metrics.trivia_qa,), postprocessors.qa)
