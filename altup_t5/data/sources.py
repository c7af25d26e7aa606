"""Data sources for the registered tasks.

STUB written by the lead so that task modules can import it; the data-core helper owns
this file and turns a missing TFDS dataset into one clear error.
"""

import seqio


def tfds_source(tfds_name: str, splits=None) -> seqio.DataSource:
  """A TFDS-backed seqio source, e.g. `tfds_source("glue/rte:2.0.0")`."""
  return seqio.TfdsDataSource(tfds_name=tfds_name, splits=splits)
