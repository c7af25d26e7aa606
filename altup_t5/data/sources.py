"""Data sources for the registered tasks: TFDS datasets that must already be prepared.

`tfds_source` is seqio's `TfdsDataSource` in read-only mode: it never downloads or
builds a dataset at run time (C4 is a multi-day Beam job; this project fetches nothing
at run time). A dataset that is not in the TFDS data directory raises one
`DatasetMissingError` that names the dataset, the directory searched and how to prepare
it, instead of a stack trace from inside tfds.

Note: tensorflow-datasets 4.9.10 imports `importlib_resources` when it builds a dataset
but declares it only for Python < 3.9 (tensorflow/datasets#11212). Reading prepared
data does not need it; `tfds build` does, so setup.py lists it.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import seqio


class DatasetMissingError(ValueError):
  """A TFDS dataset a task needs is not prepared in the TFDS data directory."""


def _missing_message(tfds_name: str, searched: str) -> str:
  return (f"TFDS dataset {tfds_name!r} is not prepared in the TFDS data directory {searched}. "
          f"Prepare it on a machine with network access with `tfds build {tfds_name} "
          f"--data_dir=DIR`, then point --tfds_data_dir (or the TFDS_DATA_DIR environment "
          f"variable) at DIR or at any directory holding a prepared copy (TPU users: "
          f"gs://tfds-data/datasets or their own bucket).")


class TfdsSource(seqio.TfdsDataSource):
  """`seqio.TfdsDataSource` that reads only prepared data and says so when it is missing.

  Reading a split of a dataset that is not prepared raises `DatasetMissingError`.
  Questions about its size and shards answer "unknown" (None, no shards) instead, so
  that seqio goes on to the read and its clear error. The check runs only when a call
  into tfds fails: under `tfds.testing.mock_data()` nothing is prepared, yet every read
  succeeds.
  """

  def __init__(self, tfds_name: str, splits=None, tfds_data_dir: str | None = None):
    super().__init__(tfds_name=tfds_name, splits=splits, tfds_data_dir=tfds_data_dir,
                     read_only=True)

  def missing_error(self) -> ValueError | None:
    """The error to raise if the dataset is not prepared (or unknown), else None."""
    try:
      builder = self.tfds_dataset.builder
    except Exception as error:  # pylint: disable=broad-except
      # Unknown name or config: tfds' own message (with close names) is the clear one.
      return ValueError(f"unknown TFDS dataset {self.tfds_dataset.name!r}: {error}")
    if builder.is_prepared():
      return None
    return DatasetMissingError(_missing_message(self.tfds_dataset.name,
                                                str(builder.data_dir_root)))

  @property
  def splits(self):
    splits = seqio.TfdsDataSource.splits.fget(self)
    if not splits:  # no names given and an unprepared builder knows no splits
      missing = self.missing_error()
      if missing is not None:
        raise missing
    return splits

  def get_dataset(self, *args, **kwargs):
    try:
      return super().get_dataset(*args, **kwargs)
    except Exception:  # pylint: disable=broad-except
      missing = self.missing_error()
      if missing is None:
        raise
      raise missing from None

  def num_input_examples(self, split: str):
    try:
      return super().num_input_examples(split)
    except Exception:  # pylint: disable=broad-except
      if self.missing_error() is None:
        raise
      return None  # unknown; reading the split raises the clear error

  def list_shards(self, split: str):
    try:
      return super().list_shards(split)
    except Exception:  # pylint: disable=broad-except
      if self.missing_error() is None:
        raise
      return []  # seqio then shards examples, after the read that raises the clear error


def tfds_source(tfds_name: str,
                splits: Iterable[str] | Mapping[str, str] | None = None,
                data_dir: str | None = None) -> seqio.DataSource:
  """A read-only TFDS source, e.g. `tfds_source("glue/rte:1.0.0")`.

  `splits`: names, or a map from task split to TFDS split (e.g. {"validation":
  "validation_matched"}); None means all the dataset's splits. `data_dir` overrides the
  TFDS data directory for this source (seqio's --tfds_data_dir override wins over it).
  """
  if splits is not None and not isinstance(splits, Mapping):
    splits = list(splits)
  return TfdsSource(tfds_name, splits=splits, tfds_data_dir=data_dir)
