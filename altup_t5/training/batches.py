"""Each host's rows of a batch, laid out on the device mesh as global jax Arrays.

Only jax and the mesh: no data library, so the bench, the predictor and the studies'
timing (which make their own batches) run where tensorflow and seqio are not
installed, e.g. an accelerator node used only for `python -m altup_t5.bench`.
`input_pipeline` feeds seqio's batches through the same functions.
"""

from __future__ import annotations

from typing import Mapping

import jax
import numpy as np

from altup_t5.training import partitioning


def check_batch_fits_mesh(batch_size: int, mesh) -> None:
  ways = partitioning.data_parallel_size(mesh)
  if batch_size % ways:
    raise ValueError(f"batch_size={batch_size} is not divisible by the data-parallel "
                     f"mesh size {ways} (mesh {dict(mesh.shape)}); use a multiple of {ways}")


def pad_rows(batch: Mapping[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
  """Pad a short final batch with all-zero rows (zero weight everywhere)."""
  return {k: np.pad(v, [(0, rows - len(v))] + [(0, 0)] * (v.ndim - 1))
          for k, v in batch.items()}


def to_global(batch: Mapping[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """Each host's rows -> one array over the mesh, split along `batch`."""
  return {k: jax.make_array_from_process_local_data(
      partitioning.batch_sharding(mesh, v.ndim), v) for k, v in batch.items()}
