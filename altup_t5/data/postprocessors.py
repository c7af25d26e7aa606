"""Turn decoded text into the values GLUE/SuperGLUE/QA metrics compare (T5's conventions).

seqio calls a task's postprocessor twice per example: on the model's decoded output
(`is_target=False`) and on the example's target text (`is_target=True`, with the whole
example, whose strings are bytes). Class labels become indices with -1 for text that
names no class, so an unparsable prediction counts as wrong instead of crashing the
evaluation; MultiRC and ReCoRD targets also carry the key that groups their examples,
and QA targets are the lists of correct answers.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

INVALID_CLASS = -1  # what a prediction that names no label maps to


def _as_text(value: Any) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _as_int(value: Any) -> int:
  return int(value.item() if hasattr(value, "item") else value)


def _required(example: Mapping[str, Any] | None, key: str, task: str) -> Any:
  if example is None or key not in example:
    have = sorted(example) if example is not None else "no example"
    raise ValueError(f"{task} targets need the example's {key!r} feature; got {have}")
  return example[key]


def string_to_float(string: str, default: float = -1.0, **unused_kwargs) -> float:
  """STS-B: "3.4" -> 3.4; text that is not a number -> `default` (T5 uses -1)."""
  try:
    return float(_as_text(string))
  except ValueError:
    return default


def string_label_to_class_id(string_label: str, label_classes: Sequence[str],
                             default: int = INVALID_CLASS, **unused_kwargs) -> int:
  """"entailment" -> its index in `label_classes`; any other text -> `default`."""
  text = _as_text(string_label)
  return list(label_classes).index(text) if text in label_classes else default


def class_id(label_classes: Sequence[str]) -> Callable[..., int]:
  """The postprocessor of a classification task with these label names."""
  return functools.partial(string_label_to_class_id, label_classes=tuple(label_classes))


def multirc(string_label: str, example: Mapping[str, Any] | None = None,
            is_target: bool = False) -> dict[str, Any]:
  """{"value": 0/1/-1} for an answer; targets add the question it belongs to.

  The group is (paragraph, question) rather than T5's question index alone: the same
  when question indices are unique across paragraphs, and still right if they are not.
  """
  result: dict[str, Any] = {"value": string_label_to_class_id(string_label, ("False", "True"))}
  if is_target:
    result["group"] = (_as_int(_required(example, "idx/paragraph", "MultiRC")),
                       _as_int(_required(example, "idx/question", "MultiRC")))
  return result


def record(answer: str, example: Mapping[str, Any] | None = None,
           is_target: bool = False) -> dict[str, Any]:
  """A prediction is {"value": text}; a target is every correct answer and its query.

  ReCoRD is trained with one example per answer, so each query appears once per answer
  in the evaluation set too; the group (passage, query) lets the metric keep one copy.
  """
  if not is_target:
    return {"value": _as_text(answer)}
  answers = _required(example, "answers", "ReCoRD")
  return {
      "value": [_as_text(a) for a in answers],
      "group": (_as_int(_required(example, "idx/passage", "ReCoRD")),
                _as_int(_required(example, "idx/query", "ReCoRD"))),
  }


def qa(answer: Any, example: Mapping[str, Any] | None = None,
       is_target: bool = False) -> str | list[str]:
  """SQuAD, TriviaQA: a prediction is its text ("" for None); a target is every correct
  answer in the example's `answers`, for the metric's best match (T5's `qa`)."""
  if is_target:
    return [_as_text(a) for a in _required(example, "answers", "QA")]
  return "" if answer is None else _as_text(answer)
