"""Code written for speed computes exactly what its plain version does.

Each rewrite made for `bench` (see the notes in the modules) is checked here against
the straightforward NumPy/JAX expression on inputs chosen to hit its edge cases.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from altup_t5.inference import decoding
from altup_t5.model import layers
from altup_t5.model.config import config_for


def test_argmax_is_numpy_argmax_with_ties_nans_and_infinities():
  rng = np.random.default_rng(0)
  logits = rng.standard_normal((5, 3, 40)).astype(np.float32)
  logits[0, 0, [3, 9, 30]] = 7.0  # ties: the first one wins
  logits[1, 1, [5, 20]] = np.nan  # NaN: the first NaN, as jnp.argmax
  logits[1, 2, 11] = np.inf
  logits[2, 0, :] = -np.inf  # nothing finite: index 0
  logits[3, 2, -1] = 50.0  # the last index
  got = np.asarray(jax.jit(decoding.argmax)(logits))
  assert got.dtype == np.int32
  np.testing.assert_array_equal(got, np.asarray(jnp.argmax(jnp.asarray(logits), -1)))
  np.testing.assert_array_equal(got[[0, 1, 2, 3], [0, 1, 0, 2]], [3, 5, 0, 39])


def test_dense_over_two_axes_is_the_two_axis_contraction():
  # AltUp's logits: [batch, length, K, d] x [K, d, vocab], done as one flat matmul.
  x = np.random.default_rng(1).standard_normal((2, 3, 2, 5)).astype(np.float32)
  dense = layers.Dense(7, ("altup_blocks", "embed", "vocab"), contract_dims=2)
  params = dense.init(jax.random.PRNGKey(0), x)
  kernel = np.asarray(params["params"]["kernel"])
  assert kernel.shape == (2, 5, 7)
  expected = np.einsum("blkd,kdv->blv", x.astype(np.float64), kernel)
  np.testing.assert_allclose(dense.apply(params, x), expected, rtol=1e-5, atol=1e-5)


def test_dense_on_batch_and_length_rows_has_numpy_values_and_gradients():
  # Dense flattens [batch, length] into one row axis so that the kernel's gradient is
  # one plain matmul (XLA:CPU transposed the whole output gradient before it).
  rng = np.random.default_rng(2)
  x = rng.standard_normal((3, 4, 6)).astype(np.float32)  # [batch, length, in]
  cotangent = rng.standard_normal((3, 4, 5)).astype(np.float32)  # [batch, length, out]
  dense = layers.Dense(5, ("embed", "mlp"))
  params = dense.init(jax.random.PRNGKey(0), x)
  kernel = np.asarray(params["params"]["kernel"], np.float64)
  out, pullback = jax.vjp(lambda p, x: dense.apply(p, x), params, x)
  d_params, d_x = pullback(cotangent)
  x64, g64 = x.astype(np.float64), cotangent.astype(np.float64)
  np.testing.assert_allclose(out, np.einsum("bli,io->blo", x64, kernel), rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_allclose(d_params["params"]["kernel"],
                             np.einsum("bli,blo->io", x64, g64), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(d_x, np.einsum("blo,io->bli", g64, kernel), rtol=1e-5,
                             atol=1e-5)


def _scatter_sizes(jaxpr) -> list[int]:
  """The update sizes of every scatter in a jaxpr, nested ones included."""
  sizes = []
  for eqn in jaxpr.eqns:
    if "scatter" in eqn.primitive.name:
      sizes.append(int(np.prod(eqn.invars[2].aval.shape)))
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          sizes += _scatter_sizes(inner)
  return sizes


@pytest.mark.parametrize("q_len, k_len, bidirectional", [
    (7, 7, True), (9, 9, False), (3, 8, True), (8, 3, False), (1, 6, True), (6, 1, False),
    (40, 40, True)])
def test_relative_position_bias_is_the_bucket_lookup_and_its_gradient_the_bucket_sum(
    q_len, k_len, bidirectional):
  # The bias is laid out from one value per k - q (layers.toeplitz), so its gradient
  # scatters q_len + k_len - 1 values per head, never q_len * k_len: a GPU's atomic
  # adds into 32 buckets made that scatter most of T5.1.1-small's train step.
  cfg = config_for("micro", relpos_max_distance=24)  # far buckets within 40 tokens
  module = layers.RelativePositionBias(cfg, bidirectional=bidirectional)
  params = module.init(jax.random.PRNGKey(0), q_len, k_len)
  table = np.asarray(params["params"]["rel_embedding"])  # [heads, buckets]
  relative = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]  # k - q
  buckets = layers.relative_position_bucket(relative, bidirectional,
                                            cfg.relpos_num_buckets, cfg.relpos_max_distance)
  assert len(np.unique(buckets)) > min(q_len, k_len) // 2  # many buckets are hit
  bias, pullback = jax.vjp(lambda p: module.apply(p, q_len, k_len), params)
  np.testing.assert_array_equal(bias[0], table[:, buckets])  # [heads, q_len, k_len]
  cotangent = np.random.default_rng(3).standard_normal(bias.shape).astype(np.float32)
  expected = np.zeros(table.shape)
  for h in range(table.shape[0]):
    np.add.at(expected[h], buckets, cotangent[0, h].astype(np.float64))
  (grad,) = pullback(cotangent)
  np.testing.assert_allclose(grad["params"]["rel_embedding"], expected, rtol=1e-5,
                             atol=1e-5)
  jaxpr = jax.make_jaxpr(lambda p, c: jax.vjp(
      lambda p: module.apply(p, q_len, k_len), p)[1](c))(params, cotangent).jaxpr
  sizes = _scatter_sizes(jaxpr)
  assert sizes and max(sizes) <= cfg.num_heads * (q_len + k_len - 1), sizes
