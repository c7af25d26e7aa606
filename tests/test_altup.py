"""AltUp predict/correct against a NumPy re-implementation of the paper's equations."""

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from altup_t5.model.altup import AltUp, alternating_update, replicate_blocks, sum_blocks
from altup_t5.model.config import ComputeOn, T5Config


def np_predict(p, x):
  # x_hat_i = sum_j p[i, j] x_j, written as an explicit loop over blocks.
  k = p.shape[0]
  return np.stack([sum(p[i, j] * x[..., j, :] for j in range(k)) for i in range(k)], -2)


def np_correct(g, x_hat, y, j_star):
  # x_i = x_hat_i + g_i (y - x_hat_j*)
  return np.stack([x_hat[..., i, :] + g[i] * (y - x_hat[..., j_star, :])
                   for i in range(len(g))], -2)


def random_coefs(k, seed):
  rng = np.random.default_rng(seed)
  return {"params": {"predict_coefs": rng.normal(size=(k, k)).astype(np.float32),
                     "correct_coefs": rng.normal(size=(k,)).astype(np.float32)}}


@pytest.mark.parametrize("k", [2, 3, 4])
def test_predict_and_correct_match_numpy(k):
  rng = np.random.default_rng(k)
  x = rng.normal(size=(3, 5, k, 8)).astype(np.float32)
  y = rng.normal(size=(3, 5, 8)).astype(np.float32)
  variables = random_coefs(k, seed=10 + k)
  p = variables["params"]["predict_coefs"]
  g = variables["params"]["correct_coefs"]
  module = AltUp(altup_k=k)
  x_hat = module.apply(variables, jnp.asarray(x), method=AltUp.predict)
  np.testing.assert_allclose(x_hat, np_predict(p, x), rtol=1e-5, atol=1e-5)
  for j in range(k):
    out = module.apply(variables, x_hat, jnp.asarray(y), j, method=AltUp.correct)
    np.testing.assert_allclose(out, np_correct(g, np.asarray(x_hat), y, j),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("schedule", ["alternating", "same"])
@pytest.mark.parametrize("compute_on", ["input", "prediction"])
def test_alternating_update_over_layers_matches_numpy(k, schedule, compute_on):
  """A stack of 5 AltUp layers with a toy d-wide layer (tanh of a matrix) against the
  equations applied by hand, with the schedule's activated block per layer."""
  cfg = T5Config(variant="altup", altup_k=k, altup_schedule=schedule,
                 altup_compute_on=compute_on)
  rng = np.random.default_rng(k)
  d, num_layers = 6, 5
  x0 = rng.normal(size=(2, 3, k, d)).astype(np.float32)
  weights = [rng.normal(size=(d, d)).astype(np.float32) / np.sqrt(d)
             for _ in range(num_layers)]
  coefs = [random_coefs(k, seed=100 * k + i) for i in range(num_layers)]
  module = AltUp(altup_k=k)

  x = jnp.asarray(x0)
  for i in range(num_layers):
    def apply(m, x, i=i):
      return alternating_update(m, x, lambda h: jnp.tanh(h @ weights[i]),
                                cfg.active_block(i), cfg.altup_compute_on)
    x = module.apply(coefs[i], x, method=apply)

  expected = x0
  for i in range(num_layers):
    j_star = i % k if schedule == "alternating" else 0
    p, g = coefs[i]["params"]["predict_coefs"], coefs[i]["params"]["correct_coefs"]
    x_hat = np_predict(p, expected)
    source = x_hat if compute_on == "prediction" else expected
    y = np.tanh(source[..., j_star, :] @ weights[i])
    expected = np_correct(g, x_hat, y, j_star)
  np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-5)


def test_initial_coefficients_make_identical_blocks_a_dense_layer():
  k, d = 3, 4
  h = np.random.default_rng(0).normal(size=(2, d)).astype(np.float32)
  x = replicate_blocks(jnp.asarray(h), k)
  module = AltUp(altup_k=k)
  variables = module.init(jax.random.PRNGKey(0), x, method=AltUp.predict)
  np.testing.assert_array_equal(variables["params"]["predict_coefs"], np.eye(k))
  np.testing.assert_array_equal(variables["params"]["correct_coefs"], np.ones(k))
  layer = lambda v: 2.0 * v + 1.0
  out = module.apply(variables, x, method=lambda m, x: alternating_update(
      m, x, layer, 1, ComputeOn.INPUT))
  np.testing.assert_allclose(out, np.broadcast_to(layer(h)[:, None], (2, k, d)))
  np.testing.assert_allclose(sum_blocks(out), k * layer(h), rtol=1e-6)


def test_bad_block_counts_are_rejected():
  module = AltUp(altup_k=2)
  x = jnp.zeros((1, 3, 4))
  with pytest.raises(ValueError, match=r"x has 3 blocks on axis -2 but AltUp\(altup_k=2\)"):
    module.init(jax.random.PRNGKey(0), x, method=AltUp.predict)
  with pytest.raises(ValueError, match=r"altup_k=1 must be >= 2"):
    AltUp(altup_k=1).init(jax.random.PRNGKey(0), jnp.zeros((1, 1, 4)),
                             method=AltUp.predict)
