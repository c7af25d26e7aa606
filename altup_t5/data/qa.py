"""SQuAD and TriviaQA (closed-book, and T5's reading comprehension) as seqio tasks in
T5's formats; importing this module registers them.

  squad_v010_allanswers    squad/v1.1:3.0.0, train/validation
      "question: Who won ? context: Denver won , 24 - 10 . "  ->  "Denver"
  squad_v010_context_free  the same examples without the passage
      "squad trivia question: Who won ? "                     ->  "Denver"
  trivia_qa_open           trivia_qa/unfiltered.nocontext:1.1.0, closed book (no evidence)
      "trivia_qa question: Which planet is the Red Planet?"   ->  "Mars"
  trivia_qa_v010           trivia_qa/rc:1.1.0, T5's reading-comprehension task (no metrics)
      "question: Which planet is red ? context: Mars is ... " ->  "mars"

SQuAD is T5's (`t5.data.tasks`): the question, passage and answers have a space put
around every ASCII punctuation mark and runs of whitespace made one space (T5's
`_pad_punctuation`; hence the spaces above, and the final space after a passage's last
full stop); the target is the first answer, and every answer is kept (`answers`) for
EM/F1, the best over the answers (`metrics.squad`). The context-free variant is T5's
"squad trivia question:" task.

T5 registers no closed-book TriviaQA: its `trivia_qa_v010` reads `trivia_qa/rc` with
the evidence documents and has no metrics (registered here too, as T5 has it: see
`trivia_qa_rc_text`). The paper's TriviaQA is closed-book (the T5 closed-book QA work's
`trivia_qa_open`, Roberts et al. 2020, which seqio's own documentation uses), so that
is the one to fine-tune and score, with that work's name, splits and format: the
question as written after "trivia_qa question: ", the answer's canonical value as the
target, all its aliases kept for EM/F1 with TriviaQA's normalisation
(`metrics.trivia_qa`). TFDS's TriviaQA test answers are hidden, so the open-domain
setting trains on the first 78,785 training questions, validates on the other 8,837
and tests on TFDS's validation split.

TFDS 4.9.10 builds exactly these versions (squad 3.0.0, trivia_qa 1.1.0), which are
the ones T5 used, so unlike GLUE's they are not a setting.
"""

from __future__ import annotations

import functools

import seqio
import tensorflow as tf

from altup_t5.data import glue
from altup_t5.data import metrics
from altup_t5.data import postprocessors
from altup_t5.data import sources

SQUAD_TFDS = "squad/v1.1:3.0.0"
TRIVIA_QA_TFDS = "trivia_qa/unfiltered.nocontext:1.1.0"
TRIVIA_QA_RC_TFDS = "trivia_qa/rc:1.1.0"
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


# ------------------------------------------------- T5's reading-comprehension TriviaQA

def trivia_qa_rc_text(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """One example per (evidence document, normalised answer alias) where the document
  contains the alias (both punctuation-padded, compared in lower case):
  "question: {q} context: {document}" -> the alias. Documents are the Wikipedia pages,
  then the web search results; for each, the aliases in order (T5's `trivia_qa`)."""

  def examples(x):
    contexts = pad_punctuation(tf.concat([x["entity_pages"]["wiki_context"],
                                          x["search_results"]["search_context"]], 0))
    aliases = pad_punctuation(x["answer"]["normalized_aliases"])   # [A]
    n_aliases = tf.size(aliases)
    context = tf.repeat(contexts, n_aliases)                       # [C * A], context-major
    alias = tf.tile(aliases, [tf.size(contexts)])                  # [C * A]
    # T5 puts the alias into a regex unescaped; escaped, it is the same substring test
    # without failing on an alias that holds a metacharacter.
    found = tf.map_fn(
        lambda pair: tf.strings.regex_full_match(
            tf.strings.lower(pair[0]),
            tf.strings.join([".*", glue.regex_literal(tf.strings.lower(pair[1])), ".*"])),
        (context, alias), fn_output_signature=tf.bool)
    question = pad_punctuation(x["question"])
    inputs = _join([tf.fill(tf.shape(context), "question:"),
                    tf.fill(tf.shape(context), question),
                    tf.fill(tf.shape(context), "context:"), context])
    return {"inputs": tf.boolean_mask(inputs, found),
            "targets": tf.boolean_mask(alias, found)}

  return dataset.map(examples, num_parallel_calls=tf.data.AUTOTUNE).unbatch()


def trivia_qa_truncate_inputs(dataset: tf.data.Dataset, output_features,
                              sequence_length) -> tf.data.Dataset:
  """Token ids longer than the inputs' length: a random window of that length that holds
  the first occurrence of the target's tokens, or the example is dropped if they do not
  occur (T5's `trivia_qa_truncate_inputs`). Keeps only "inputs" and "targets", as T5.
  As in T5, the window is the full inputs' length and `append_eos_after_trim` then drops
  its last token for EOS, which can cut an answer that ends the window."""
  del output_features
  max_length = sequence_length["inputs"]

  @seqio.map_over_dataset(num_seeds=1)
  def truncate(x, seed):
    inputs, targets = x["inputs"], x["targets"]                   # [N], [M]
    n, m = tf.size(inputs), tf.size(targets)

    def window_with_answer():
      frames = tf.signal.frame(inputs, m, 1)                       # [N - M + 1, M]
      at = tf.where(tf.reduce_all(tf.equal(frames, targets[tf.newaxis]), axis=1))[:, 0]

      def window():
        start = tf.cast(at[0], tf.int32)
        low = tf.maximum(0, start - (max_length - m))  # the answer ends inside
        high = tf.minimum(start, n - max_length) + 1    # it starts inside, no overrun
        begin = tf.random.stateless_uniform([], seed, minval=low, maxval=high,
                                            dtype=tf.int32)
        return inputs[begin:begin + max_length]
      return tf.cond(tf.size(at) > 0, window, lambda: inputs[:0])

    answerable = (m > 0) & (m <= n)
    inputs = tf.cond(n <= max_length, lambda: inputs,
                     lambda: tf.cond(answerable, window_with_answer, lambda: inputs[:0]))
    return {"inputs": inputs, "targets": targets}

  return truncate(dataset).filter(lambda x: tf.size(x["inputs"]) > 0)


glue.register_text_task("squad_v010_allanswers", SQUAD_TFDS, ("train", "validation"),
                        squad_text, (metrics.squad,), postprocessors.qa)
glue.register_text_task("squad_v010_context_free", SQUAD_TFDS, ("train", "validation"),
                        functools.partial(squad_text, include_context=False),
                        (metrics.squad,), postprocessors.qa)
glue.register_text_task("trivia_qa_open", TRIVIA_QA_TFDS, TRIVIA_QA_SPLITS,
                        trivia_qa_open_text, (metrics.trivia_qa,), postprocessors.qa)

if "trivia_qa_v010" in seqio.TaskRegistry.names():
  seqio.TaskRegistry.remove("trivia_qa_v010")
seqio.TaskRegistry.add(
    "trivia_qa_v010",
    source=sources.tfds_source(TRIVIA_QA_RC_TFDS, splits=("train", "validation", "test")),
    preprocessors=[
        trivia_qa_rc_text,
        seqio.preprocessors.tokenize,
        seqio.CacheDatasetPlaceholder(),
        trivia_qa_truncate_inputs,
        seqio.preprocessors.append_eos_after_trim,
    ],
    output_features=glue.OUTPUT_FEATURES,
    metric_fns=[],  # T5 scores none; fine-tune and score the closed-book task instead
)
