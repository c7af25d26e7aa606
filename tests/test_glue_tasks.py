"""GLUE tasks: T5's exact text formats, the whole seqio pipeline on TFDS mock data, the
wiring of postprocessors and metrics, and the proportional mixture."""

import numpy as np
import pytest
import seqio
import tensorflow as tf
import tensorflow_datasets as tfds

from altup_t5.data import glue
from altup_t5.data import vocabularies

LENGTHS = {"inputs": 96, "targets": 16}
GLUE_NAMES = [t.name for t in glue.GLUE_TASKS]


@pytest.fixture(autouse=True)
def byte_vocabulary():
  """The tasks encode with the process-wide chosen vocabulary; bytes need no file."""
  vocabularies.choose("byte")


def _decode(tokens) -> str:
  return vocabularies.chosen().decode(tokens.tolist())


def preprocess(task_name: str, example: dict) -> list[tuple[str, str]]:
  """(inputs, targets) strings the task makes of one raw TFDS-shaped example."""
  task = seqio.get_mixture_or_task(task_name)
  dataset = task.preprocess_precache(tf.data.Dataset.from_tensors(example))
  pairs = []
  for ex in dataset.as_numpy_iterator():
    inputs, targets = ex["inputs_pretokenized"].decode(), ex["targets_pretokenized"].decode()
    # The tokens are the strings' bytes (ByteVocabulary), so they must decode back.
    assert _decode(ex["inputs"]) == inputs and _decode(ex["targets"]) == targets
    pairs.append((inputs, targets))
  return pairs


def labelled(label, **text):
  return {**text, "label": np.int64(label), "idx": np.int32(5)}


# One hand-written example per task, with the strings T5's format makes of it.
HAND_WRITTEN = {
    "glue_cola_v002": (
        labelled(1, sentence="The book was read by Mary."),
        "cola sentence: The book was read by Mary.", "acceptable"),
    "glue_sst2_v002": (
        labelled(0, sentence="a dull , lifeless film"),
        "sst2 sentence: a dull , lifeless film", "negative"),
    "glue_mrpc_v002": (
        labelled(1, sentence1="He said it was late.", sentence2="It was late, he said."),
        "mrpc sentence1: He said it was late. sentence2: It was late, he said.", "equivalent"),
    "glue_qqp_v002": (
        labelled(0, question1="How do I cook rice?", question2="Why is rice white?"),
        "qqp question1: How do I cook rice? question2: Why is rice white?", "not_duplicate"),
    "glue_stsb_v002": (
        {"sentence1": "A cat sits.", "sentence2": "A cat is sitting.",
         "label": np.float32(2.43), "idx": np.int32(5)},
        "stsb sentence1: A cat sits. sentence2: A cat is sitting.", "2.4"),
    "glue_mnli_v002": (
        labelled(2, premise="The shop is open.", hypothesis="The shop is closed."),
        "mnli hypothesis: The shop is closed. premise: The shop is open.", "contradiction"),
    "glue_mnli_mismatched_v002": (
        labelled(1, premise="He ran.", hypothesis="He was late."),
        "mnli hypothesis: He was late. premise: He ran.", "neutral"),
    "glue_mnli_matched_v002": (
        labelled(0, premise="She sang loudly.", hypothesis="She sang."),
        "mnli hypothesis: She sang. premise: She sang loudly.", "entailment"),
    "glue_qnli_v002": (
        labelled(1, question="Where is Paris?", sentence="Rome is in Italy."),
        "qnli question: Where is Paris? sentence: Rome is in Italy.", "not_entailment"),
    "glue_rte_v002": (
        labelled(0, sentence1="A man is playing a guitar.", sentence2="A man plays."),
        "rte sentence1: A man is playing a guitar. sentence2: A man plays.", "entailment"),
    "glue_wnli_v002": (
        labelled(1, sentence1="The cup fell off the table because it was tilted.",
                 sentence2="The table was tilted."),
        "wnli sentence1: The cup fell off the table because it was tilted. "
        "sentence2: The table was tilted.", "entailment"),
    # The diagnostic's labels are hidden (-1): T5 writes "<unk>".
    "glue_ax_v002": (
        labelled(-1, premise="No dog barked.", hypothesis="A dog barked."),
        "mnli hypothesis: A dog barked. premise: No dog barked.", "<unk>"),
}


def test_every_glue_task_has_a_hand_written_example():
  assert sorted(HAND_WRITTEN) == sorted(GLUE_NAMES)
  assert len(GLUE_NAMES) == 12


@pytest.mark.parametrize("task_name", GLUE_NAMES)
def test_text_format_matches_t5(task_name):
  example, inputs, targets = HAND_WRITTEN[task_name]
  assert preprocess(task_name, example) == [(inputs, targets)]


@pytest.mark.parametrize("label, target", [
    (0.0, "0.0"), (5.0, "5.0"),
    (3.12, "3.2"),   # 15.6 -> 16 -> 3.2
    (1.09, "1.0"),   # 5.45 -> 5 -> 1.0
    (0.5, "0.4"),    # 2.5 -> 2: halves round to even, as tf.round (and T5) does
    (1.5, "1.6"),    # 7.5 -> 8
    (-1.0, "-1.0"),  # unlabelled test examples
])
def test_stsb_target_is_score_rounded_to_a_fifth(label, target):
  example = {"sentence1": "a", "sentence2": "b", "label": np.float32(label), "idx": np.int32(0)}
  assert preprocess("glue_stsb_v002", example) == [("stsb sentence1: a sentence2: b", target)]


def test_a_label_outside_the_classes_is_a_clear_error():
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"rte: a label must be -1 \(unlabelled\) or an index into"):
    preprocess("glue_rte_v002", labelled(2, sentence1="a", sentence2="b"))


@pytest.mark.parametrize("task", glue.GLUE_TASKS, ids=lambda t: t.name)
def test_label_names_are_tfds_class_labels(task):
  builder = tfds.builder(f"glue/{task.config}:{glue.GLUE_TFDS_VERSION}")
  label = builder.info.features["label"]
  if task.label_names is None:
    assert label.dtype == tf.float32  # STS-B's score
  else:
    assert tuple(label.names) == task.label_names


@pytest.mark.parametrize("task", glue.GLUE_TASKS, ids=lambda t: t.name)
def test_whole_pipeline_on_mock_data(task):
  """Every split through get_dataset and the EncDecFeatureConverter (2 examples each)."""
  seqio_task = seqio.get_mixture_or_task(task.name)
  assert seqio_task.splits == task.splits
  prefix = HAND_WRITTEN[task.name][1].split(":")[0] + ":"  # e.g. "mnli hypothesis:"
  with tfds.testing.mock_data(num_examples=2):
    for split in task.splits:
      dataset = seqio_task.get_dataset(LENGTHS, split=split, shuffle=False,
                                       try_in_mem_cache=False)
      converted = seqio.EncDecFeatureConverter(pack=False)(dataset, LENGTHS)
      examples = list(converted.as_numpy_iterator())
      assert len(examples) == 2, split
      for ex in examples:
        assert ex["encoder_input_tokens"].shape == (LENGTHS["inputs"],)
        assert ex["decoder_target_tokens"].shape == (LENGTHS["targets"],)
        # Teacher forcing: decoder inputs are the targets shifted right by one.
        np.testing.assert_array_equal(ex["decoder_input_tokens"][1:],
                                      ex["decoder_target_tokens"][:-1])
        assert _decode(ex["encoder_input_tokens"]).startswith(prefix)
        target = _decode(ex["decoder_target_tokens"])
        if task.label_names is None:
          assert float(target) * 5 == pytest.approx(round(float(target) * 5))
        else:
          assert target in task.label_names


def evaluate_on_mock_data(task_name: str, monkeypatch) -> tuple[dict, dict]:
  """Metrics from seqio's Evaluator (the path training takes) on the mock validation
  split, for a model that answers every target exactly and one that writes nonsense."""
  # TFDS knows no split sizes under mock_data; seqio asks only to decide on caching.
  monkeypatch.setattr(seqio.TfdsDataSource, "num_input_examples", lambda self, split: None)

  def perfect(dataset):
    return [(i, ex["decoder_target_tokens"]) for i, ex in dataset.as_numpy_iterator()]

  def nonsense(dataset):
    tokens = vocabularies.chosen().encode("nonsense")
    return [(i, tokens) for i, _ in dataset.as_numpy_iterator()]

  with tfds.testing.mock_data(num_examples=3):
    evaluator = seqio.Evaluator(task_name, seqio.EncDecFeatureConverter(pack=False),
                                eval_split="validation",
                                # room for whole mock ReCoRD answers: "perfect" is exact
                                sequence_length={"inputs": 96, "targets": 32},
                                use_memory_cache=False, async_compute_metrics=False)
    results = [evaluator.evaluate(compute_metrics=True, predict_fn=fn)[0].result()
               for fn in (perfect, nonsense)]
  return results[0][task_name], results[1][task_name]


def test_seqio_evaluator_scores_a_classification_task(monkeypatch):
  assert evaluate_on_mock_data("glue_rte_v002", monkeypatch) == (
      {"accuracy": 100.0}, {"accuracy": 0.0})


# What T5 evaluates each task with (t5.data.glue_utils.GLUE_METRICS), by metric name.
EXPECTED_METRICS = {
    "glue_cola_v002": {"matthews_corrcoef"},
    "glue_sst2_v002": {"accuracy"},
    "glue_mrpc_v002": {"f1", "accuracy"},
    "glue_qqp_v002": {"f1", "accuracy"},
    "glue_stsb_v002": {"pearson_corrcoef", "spearman_corrcoef"},
    "glue_mnli_v002": {"accuracy"},
    "glue_mnli_mismatched_v002": {"accuracy"},
    "glue_mnli_matched_v002": {"accuracy"},
    "glue_qnli_v002": {"accuracy"},
    "glue_rte_v002": {"accuracy"},
    "glue_wnli_v002": {"accuracy"},
    "glue_ax_v002": set(),
}


@pytest.mark.parametrize("task", glue.GLUE_TASKS, ids=lambda t: t.name)
def test_postprocessor_and_metrics_wiring(task):
  seqio_task = seqio.get_mixture_or_task(task.name)
  if task.label_names is None:
    targets = [seqio_task.postprocess_fn(s, is_target=True) for s in ("1.0", "2.4", "4.0")]
    predictions = [seqio_task.postprocess_fn(s) for s in ("1.2", "2.2", "x")]
    assert targets == [1.0, 2.4, 4.0] and predictions == [1.2, 2.2, -1.0]
  else:
    # Every label name maps to its index; text that is no label maps to -1.
    targets = [seqio_task.postprocess_fn(n, is_target=True) for n in task.label_names]
    assert targets == list(range(len(task.label_names)))
    assert seqio_task.postprocess_fn("banana") == -1
    predictions = targets[::-1]
  names = set()
  for metric_fn in seqio_task.metric_fns:
    names |= set(metric_fn(targets, predictions))
  assert names == EXPECTED_METRICS[task.name]


def test_proportional_mixture_rates_and_members():
  mixture = seqio.get_mixture_or_task(glue.GLUE_MIXTURE)
  rates = {t.name: mixture.get_rate(t) for t in mixture.tasks}
  assert rates == {
      "glue_cola_v002": 8551, "glue_sst2_v002": 67349, "glue_mrpc_v002": 3668,
      "glue_qqp_v002": 363849, "glue_stsb_v002": 5749, "glue_mnli_v002": 392702,
      "glue_qnli_v002": 104743, "glue_rte_v002": 2490,
      # evaluation only; WNLI is not a member (as in T5)
      "glue_mnli_mismatched_v002": 0, "glue_mnli_matched_v002": 0, "glue_ax_v002": 0}


def test_proportional_mixture_samples_in_proportion_to_training_sets():
  mixture = seqio.get_mixture_or_task(glue.GLUE_MIXTURE)
  draws = 1000
  with tfds.testing.mock_data(num_examples=2):
    dataset = mixture.get_dataset(LENGTHS, split="train", shuffle=False, num_epochs=None,
                                  copy_pretokenized=True, try_in_mem_cache=False, seed=0)
    first_words = [ex["inputs_pretokenized"].decode().split(" ")[0]
                   for ex in dataset.take(draws).as_numpy_iterator()]
  sizes = {"cola": 8551, "sst2": 67349, "mrpc": 3668, "qqp": 363849, "stsb": 5749,
           "mnli": 392702, "qnli": 104743, "rte": 2490}
  assert set(first_words) <= set(sizes)  # no WNLI, and nothing from evaluation-only tasks
  total = sum(sizes.values())
  for benchmark, size in sizes.items():
    p = size / total
    tolerance = 4 * np.sqrt(p * (1 - p) / draws)  # binomial standard deviations
    assert abs(first_words.count(benchmark) / draws - p) < tolerance, benchmark


def test_glue_reads_t5s_tfds_version_unless_told_otherwise(monkeypatch):
  monkeypatch.delenv(glue.GLUE_TFDS_VERSION_ENV, raising=False)
  assert glue.GLUE_TFDS_VERSION == glue.T5_GLUE_TFDS_VERSION == "1.0.0"
  assert seqio.get_mixture_or_task("glue_rte_v002").source.tfds_dataset.name == "glue/rte:1.0.0"
  monkeypatch.setenv(glue.GLUE_TFDS_VERSION_ENV, "2.0.0")
  try:
    assert glue.register_glue_tasks() == "2.0.0"
    assert (seqio.get_mixture_or_task("glue_mnli_matched_v002").source.tfds_dataset.name
            == "glue/mnli_matched:2.0.0")
    mixture = seqio.get_mixture_or_task("glue_v002_proportional")
    assert {t.source.tfds_dataset.name for t in mixture.tasks} >= {"glue/cola:2.0.0"}
  finally:
    monkeypatch.delenv(glue.GLUE_TFDS_VERSION_ENV)
    glue.register_glue_tasks()
  assert seqio.get_mixture_or_task("glue_cola_v002").source.tfds_dataset.name == "glue/cola:1.0.0"


@pytest.mark.parametrize("version, message", [
    ("3.0.0", "version='3.0.0' is not a GLUE TFDS version TFDS can build: one of "
              "1.0.0, 1.0.1, 2.0.0 (T5's is 1.0.0)"),
])
def test_an_unbuildable_glue_version_is_one_line(version, message):
  with pytest.raises(ValueError) as error:
    glue.glue_tfds_version(version)
  assert str(error.value) == message
