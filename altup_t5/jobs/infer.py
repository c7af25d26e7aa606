r"""Decode with a checkpoint: a task's inputs, or one input per line of a text file.

  python -m altup_t5.infer --gin_file=experiments/quickstart_finetune.gin \
      --gin_file=runs/infer.gin --gin.CHECKPOINT_PATH=\"/tmp/ft/checkpoints\" \
      --gin.INFER_TEXT_FILE=\"questions.txt\" --gin.INFER_OUTPUT=\"/tmp/ft/out.jsonl\"

Each output line is JSON: {"index", "input", "prediction"} (and "target" for a task).
Lines of the text file that are empty, not UTF-8, or longer than the inputs length
are skipped or truncated, and counted in a summary line; nothing fails silently.
"""

from __future__ import annotations

import json
import os

import numpy as np
import seqio

from altup_t5.errors import UsageError
from altup_t5.inference import evaluation
from altup_t5.jobs import load
from altup_t5.training import seq2seq
from altup_t5.training import partitioning
from altup_t5.inference.evaluation import DecodeSettings
from altup_t5.training.input_pipeline import DataSettings


def read_text_inputs(path: str, vocabulary: seqio.Vocabulary, max_length: int
                     ) -> tuple[list[str], list[np.ndarray], dict[str, int]]:
  """Texts and their token ids (with EOS), and counts of what was skipped/cut."""
  counts = {"read": 0, "empty": 0, "not_utf8": 0, "truncated": 0}
  texts, ids = [], []
  with open(path, "rb") as f:
    for raw in f:
      counts["read"] += 1
      try:
        text = raw.decode("utf-8").strip()
      except UnicodeDecodeError:
        counts["not_utf8"] += 1
        continue
      if not text:
        counts["empty"] += 1
        continue
      tokens = list(vocabulary.encode(text)) + [vocabulary.eos_id]
      if len(tokens) > max_length:
        counts["truncated"] += 1
        tokens = tokens[:max_length - 1] + [vocabulary.eos_id]
      texts.append(text)
      ids.append(np.asarray(tokens, np.int32))
  return texts, ids, counts


def _text(example: dict, feature: str, vocabulary) -> str:
  """The example's text for `feature`: seqio's `<feature>_pretokenized` copy where the
  task keeps one, else its tokens decoded (the offline tasks tokenize their own text)."""
  raw = example.get(f"{feature}_pretokenized")
  if raw is not None:
    return raw.decode("utf-8", "replace")
  return vocabulary.decode(example[feature].tolist())


def infer(*, model: seq2seq.Seq2SeqModel, checkpoint_path: str, data: DataSettings,
          output_path: str, text_file: str | None = None,
          num_examples: int | None = None, decode: DecodeSettings = DecodeSettings(),
          mesh: partitioning.MeshSettings = partitioning.MeshSettings(),
          upcycle_from_dense: bool = False) -> int:
  """Decode and write JSON lines; returns the number of predictions written.

  `upcycle_from_dense`: a dense checkpoint widened into `model`'s AltUp variant, as
  training's UPCYCLE_FROM_DENSE (jobs/load.py)."""
  try:
    from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
    task = tasks.get_task_or_mixture(data.mixture_or_task_name)
    vocabulary = load.task_vocabulary(task, model.config.vocab_size,
                                      data.mixture_or_task_name)
    load.check_same_vocabulary(checkpoint_path, vocabulary)
    if text_file is not None and not os.path.isfile(text_file):
      raise ValueError(f"INFER_TEXT_FILE={text_file} does not exist")
  except ValueError as error:
    raise UsageError(str(error)) from None
  in_vocab = task.output_features["inputs"].vocabulary
  out_vocab = task.output_features["targets"].vocabulary
  lengths = data.task_feature_lengths

  # ---- inputs: [(input text, target text or None, token ids)] ----
  counts = None
  if text_file is not None:
    texts, ids, counts = read_text_inputs(text_file, in_vocab, lengths["inputs"])
    if not ids:
      raise UsageError(f"INFER_TEXT_FILE={text_file} has no usable line ({counts})")
    examples = [(t, None, i) for t, i in zip(texts, ids)]
    print(f"read {counts['read']} lines: {len(ids)} used, {counts['empty']} empty, "
          f"{counts['not_utf8']} not UTF-8 (skipped), {counts['truncated']} truncated "
          f"to {lengths['inputs']} tokens")
  else:
    ds = task.get_dataset(dict(lengths), split=data.split, shuffle=False)
    if num_examples:
      ds = ds.take(num_examples)
    examples = [(_text(ex, "inputs", in_vocab), _text(ex, "targets", out_vocab),
                 ex["inputs"][:lengths["inputs"]]) for ex in ds.as_numpy_iterator()]

  # ---- parameters, on the mesh of the one predict path ----
  try:
    device_mesh = mesh.make()
    predictor, params = load.load_for_evaluation(model, data, checkpoint_path,
                                                 device_mesh, decode, upcycle_from_dense)
  except ValueError as error:
    raise UsageError(str(error)) from None

  # ---- decode (in batches of BATCH_SIZE rows) and write ----
  inputs = np.zeros((len(examples), lengths["inputs"]), np.int32)
  for r, (_, _, ids) in enumerate(examples):
    inputs[r, :len(ids)] = ids
  tokens = predictor.predict(params, inputs, max_decode_length=lengths["targets"],
                             eos_id=out_vocab.eos_id)
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  with open(output_path, "w", encoding="utf-8") as out:
    for index, ((text, target, _), row) in enumerate(zip(examples, tokens)):
      ends = np.flatnonzero(row == out_vocab.eos_id)
      row = row[:ends[0]] if len(ends) else row
      record = {"index": index, "input": text, "prediction": out_vocab.decode(row.tolist())}
      if target is not None:
        record["target"] = target
      out.write(json.dumps(record, ensure_ascii=False) + "\n")
  if counts is not None:  # what happened to each line, beside the predictions
    with open(f"{output_path}.summary.json", "w", encoding="utf-8") as out:
      json.dump({"text_file": text_file, "lines": counts, "used": len(examples),
                 "max_input_tokens": lengths["inputs"]}, out, indent=2)
  print(f"wrote {len(examples)} predictions to {output_path}")
  return len(examples)

