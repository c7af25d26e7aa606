"""Offline seqio tasks on the local Shakespeare + Milton corpus (see `local_corpus`).

  local_span_corruption  T5 span corruption of the corpus documents (C4's recipe).
  local_author           "author passage: <passage>" -> "shakespeare" | "milton"
                         metric: accuracy
  local_same_work        "same_work passage1: <passage> passage2: <passage>"
                         -> "same" | "different"; metrics: accuracy, F1 of "same"
  local_classification   mixture of local_author and local_same_work, equal rates.

Labels come only from the corpus metadata (author, work). Passages are runs of whole
lines of one document, `PASSAGE_CHARS` to ~2x that many characters (~80-170 tokens with
the local vocabulary), joined by spaces. Validation examples come only from validation
works. Both label tasks are balanced (equal numbers of each class) and deterministic:
every choice is drawn from `random.Random` seeded with the task and split names.
All tasks use the local vocabulary (8000 pieces + 100 extra ids), prepared on first use.

Examples longer than the feature lengths are truncated by seqio, as for any task; the
classification tasks count them (`truncated_counts()`) and log the count at 1, 2, 4, 8,
... truncated examples per task and feature.
"""

from __future__ import annotations

import collections
import functools
import random
from typing import Callable, Mapping

from absl import logging
import seqio
import tensorflow as tf

from altup_t5.data import local_corpus
from altup_t5.data import metrics
from altup_t5.data import paths
from altup_t5.data import postprocessors
from altup_t5.data import denoising
from altup_t5.data import vocabularies

AUTHOR_LABELS = ("shakespeare", "milton")
SAME_WORK_LABELS = ("different", "same")  # "same" is class 1, the class F1 scores
PASSAGE_CHARS = 300
MIN_PASSAGE_CHARS = 100

VOCABULARY = vocabularies.local_vocabulary()
FEATURES = {
    "inputs": seqio.Feature(VOCABULARY, add_eos=True, required=False),
    "targets": seqio.Feature(VOCABULARY, add_eos=True),
}


# ----------------------------------------------------------------------------------
# Examples from the corpus (plain Python; cached per data directory and split).
# ----------------------------------------------------------------------------------


def passages(text: str) -> list[str]:
  """Whole lines packed into passages of >= PASSAGE_CHARS characters; a last piece
  shorter than MIN_PASSAGE_CHARS joins the passage before it (or is dropped if alone)."""
  out, current = [], []
  for line in text.split("\n"):
    if line.strip():
      current.append(line.strip())
    if sum(map(len, current)) + len(current) - 1 >= PASSAGE_CHARS:
      out.append(" ".join(current))
      current = []
  rest = " ".join(current)
  if len(rest) >= MIN_PASSAGE_CHARS or (rest and not out):
    out.append(rest)
  elif rest:
    out[-1] += " " + rest
  return [p for p in out if len(p) >= MIN_PASSAGE_CHARS]


@functools.lru_cache(maxsize=8)
def _passages_by_work(split: str, data_dir: str) -> dict[tuple[str, str], list[str]]:
  """(author, work) -> its passages in document order."""
  by_work = collections.defaultdict(list)
  for document in local_corpus.read_documents(split, data_dir):
    by_work[(document["author"], document["work"])].extend(passages(document["text"]))
  return dict(sorted(by_work.items()))


def author_examples(split: str, data_dir: str | None = None) -> list[dict]:
  """Every passage of the rarer author and as many drawn from the other, shuffled."""
  return _author_examples(split, paths.data_dir(data_dir))


def same_work_examples(split: str, data_dir: str | None = None) -> list[dict]:
  """As many pairs as `author_examples` has examples, alternately "same" and "different".

  For "same", the first passage is uniform over the passages of works with at least 4
  passages and the second is another passage of that work, not adjacent to the first;
  for "different", the first is uniform over all passages and the second a uniform
  passage of a uniformly chosen other work.
  """
  return _same_work_examples(split, paths.data_dir(data_dir))


@functools.lru_cache(maxsize=8)
def _author_examples(split: str, data_dir: str) -> list[dict]:
  rng = random.Random(f"local_author/{split}")
  by_author = collections.defaultdict(list)
  for (author, _), texts in _passages_by_work(split, data_dir).items():
    by_author[author].extend(texts)
  per_class = min(len(by_author[a]) for a in AUTHOR_LABELS)
  examples = [{"inputs": f"author passage: {text}", "targets": author}
              for author in AUTHOR_LABELS for text in rng.sample(by_author[author], per_class)]
  rng.shuffle(examples)
  return [dict(e, idx=i) for i, e in enumerate(examples)]


@functools.lru_cache(maxsize=8)
def _same_work_examples(split: str, data_dir: str) -> list[dict]:
  rng = random.Random(f"local_same_work/{split}")
  works = list(_passages_by_work(split, data_dir).values())
  anywhere = [(w, i) for w, texts in enumerate(works) for i in range(len(texts))]
  # With >= 4 passages every passage has a non-adjacent partner in its work.
  in_long_works = [(w, i) for w, i in anywhere if len(works[w]) >= 4]
  examples = []
  for n in range(len(_author_examples(split, data_dir))):
    if n % 2 == 0:
      w, i = rng.choice(in_long_works)
      second = works[w][rng.choice([j for j in range(len(works[w])) if abs(j - i) > 1])]
      label = "same"
    else:
      w, i = rng.choice(anywhere)
      other = rng.choice([v for v in range(len(works)) if v != w])
      second, label = rng.choice(works[other]), "different"
    examples.append({"inputs": f"same_work passage1: {works[w][i]} passage2: {second}",
                     "targets": label, "idx": n})
  return examples


def _dataset_fn(examples_fn: Callable[..., list[dict]]):
  def dataset_fn(split: str, shuffle_files: bool, seed: int | None = None) -> tf.data.Dataset:
    del shuffle_files, seed  # one in-memory "file"; the Task shuffles examples
    examples = examples_fn(split)
    return tf.data.Dataset.from_tensor_slices(
        {key: [e[key] for e in examples] for key in ("inputs", "targets", "idx")})
  return dataset_fn


def _documents_dataset_fn(split: str, shuffle_files: bool,
                          seed: int | None = None) -> tf.data.Dataset:
  del shuffle_files, seed
  texts = [d["text"] for d in local_corpus.read_documents(split)]
  return tf.data.Dataset.from_tensor_slices({"text": texts})


# ----------------------------------------------------------------------------------
# Counting what seqio truncates.
# ----------------------------------------------------------------------------------

_truncated: collections.Counter = collections.Counter()


def truncated_counts() -> dict[tuple[str, str], int]:
  """(task, feature) -> examples seen in this process that were too long and truncated."""
  return dict(_truncated)


def _note_truncated(task: str, feature: str, limit: int, too_long: tf.Tensor) -> bool:
  if bool(too_long):
    _truncated[(task, feature)] += 1
    count = _truncated[(task, feature)]
    if count & (count - 1) == 0:  # 1, 2, 4, 8, ...: a bounded number of log lines
      logging.warning("%s: %d example(s) so far had %s longer than %d tokens with EOS; "
                      "they are truncated", task, count, feature, limit)
  return bool(too_long)


def count_truncated(dataset: tf.data.Dataset, sequence_length: Mapping[str, int] | None,
                    output_features: Mapping[str, seqio.Feature],
                    task: str) -> tf.data.Dataset:
  """Passes tokenized examples through, counting those longer than `sequence_length`
  (EOS included) that `append_eos_after_trim` is about to truncate."""
  if not sequence_length:
    return dataset

  def _count(example):
    example = dict(example)
    for key, feature in output_features.items():
      if key not in example or sequence_length.get(key) is None:
        continue
      limit = sequence_length[key]
      too_long = tf.size(example[key]) + int(feature.add_eos) > limit
      noted = tf.py_function(functools.partial(_note_truncated, task, key, limit),
                             [too_long], tf.bool)
      with tf.control_dependencies([noted]):
        example[key] = tf.identity(example[key])
    return example

  return dataset.map(_count)


# ----------------------------------------------------------------------------------
# Registrations.
# ----------------------------------------------------------------------------------


def _classification_task(name: str, examples_fn, labels, metric_fns) -> None:
  seqio.TaskRegistry.add(
      name,
      source=seqio.FunctionDataSource(_dataset_fn(examples_fn), splits=local_corpus.SPLITS),
      preprocessors=[
          seqio.preprocessors.tokenize,
          functools.partial(count_truncated, task=name),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features=FEATURES,
      postprocess_fn=postprocessors.class_id(labels),
      metric_fns=metric_fns)


seqio.TaskRegistry.add(
    "local_span_corruption",
    source=seqio.FunctionDataSource(_documents_dataset_fn, splits=local_corpus.SPLITS),
    preprocessors=[
        functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
        seqio.preprocessors.tokenize,
        seqio.CacheDatasetPlaceholder(),
        denoising.span_corruption,
        seqio.preprocessors.append_eos_after_trim,
    ],
    output_features=FEATURES,
    metric_fns=[])

_classification_task("local_author", author_examples, AUTHOR_LABELS, [metrics.accuracy])
_classification_task("local_same_work", same_work_examples, SAME_WORK_LABELS,
                     [metrics.accuracy, metrics.f1_score_with_invalid])
seqio.MixtureRegistry.add("local_classification", ["local_author", "local_same_work"],
                          default_rate=1.0)
