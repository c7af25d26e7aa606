"""Reading t5x's and our checkpoints prints no orbax warning about a missing step
metadata file (t5x and orbax's manager keep `_CHECKPOINT_METADATA` one directory above
the `state/` tree that is read)."""

import logging
import os
import shutil

import jax
import numpy as np

from altup_t5.jobs import load
from altup_t5.t5x import checkpoints as t5x_checkpoints


def test_reading_a_t5x_checkpoint_prints_no_metadata_warning(tmp_path, caplog):
  params = {"encoder": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
  step_dir = t5x_checkpoints.write_params(params, tmp_path, step=7)
  # t5x's own trainer keeps the step metadata next to `state/`, not inside it.
  shutil.move(os.path.join(step_dir, "state", "_CHECKPOINT_METADATA"),
              os.path.join(step_dir, "_CHECKPOINT_METADATA"))
  abstract = jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype),
                                    params)
  with caplog.at_level(logging.WARNING):
    assert t5x_checkpoints.is_t5x_checkpoint(str(tmp_path))
    restored = load.load_params(str(tmp_path), abstract)
  np.testing.assert_array_equal(restored["encoder"]["kernel"], params["encoder"]["kernel"])
  assert not [r for r in caplog.records if "Metadata file does not exist" in r.getMessage()]
