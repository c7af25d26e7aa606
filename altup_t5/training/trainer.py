"""Train state, sharded initialisation and the jitted train step.

The recipe (flax's lm1b, t5x): `eval_shape` the initial state, read each parameter's
logical axes, turn them into shardings on the mesh, then `jit(init, out_shardings=...)`
so no device ever holds the whole model; the train step is jitted with those
shardings and donates the old state.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding

from altup_t5.training import seq2seq
from altup_t5.training import partitioning
from altup_t5.training.placement import Placement
from altup_t5.training.optimizer import OptimizerSettings  # re-exported (flat-layout gin)

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  step: Array  # int32 scalar: optimizer steps taken
  params: Any
  opt_state: Any


def batch_spec(batch: Mapping[str, Any]) -> dict[str, jax.ShapeDtypeStruct]:
  return {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype if not hasattr(
      v, "dtype") else v.dtype) for k, v in batch.items()}


class Trainer:
  """Owns the model, optimiser, mesh and the compiled step functions."""

  def __init__(self, model: seq2seq.Seq2SeqModel, optimizer: OptimizerSettings,
               mesh: Mesh, example_batch: Mapping[str, jax.ShapeDtypeStruct]):
    self.model = model
    self.settings = optimizer
    self.tx = optimizer.make()
    self.learning_rate = optimizer.learning_rate()
    self.mesh = mesh
    # Parameters and their shardings: shared with the predict/score step
    # (`inference.predictor.Predictor(trainer.placement, ...)`).
    self.placement = Placement(model, mesh, example_batch)
    self.example_batch = self.placement.example_batch
    self.replicated = self.placement.replicated
    self.param_shardings = self.placement.param_shardings

    # ---- abstract state and its shardings ----
    abstract_params = self.placement.abstract_params
    abstract_opt = jax.eval_shape(self.tx.init, abstract_params)
    self.state_shardings = TrainState(
        step=self.replicated, params=self.param_shardings,
        opt_state=_optimizer_state_shardings(abstract_opt, abstract_params,
                                             self.param_shardings, self.replicated))
    self.abstract_state = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32), params=abstract_params,
        opt_state=abstract_opt)
    self.batch_shardings = {k: partitioning.batch_sharding(mesh, len(v.shape))
                            for k, v in self.example_batch.items()}

    self._compiled = None
    with partitioning.activation_sharding(mesh):
      self._init = jax.jit(self._init_fn, out_shardings=self.state_shardings)
      self._train_step = jax.jit(
          self._train_step_fn,
          in_shardings=(self.state_shardings, self.batch_shardings, self.replicated),
          out_shardings=(self.state_shardings, self.replicated), donate_argnums=(0,))
      self._all_finite = jax.jit(lambda params: jnp.all(jnp.asarray(
          [jnp.all(jnp.isfinite(p)) for p in jax.tree_util.tree_leaves(params)])))

  # ------------------------------------------------------------ pure functions
  def _init_fn(self, rng: Array) -> TrainState:
    params = self.model.init(rng, self.example_batch)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.tx.init(params))

  def _train_step_fn(self, state: TrainState, batch, dropout_seed: Array):
    # A fresh dropout key per step, derived from the step: resumes reproduce it.
    rng = jax.random.fold_in(jax.random.PRNGKey(dropout_seed), state.step)
    grad_fn = jax.value_and_grad(self.model.loss_and_metrics, has_aux=True)
    (_, metrics), grads = grad_fn(state.params, batch, rng)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    one = jnp.ones(())
    metrics["learning_rate"] = (self.learning_rate(state.step), one)
    metrics["grad_norm"] = (optax.global_norm(grads), one)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

  # ------------------------------------------------------------ public API
  def init_state(self, seed: int) -> TrainState:
    with partitioning.activation_sharding(self.mesh):
      return self._init(jax.random.PRNGKey(seed))

  def state_from_params(self, params) -> TrainState:
    """A fresh optimiser around given parameters (fine-tuning from a checkpoint)."""
    params = self.placement.put_params(params)
    with partitioning.activation_sharding(self.mesh):
      opt_state = jax.jit(self.tx.init, out_shardings=self.state_shardings.opt_state)(
          params)
    return TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), self.replicated),
                      params=params, opt_state=opt_state)

  def compiled_train_step(self):
    """The train step compiled once, ahead of time, from the abstract shapes: the
    same executable runs every step and reports its cost."""
    if self._compiled is None:
      with_sharding = lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s)
      state = jax.tree_util.tree_map(with_sharding, self.abstract_state,
                                     self.state_shardings)
      batch = {k: with_sharding(v, self.batch_shardings[k])
               for k, v in self.example_batch.items()}
      seed = jax.ShapeDtypeStruct((), jnp.int32, sharding=self.replicated)
      with partitioning.activation_sharding(self.mesh):
        self._compiled = self._train_step.lower(state, batch, seed).compile()
    return self._compiled

  def train_step(self, state: TrainState, batch, dropout_seed: int):
    with partitioning.activation_sharding(self.mesh):
      return self.compiled_train_step()(state, batch, np.int32(dropout_seed))

  def step_cost(self) -> dict[str, float]:
    """XLA's view of one train step: FLOPs (its cost analysis, which also counts
    avoidable work), and the compiled program's memory in bytes."""
    compiled = self.compiled_train_step()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    out = {"xla_flops_per_step": float(cost.get("flops", float("nan")))}
    memory = compiled.memory_analysis()
    if memory is not None:
      for name in ("argument_size_in_bytes", "output_size_in_bytes",
                   "temp_size_in_bytes", "generated_code_size_in_bytes"):
        out[name] = float(getattr(memory, name, float("nan")))
    return out

  def params_finite(self, params) -> bool:
    """Whether every parameter is finite (checked before each checkpoint save)."""
    with partitioning.activation_sharding(self.mesh):
      return bool(self._all_finite(params))


def _optimizer_state_shardings(abstract_opt, abstract_params, param_shardings,
                               replicated: NamedSharding):
  """Optimiser leaves shaped like their parameter are sharded like it; Adafactor's
  factored row/column statistics are vectors and stay replicated."""
  def for_param(state_leaf, param_leaf, sharding):
    return sharding if state_leaf.shape == param_leaf.shape else replicated

  def shard(state_subtree):
    try:
      return jax.tree_util.tree_map(for_param, state_subtree, abstract_params,
                                    param_shardings)
    except ValueError:  # not shaped like the parameter tree
      return jax.tree_util.tree_map(lambda _: replicated, state_subtree)

  return _map_param_like_subtrees(abstract_opt, abstract_params, shard, replicated)


def _map_param_like_subtrees(tree, params, fn: Callable, replicated):
  """Apply `fn` to every subtree of the optimiser state with the params' structure."""
  params_structure = jax.tree_util.tree_structure(params)

  def visit(node):
    if jax.tree_util.tree_structure(node) == params_structure:
      return fn(node)
    children, treedef = jax.tree_util.tree_flatten(
        node, is_leaf=lambda x: x is not node)
    if len(children) == 1 and children[0] is node:  # a leaf not shaped like params
      return replicated
    return jax.tree_util.tree_unflatten(treedef, [visit(c) for c in children])

  return visit(tree)
