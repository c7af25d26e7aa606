"""orbax checkpoints of the train state and of the input pipeline's position.

A step directory holds two items: `state` (step, params, optimiser state; written
asynchronously by orbax) and `dataset` (each host's tf.data iterator, written with
tf.train.Checkpoint while the step is saved). orbax finalises a step only when both
are written, so a run killed mid-save leaves no half checkpoint behind; a finalised
one that is unreadable (corrupted on disk) is skipped with a warning in favour of the
one before it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Callable

import jax
import orbax.checkpoint as ocp
import tensorflow as tf
from etils import epath

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  period: int = 1000  # save every `period` steps, and at the end
  keep: int | None = 3  # the newest `keep` checkpoints stay (None: all)
  async_save: bool = True  # write while training continues

  def __post_init__(self):
    if self.period < 1:
      raise ValueError(f"checkpoint period={self.period} must be >= 1")
    if self.keep is not None and self.keep < 2:
      # One older checkpoint must remain to fall back on if the newest is corrupt.
      raise ValueError(f"checkpoint keep={self.keep} must be >= 2 or None")


# ---- the dataset item: a tf.data iterator per host ----

@dataclasses.dataclass
class DatasetIterator(ocp.args.CheckpointArgs):
  iterator: tf.data.Iterator


class DatasetIteratorHandler(ocp.CheckpointHandler):
  """Saves and restores one host's tf.data iterator position (and shuffle buffer)."""

  def _prefix(self, directory: epath.Path) -> str:
    return os.fspath(directory / f"process_{jax.process_index()}" / "iterator")

  def save(self, directory: epath.Path, args: DatasetIterator):
    tf.train.Checkpoint(iterator=args.iterator).write(self._prefix(directory))

  def restore(self, directory: epath.Path, args: DatasetIterator):
    tf.train.Checkpoint(iterator=args.iterator).read(
        self._prefix(directory)).assert_consumed()
    return args.iterator

  def finalize(self, directory: epath.Path):
    pass


ocp.args.register_with_handler(DatasetIteratorHandler, for_save=True,
                               for_restore=True)(DatasetIterator)


class Checkpoints:
  """The checkpoints of one run directory (`MODEL_DIR/checkpoints`)."""

  def __init__(self, directory: str, settings: CheckpointSettings = CheckpointSettings()):
    self.directory = os.path.abspath(directory)
    self.settings = settings
    self.manager = ocp.CheckpointManager(
        self.directory,
        item_names=("state", "dataset"),
        options=ocp.CheckpointManagerOptions(
            max_to_keep=settings.keep, save_interval_steps=1,
            enable_async_checkpointing=settings.async_save, create=True))

  def steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, iterator: tf.data.Iterator | None) -> None:
    items = {"state": ocp.args.StandardSave(state)}
    if iterator is not None:
      items["dataset"] = DatasetIterator(iterator)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore_latest(self, abstract_state, make_iterator: Callable[[], tf.data.Iterator]
                     ) -> tuple[object, tf.data.Iterator] | None:
    """The newest readable checkpoint as (state, iterator), or None if there is none.

    `abstract_state` carries each array's shape, dtype and sharding;
    `make_iterator()` builds a fresh iterator for each attempt, so a failed read
    never leaves a half-restored one behind.
    """
    for step in reversed(self.steps()):
      iterator = make_iterator()
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            dataset=DatasetIterator(iterator)))
        return restored["state"], restored["dataset"]
      except Exception as error:  # pylint: disable=broad-except
        log.warning("checkpoint %d in %s is unreadable (%s: %s); trying the one before",
                    step, self.directory, type(error).__name__,
                    str(error).splitlines()[0][:200] if str(error) else "")
        print(f"WARNING: checkpoint {step} in {self.directory} is unreadable "
              f"({type(error).__name__}); falling back to the one before it", flush=True)
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_params(path: str, abstract_params):
  """Parameters of a checkpoint written by this project, for fine-tuning or eval.

  `path` is a run's checkpoint directory (its newest step is used) or one step
  directory. `abstract_params` gives shapes, dtypes and shardings.
  """
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise ValueError(f"INITIAL_CHECKPOINT_PATH={path} is not a directory")
  step_dir = epath.Path(path)
  if not (step_dir / "state").exists():
    steps = ocp.utils.checkpoint_steps(step_dir) if step_dir.exists() else []
    if not steps:
      raise ValueError(f"no checkpoint found in {path} (expected step directories with "
                       "a 'state' item, e.g. MODEL_DIR/checkpoints)")
    step_dir = step_dir / str(max(steps))
  # Only the `params` subtree is read, with the shapes and shardings asked for.
  item = {"params": abstract_params}
  restored = ocp.PyTreeCheckpointer().restore(
      step_dir / "state", args=ocp.args.PyTreeRestore(
          item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
          partial_restore=True))
  return restored["params"]
