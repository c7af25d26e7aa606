"""Batches from a seqio task or mixture, one shard per host, as global jax Arrays.

seqio does the work (task lookup, preprocessing, shuffling, packing with
`EncDecFeatureConverter`); this module only chooses the host's shard, batches, pads
the last evaluation batch, and assembles each host's rows into one global array laid
out by the mesh. The tf.data iterator is checkpointable, which is how a resumed run
continues from the exact example it stopped at.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, Mapping

import jax
import numpy as np
import seqio
import tensorflow as tf

from altup_t5 import errors
from altup_t5.training import batches


@dataclasses.dataclass(frozen=True)
class DataSettings:
  """Which examples a run reads (t5x's `DatasetConfig`)."""
  mixture_or_task_name: str
  task_feature_lengths: Mapping[str, int]  # e.g. {"inputs": 512, "targets": 114}
  split: str = "train"
  batch_size: int = 128  # global, over all hosts
  shuffle: bool = True
  # The shuffle seed. Fixed so that a restarted run sees the same order; the
  # checkpointed iterator then resumes mid-stream.
  seed: int = 0
  use_cached: bool = False
  pack: bool = True  # several examples per row (seqio's packing), as T5 trains

  def __post_init__(self):
    errors.check_type("mixture_or_task_name", self.mixture_or_task_name, str,
                      "a task or mixture name (a string)")
    errors.check_type("split", self.split, str, "a split name (a string)")
    errors.check_int("batch_size", self.batch_size, minimum=1)
    errors.check_int("seed", self.seed)
    for name in ("shuffle", "use_cached", "pack"):
      errors.check_type(name, getattr(self, name), bool, "True or False")
    lengths = self.task_feature_lengths
    errors.check_type("task_feature_lengths", lengths, Mapping,
                      "a dict of feature lengths, e.g. {'inputs': 512, 'targets': 114}")
    missing = {"inputs", "targets"} - set(lengths)
    if missing:
      raise errors.SettingError(f"task_feature_lengths={dict(lengths)} needs "
                                f"lengths for {sorted(missing)}")
    for feature, length in lengths.items():
      errors.check_int(f"task_feature_lengths[{feature!r}]", length, minimum=1)


def local_batch_size(settings: DataSettings) -> int:
  hosts = jax.process_count()
  if settings.batch_size % hosts:
    raise ValueError(f"batch_size={settings.batch_size} is not divisible by the "
                     f"{hosts} hosts")
  return settings.batch_size // hosts


def get_dataset(settings: DataSettings, *, repeat: bool) -> tf.data.Dataset:
  """This host's shard, feature-converted and batched (rows may be padding-only
  in the last batch when `repeat=False`)."""
  from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
  tasks.get_task_or_mixture(settings.mixture_or_task_name)  # clear error if unknown
  ds = seqio.get_dataset(
      settings.mixture_or_task_name,
      task_feature_lengths=dict(settings.task_feature_lengths),
      dataset_split=settings.split,
      shuffle=settings.shuffle,
      num_epochs=None if repeat else 1,
      feature_converter=seqio.EncDecFeatureConverter(pack=settings.pack),
      shard_info=seqio.ShardInfo(jax.process_index(), jax.process_count()),
      use_cached=settings.use_cached,
      seed=settings.seed)
  return ds.batch(local_batch_size(settings), drop_remainder=repeat).prefetch(2)


def global_batches(ds: tf.data.Dataset, mesh, rows: int) -> Iterator[dict[str, jax.Array]]:
  """Iterate `ds` (numpy), padding each batch to `rows` local rows."""
  for batch in ds.as_numpy_iterator():
    if len(next(iter(batch.values()))) < rows:
      batch = batches.pad_rows(batch, rows)
    yield batches.to_global(batch, mesh)


def batch_shapes(settings: DataSettings) -> dict[str, jax.ShapeDtypeStruct]:
  """Global shapes of one batch, without reading any data."""
  converter = seqio.EncDecFeatureConverter(pack=settings.pack)
  lengths = converter.get_model_feature_lengths(dict(settings.task_feature_lengths))
  return {k: jax.ShapeDtypeStruct((settings.batch_size, n), np.int32)
          for k, n in lengths.items()}
