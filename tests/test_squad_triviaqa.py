"""SQuAD and closed-book TriviaQA: T5's exact text formats on hand-written examples,
the `qa` postprocessor and the EM/F1 metrics on hand-made predictions (malformed ones
included), with every expected string and score worked out by hand."""

import numpy as np
import pytest
import seqio
import tensorflow as tf

from altup_t5.data import metrics
from altup_t5.data import postprocessors
from altup_t5.data import qa
from test_glue_tasks import byte_vocabulary, evaluate_on_mock_data, preprocess  # pylint: disable=g-bad-import-order,unused-import  (a fixture)


def squad(question, context, answers, id_="5733be284776f41900661182"):
  return {"id": id_, "title": "Super_Bowl_50", "question": question, "context": context,
          "answers": {"text": answers, "answer_start": np.zeros(len(answers), np.int32)}}


SUPER_BOWL = squad("Who won Super Bowl 50?", "Denver beat Carolina, 24-10, in Super Bowl 50.",
                   ["Denver", "Denver Broncos"])


@pytest.mark.parametrize("task_name, example, expected", [
    # A space around each punctuation mark, runs of spaces made one: hence "50 ? " and
    # the final " . " of the passage.
    ("squad_v010_allanswers", SUPER_BOWL,
     ("question: Who won Super Bowl 50 ? context: Denver beat Carolina , 24 - 10 , in "
      "Super Bowl 50 . ", "Denver")),
    ("squad_v010_context_free", SUPER_BOWL,
     ("squad trivia question: Who won Super Bowl 50 ? ", "Denver")),
    # The target (the first answer) is padded too; whitespace inside is collapsed.
    ("squad_v010_allanswers",
     squad("Which  school?", "It was St. Mary's\tschool.", ["St. Mary's", "Mary's"]),
     ("question: Which school ? context: It was St . Mary ' s school . ", "St . Mary ' s")),
    ("trivia_qa_open",
     {"question": "Which planet is called the Red Planet?", "question_id": "tc_33",
      "question_source": "http://www.quiz.example/",
      "answer": {"value": "Mars", "aliases": ["Mars", "Planet Mars", "Mars (planet)"],
                 "normalized_value": "mars", "type": "WikipediaEntity"}},
     # Closed book: the question exactly as written, no padding.
     ("trivia_qa question: Which planet is called the Red Planet?", "Mars")),
])
def test_text_format_matches_t5(task_name, example, expected):
  assert preprocess(task_name, example) == [expected]


def _precached(task_name, example):
  task = seqio.get_mixture_or_task(task_name)
  [ex] = task.preprocess_precache(tf.data.Dataset.from_tensors(example)).as_numpy_iterator()
  return ex


def test_squad_keeps_every_padded_answer_and_the_id_for_the_metric():
  ex = _precached("squad_v010_allanswers", squad("Q?", "C.", ["A.B", "the A"], id_="x1"))
  assert list(ex["answers"]) == [b"A . B", b"the A"]
  assert (ex["id"], ex["question"], ex["context"]) == (b"x1", b"Q ? ", b"C . ")


def test_trivia_qa_keeps_every_alias():
  ex = _precached("trivia_qa_open", {"question": "Q", "answer": {
      "value": "Mars", "aliases": ["Mars", "Planet Mars"]}})
  assert list(ex["answers"]) == [b"Mars", b"Planet Mars"]


def test_registered_sources_splits_postprocessors_and_metrics():
  for name in ("squad_v010_allanswers", "squad_v010_context_free"):
    task = seqio.get_mixture_or_task(name)
    assert task.source.tfds_dataset.name == "squad/v1.1:3.0.0"
    assert task.splits == ("train", "validation")
    assert task.postprocessor is postprocessors.qa
    assert task.metric_fns == [metrics.squad]
  task = seqio.get_mixture_or_task("trivia_qa_open")
  assert task.source.tfds_dataset.name == "trivia_qa/unfiltered.nocontext:1.1.0"
  # TFDS's 87,622 training questions split 78,785 / 8,837; TFDS's validation is the test.
  assert task.source.splits == ("train", "validation", "test")
  read = task.source.tfds_dataset._map_split  # pylint: disable=protected-access  (what reads use)
  assert [read(s) for s in task.source.splits] == ["train[:78785]", "train[78785:]",
                                                   "validation"]
  assert task.postprocessor is postprocessors.qa
  assert task.metric_fns == [metrics.trivia_qa]


# ------------------------------------------------------------------ postprocessor

@pytest.mark.parametrize("prediction, expected", [
    ("Denver", "Denver"), (b"Saint Bernadette", "Saint Bernadette"),
    (b"\xc3\xa9t\xc3\xa9", "\u00e9t\u00e9"), ("", ""), (None, ""), ("  x  ", "  x  ")])
def test_qa_postprocessor_keeps_prediction_text(prediction, expected):
  assert postprocessors.qa(prediction) == expected


def test_qa_postprocessor_targets_are_every_answer():
  example = {"answers": np.array([b"Denver", b"Denver Broncos"]), "targets_pretokenized": b"x"}
  assert postprocessors.qa(b"Denver", example, is_target=True) == ["Denver", "Denver Broncos"]
  with pytest.raises(ValueError, match=r"^QA targets need the example's 'answers' feature; "
                                       r"got \['targets_pretokenized'\]$"):
    postprocessors.qa(b"x", {"targets_pretokenized": b"x"}, is_target=True)


# ------------------------------------------------------------------------ metrics

@pytest.mark.parametrize("text, squad_form, trivia_qa_form", [
    ("The Denver Broncos!", "denver broncos", "denver broncos"),
    ("  an   apple a day ", "apple day", "apple day"),
    ("Mary-Kate", "marykate", "mary kate"),            # TriviaQA: punctuation -> space
    ("St . Mary ' s", "st mary s", "st mary s"),       # T5's padded targets
    ("Rock \u2018n\u2019 Roll", "rock \u2018n\u2019 roll", "rock n roll"),
    ("snake_case`s", "snakecases", "snake case s"),
    ("Theatre", "theatre", "theatre"),                 # articles only as whole words
    ("", "", ""),
])
def test_answer_normalisation(text, squad_form, trivia_qa_form):
  assert metrics.normalize_squad(text) == squad_form
  assert metrics.normalize_trivia_qa(text) == trivia_qa_form


def test_squad_em_f1_best_over_answers_in_percent():
  targets = [["Denver Broncos", "Denver"]] * 4 + [["St . Mary ' s"]]
  predictions = [
      "the Denver Broncos!",   # EM 1 (normalised), F1 1
      "Broncos",               # EM 0; F1 vs "denver broncos": p 1, r 1/2 -> 2/3
      "",                      # empty: 0, 0
      "Denver Denver",         # EM 0; F1 vs "denver": p 1/2 (one match), r 1 -> 2/3
      "St. Mary's",            # "st marys" vs "st mary s": EM 0; F1 p 1/2 r 1/3 -> 0.4
  ]
  scores = metrics.squad(targets, predictions)
  assert scores == {"em": pytest.approx(100 * 1 / 5),
                    "f1": pytest.approx(100 * (1 + 2 / 3 + 0 + 2 / 3 + 0.4) / 5)}


def test_trivia_qa_normalises_as_the_official_script():
  targets = [["Mary-Kate and Ashley", "Ashley and Mary-Kate"], ["Mars"]]
  # "mary kate and ashley" matches; "marykate" does not (SQuAD's rule would delete '-').
  assert metrics.trivia_qa(targets, ["mary kate and ashley", "Marykate"]) == {
      "em": pytest.approx(50.0), "f1": pytest.approx(50.0)}
  assert metrics.squad(targets, ["mary kate and ashley", "Mars."]) == {
      "em": pytest.approx(50.0), "f1": pytest.approx(100 * (4 / 7 + 1) / 2)}
  # squad: "mary kate and ashley" vs "marykate and ashley": 2 of 4 / 2 of 3 -> F1 4/7.
  assert metrics.squad([["Mary-Kate and Ashley"]], ["mary kate and ashley"])["f1"] == (
      pytest.approx(100 * 4 / 7))


@pytest.mark.parametrize("metric_fn, name", [(metrics.squad, "SQuAD"),
                                             (metrics.trivia_qa, "TriviaQA")])
def test_qa_metrics_reject_malformed_targets(metric_fn, name):
  with pytest.raises(ValueError, match="got 2 targets but 1 predictions"):
    metric_fn([["a"], ["b"]], ["a"])
  with pytest.raises(ValueError, match=rf"^{name}: target 1 must be a non-empty list of "
                                       r"correct answers \(postprocessors.qa\); got \[\]$"):
    metric_fn([["a"], []], ["a", "b"])
  with pytest.raises(ValueError, match=rf"^{name}: target 0 must be a non-empty list"):
    metric_fn(["a"], ["a"])  # a bare string is not a list of answers


def test_seqio_evaluator_scores_squad(monkeypatch):
  perfect, nonsense = evaluate_on_mock_data("squad_v010_allanswers", monkeypatch)
  assert perfect == {"em": 100.0, "f1": 100.0}
  assert nonsense["em"] == 0.0


# ------------------------------------------- T5's reading-comprehension trivia_qa_v010

def trivia_qa_rc(question, wiki, search, aliases):
  """A TFDS trivia_qa/rc example; only the fields T5's preprocessor reads matter."""
  texts = lambda items: tf.constant(items, tf.string, shape=[len(items)])
  return {"question": question,
          "answer": {"value": aliases[0], "aliases": texts(aliases),
                     "normalized_aliases": texts(aliases)},
          "entity_pages": {"wiki_context": texts(wiki), "title": texts([""] * len(wiki))},
          "search_results": {"search_context": texts(search),
                             "title": texts([""] * len(search))}}


def test_trivia_qa_v010_one_example_per_document_and_alias_it_contains():
  example = trivia_qa_rc("Which planet is red?",
                         ["Mars is the fourth planet.", "Venus is hot."],
                         ["The Red Planet, Mars, has two moons."],
                         ["mars", "red planet", "(mars)"])
  question = "question: Which planet is red ? context: "
  # Documents in order (Wikipedia, then search), aliases in order within each; found in
  # lower case; "(mars)", padded to " ( mars ) ", occurs in neither (and is no regex).
  assert preprocess("trivia_qa_v010", example) == [
      (question + "Mars is the fourth planet . ", "mars"),
      (question + "The Red Planet , Mars , has two moons . ", "mars"),
      (question + "The Red Planet , Mars , has two moons . ", "red planet")]
  # No document holds an alias: no example.
  assert preprocess("trivia_qa_v010", trivia_qa_rc("Q?", ["a b"], [], ["zeta"])) == []


def _truncated(inputs, targets, max_length, seed=0):
  dataset = tf.data.Dataset.from_tensors({"inputs": np.array(inputs, np.int32),
                                          "targets": np.array(targets, np.int32)})
  with seqio.utils.map_seed_manager(seed):
    out = qa.trivia_qa_truncate_inputs(dataset, None, {"inputs": max_length})
  return [ex["inputs"].tolist() for ex in out.as_numpy_iterator()]


def test_trivia_qa_truncation_keeps_a_window_with_the_answer():
  inputs = list(range(100, 120))                  # 20 tokens; the answer 110 111 112
  windows = {tuple(w) for seed in range(40) for [w] in [_truncated(inputs, [110, 111, 112],
                                                                   8, seed)]}
  # Windows of 8 that hold all of 110..112 start at 105 (ends 112) through 110.
  assert windows <= {tuple(range(s, s + 8)) for s in range(105, 111)} and len(windows) > 1
  # Short enough: unchanged, answer or not. Too long without the answer: dropped.
  assert _truncated([5, 6, 7], [9], 8) == [[5, 6, 7]]
  assert _truncated(inputs, [7, 8], 8) == []
  # The first occurrence counts: with the answer (7) at positions 2 and 15, every window
  # starts at 0, 1 or 2.
  twice = inputs[:2] + [7] + inputs[3:15] + [7] + inputs[16:]
  windows = {tuple(w) for seed in range(20) for [w] in [_truncated(twice, [7], 8, seed)]}
  assert windows <= {tuple(twice[s:s + 8]) for s in (0, 1, 2)}


def test_trivia_qa_v010_registration_is_t5s():
  task = seqio.get_mixture_or_task("trivia_qa_v010")
  assert task.source.tfds_dataset.name == "trivia_qa/rc:1.1.0"
  assert task.metric_fns == [] and task.postprocessor is None


def test_trivia_qa_v010_whole_pipeline_truncates_around_the_answer():
  example = trivia_qa_rc("Q?", ["x " * 30 + "mars"], [], ["mars"])
  task = seqio.get_mixture_or_task("trivia_qa_v010")
  dataset = task.preprocess_postcache(
      task.preprocess_precache(tf.data.Dataset.from_tensors(example)),
      sequence_length={"inputs": 12, "targets": 8})
  [ex] = list(dataset.as_numpy_iterator())
  assert set(ex) == {"inputs", "targets"}
  assert ex["targets"].tolist() == [b + 3 for b in b"mars"] + [1]
  # Bytes: the answer ends the inputs, so the only 12-token window holding it is the last
  # one, "x x x x mars"; T5's pipeline then trims to 11 tokens before EOS, cutting the
  # answer's last byte (T5's behaviour, kept).
  assert ex["inputs"].tolist() == [b + 3 for b in b"x x x x mar"] + [1]
