"""The offline tasks on the prepared local corpus, through seqio: formats, balanced and
truthful labels, splits by work, postprocessors and metrics, truncation counting, and
span corruption that undoes exactly to the tokenized documents."""

import collections
import re

import numpy as np
import pytest
import seqio

from altup_t5.data import local_corpus
from altup_t5.data import local_tasks
from altup_t5.data import paths
# pylint: disable=unused-import
from corpus_fixtures import prepared_data_dir, shakespeare_archive  # fixtures

pytestmark = pytest.mark.registry

CONVERTER = seqio.EncDecFeatureConverter(pack=False)


@pytest.fixture(autouse=True)
def local_data(prepared_data_dir, monkeypatch):
  monkeypatch.setenv(paths.DATA_DIR_ENV, prepared_data_dir)
  return prepared_data_dir


def task_examples(name, lengths, split="validation", **kwargs):
  task = seqio.get_mixture_or_task(name)
  return list(task.get_dataset(lengths, split=split, shuffle=False, **kwargs)
              .as_numpy_iterator())


def passage_index(data_dir):
  """passage text -> {(author, work)}, rebuilt here from the split files."""
  index = collections.defaultdict(set)
  for split in local_corpus.SPLITS:
    for document in local_corpus.read_documents(split, data_dir):
      for passage in local_tasks.passages(document["text"]):
        index[passage].add((document["author"], document["work"]))
  return index


# ---------------------------------------------------------------- registrations


def test_registered_tasks_and_mixture():
  for name in ("local_span_corruption", "local_author", "local_same_work"):
    task = seqio.get_mixture_or_task(name)
    assert tuple(task.splits) == ("train", "validation")
    assert task.output_features["inputs"].vocabulary.vocab_size == 8100
  mixture = seqio.get_mixture_or_task("local_classification")
  assert sorted(t.name for t in mixture.tasks) == ["local_author", "local_same_work"]


# ---------------------------------------------------------------- labelled tasks


@pytest.mark.parametrize("name,prefix,labels", [
    ("local_author", "author passage: ", ("milton", "shakespeare")),
    ("local_same_work", "same_work passage1: ", ("different", "same")),
])
def test_classification_through_seqio_is_balanced(name, prefix, labels):
  lengths = {"inputs": 512, "targets": 8}
  examples = task_examples(name, lengths)
  targets = collections.Counter(e["targets_pretokenized"].decode() for e in examples)
  assert sorted(targets) == list(labels)
  assert len(set(targets.values())) == 1, f"unbalanced: {targets}"
  assert all(e["inputs_pretokenized"].decode().startswith(prefix) for e in examples)
  converted = list(CONVERTER(seqio.get_mixture_or_task(name).get_dataset(
      lengths, split="validation", shuffle=False), lengths).as_numpy_iterator())
  vocab = local_tasks.VOCABULARY
  for example, raw in zip(converted[:50], examples[:50]):
    assert example["encoder_input_tokens"].shape == (512,)
    label = vocab.decode([t for t in example["decoder_target_tokens"] if t > 1])
    assert label == raw["targets_pretokenized"].decode()
  # Training examples are balanced too.
  for fn in (local_tasks.author_examples, local_tasks.same_work_examples):
    counts = collections.Counter(e["targets"] for e in fn("train"))
    assert len(counts) == 2 and len(set(counts.values())) == 1


def test_labels_are_true_to_the_metadata(local_data):
  index = passage_index(local_data)
  for split in local_corpus.SPLITS:
    for example in local_tasks.author_examples(split):
      (author_work,) = index[example["inputs"].removeprefix("author passage: ")]
      assert example["targets"] == author_work[0]
    for example in local_tasks.same_work_examples(split):
      first, second = re.fullmatch(r"same_work passage1: (.*) passage2: (.*)",
                                   example["inputs"]).groups()
      (first_work,), (second_work,) = index[first], index[second]
      assert example["targets"] == ("same" if first_work == second_work else "different")


def test_validation_examples_come_from_validation_works_only(local_data):
  index = passage_index(local_data)
  validation_works = {w for ws in local_corpus.read_manifest(local_data)["sizes"]["validation"]
                      ["works"].values() for w in ws}
  for example in local_tasks.author_examples("validation"):
    (author_work,) = index[example["inputs"].removeprefix("author passage: ")]
    assert author_work[1] in validation_works
  train_inputs = {e["inputs"] for e in local_tasks.author_examples("train")}
  assert not train_inputs & {e["inputs"] for e in local_tasks.author_examples("validation")}


def test_examples_are_deterministic():
  first = (local_tasks.author_examples("validation"), local_tasks.same_work_examples("train"))
  local_tasks._author_examples.cache_clear()  # pylint: disable=protected-access
  local_tasks._same_work_examples.cache_clear()  # pylint: disable=protected-access
  local_tasks._passages_by_work.cache_clear()  # pylint: disable=protected-access
  assert (local_tasks.author_examples("validation"),
          local_tasks.same_work_examples("train")) == first


def test_postprocessors_and_metrics_on_hand_made_cases():
  author = seqio.get_mixture_or_task("local_author")
  same = seqio.get_mixture_or_task("local_same_work")
  assert [author.postprocess_fn(s) for s in ("shakespeare", "milton", "Milton", "", "bacon")] == [
      0, 1, -1, -1, -1]
  assert [same.postprocess_fn(s) for s in ("different", "same", "same work", "")] == [
      0, 1, -1, -1]

  def score(task, targets, predictions):
    return {k: v for fn in task.metric_fns for k, v in fn(targets, predictions).items()}

  # 3 of 4 right.
  assert score(author, [0, 1, 1, 0], [0, 1, 0, 0]) == pytest.approx({"accuracy": 75.0})
  # Targets same,same,diff,diff; predictions same,diff,diff,invalid. The invalid one
  # counts as wrong (-> same): TP 1, FP 1, FN 1, so F1 = 2 / (2 + 1 + 1) = 50%.
  assert score(same, [1, 1, 0, 0], [1, 0, 0, -1]) == pytest.approx(
      {"accuracy": 50.0, "f1": 50.0})


def test_over_long_examples_are_truncated_and_counted():
  vocab = local_tasks.VOCABULARY
  lengths = {"inputs": 200, "targets": 8}
  expected = sum(len(vocab.encode(e["inputs"])) + 1 > 200
                 for e in local_tasks.same_work_examples("validation"))
  before = local_tasks.truncated_counts().get(("local_same_work", "inputs"), 0)
  examples = task_examples("local_same_work", lengths)
  counted = local_tasks.truncated_counts()[("local_same_work", "inputs")] - before
  assert 0 < expected < len(examples) and counted == expected
  assert all(len(e["inputs"]) <= 200 and e["inputs"][-1] == vocab.eos_id for e in examples)


def test_mixture_through_the_feature_converter():
  lengths = {"inputs": 320, "targets": 4}
  dataset = seqio.get_dataset("local_classification", lengths, CONVERTER,
                              dataset_split="validation", shuffle=False, seed=1)
  vocab = local_tasks.VOCABULARY
  prefixes = collections.Counter(
      vocab.decode(e["encoder_input_tokens"][:4].tolist()).split(" ")[0]
      for e in dataset.take(200).as_numpy_iterator())
  assert set(prefixes) == {"author", "same_work"} and min(prefixes.values()) > 50


# ---------------------------------------------------------------- span corruption


def test_local_span_corruption_undoes_to_the_documents(local_data):
  vocab = local_tasks.VOCABULARY
  examples = task_examples("local_span_corruption", {"inputs": 512, "targets": 114}, seed=3)
  lengths = collections.Counter((len(e["inputs"]), len(e["targets"])) for e in examples)
  assert lengths[(512, 114)] >= 0.95 * len(examples)

  first_sentinel = vocab.vocab_size - 1
  rebuilt = []
  for example in examples:
    inputs, targets = example["inputs"][:-1].tolist(), example["targets"][:-1].tolist()
    assert targets[0] == first_sentinel
    spans, current = {}, None
    for token in targets:
      if token >= vocab.vocab_size - vocab.extra_ids:
        current = spans.setdefault(token, [])
      else:
        current.append(token)
    for token in inputs:
      rebuilt.extend(spans[token] if token in spans else [token])
  documents = [vocab.encode(d["text"])
               for d in local_corpus.read_documents("validation", local_data)]
  np.testing.assert_array_equal(rebuilt, np.concatenate(documents))
  assert vocab.decode([first_sentinel]) == "<extra_id_0>"


def test_local_span_corruption_is_deterministic_given_the_seed():
  lengths = {"inputs": 128, "targets": 32}

  def run(seed):
    return [e["inputs"].tolist() for e in task_examples("local_span_corruption", lengths,
                                                         seed=seed)[:20]]

  assert run(5) == run(5) and run(5) != run(6)
