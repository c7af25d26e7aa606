"""A forward pass sharded over 8 simulated CPU devices equals the one-device result."""

import textwrap

import pytest

from altup_t5.training import partitioning
from model_helpers import run_on_8_cpu_devices

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, "tests")
    from altup_t5.training import partitioning
    from altup_t5.model.network import Transformer
    from model_helpers import init_params, logits, micro_config, random_batch

    assert jax.device_count() == 8, jax.devices()
    results = {}
    for variant, mesh_shape in [("dense", dict(data=4, model=2)),
                                ("altup", dict(data=4, model=2)),
                                ("recycled_altup", dict(data=4, model=2)),
                                ("sequence_altup", dict(data=4, model=2)),
                                ("moe", dict(data=2, expert=2, model=2))]:
      # heads and mlp divisible by model=2, batch by the data-parallel size 4.
      cfg = micro_config(variant, num_heads=4, eval_capacity_factor=4.0)
      batch = random_batch(cfg, batch=8)
      model = Transformer(cfg)
      params = init_params(model, batch)
      expected = np.asarray(jax.jit(lambda p, b: logits(model, p, b))(params, batch))

      mesh = partitioning.make_mesh(**mesh_shape)
      abstract = jax.eval_shape(lambda: model.init(
          jax.random.PRNGKey(0), batch["encoder_input_tokens"],
          batch["decoder_input_tokens"], batch["decoder_target_tokens"],
          enable_dropout=False))
      p_shard = partitioning.param_shardings(abstract, mesh)
      b_shard = partitioning.batch_sharding(mesh)
      params = jax.device_put(params, p_shard)
      batch = jax.device_put(batch, b_shard)
      with partitioning.activation_sharding(mesh):
        fn = jax.jit(lambda p, b: logits(model, p, b), in_shardings=(p_shard, b_shard))
        got = fn(params, batch)
      sharded_leaves = sum(len(x.sharding.device_set) > 1 and not
                           x.sharding.is_fully_replicated
                           for x in jax.tree_util.tree_leaves(params))
      results[variant] = dict(
          max_rel=float(np.abs(np.asarray(got) - expected).max() / np.abs(expected).max()),
          devices=len(got.sharding.device_set), sharded_params=int(sharded_leaves))
    print(json.dumps(results))
""")


def test_forward_sharded_over_8_devices_equals_one_device():
  results = run_on_8_cpu_devices(SCRIPT, timeout=600)
  for variant, r in results.items():
    assert r["devices"] == 8, (variant, r)
    assert r["sharded_params"] > 0, (variant, r)  # the model axis really splits weights
    assert r["max_rel"] < 1e-5, (variant, r)


def test_mesh_errors_name_the_sizes():
  import jax  # pylint: disable=g-import-not-at-top
  n = jax.device_count()
  with pytest.raises(ValueError, match=f"does not equal the {n} devices"):
    partitioning.make_mesh(data=n + 1)
  with pytest.raises(ValueError, match="are not in partitioning.LOGICAL_AXIS_RULES"):
    partitioning.logical_to_mesh_spec(("embed", "bogus"), partitioning.make_mesh())
