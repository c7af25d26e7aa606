"""Metrics and postprocessors against values worked out by hand on small cases."""

import math

import numpy as np
import pytest

from altup_t5.data import metrics
from altup_t5.data import postprocessors
# The metric names each registered task reports (checked against the tasks there).
from test_glue_tasks import EXPECTED_METRICS as GLUE_METRICS  # pylint: disable=g-bad-import-order
from test_super_glue_tasks import EXPECTED_METRICS as SUPER_GLUE_METRICS


# ------------------------------------------------------------------ postprocessors

def test_class_label_postprocessor():
  to_id = postprocessors.class_id(("entailment", "not_entailment"))
  assert to_id("entailment") == 0
  assert to_id(b"not_entailment") == 1  # targets arrive as bytes
  assert to_id("Entailment") == -1 and to_id("") == -1  # no label: counted as wrong


def test_stsb_string_to_float():
  assert postprocessors.string_to_float("3.4") == 3.4
  assert postprocessors.string_to_float(b"5.0") == 5.0
  assert postprocessors.string_to_float("three") == -1.0


def test_multirc_postprocessor_groups_by_paragraph_and_question():
  example = {"idx/paragraph": np.int32(2), "idx/question": np.int32(7), "idx/answer": 11}
  assert postprocessors.multirc("True", example=example, is_target=True) == {
      "value": 1, "group": (2, 7)}
  assert postprocessors.multirc("False") == {"value": 0}
  assert postprocessors.multirc("yes") == {"value": -1}


def test_record_postprocessor_returns_all_answers_for_targets():
  example = {"answers": np.array([b"Obama", b"Barack Obama"], dtype=object),
             "idx/passage": np.int32(3), "idx/query": np.int32(8)}
  assert postprocessors.record("Obama", example=example, is_target=True) == {
      "value": ["Obama", "Barack Obama"], "group": (3, 8)}
  assert postprocessors.record("Biden") == {"value": "Biden"}


def test_grouped_targets_without_their_example_are_a_clear_error():
  with pytest.raises(ValueError, match="ReCoRD targets need the example's 'answers' feature"):
    postprocessors.record("Obama", example={"idx/query": 1}, is_target=True)
  with pytest.raises(ValueError, match="MultiRC targets need the example's 'idx/paragraph'"):
    postprocessors.multirc("True", example=None, is_target=True)


# ------------------------------------------------------------------------ metrics

def test_accuracy():
  assert metrics.accuracy([0, 1, 2, 1], [0, 2, 2, 1]) == {"accuracy": 75.0}


def test_f1_counts_invalid_predictions_as_wrong():
  # The -1 (text that named no label) at a positive target becomes a false negative:
  # predictions [1, 1, 0, 0] -> TP 1, FP 1, FN 2 -> P 1/2, R 1/3 -> F1 = 2/5.
  predictions = [1, 1, -1, 0]
  assert metrics.f1_score_with_invalid([1, 0, 1, 1], predictions)["f1"] == pytest.approx(40.0)
  assert predictions == [1, 1, -1, 0]  # the caller's list is not modified


def test_cola_matthews_correlation():
  # TP 2, FN 1, TN 1, FP 1: (2*1 - 1*1) / sqrt(3 * 3 * 2 * 2) = 1/6.
  result = metrics.matthews_corrcoef([1, 1, 1, 0, 0], [1, 1, 0, 0, 1])
  assert result["matthews_corrcoef"] == pytest.approx(100 / 6)


def test_pearson_and_spearman():
  # x - mean = (-1, 0, 1), y - mean = (-4/3, -1/3, 5/3): r = 3 / sqrt(2 * 14/3).
  assert metrics.pearson_corrcoef([1, 2, 3], [1, 2, 4])["pearson_corrcoef"] == pytest.approx(
      100 * 3 / math.sqrt(28 / 3))
  # Rank differences (0, 1, 1, 0): rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8.
  assert metrics.spearman_corrcoef([1, 2, 3, 4], [1, 3, 2, 4])["spearman_corrcoef"] == (
      pytest.approx(80.0))


def test_stsb_from_strings_to_correlations():
  targets = [postprocessors.string_to_float(s) for s in ("0.0", "2.4", "5.0")]
  predictions = [postprocessors.string_to_float(s) for s in ("0.2", "2.0", "4.6")]
  assert targets == [0.0, 2.4, 5.0] and predictions == [0.2, 2.0, 4.6]
  x, y = np.array(targets) - 7.4 / 3, np.array(predictions) - 6.8 / 3
  expected = 100 * (x @ y) / math.sqrt((x @ x) * (y @ y))
  assert metrics.pearson_corrcoef(targets, predictions)["pearson_corrcoef"] == (
      pytest.approx(expected))
  assert metrics.spearman_corrcoef(targets, predictions)["spearman_corrcoef"] == (
      pytest.approx(100.0))  # same order


def test_cb_mean_3class_f1():
  # class 0: P 1, R 1/2 -> 2/3; class 1: P 1/2, R 1 -> 2/3; class 2: never predicted -> 0.
  result = metrics.mean_3class_f1([0, 0, 1, 2], [0, 1, 1, -1])
  assert result["mean_3class_f1"] == pytest.approx(100 * 4 / 9)


def _multirc(values, groups):
  return [{"value": v, "group": g} for v, g in zip(values, groups)]


def test_multirc_f1a_and_exact_match_over_questions():
  groups = [(0, 0), (0, 0), (0, 1), (1, 0), (1, 0)]  # (paragraph, question)
  targets = _multirc([1, 0, 1, 0, 0], groups)
  predictions = [{"value": v} for v in (1, 0, 0, 1, 0)]
  # F1a over all 5 answers: TP 1, FP 1, FN 1 -> 1/2.
  assert metrics.multirc_f1_over_all_answers(targets, predictions)["f1"] == pytest.approx(50.0)
  # Only question (0, 0) has every answer right: 1 of 3. (Grouping by the question index
  # alone would merge (0, 0) with (1, 0) and give 0.)
  assert metrics.multirc_exact_match(targets, predictions)["exact_match"] == (
      pytest.approx(100 / 3))


def test_record_max_over_answers_once_per_query():
  targets = [
      {"value": ["Barack Obama", "Obama"], "group": (0, 0)},
      {"value": ["Barack Obama", "Obama"], "group": (0, 0)},  # 2nd copy: not counted
      {"value": ["the Penguin"], "group": (0, 1)},
      {"value": ["A cat."], "group": (1, 0)},
  ]
  predictions = [{"value": v} for v in ("Barack Hussein Obama", "Obama", "Penguins!", "cat")]
  result = metrics.record_em_f1(targets, predictions)
  # Query (0, 0): EM 0; F1 = max(2*(2/3)*1/(2/3+1), 2*(1/3)*1/(1/3+1)) = max(0.8, 0.5).
  # Query (0, 1): "penguins" vs "penguin" (article dropped): 0 and 0.
  # Query (1, 0): "cat" == "cat" once case, punctuation and articles go: 1 and 1.
  assert result["em"] == pytest.approx(100 / 3)
  assert result["f1"] == pytest.approx(100 * (0.8 + 0 + 1) / 3)


def test_metrics_reject_unequal_lengths():
  with pytest.raises(ValueError, match="got 2 targets but 1 predictions"):
    metrics.accuracy([0, 1], [0])


# ----------------------------------------------------------------------- averages

GLUE_SCORES = {
    "glue_cola_v002": {"matthews_corrcoef": 50.0},
    "glue_sst2_v002": {"accuracy": 90.0},
    "glue_mrpc_v002": {"f1": 88.0, "accuracy": 84.0},
    "glue_stsb_v002": {"pearson_corrcoef": 85.0, "spearman_corrcoef": 87.0},
    "glue_qqp_v002": {"f1": 70.0, "accuracy": 90.0},
    "glue_mnli_matched_v002": {"accuracy": 80.0},
    "glue_mnli_mismatched_v002": {"accuracy": 82.0},
    "glue_qnli_v002": {"accuracy": 88.0},
    "glue_rte_v002": {"accuracy": 60.0},
    "glue_wnli_v002": {"accuracy": 10.0},  # not part of the average
}
SUPER_GLUE_SCORES = {
    "super_glue_boolq_v102": {"accuracy": 80.0},
    "super_glue_cb_v102": {"mean_3class_f1": 70.0, "accuracy": 90.0},
    "super_glue_copa_v102": {"accuracy": 60.0},
    "super_glue_multirc_v102": {"f1": 70.0, "exact_match": 30.0},
    "super_glue_record_v102": {"f1": 72.0, "em": 70.0},
    "super_glue_rte_v102": {"accuracy": 75.0},
    "super_glue_wic_v102": {"accuracy": 65.0},
    "super_glue_wsc_v102_simple_eval": {"accuracy": 62.0},
}


def test_glue_average():
  # CoLA 50, SST-2 90, MRPC 86, STS-B 86, QQP 80, MNLI 81, QNLI 88, RTE 60 -> 621 / 8.
  assert metrics.glue_average(GLUE_SCORES) == pytest.approx(77.625)


def test_super_glue_average():
  # BoolQ 80, CB 80, COPA 60, MultiRC 50, ReCoRD 71, RTE 75, WiC 65, WSC 62 -> 543 / 8.
  assert metrics.super_glue_average(SUPER_GLUE_SCORES) == pytest.approx(67.875)


def test_average_of_flat_task_slash_metric_scores():
  flat = {f"{task}/{name}": value for task, scores in SUPER_GLUE_SCORES.items()
          for name, value in scores.items()}
  assert metrics.super_glue_average(flat) == pytest.approx(67.875)


def test_average_with_a_missing_score_names_it():
  scores = {k: v for k, v in GLUE_SCORES.items() if k != "glue_mnli_mismatched_v002"}
  with pytest.raises(ValueError, match="no score for glue_mnli_mismatched_v002/accuracy"):
    metrics.glue_average(scores)


def test_averages_use_metrics_the_tasks_report():
  reported = {**GLUE_METRICS, **SUPER_GLUE_METRICS}
  for parts in (metrics.GLUE_SCORE_PARTS, metrics.SUPER_GLUE_SCORE_PARTS):
    for task_parts in parts.values():
      for task, metric in task_parts:
        assert metric in reported[task], (task, metric)
