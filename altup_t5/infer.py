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

import jax
import numpy as np
import seqio

from altup_t5 import cli, evaluation, models, partitioning
from altup_t5.evaluation import DecodeSettings
from altup_t5.input_pipeline import DataSettings


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


def infer(*, model: models.Seq2SeqModel, checkpoint_path: str, data: DataSettings,
          output_path: str, text_file: str | None = None,
          num_examples: int | None = None, decode: DecodeSettings = DecodeSettings()
          ) -> int:
  """Decode and write JSON lines; returns the number of predictions written."""
  try:
    from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
    task = tasks.get_task_or_mixture(data.mixture_or_task_name)
    if text_file is not None and not os.path.isfile(text_file):
      raise ValueError(f"INFER_TEXT_FILE={text_file} does not exist")
  except ValueError as error:
    raise cli.UsageError(str(error)) from None
  in_vocab = task.output_features["inputs"].vocabulary
  out_vocab = task.output_features["targets"].vocabulary
  lengths = data.task_feature_lengths

  # ---- inputs: [(input text, target text or None, token ids)] ----
  if text_file is not None:
    texts, ids, counts = read_text_inputs(text_file, in_vocab, lengths["inputs"])
    if not ids:
      raise cli.UsageError(f"INFER_TEXT_FILE={text_file} has no usable line ({counts})")
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

  # ---- parameters ----
  mesh = partitioning.make_mesh()
  try:
    engine, params = evaluation.load_for_evaluation(model, data, checkpoint_path, mesh)
  except ValueError as error:
    raise cli.UsageError(str(error)) from None

  # ---- decode in fixed-shape batches ----
  predict = jax.jit(lambda p, x: model.predict(
      p, x, max_decode_length=lengths["targets"], eos_id=out_vocab.eos_id,
      method=decode.method, beam_size=decode.beam_size, alpha=decode.alpha,
      temperature=decode.temperature, rng=jax.random.PRNGKey(0)))
  rows = data.batch_size
  os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
  with open(output_path, "w", encoding="utf-8") as out:
    for start in range(0, len(examples), rows):
      chunk = examples[start:start + rows]
      inputs = np.zeros((rows, lengths["inputs"]), np.int32)
      for r, (_, _, ids) in enumerate(chunk):
        inputs[r, :len(ids)] = ids
      tokens = np.asarray(predict(params, inputs))
      for r, (text, target, _) in enumerate(chunk):
        row = tokens[r]
        ends = np.flatnonzero(row == out_vocab.eos_id)
        row = row[:ends[0]] if len(ends) else row
        record = {"index": start + r, "input": text,
                  "prediction": out_vocab.decode(row.tolist())}
        if target is not None:
          record["target"] = target
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
  print(f"wrote {len(examples)} predictions to {output_path}")
  return len(examples)


if __name__ == "__main__":
  from altup_t5 import infer as infer_module  # pylint: disable=g-import-not-at-top
  cli.run(infer_module.infer, prog="python -m altup_t5.infer")
