"""3 training steps sharded over 8 simulated CPU devices give the losses of 1 device."""

import textwrap

from model_helpers import run_on_8_cpu_devices

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, "tests")
    import toy_tasks
    from altup_t5 import config_for
    from altup_t5.training import batches as batches_lib
    from altup_t5.training import input_pipeline
    from altup_t5.training import seq2seq
    from altup_t5.training import partitioning
    from altup_t5.training import trainer
    from altup_t5.model.network import Transformer

    assert jax.device_count() == 8
    data = input_pipeline.DataSettings("toy_reverse", {"inputs": 64, "targets": 48},
                                       batch_size=8, seed=3)
    batches = [dict(b) for b in input_pipeline.get_dataset(data, repeat=True)
               .take(3).as_numpy_iterator()]

    def losses(variant, mesh):
      cfg = config_for("tiny", variant, vocab_size=384, emb_dim=64, num_heads=4,
                       head_dim=16, mlp_dim=128, num_encoder_layers=2,
                       num_decoder_layers=2, num_experts=4,
                       # 32-token groups: 16 encoder and 12 decoder groups, whole
                       # multiples of the 4-way batch split, so every mesh routes
                       # within the same groups (MoE routing depends on the groups).
                       moe_group_size=32)
      engine = trainer.Trainer(seq2seq.Seq2SeqModel(Transformer(cfg)),
                               trainer.OptimizerSettings(), mesh,
                               input_pipeline.batch_shapes(data))
      state = engine.init_state(0)
      out = []
      for batch in batches:
        state, metrics = engine.train_step(
            state, batches_lib.to_global(batch, mesh), 0)
        out.append(float(metrics["loss"][0]) / float(metrics["loss"][1]))
      sharded = sum(not x.sharding.is_fully_replicated
                    for x in jax.tree_util.tree_leaves(state.params))
      return out, sharded

    one = partitioning.make_mesh(devices=jax.devices()[:1])
    results = {}
    for variant, shape in [("altup", dict(data=4, model=2)),
                           ("dense", dict(data=4, model=2)),
                           ("moe", dict(data=2, expert=2, model=2))]:
      single, _ = losses(variant, one)
      multi, sharded = losses(variant, partitioning.make_mesh(**shape))
      results[variant] = dict(single=single, multi=multi, sharded=sharded)
    print(json.dumps(results))
""")


def test_three_steps_on_8_devices_match_one_device():
  results = run_on_8_cpu_devices(SCRIPT, timeout=900)
  for variant, r in results.items():
    assert r["sharded"] > 0, variant  # parameters really are split over devices
    assert len(r["single"]) == 3
    for a, b in zip(r["single"], r["multi"]):
      assert abs(a - b) <= 1e-5 * abs(a), (variant, r)
    assert r["single"][0] != r["single"][2]  # the steps did train
