"""A small deterministic seqio task for trainer tests (no files, no downloads).

`toy_reverse`: inputs are short word sequences, targets the words reversed; byte
vocabulary. Learnable in a few dozen steps, so tests can see the loss fall.
"""

import seqio
import tensorflow as tf

from altup_t5.data import vocabularies

WORDS = ("amber birch cedar dune ember fjord grove heath inlet juniper kelp larch moss "
         "nettle oak pine quartz reed sage thorn").split()


def _texts(split: str):
  n, offset = (4000, 0) if split == "train" else (96, 100_000)
  inputs, targets = [], []
  for i in range(offset, offset + n):
    words = [WORDS[(i * 7 + j * (i % 5 + 1)) % len(WORDS)] for j in range(3 + i % 6)]
    inputs.append("reverse: " + " ".join(words))
    targets.append(" ".join(reversed(words)))
  return inputs, targets


def _dataset_fn(split, shuffle_files, seed=None):
  del shuffle_files, seed
  inputs, targets = _texts(split)
  return tf.data.Dataset.from_tensor_slices({"inputs": inputs, "targets": targets})


def _exact_match(targets, predictions):
  return {"exact_match": 100.0 * sum(t == p for t, p in zip(targets, predictions))
          / max(len(targets), 1)}


def register():
  if "toy_reverse" in seqio.TaskRegistry.names():
    return
  vocab = vocabularies.byte_vocabulary()
  seqio.TaskRegistry.add(
      "toy_reverse",
      source=seqio.FunctionDataSource(_dataset_fn, splits=["train", "validation"]),
      preprocessors=[seqio.preprocessors.tokenize, seqio.preprocessors.append_eos],
      output_features={"inputs": seqio.Feature(vocab), "targets": seqio.Feature(vocab)},
      metric_fns=[_exact_match])


register()
