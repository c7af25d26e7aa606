"""MoeMlp against NumPy re-implementations of routing, capacity, combine and losses."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.linen import partitioning as nn_partitioning

from altup_t5.model import layers
from altup_t5.training import partitioning
from altup_t5.model.config import Router, config_for
from altup_t5.model.moe import MoeMlp, expert_capacity, group_layout


def moe_config(**overrides):
  values = dict(emb_dim=8, mlp_dim=12, num_experts=4, num_selected_experts=2,
                moe_group_size=4096, moe_min_capacity=1, dropout_rate=0.0)
  values.update(overrides)
  return config_for("tiny", "moe", **values)


def init(cfg, router, x, seed=0):
  """Random parameters of the right shapes (from `eval_shape`, which costs nothing:
  compiling the real initialisers takes seconds), scaled like a fan-in init."""
  shapes = jax.eval_shape(lambda: MoeMlp(cfg, router).init(
      jax.random.PRNGKey(0), x, None, True)["params"])
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda s: jnp.asarray(rng.normal(size=s.shape) / np.sqrt(s.shape[-2]), jnp.float32),
      shapes)


def run(cfg, router, params, x, valid=None, deterministic=True):
  """Output and the sown metrics (scalars) of one MoeMlp call, jitted: one compilation
  is much faster than running op by op."""
  fn = jax.jit(lambda p, x, v: MoeMlp(cfg, router).apply(
      {"params": p}, x, v, deterministic, mutable=["intermediates"]))
  out, state = fn(params, x, valid)
  metrics = {name: float(v[0]) for name, v in state["intermediates"].items()}
  return np.asarray(out), metrics


# ---- NumPy references ----

def np_gelu(x):  # flax's default gelu: the tanh approximation
  return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def np_expert(params, e, x):
  w = {name: np.asarray(params["expert"][name]["kernel"][e], np.float64)
       for name in ("wi_0", "wi_1", "wo")}
  return (np_gelu(x @ w["wi_0"]) * (x @ w["wi_1"])) @ w["wo"]


def np_router(params, x):
  logits = x @ np.asarray(params["router"]["kernel"], np.float64)
  probs = np.exp(logits - logits.max(-1, keepdims=True))
  return logits, probs / probs.sum(-1, keepdims=True)


def np_groups(x, valid, group_size):
  """Flatten [batch, length] tokens and cut them into equal groups, the last one
  padded with invalid tokens (the layout the module documents)."""
  d = x.shape[-1]
  tokens, ok = x.reshape(-1, d), valid.reshape(-1)
  n = math.ceil(len(tokens) / group_size)
  g = math.ceil(len(tokens) / n)
  pad = n * g - len(tokens)
  tokens = np.concatenate([tokens, np.zeros((pad, d))]).reshape(n, g, d)
  ok = np.concatenate([ok, np.zeros(pad, bool)]).reshape(n, g)
  return tokens, ok


def np_moe(params, x, valid, cfg, router, capacity_factor):
  """Loop-by-loop MoE: returns outputs [batch, length, d] and flaxformer's metrics."""
  num_experts, k = cfg.num_experts, cfg.num_selected_experts
  groups, ok = np_groups(np.asarray(x, np.float64), valid, cfg.moe_group_size)
  n, g, d = groups.shape
  per_token = k if router == Router.TOKENS_CHOOSE else 1
  capacity = min(g, max(cfg.moe_min_capacity,
                        math.ceil(capacity_factor * per_token * g / num_experts)))
  out = np.zeros_like(groups)
  processed = np.zeros((n, g), bool)
  filled, weight_sum, aux = 0, 0.0, []
  for i in range(n):
    _, probs = np_router(params, groups[i])
    if router == Router.TOKENS_CHOOSE:
      order = np.argsort(-probs, axis=-1)[:, :k]  # [g, k] top-k experts per token
      load = np.zeros(num_experts, int)
      for rank in range(k):  # all first choices before any second choice
        for t in range(g):
          e = order[t, rank]
          if ok[i, t] and load[e] < capacity:
            load[e] += 1
            out[i, t] += probs[t, e] * np_expert(params, e, groups[i, t])
            processed[i, t] = True
            filled += 1
            weight_sum += probs[t, e]
      if ok[i].any():  # Switch loss: E * sum_e (fraction routed to e) * (mean prob of e)
        chosen = np.zeros((g, num_experts))
        np.put_along_axis(chosen, order, 1.0, axis=-1)
        f = chosen[ok[i]].mean(0)
        p = probs[ok[i]].mean(0)
        aux.append(num_experts * np.sum(f * p))
    else:
      for e in range(num_experts):
        candidates = [t for t in np.argsort(-probs[:, e]) if ok[i, t]][:capacity]
        for t in candidates:
          out[i, t] += probs[t, e] * np_expert(params, e, groups[i, t])
          processed[i, t] = True
          filled += 1
          weight_sum += probs[t, e]
  num_valid = ok.sum()
  metrics = {
      "fraction_tokens_left_behind": 1 - (processed & ok).sum() / num_valid,
      "expert_usage": filled / (n * num_experts * capacity),
      "router_confidence": weight_sum / filled,
      "auxiliary_loss": float(np.mean(aux)) if aux else 0.0,
  }
  b, l = valid.shape
  return out.reshape(-1, d)[:b * l].reshape(b, l, d), metrics, capacity


def rel_err(a, b):
  return np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()


def decisive_router(params, seed, scale=2.0):
  """Replace the router kernel by a large random one, so top-k choices are far from
  ties (bfloat16 rounding must not change them)."""
  kernel = params["router"]["kernel"]
  params = jax.tree_util.tree_map(lambda a: a, params)
  params["router"]["kernel"] = scale * jax.random.normal(
      jax.random.PRNGKey(seed), kernel.shape)
  return params


# ---- tests ----

def test_one_expert_with_enough_capacity_equals_the_dense_mlp():
  # 2 x 7 tokens in groups of <= 4: 4 groups of 4, the last padded with 2 tokens.
  cfg = moe_config(num_experts=1, num_selected_experts=1, moe_group_size=4,
                   eval_capacity_factor=1.0)
  x = jax.random.normal(jax.random.PRNGKey(1), (2, 7, cfg.emb_dim))
  params = init(cfg, Router.TOKENS_CHOOSE, x)
  moe_out, metrics = run(cfg, Router.TOKENS_CHOOSE, params, x)
  dense = layers.MlpBlock(cfg, mlp_dim=cfg.expert_dim)
  dense_params = {name: {"kernel": params["expert"][name]["kernel"][0]}
                  for name in ("wi_0", "wi_1", "wo")}
  expected = dense.apply({"params": dense_params}, x, True)
  assert rel_err(moe_out, expected) < 1e-5
  assert metrics["fraction_tokens_left_behind"] == 0.0


def test_load_balancing_and_z_loss_on_a_hand_made_routing():
  # emb_dim = num_experts and an identity router kernel: the logits are the inputs.
  cfg = moe_config(emb_dim=4, num_experts=4, num_selected_experts=2, moe_group_size=4,
                   eval_capacity_factor=4.0)
  logits = np.array([[[3.0, 1.0, 0.0, 0.0],  # group 0: experts 0 and 1 popular
                      [2.0, 0.0, 1.0, 0.0],
                      [0.0, 2.5, 0.0, 1.0],
                      [1.0, 0.0, 0.0, 4.0]],
                     [[0.0, 0.0, 5.0, 1.0],  # group 1, last token is padding
                      [0.5, 0.0, 2.0, 0.0],
                      [0.0, 3.0, 0.0, 2.0],
                      [9.0, 0.0, 0.0, 0.0]]])
  valid = np.array([[True] * 4, [True, True, True, False]])
  x = jnp.asarray(logits, jnp.float32)  # batch 2 x length 4: one group per sequence
  params = init(cfg, Router.TOKENS_CHOOSE, x)
  params["router"]["kernel"] = jnp.eye(4)
  _, metrics = run(cfg, Router.TOKENS_CHOOSE, params, x, jnp.asarray(valid))

  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  # Top-2 by hand from the logits above (ties do not occur in the valid tokens).
  top2 = [[(0, 1), (0, 2), (1, 3), (3, 0)], [(2, 3), (2, 0), (1, 3)]]
  losses = []
  for group, choices in enumerate(top2):
    f = np.zeros(4)
    for pair in choices:
      f[list(pair)] += 1 / len(choices)
    p = probs[group, :len(choices)].mean(0)
    losses.append(4 * np.sum(f * p))
  assert metrics["auxiliary_loss"] == pytest.approx(np.mean(losses), rel=1e-5)
  log_z = np.log(np.exp(logits).sum(-1))
  assert metrics["router_z_loss"] == pytest.approx(np.mean(log_z[valid] ** 2), rel=1e-5)
  # Uniform routing gives the loss its minimum k (= 2 here): a check on the scale.
  params["router"]["kernel"] = jnp.zeros((4, 4))
  _, uniform = run(cfg, Router.TOKENS_CHOOSE, params, x)
  assert uniform["auxiliary_loss"] == pytest.approx(2.0, rel=1e-6)
  assert uniform["router_z_loss"] == pytest.approx(np.log(4) ** 2, rel=1e-6)


def test_tiny_capacity_drops_tokens_and_reports_the_fraction():
  # 8 tokens that all prefer expert 0; capacity ceil(1.0 * 1 * 8 / 4) = 2.
  cfg = moe_config(emb_dim=4, num_experts=4, num_selected_experts=1,
                   eval_capacity_factor=1.0)
  rng = np.random.default_rng(0)
  x = np.concatenate([3 + rng.uniform(size=(1, 8, 1)), rng.uniform(size=(1, 8, 3))], -1)
  x = jnp.asarray(x, jnp.float32)
  params = init(cfg, Router.TOKENS_CHOOSE, x)
  params["router"]["kernel"] = jnp.eye(4)
  out, metrics = run(cfg, Router.TOKENS_CHOOSE, params, x)
  assert metrics["fraction_tokens_left_behind"] == pytest.approx(6 / 8)
  assert metrics["expert_usage"] == pytest.approx(2 / (4 * 2))
  assert np.all(out[0, 2:] == 0.0)  # dropped tokens: exactly zero
  _, probs = np_router(params, np.asarray(x[0], np.float64))
  for t in range(2):  # the first two tokens in sequence order took the two slots
    expected = probs[t, 0] * np_expert(params, 0, np.asarray(x[0, t], np.float64))
    np.testing.assert_allclose(out[0, t], expected, rtol=1e-5, atol=1e-6)
  assert metrics["router_confidence"] == pytest.approx(probs[:2, 0].mean(), rel=1e-5)


@pytest.mark.parametrize("capacity_factor", [2.0, 0.5], ids=["ample", "binding"])
def test_top2_tokens_choose_equals_numpy_reference(capacity_factor):
  cfg = moe_config(num_selected_experts=2, moe_group_size=8,
                   train_capacity_factor=capacity_factor)
  x = jax.random.normal(jax.random.PRNGKey(3), (3, 7, cfg.emb_dim))
  valid = np.ones((3, 7), bool)
  valid[2, 4:] = False  # padding in the last sequence
  params = init(cfg, Router.TOKENS_CHOOSE, x, seed=4)
  # deterministic=False selects the train factor (dropout rate is 0).
  out, metrics = run(cfg, Router.TOKENS_CHOOSE, params, x, jnp.asarray(valid),
                     deterministic=False)
  expected, expected_metrics, capacity = np_moe(params, x, valid, cfg,
                                                Router.TOKENS_CHOOSE, capacity_factor)
  assert rel_err(out, expected) < 1e-5
  for name, value in expected_metrics.items():
    assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
  # 21 tokens -> 3 groups of 7; capacity ceil(factor * 2 * 7 / 4).
  assert capacity == (7 if capacity_factor == 2.0 else 2)
  if capacity_factor == 0.5:
    assert expected_metrics["fraction_tokens_left_behind"] > 0.1


@pytest.mark.parametrize("capacity_factor", [1.0, 3.0])
def test_experts_choose_takes_each_experts_top_tokens(capacity_factor):
  cfg = moe_config(moe_group_size=10, eval_capacity_factor=capacity_factor)
  x = jax.random.normal(jax.random.PRNGKey(5), (2, 10, cfg.emb_dim))
  valid = np.ones((2, 10), bool)
  valid[1, 3:] = False  # 3 valid tokens in group 1: fewer than the capacity of 3.0
  params = init(cfg, Router.EXPERTS_CHOOSE, x, seed=6)
  out, metrics = run(cfg, Router.EXPERTS_CHOOSE, params, x, jnp.asarray(valid))
  expected, expected_metrics, capacity = np_moe(params, x, valid, cfg,
                                                Router.EXPERTS_CHOOSE, capacity_factor)
  assert capacity == math.ceil(capacity_factor * 10 / 4)
  assert rel_err(out, expected) < 1e-5
  for name, value in expected_metrics.items():
    assert metrics[name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
  assert np.all(out[1, 3:] == 0.0)


def test_padding_takes_no_capacity_and_is_left_out_of_metrics():
  # Capacity 2 (k=1, factor 1, 8 tokens, 4 experts). The first 3 tokens are padding
  # that would win expert 0's two slots if it were routed; instead valid tokens 3, 4 do.
  cfg = moe_config(emb_dim=4, num_experts=4, num_selected_experts=1,
                   eval_capacity_factor=1.0)
  x = np.zeros((1, 8, 4), np.float32)
  x[0, :, 0] = [9, 9, 9, 3, 3.5, 4, 2, 1]
  x[0, :, 1] = 0.5
  valid = np.array([[False] * 3 + [True] * 5])
  params = init(cfg, Router.TOKENS_CHOOSE, jnp.asarray(x))
  params["router"]["kernel"] = jnp.eye(4)
  out, metrics = run(cfg, Router.TOKENS_CHOOSE, params, jnp.asarray(x), jnp.asarray(valid))
  assert np.all(out[0, :3] == 0.0)
  assert np.all(np.abs(out[0, 3:5]) > 0) and np.all(out[0, 5:] == 0.0)
  assert metrics["fraction_tokens_left_behind"] == pytest.approx(3 / 5)
  logits = x[0].astype(np.float64)
  log_z = np.log(np.exp(logits).sum(-1))
  assert metrics["router_z_loss"] == pytest.approx(np.mean(log_z[3:] ** 2), rel=1e-5)
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  # All valid tokens pick expert 0: f = (1, 0, 0, 0), so loss = 4 * mean P_0.
  assert metrics["auxiliary_loss"] == pytest.approx(4 * probs[3:, 0].mean(), rel=1e-5)
  assert metrics["router_confidence"] == pytest.approx(probs[3:5, 0].mean(), rel=1e-5)


def test_bfloat16_under_jit_routes_like_float32():
  cfg = moe_config(eval_capacity_factor=2.0)
  x = jax.random.normal(jax.random.PRNGKey(7), (2, 6, cfg.emb_dim))
  params = decisive_router(init(cfg, Router.TOKENS_CHOOSE, x), seed=8)
  bf16 = cfg.replace(dtype="bfloat16")
  fn = jax.jit(lambda p, x: MoeMlp(bf16, Router.TOKENS_CHOOSE).apply(
      {"params": p}, x, None, True))
  out = fn(params, x.astype(jnp.bfloat16))
  assert out.dtype == jnp.bfloat16
  expected, _ = run(cfg, Router.TOKENS_CHOOSE, params, x)
  assert rel_err(out.astype(jnp.float32), expected) < 3e-2


def test_decode_step_routes_one_token_per_sequence():
  # Decoding: [batch, 1, d], one group of `batch` tokens; same outputs as those tokens
  # routed inside longer sequences, when capacity is ample.
  cfg = moe_config(eval_capacity_factor=2.0)
  x = jax.random.normal(jax.random.PRNGKey(9), (4, 5, cfg.emb_dim))
  params = init(cfg, Router.TOKENS_CHOOSE, x)
  full, _ = run(cfg, Router.TOKENS_CHOOSE, params, x)
  step, _ = run(cfg, Router.TOKENS_CHOOSE, params, x[:, 2:3])
  np.testing.assert_allclose(step[:, 0], full[:, 2], rtol=1e-5, atol=1e-6)


def test_parameter_axes_put_experts_first():
  cfg = moe_config()
  x = jnp.zeros((1, 4, cfg.emb_dim))
  variables = jax.jit(lambda key: MoeMlp(cfg, Router.TOKENS_CHOOSE).init(
      key, x, None, True))(jax.random.PRNGKey(0))
  axes = nn_partitioning.get_axis_names(variables["params_axes"])
  flat_params = jax.tree_util.tree_leaves_with_path(variables["params"])
  flat_axes = dict(jax.tree_util.tree_leaves_with_path(
      axes, is_leaf=lambda a: isinstance(a, jax.sharding.PartitionSpec)))
  assert len(flat_params) == len(flat_axes) == 4
  for path, value in flat_params:
    names = tuple(flat_axes[path])
    assert len(names) == value.ndim and set(names) <= partitioning.LOGICAL_AXIS_NAMES
  assert tuple(axes["router"]["kernel"]) == ("embed", "unmodeled")
  assert tuple(axes["expert"]["wi_0"]["kernel"]) == ("expert", "embed", "mlp")
  assert tuple(axes["expert"]["wo"]["kernel"]) == ("expert", "mlp", "embed")
  kernel = variables["params"]["expert"]["wi_0"]["kernel"]
  assert kernel.shape == (cfg.num_experts, cfg.emb_dim, cfg.expert_dim)
  assert not np.allclose(kernel[0], kernel[1])  # each expert has its own init


def test_group_layout_and_capacity_formulas():
  assert group_layout(1252, 4096) == (1, 1252)
  assert group_layout(8192, 4096) == (2, 4096)
  assert group_layout(4099, 4096) == (2, 2050)  # one padding token, not 4099 groups of 1
  assert group_layout(96, 64, shards=4) == (4, 24)  # a group per device
  cfg = moe_config(num_experts=8, num_selected_experts=2, moe_min_capacity=4,
                   train_capacity_factor=1.25, eval_capacity_factor=2.0)
  assert expert_capacity(cfg, Router.TOKENS_CHOOSE, 4096, deterministic=False) == 1280
  assert expert_capacity(cfg, Router.TOKENS_CHOOSE, 4096, deterministic=True) == 2048
  assert expert_capacity(cfg, Router.EXPERTS_CHOOSE, 4096, deterministic=True) == 1024
  assert expert_capacity(cfg, Router.TOKENS_CHOOSE, 10, deterministic=True) == 5
  assert expert_capacity(cfg, Router.TOKENS_CHOOSE, 6, deterministic=False) == 4  # floor
  assert expert_capacity(cfg, Router.TOKENS_CHOOSE, 2, deterministic=True) == 2  # cap


def test_bad_moe_settings_name_the_field():
  with pytest.raises(ValueError, match=r"num_selected_experts=3 must be between 1 and "
                                       r"num_experts=2"):
    config_for("tiny", "moe", num_experts=2, num_selected_experts=3)
  with pytest.raises(ValueError, match=r"moe_min_capacity=0 must be >= 1"):
    config_for("tiny", "moe", moe_min_capacity=0)
  with pytest.raises(ValueError, match=r"router='both' is not one of 'tokens_choose', "
                                       r"'experts_choose'"):
    x = jnp.zeros((1, 4, 128))
    MoeMlp(config_for("tiny", "moe"), "both").init(jax.random.PRNGKey(0), x, None, True)
