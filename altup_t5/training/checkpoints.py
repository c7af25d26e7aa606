"""orbax checkpoints of the train state and of the input pipeline's position.

A step directory holds two items: `state` (step, params, optimiser state; written
asynchronously by orbax) and `dataset` (each host's input position: its tf.data
iterator written with tf.train.Checkpoint while the step is saved, and the number of
batches it has yielded). orbax finalises a step only when both
are written, so a run killed mid-save leaves no half checkpoint behind; a finalised
one that is unreadable (corrupted on disk) is skipped with a warning in favour of the
one before it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable

import jax
import orbax.checkpoint as ocp
from flax import traverse_util
import tensorflow as tf
from etils import epath

from altup_t5 import errors



@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  period: int = 1000  # save every `period` steps, and at the end
  keep: int | None = 3  # the newest `keep` checkpoints stay (None: all)
  async_save: bool = True  # write while training continues

  def __post_init__(self):
    errors.check_int("checkpoint period", self.period, minimum=1)
    # One older checkpoint must remain to fall back on if the newest is corrupt.
    errors.check_int("checkpoint keep", self.keep, allow_none=True)
    if self.keep is not None and self.keep < 2:
      raise errors.SettingError(f"checkpoint keep={self.keep} must be >= 2 or None")
    errors.check_type("async_save", self.async_save, bool, "True or False")


# ---- the dataset item: each host's position in its input pipeline ----

@dataclasses.dataclass
class DatasetPosition(ocp.args.CheckpointArgs):
  """Save: the iterator and how many batches it has yielded. Restore:
  `make_iterator(skip)` builds the pipeline, skipping `skip` batches."""
  iterator: tf.data.Iterator | None = None
  batches: int = 0
  make_iterator: Callable[[int], tf.data.Iterator] | None = None


class DatasetPositionHandler(ocp.CheckpointHandler):
  """The tf.data iterator's own checkpoint (position and shuffle buffer) when the
  pipeline can be serialised; otherwise (a `tf.py_function` somewhere in a task) the
  batch count, restored by rebuilding the deterministic pipeline and skipping."""

  def _dir(self, directory: epath.Path) -> epath.Path:
    return directory / f"process_{jax.process_index()}"

  def save(self, directory: epath.Path, args: DatasetPosition):
    host_dir = self._dir(directory)
    host_dir.mkdir(parents=True, exist_ok=True)
    (host_dir / "position.json").write_text(json.dumps({"batches": args.batches}))
    try:
      tf.train.Checkpoint(iterator=args.iterator).write(os.fspath(host_dir / "iterator"))
    except (tf.errors.FailedPreconditionError, tf.errors.UnimplementedError) as error:
      _note_once(f"the input pipeline cannot be serialised ({str(error).splitlines()[0]}"
                 "); its position is saved as a batch count and restored by skipping")

  def restore(self, directory: epath.Path, args: DatasetPosition):
    host_dir = self._dir(directory)
    batches = json.loads((host_dir / "position.json").read_text())["batches"]
    if not (host_dir / "iterator.index").exists():
      return args.make_iterator(batches)
    iterator = args.make_iterator(0)
    tf.train.Checkpoint(iterator=iterator).read(
        os.fspath(host_dir / "iterator")).assert_consumed()
    return iterator

  def finalize(self, directory: epath.Path):
    pass


ocp.args.register_with_handler(DatasetPositionHandler, for_save=True,
                               for_restore=True)(DatasetPosition)

_NOTED: set[str] = set()


def _note_once(text: str) -> None:
  if text not in _NOTED:
    _NOTED.add(text)
    print(f"NOTE: {text}", flush=True)


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

  def save(self, step: int, state, iterator: tf.data.Iterator, batches: int) -> None:
    """Save `state` and the input position (`batches` yielded so far by `iterator`)."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        dataset=DatasetPosition(iterator=iterator, batches=batches)), force=True)

  def restore_latest(self, abstract_state,
                     make_iterator: Callable[[int], tf.data.Iterator]
                     ) -> tuple[object, tf.data.Iterator] | None:
    """The newest readable checkpoint as (state, iterator), or None if there is none.

    `abstract_state` carries each array's shape, dtype and sharding;
    `make_iterator(skip)` builds a fresh iterator for each attempt (skipping `skip`
    batches), so a failed read never leaves a half-restored one behind. An unreadable step directory is renamed
    `<step>.unreadable` (kept for inspection, ignored by orbax), so the resumed run
    can save that step again.
    """
    for step in reversed(self.steps()):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            dataset=DatasetPosition(make_iterator=make_iterator)))
        return restored["state"], restored["dataset"]
      except Exception as error:  # pylint: disable=broad-except
        detail = str(error).strip().splitlines()[0].split(". See full")[0][:160]
        print(f"WARNING: checkpoint {step} in {self.directory} is unreadable "
              f"({type(error).__name__}: {detail}); falling back to the one before it",
              flush=True)
        self._set_aside(step)
    return None

  def _set_aside(self, step: int) -> None:
    if jax.process_index() == 0:
      source = os.path.join(self.directory, str(step))
      target = f"{source}.unreadable"
      suffix = 1
      while os.path.exists(target):
        target, suffix = f"{source}.unreadable{suffix}", suffix + 1
      os.rename(source, target)
    self.manager.reload()

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_params(path: str, abstract_params):
  """Parameters of a checkpoint written by this project, for fine-tuning or eval.

  `path` is a run's checkpoint directory (its newest step) or one step directory;
  `abstract_params` gives shapes, dtypes and shardings. Checkpoints of other systems
  (t5x's) are read through `altup_t5.jobs.load.load_params`, which calls this one
  for ours.
  """
  path = os.path.abspath(path) if "://" not in path else path  # gs:// stays as it is
  if not epath.Path(path).is_dir():
    raise ValueError(f"INITIAL_CHECKPOINT_PATH={path} is not a directory")
  step_dir = epath.Path(path)
  if not (step_dir / "state").exists():
    # Finalised steps only: orbax writes to a temporary name and renames when done.
    steps = [int(p.name) for p in step_dir.iterdir() if p.name.isdigit()]
    if not steps:
      raise ValueError(f"no checkpoint found in {path} (expected step directories with "
                       "a 'state' item, e.g. MODEL_DIR/checkpoints)")
    step_dir = step_dir / str(max(steps))
  _check_fits(step_dir, abstract_params)
  # Only the `params` subtree is read, with the shapes and shardings asked for.
  item = {"params": abstract_params}
  # Through the PyTree handler: the step's metadata file is one directory up (orbax's
  # manager writes it there), where a Checkpointer would warn that it is missing.
  restored = ocp.PyTreeCheckpointHandler().restore(
      step_dir / "state", args=ocp.args.PyTreeRestore(
          item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
          partial_restore=True))
  return restored["params"]


def _flat_shapes(tree) -> dict[str, tuple]:
  flat = traverse_util.flatten_dict(tree, is_leaf=lambda _, x: hasattr(x, "shape"))
  return {"/".join(k): tuple(v.shape) for k, v in flat.items()}


def _check_fits(step_dir: epath.Path, abstract_params) -> None:
  """One clear error when the step's parameters are not the model's: orbax's partial
  restore would return the stored shapes and leave missing parameters abstract."""
  metadata = ocp.PyTreeCheckpointHandler().metadata(step_dir / "state")
  stored = _flat_shapes(getattr(metadata, "tree", metadata).get("params", {}))
  model = _flat_shapes(abstract_params)
  missing = sorted(set(model) - set(stored))
  extra = sorted(set(stored) - set(model))
  reshaped = [f"{k}: checkpoint {stored[k]}, model {model[k]}"
              for k in sorted(set(model) & set(stored)) if stored[k] != model[k]]
  problems = [f"{len(items)} parameter(s) {what} (e.g. {'; '.join(items[:3])})"
              for what, items in (("missing from the checkpoint", missing),
                                  ("not in the model", extra),
                                  ("of another shape", reshaped)) if items]
  if problems:
    raise ValueError(f"checkpoint {step_dir} does not fit the model (check the size and "
                     f"variant; UPCYCLE_FROM_DENSE=True widens a dense checkpoint into "
                     f"AltUp): {', '.join(problems)}")
