"""Every variant learns: a few optimiser steps on one fixed batch lower its loss."""

import jax
import jax.numpy as jnp
import optax
import pytest

from altup_t5.model.network import Transformer
from model_helpers import VARIANTS, init_params, micro_config, random_batch


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_few_steps_lower_the_loss(variant):
  cfg = micro_config(variant)
  batch = random_batch(cfg, batch=4)
  model = Transformer(cfg)
  params = init_params(model, batch)
  optimizer = optax.adam(3e-3)
  opt_state = optimizer.init(params)

  def loss_fn(params):
    logits = model.apply({"params": params}, **batch, enable_dropout=False)
    targets = batch["decoder_target_tokens"]
    weights = (targets > 0).astype(jnp.float32)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return jnp.sum(nll * weights) / jnp.sum(weights)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(8):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert losses[-1] < 0.7 * losses[0], losses
