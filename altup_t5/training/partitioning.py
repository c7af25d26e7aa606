"""Logical axis names -> mesh axes: the one table, a mesh builder and shardings.

Model code names axes only from `LOGICAL_AXIS_RULES`; where they land on devices is
decided here. Mesh axes: `data` (batch), `model` (heads, mlp, vocab) and, for MoE,
`expert` (experts, with the batch also split over it so no device idles).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Sequence

import flax
import jax
import numpy as np
from flax.linen import partitioning as nn_partitioning
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from altup_t5 import errors

MESH_AXES = ("data", "expert", "model")


@dataclasses.dataclass(frozen=True)
class MeshSettings:
  """Device mesh sizes for train, eval and infer: data x expert x model; data=-1
  uses the remaining devices."""
  data: int = -1
  model: int = 1
  expert: int = 1

  def __post_init__(self):
    errors.check_int("mesh data", self.data, minimum=-1)
    if self.data == 0:
      raise errors.SettingError("mesh data=0 must be >= 1, or -1 for the remaining devices")
    errors.check_int("mesh model", self.model, minimum=1)
    errors.check_int("mesh expert", self.expert, minimum=1)

  def make(self, devices: Sequence[jax.Device] | None = None) -> Mesh:
    return make_mesh(self.data, self.model, self.expert, devices)

# (logical axis, mesh axis or axes or None). Each name any parameter, cache or
# activation uses appears exactly once.
LOGICAL_AXIS_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    # activations
    ("batch", ("data", "expert")),
    ("length", None),
    # MoE token groups once laid out expert-major ([expert, expert_group, capacity,
    # embed]): the `expert` mesh axis holds the experts there, so groups split over
    # `data` only (flaxformer's `expert_replicas`). Token-major groups use `batch`.
    ("expert_group", "data"),
    ("expert_capacity", None),
    # parameters (and the activations that share their axes)
    ("vocab", "model"),
    ("embed", None),
    ("mlp", "model"),
    ("heads", "model"),
    ("kv", None),
    ("joined_kv", "model"),  # heads * head_dim of the q/k/v/out kernels
    ("relpos_buckets", None),
    ("altup_blocks", None),  # the K blocks of an AltUp representation
    ("altup_blocks_in", None),  # second K axis of AltUp's [K, K] predict_coefs
    ("expert", "expert"),
    ("unmodeled", None),  # small router weights: replicated
)

LOGICAL_AXIS_NAMES = frozenset(name for name, _ in LOGICAL_AXIS_RULES)


def axis_rules(mesh_axis_names: Sequence[str] = MESH_AXES):
  """The table restricted to the mesh axes that exist (a dense run has no `expert`)."""
  present = set(mesh_axis_names)
  rules = []
  for logical, mesh_axes in LOGICAL_AXIS_RULES:
    if isinstance(mesh_axes, tuple):
      kept = tuple(a for a in mesh_axes if a in present)
      mesh_axes = kept if len(kept) > 1 else (kept[0] if kept else None)
    elif mesh_axes not in present:
      mesh_axes = None
    rules.append((logical, mesh_axes))
  return tuple(rules)


def make_mesh(data: int = -1, model: int = 1, expert: int = 1,
              devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A `data x expert x model` mesh; `data=-1` takes whatever devices are left.

  The `expert` axis is kept (size 1) even for dense runs, so one table serves all.
  """
  devices = list(jax.devices() if devices is None else devices)
  n = len(devices)
  for name, size in (("model", model), ("expert", expert)):
    if size < 1:
      raise ValueError(f"mesh {name}={size} must be >= 1")
  if data == -1:
    if n % (model * expert):
      raise ValueError(
          f"mesh model={model} x expert={expert} does not divide the {n} devices; "
          f"allowed: divisors of {n}")
    data = n // (model * expert)
  if data < 1 or data * model * expert != n:
    raise ValueError(
        f"mesh data={data} x expert={expert} x model={model} = "
        f"{data * expert * model} does not equal the {n} devices; use data=-1 to "
        "fill the rest")
  grid = np.asarray(devices, dtype=object).reshape(data, expert, model)
  return Mesh(grid, MESH_AXES)


def logical_to_mesh_spec(logical_axes: Sequence[str | None], mesh: Mesh) -> PartitionSpec:
  unknown = [a for a in logical_axes if a is not None and a not in LOGICAL_AXIS_NAMES]
  if unknown:
    raise ValueError(f"logical axes {unknown} are not in partitioning.LOGICAL_AXIS_RULES")
  return nn_partitioning.logical_to_mesh_axes(
      tuple(logical_axes), axis_rules(mesh.axis_names))


def logical_to_sharding(logical_axes_tree, mesh: Mesh):
  """A tree of logical axis tuples (`PartitionSpec`s of names) -> NamedShardings."""
  def one(spec):
    return NamedSharding(mesh, logical_to_mesh_spec(tuple(spec), mesh))
  return jax.tree_util.tree_map(
      one, logical_axes_tree, is_leaf=lambda x: isinstance(x, PartitionSpec))


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Sharding of a `[batch, ...]` input array."""
  return NamedSharding(
      mesh, logical_to_mesh_spec(("batch",) + (None,) * (ndim - 1), mesh))


def data_parallel_size(mesh: Mesh) -> int:
  """How many ways the batch is split (the `batch` rule's mesh axes)."""
  spec = logical_to_mesh_spec(("batch",), mesh)[0]
  axes = spec if isinstance(spec, tuple) else (spec,) if spec else ()
  return math.prod(mesh.shape[a] for a in axes)


def with_shardings(abstract_tree, shardings):
  """ShapeDtypeStructs that also carry their sharding (what orbax restores into)."""
  return jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      abstract_tree, shardings)


def params_logical_axes(abstract_variables):
  """The logical axes of every parameter, from the `params_axes` collection."""
  return flax.core.unfreeze(
      nn_partitioning.get_axis_names(abstract_variables["params_axes"]))


def param_shardings(abstract_variables, mesh: Mesh):
  """NamedShardings for `variables["params"]` (from `model.init`, or its eval_shape)."""
  return logical_to_sharding(params_logical_axes(abstract_variables), mesh)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh):
  """Within this context, jit traces resolve the model's activation constraints
  (`with_sharding_constraint` on logical names) against `mesh`."""
  with jax.set_mesh(mesh), nn_partitioning.axis_rules(axis_rules(mesh.axis_names)):
    yield
