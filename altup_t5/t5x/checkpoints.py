r"""Checkpoints in t5x's layouts, read and written without t5x.

t5x's train.py writes `MODEL_DIR/checkpoint_<step>/` in one of two layouts:
- orbax (its default): `state/` is an orbax PyTree (OCDBT) holding
  `{'target': params, 'state': {'step', 'param_states': optimizer slots}}`;
- legacy (`train(use_orbax=False)`, and the public T5.1.1 checkpoints): `checkpoint`
  is a flax msgpack `{'version': 3, 'optimizer': {'target': ..., 'state': ...}}` in
  which each array with mesh axes is a tensorstore zarr spec whose data is a
  directory beside it (`target.encoder.layers_0.attention.query.kernel/`).

Our `Transformer` creates t5x's parameter names, so a checkpoint's `target` *is* our
parameter tree: reading checks names and shapes, casts to the requested dtypes and
places arrays on the requested shardings. Only `target` is read (the optimizer state
stays on disk): fine-tuning and evaluation start a fresh optimizer.

The reverse, `write_params`, stores our parameters as t5x's orbax layout with only
`target` and `state/step`: t5x's eval.py and infer.py read it as it is; its train.py
needs the optimizer state from scratch (gin/t5x/runs/from_exported.gin).

  python -m altup_t5.t5x.checkpoints show PATH          # a t5x checkpoint's parameters
  python -m altup_t5.t5x.checkpoints export OURS T5X_MODEL_DIR
"""

from __future__ import annotations

import argparse
import os
import re
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts
from etils import epath
from flax import serialization
from flax import traverse_util

STEP_DIR = re.compile(r"checkpoint_(\d+)")  # t5x's step directories (no temp dirs)
LEGACY_FILE = "checkpoint"  # the legacy layout's msgpack
STATE_ITEM = "state"  # the orbax layout's PyTree directory


# ---------------------------------------------------------------- finding checkpoints

def _orbax_tree(state_dir: str) -> dict:
  """The metadata tree (shapes and dtypes) of an orbax PyTree directory.

  Read through the PyTree handler, not a Checkpointer: a Checkpointer also looks for
  the step's `_CHECKPOINT_METADATA` inside `state/` and warns when it is missing, but
  t5x keeps that file one directory up, in `checkpoint_<step>/`."""
  return ocp.PyTreeCheckpointHandler().metadata(epath.Path(state_dir)).tree


def _is_step_dir(path: str) -> bool:
  if os.path.isfile(os.path.join(path, LEGACY_FILE)):
    return True
  state_dir = os.path.join(path, STATE_ITEM)
  if not os.path.isdir(state_dir):
    return False
  try:  # our own checkpoints also have `state/`; t5x's tree has `target` on top
    return "target" in _orbax_tree(state_dir)
  except Exception:  # pylint: disable=broad-except  (not an orbax tree at all)
    return False


def find_checkpoint(path: str) -> str | None:
  """The t5x step directory `path` denotes: `path` itself if it is one, else the
  newest `checkpoint_<step>` in it (a t5x MODEL_DIR); None if there is none."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    return None
  if _is_step_dir(path):
    return path
  steps = sorted((int(m.group(1)), name) for name in os.listdir(path)
                 if (m := STEP_DIR.fullmatch(name)))
  for _, name in reversed(steps):
    if _is_step_dir(os.path.join(path, name)):
      return os.path.join(path, name)
  return None


def is_t5x_checkpoint(path: str) -> bool:
  """Whether `path` is a t5x checkpoint directory or a t5x MODEL_DIR holding one."""
  return find_checkpoint(path) is not None


# ---------------------------------------------------------------- the legacy layout

def _legacy_target(step_dir: str) -> dict:
  """The legacy msgpack's `target`: arrays, or tensorstore specs of arrays on disk."""
  with open(os.path.join(step_dir, LEGACY_FILE), "rb") as f:
    data = f.read()
  try:
    contents = serialization.msgpack_restore(data)
  except Exception:  # pylint: disable=broad-except
    contents = None
  if not isinstance(contents, dict):
    raise ValueError(
        f"{os.path.join(step_dir, LEGACY_FILE)} is not a t5x msgpack checkpoint (a "
        "TensorFlow/MeshTF checkpoint's index? those need converting with t5x first)")
  # Version 0 stored the optimizer state at the top level.
  tree = contents["optimizer"] if contents.get("version", 0) > 0 else contents
  if "target" not in tree:
    raise ValueError(f"t5x checkpoint {step_dir} has no 'target' (parameters) in its "
                     f"msgpack; top-level keys: {sorted(tree)}")
  return tree["target"]


def _is_spec(x) -> bool:
  return isinstance(x, dict) and "driver" in x and "kvstore" in x


def _local_spec(spec: dict, step_dir: str) -> dict:
  """A spec as t5x wrote it (relative path; 'file' driver, or 'gcs' for a checkpoint
  written to a bucket and copied here) -> a spec of the files under `step_dir`."""
  spec = dict(spec)
  kvstore = dict(spec.pop("kvstore"))
  relative = os.path.join(kvstore.get("path", ""), spec.pop("path", ""))
  spec["kvstore"] = {"driver": "file", "path": os.path.join(step_dir, relative)}
  return spec


def _legacy_shape(leaf) -> tuple[tuple[int, ...], np.dtype]:
  if _is_spec(leaf):
    return tuple(leaf["metadata"]["shape"]), np.dtype(leaf["dtype"])
  leaf = np.asarray(leaf)
  return leaf.shape, leaf.dtype


def _read_legacy_leaf(leaf, step_dir: str) -> np.ndarray:
  if _is_spec(leaf):
    return ts.open(_local_spec(leaf, step_dir), open=True).result().read().result()
  return np.asarray(leaf)


# ---------------------------------------------------------------- reading parameters

def _flat(tree) -> dict[str, object]:
  """A nested dict -> {'encoder/layers_0/...': leaf} (a tensorstore spec is a leaf)."""
  return {"/".join(k): v for k, v in traverse_util.flatten_dict(
      tree, is_leaf=lambda _, x: _is_spec(x)).items()}


def _check_fits(stored: dict[str, tuple], model: dict[str, tuple], step_dir: str) -> None:
  """One clear error if the checkpoint's parameters are not the model's."""
  missing = sorted(set(model) - set(stored))
  extra = sorted(set(stored) - set(model))
  reshaped = [f"{k}: checkpoint {stored[k]}, model {model[k]}"
              for k in sorted(set(model) & set(stored)) if stored[k] != model[k]]
  problems = []
  for what, items in (("missing from the checkpoint", missing),
                      ("not in the model", extra), ("of another shape", reshaped)):
    if items:
      problems.append(f"{len(items)} parameter(s) {what} (e.g. {'; '.join(items[:3])})")
  if problems:
    raise ValueError(f"t5x checkpoint {step_dir} does not fit the model (check the size "
                     f"and variant): {', '.join(problems)}")


def _sharding_or_none(x):
  return getattr(x, "sharding", None)


def read_params(path: str, abstract_params):
  """The parameters of the t5x checkpoint at `path` (a `checkpoint_<step>` directory or
  a t5x MODEL_DIR: its newest), with the shapes, dtypes and shardings of
  `abstract_params` (a tree of `jax.ShapeDtypeStruct`; without shardings: numpy)."""
  step_dir = find_checkpoint(path)
  if step_dir is None:
    raise ValueError(f"{path} is not a t5x checkpoint (expected a directory with "
                     f"'{LEGACY_FILE}' or an orbax '{STATE_ITEM}/' holding 'target', or "
                     "a t5x MODEL_DIR with checkpoint_<step> directories)")
  model = {k: tuple(v.shape) for k, v in _flat(abstract_params).items()}
  if os.path.isfile(os.path.join(step_dir, LEGACY_FILE)):
    target = _flat(_legacy_target(step_dir))
    _check_fits({k: _legacy_shape(v)[0] for k, v in target.items()}, model, step_dir)

    def read(name, wanted):
      value = _read_legacy_leaf(target[name], step_dir).astype(wanted.dtype)
      sharding = _sharding_or_none(wanted)
      return value if sharding is None else jax.device_put(value, sharding)

    flat = {k: read(k, v) for k, v in _flat(abstract_params).items()}
    return traverse_util.unflatten_dict({tuple(k.split("/")): v for k, v in flat.items()})

  state_dir = os.path.join(step_dir, STATE_ITEM)
  stored = _flat(_orbax_tree(state_dir)["target"])
  _check_fits({k: tuple(v.shape) for k, v in stored.items()}, model, step_dir)
  # Only `target` is read, each array straight onto its sharding (cast on the way).
  item = {"target": abstract_params}
  restored = ocp.PyTreeCheckpointHandler().restore(  # no step metadata: see _orbax_tree
      epath.Path(state_dir), args=ocp.args.PyTreeRestore(
          item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
          partial_restore=True))
  return restored["target"]


def checkpoint_params(path: str) -> dict[str, tuple[tuple[int, ...], str]]:
  """`{'encoder/layers_0/...': (shape, dtype)}` of a t5x checkpoint, without reading data."""
  step_dir = find_checkpoint(path)
  if step_dir is None:
    raise ValueError(f"{path} is not a t5x checkpoint")
  if os.path.isfile(os.path.join(step_dir, LEGACY_FILE)):
    return {k: (s, str(d)) for k, (s, d) in
            ((k, _legacy_shape(v)) for k, v in _flat(_legacy_target(step_dir)).items())}
  stored = _flat(_orbax_tree(os.path.join(step_dir, STATE_ITEM))["target"])
  return {k: (tuple(v.shape), str(v.dtype)) for k, v in stored.items()}


# ---------------------------------------------------------------- writing (ours -> t5x)

def write_params(params, model_dir: str, step: int) -> str:
  """Our parameters as t5x checkpoint `model_dir/checkpoint_<step>` (orbax layout,
  `target` and `state/step` only); returns its path."""
  step_dir = os.path.join(os.path.abspath(model_dir), f"checkpoint_{int(step)}")
  if os.path.exists(step_dir):
    raise ValueError(f"{step_dir} already exists; choose another MODEL_DIR or step")
  tree = {"target": params, "state": {"step": np.asarray(step, np.int32)}}
  ocp.PyTreeCheckpointer().save(os.path.join(step_dir, STATE_ITEM),
                                args=ocp.args.PyTreeSave(tree))
  return step_dir


def read_our_params(path: str) -> tuple[dict, int]:
  """(params as numpy, step) of one of our checkpoints: a run's `checkpoints`
  directory (newest step) or one step directory."""
  path = os.path.abspath(path)
  if not os.path.isdir(os.path.join(path, STATE_ITEM)):
    steps = [int(n) for n in (os.listdir(path) if os.path.isdir(path) else ())
             if n.isdigit() and os.path.isdir(os.path.join(path, n, STATE_ITEM))]
    if not steps:
      raise ValueError(f"no altup_t5 checkpoint in {path} (expected MODEL_DIR/checkpoints "
                       "or one of its step directories)")
    path = os.path.join(path, str(max(steps)))
  state_dir = os.path.join(path, STATE_ITEM)
  meta = _orbax_tree(state_dir)
  if "params" not in meta:
    raise ValueError(f"{state_dir} holds no 'params' (keys: {sorted(meta)}); is it a "
                     "t5x checkpoint? Those need no export")
  item = {"params": meta["params"], "step": meta["step"]}
  as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
  restored = ocp.PyTreeCheckpointHandler().restore(
      epath.Path(state_dir), args=ocp.args.PyTreeRestore(
          item=item, restore_args=as_numpy, partial_restore=True))
  return restored["params"], int(restored["step"])


# ---------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m altup_t5.t5x.checkpoints",
                                   description=__doc__.split("\n\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  show = commands.add_parser("show", help="list a t5x checkpoint's parameters")
  show.add_argument("path", help="a t5x checkpoint_<step> directory or MODEL_DIR")
  export = commands.add_parser(
      "export", help="write one of our checkpoints as a t5x checkpoint")
  export.add_argument("source", help="our MODEL_DIR/checkpoints or one step directory")
  export.add_argument("model_dir", help="t5x MODEL_DIR to write checkpoint_<step> into")
  args = parser.parse_args(argv)
  try:
    if args.command == "show":
      params = checkpoint_params(args.path)
      print(find_checkpoint(args.path))
      for name, (shape, dtype) in sorted(params.items()):
        print(f"  {name} {shape} {dtype}")
      print(f"{len(params)} parameters, "
            f"{sum(int(np.prod(s)) for s, _ in params.values()):,} values")
    else:
      params, step = read_our_params(args.source)
      print(write_params(params, args.model_dir, step))
  except ValueError as error:
    print(f"{parser.prog}: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
