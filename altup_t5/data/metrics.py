"""GLUE and SuperGLUE metrics as T5 reports them, and the benchmark averages.

Every metric has seqio's `(targets, predictions)` signature, takes postprocessed values
(see `postprocessors.py`) and returns percentages (0-100) under T5's metric names, so
that a run's numbers line up with the T5 paper's tables. scipy and scikit-learn do the
arithmetic; only what no installed library does (MultiRC's grouping, the SQuAD and
TriviaQA answer normalisation and max over answers, used by ReCoRD too, the averages)
is written here.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.stats
import sklearn.metrics


def _check_lengths(targets: Sequence[Any], predictions: Sequence[Any]) -> None:
  if len(targets) != len(predictions):
    raise ValueError(f"got {len(targets)} targets but {len(predictions)} predictions; "
                     "a metric needs one prediction per target")


# ---------------------------------------------------------------- classification

def accuracy(targets, predictions) -> dict[str, float]:
  _check_lengths(targets, predictions)
  return {"accuracy": 100 * float(sklearn.metrics.accuracy_score(targets, predictions))}


def f1_score_with_invalid(targets, predictions) -> dict[str, float]:
  """Binary F1 of class 1 (MRPC, QQP), where a prediction that is neither 0 nor 1 is
  replaced by the wrong class, so text that names no label always costs."""
  _check_lengths(targets, predictions)
  targets, predictions = np.asarray(targets), np.array(predictions)
  invalid = (predictions != 0) & (predictions != 1)
  predictions[invalid] = 1 - targets[invalid]
  return {"f1": 100 * float(sklearn.metrics.f1_score(targets, predictions))}


def matthews_corrcoef(targets, predictions) -> dict[str, float]:
  """CoLA's metric."""
  _check_lengths(targets, predictions)
  mcc = sklearn.metrics.matthews_corrcoef(targets, predictions)
  return {"matthews_corrcoef": 100 * float(mcc)}


def mean_3class_f1(targets, predictions) -> dict[str, float]:
  """CB: the unweighted mean of the F1 of classes 0, 1 and 2 (an invalid prediction, -1,
  is a miss for its example's class; a class never predicted nor present scores 0)."""
  _check_lengths(targets, predictions)
  f1 = sklearn.metrics.fbeta_score(targets, predictions, beta=1, labels=[0, 1, 2],
                                   average="macro", zero_division=0.0)
  return {"mean_3class_f1": 100 * float(f1)}


# -------------------------------------------------------------------- regression

def pearson_corrcoef(targets, predictions) -> dict[str, float]:
  """STS-B (targets and predictions are floats from `postprocessors.string_to_float`)."""
  _check_lengths(targets, predictions)
  return {"pearson_corrcoef": 100 * float(scipy.stats.pearsonr(targets, predictions)[0])}


def spearman_corrcoef(targets, predictions) -> dict[str, float]:
  _check_lengths(targets, predictions)
  return {"spearman_corrcoef": 100 * float(scipy.stats.spearmanr(targets, predictions)[0])}


# ---------------------------------------------------------------------- MultiRC

def multirc_f1_over_all_answers(targets, predictions) -> dict[str, float]:
  """F1a: binary F1 over every (question, answer) pair, ignoring the grouping."""
  _check_lengths(targets, predictions)
  return f1_score_with_invalid([t["value"] for t in targets], [p["value"] for p in predictions])


def multirc_exact_match(targets, predictions) -> dict[str, float]:
  """EM: the share of questions whose answers are all labelled correctly."""
  _check_lengths(targets, predictions)
  all_correct: dict[Any, bool] = {}
  for target, prediction in zip(targets, predictions):
    group = target["group"]
    all_correct[group] = all_correct.get(group, True) and target["value"] == prediction["value"]
  return {"exact_match": 100 * float(np.mean(list(all_correct.values())))}


# ------------------------------------------------------- QA: ReCoRD, SQuAD, TriviaQA

# The official SQuAD v1.1 and TriviaQA evaluation scripts' answer normalisation, as T5
# reports them (t5.evaluation.qa_utils). Written here because no installed library has
# it: seqio has no QA metric and the `t5` package is not a dependency; it is 20 lines.
_SQUAD_PUNCTUATION = frozenset(string.punctuation)
# TriviaQA also treats curly quotes, the acute accent, backquote and underscore as
# punctuation, and replaces punctuation with a space instead of deleting it.
_TRIVIA_QA_PUNCTUATION = frozenset(string.punctuation + "\u2018\u2019\u00b4`_")


def _normalize(text: str, punctuation: frozenset[str], replacement: str) -> str:
  """Lower case, punctuation replaced, articles a/an/the removed, single spaces."""
  text = "".join(replacement if ch in punctuation else ch for ch in text.lower())
  text = re.sub(r"\b(a|an|the)\b", " ", text)
  return " ".join(text.split())


def normalize_squad(text: str) -> str:
  """SQuAD v1.1's normalisation: "The  Broncos!" -> "broncos"."""
  return _normalize(text, _SQUAD_PUNCTUATION, "")


def normalize_trivia_qa(text: str) -> str:
  """TriviaQA's: as SQuAD's, but punctuation becomes a space ("Mary-Kate" -> "mary kate")."""
  return _normalize(text, _TRIVIA_QA_PUNCTUATION, " ")


def _token_f1(target: str, prediction: str) -> float:
  target_tokens, prediction_tokens = target.split(), prediction.split()
  common = collections.Counter(target_tokens) & collections.Counter(prediction_tokens)
  overlap = sum(common.values())
  if overlap == 0:
    return 0.0
  precision, recall = overlap / len(prediction_tokens), overlap / len(target_tokens)
  return 2 * precision * recall / (precision + recall)


def _best_em_f1(answers: Sequence[str], prediction: str) -> tuple[float, float]:
  """Exact match and token F1 of an already normalised prediction, each the best over
  the already normalised correct answers."""
  return (max(float(a == prediction) for a in answers),
          max(_token_f1(a, prediction) for a in answers))


def _qa_em_f1(targets, predictions, normalize, task: str) -> dict[str, float]:
  _check_lengths(targets, predictions)
  scores = []
  for i, (answers, prediction) in enumerate(zip(targets, predictions)):
    if isinstance(answers, (str, bytes)) or len(answers) == 0:
      raise ValueError(f"{task}: target {i} must be a non-empty list of correct answers "
                       f"(postprocessors.qa); got {answers!r}")
    scores.append(_best_em_f1([normalize(a) for a in answers], normalize(prediction)))
  em, f1 = np.mean(scores, axis=0) if scores else (np.nan, np.nan)
  return {"em": 100 * float(em), "f1": 100 * float(f1)}


def squad(targets, predictions) -> dict[str, float]:
  """SQuAD v1.1: exact match and token F1 (%, named "em" and "f1" as in T5), each the
  best over the question's correct answers. Targets are lists of answers and
  predictions strings, as `postprocessors.qa` makes them."""
  return _qa_em_f1(targets, predictions, normalize_squad, "SQuAD")


def trivia_qa(targets, predictions) -> dict[str, float]:
  """TriviaQA: as `squad`, with TriviaQA's normalisation (`normalize_trivia_qa`)."""
  return _qa_em_f1(targets, predictions, normalize_trivia_qa, "TriviaQA")


def record_em_f1(targets, predictions) -> dict[str, float]:
  """ReCoRD: exact match and token F1, each the best over the query's correct answers.

  Targets are `postprocessors.record` dicts; the one-example-per-answer expansion puts
  each query in the evaluation set once per answer, so only its first copy counts.
  """
  _check_lengths(targets, predictions)
  seen, ems, f1s = set(), [], []
  for target, prediction in zip(targets, predictions):
    if target["group"] in seen:
      continue
    seen.add(target["group"])
    em, f1 = _best_em_f1([normalize_squad(a) for a in target["value"]],
                         normalize_squad(prediction["value"]))
    ems.append(em)
    f1s.append(f1)
  return {"em": 100 * float(np.mean(ems)), "f1": 100 * float(np.mean(f1s))}


# -------------------------------------------------------------- benchmark scores

# What the T5 paper's "GLUE" and "SGLUE" columns average (T5's own evaluation code does
# the same): each benchmark task gets one score, the mean of its metrics when it has
# several, and the benchmark score is the unweighted mean of the task scores. GLUE
# leaves out WNLI (its validation set is adversarial and T5 trained on WSC/DPR instead)
# and the AX diagnostic; MNLI is one task scored by the mean of its matched and
# mismatched accuracies. SuperGLUE leaves out the AX-b and AX-g diagnostics. All values
# are percentages. Each entry: task -> ((seqio task name, metric name), ...).
GLUE_SCORE_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "CoLA": (("glue_cola_v002", "matthews_corrcoef"),),
    "SST-2": (("glue_sst2_v002", "accuracy"),),
    "MRPC": (("glue_mrpc_v002", "f1"), ("glue_mrpc_v002", "accuracy")),
    "STS-B": (("glue_stsb_v002", "pearson_corrcoef"), ("glue_stsb_v002", "spearman_corrcoef")),
    "QQP": (("glue_qqp_v002", "f1"), ("glue_qqp_v002", "accuracy")),
    "MNLI": (("glue_mnli_matched_v002", "accuracy"), ("glue_mnli_mismatched_v002", "accuracy")),
    "QNLI": (("glue_qnli_v002", "accuracy"),),
    "RTE": (("glue_rte_v002", "accuracy"),),
}
SUPER_GLUE_SCORE_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "BoolQ": (("super_glue_boolq_v102", "accuracy"),),
    "CB": (("super_glue_cb_v102", "mean_3class_f1"), ("super_glue_cb_v102", "accuracy")),
    "COPA": (("super_glue_copa_v102", "accuracy"),),
    "MultiRC": (("super_glue_multirc_v102", "f1"), ("super_glue_multirc_v102", "exact_match")),
    "ReCoRD": (("super_glue_record_v102", "f1"), ("super_glue_record_v102", "em")),
    "RTE": (("super_glue_rte_v102", "accuracy"),),
    "WiC": (("super_glue_wic_v102", "accuracy"),),
    "WSC": (("super_glue_wsc_v102_simple_eval", "accuracy"),),  # as T5 scored it
}


def _lookup(scores: Mapping[str, Any], task: str, metric: str) -> float | None:
  if f"{task}/{metric}" in scores:  # flat, as logged: {"glue_rte_v002/accuracy": 71.2}
    return float(scores[f"{task}/{metric}"])
  task_scores = scores.get(task)  # nested, as seqio's Evaluator returns them
  if isinstance(task_scores, Mapping) and metric in task_scores:
    return float(task_scores[metric])
  return None


def benchmark_average(scores: Mapping[str, Any],
                      parts: Mapping[str, Sequence[tuple[str, str]]]) -> float:
  """Mean over tasks of the mean of each task's metrics; `scores` is either
  {task: {metric: value}} or {"task/metric": value}."""
  task_scores, missing = [], []
  for task_parts in parts.values():
    values = [_lookup(scores, task, metric) for task, metric in task_parts]
    missing += [f"{t}/{m}" for (t, m), v in zip(task_parts, values) if v is None]
    if not missing:
      task_scores.append(float(np.mean(values)))
  if missing:
    raise ValueError(f"cannot average: no score for {', '.join(missing)}")
  return float(np.mean(task_scores))


def glue_average(scores: Mapping[str, Any]) -> float:
  """The T5 paper's GLUE score (8 tasks, see `GLUE_SCORE_PARTS`)."""
  return benchmark_average(scores, GLUE_SCORE_PARTS)


def super_glue_average(scores: Mapping[str, Any]) -> float:
  """The T5 paper's SuperGLUE score (8 tasks, see `SUPER_GLUE_SCORE_PARTS`)."""
  return benchmark_average(scores, SUPER_GLUE_SCORE_PARTS)
