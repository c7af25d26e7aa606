"""A model's parameters laid out on a device mesh, with no optimiser: what the train
step and the predict/score step are both built on.

The recipe (flax's lm1b, t5x): `eval_shape` the variables, read every parameter's
logical axes from `params_axes`, and turn them into `NamedSharding`s through the one
axis table; jitted functions then take the parameters with those shardings and trace
under the table's activation rules (`context()`).
"""

from __future__ import annotations

import contextlib
from typing import Mapping

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from altup_t5.training import partitioning
from altup_t5.training import seq2seq


class Placement:
  """Abstract parameters of `model` for batches shaped like `example_batch`, and
  where each parameter lives on `mesh`."""

  def __init__(self, model: seq2seq.Seq2SeqModel, mesh: Mesh,
               example_batch: Mapping[str, jax.ShapeDtypeStruct]):
    self.model = model
    self.mesh = mesh
    self.example_batch = dict(example_batch)
    self.replicated = NamedSharding(mesh, PartitionSpec())
    abstract_variables = jax.eval_shape(
        lambda: model.init(jax.random.PRNGKey(0), self.example_batch))
    self.abstract_params = abstract_variables["params"]
    self.param_shardings = partitioning.param_shardings(abstract_variables, mesh)

  def abstract_params_with_shardings(self):
    """What a checkpoint restores into: shapes, dtypes and shardings."""
    return partitioning.with_shardings(self.abstract_params, self.param_shardings)

  def put_params(self, params):
    return jax.device_put(params, self.param_shardings)

  def batch_sharding(self, ndim: int = 2) -> NamedSharding:
    return partitioning.batch_sharding(self.mesh, ndim)

  @contextlib.contextmanager
  def context(self):
    """Trace and run jitted functions under the mesh and the activation rules."""
    with partitioning.activation_sharding(self.mesh):
      yield
