r"""One train step of t5x's own Trainer next to one of ours, same model, same batch.

  python scripts/compare_t5x_step.py --size=tiny --variant=altup \
      --batch=8 --inputs=512 --targets=114 --repeats=20

  python scripts/compare_t5x_step.py --network=t5x --size=small --variant=dense \
      --batch=2 --inputs=512 --targets=114 [--t5x_embedding=gather]

Needs t5x (README "Using T5X's trainer"). By default both trainers get the same network
(t5x's built from gin/t5x, ours from `config_for`); with `--network=t5x`, t5x's trainer
trains t5x's own example T5.1.1 network (`t5x/examples/t5`, float32, no dropout) and
ours trains ours: the two projects side by side. Both get the same random batch and
one device; the
steps alternate (t5x, ours, t5x, ...) after `--warmup` uncounted pairs, so drift in the
machine's speed hits both alike; medians are printed. What each step covers:
- t5x: `Trainer.train(num_steps=1)` (its compiled step: pjit, t5x's Adafactor with
  gin/t5x's factor rules, its metrics) until the new state and the metrics are ready;
- ours: `trainer.Trainer.train_step` (our compiled step: optax's Adafactor, our metrics)
  until the new state is ready.
Expected on 2 CPU cores (tiny AltUp, batch 8, 512/114): about 1 minute. Measured with
t5x cc342d4 on 2 otherwise idle cores (2026-11-24): t5x 487.9 ms, ours 449.0 ms per
step (20 steps), t5x / ours = 1.087. Before this package's CPU tuning and fast paths,
on cores shared with other jobs, it was t5x 1934 ms against ours 1986 ms. With
`--network=t5x` at small (batch 2, 512/114; 2026-12-04, 2 idle cores of an AMD EPYC):
t5x / ours = 1.455-1.472, 1.174-1.186 with `--t5x_embedding=gather` (docs/bench_t5x.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Both trainers run in this process with the CPU tuning the commands apply.
from altup_t5.bench import cpu_tuning  # pylint: disable=g-import-not-at-top

cpu_tuning.apply()

import gin  # pylint: disable=g-import-not-at-top
import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOE_VARIANTS = ("moe", "altup_moe")


def make_batch(batch: int, inputs: int, targets: int, vocab: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  target_ids = rng.integers(2, vocab, (batch, targets), dtype=np.int32)
  return {"encoder_input_tokens": rng.integers(2, vocab, (batch, inputs), dtype=np.int32),
          "decoder_target_tokens": target_ids,
          "decoder_input_tokens": np.concatenate(
              [np.zeros((batch, 1), np.int32), target_ids[:, :-1]], axis=1),
          "decoder_loss_weights": np.ones((batch, targets), np.int32)}


def t5x_model(size: str, variant: str):
  """t5x's model from gin/t5x, exactly as `python -m t5x.train` would build it."""
  import t5x  # pylint: disable=g-import-not-at-top
  gin.clear_config()
  for path in (os.path.join(ROOT, "gin", "t5x"),
               os.path.dirname(os.path.dirname(t5x.__file__))):
    gin.add_config_file_search_path(path)
  model_of = gin.external_configurable(lambda model: model, "compare_t5x_step_model")
  gin.parse_config_files_and_bindings(
      [f"models/t5_1_1/{size}.gin", f"models/{variant}.gin"],
      ["DROPOUT_RATE = 0.0", "ACTIVATION_DTYPE = 'float32'",
       "VOCABULARY_KIND = 'byte'",  # the vocabulary plays no part in a train step
       "compare_t5x_step_model.model = %MODEL"])
  return model_of()


T5X_EXAMPLE_SIZES = ("small", "base", "large", "xl", "xxl")  # its T5.1.1 gin files


def t5x_example_model(size: str, embedding: str):
  """t5x's own T5.1.1 network (`t5x/examples/t5/network.py`) from its own gin files,
  in float32 without dropout. Its token embedding is a one-hot matmul (t5x's TPU
  choice); `embedding='gather'` swaps in a gather, as ours does."""
  import t5x  # pylint: disable=g-import-not-at-top
  from t5x.examples.t5 import layers as t5x_layers  # pylint: disable=g-import-not-at-top
  if size not in T5X_EXAMPLE_SIZES:
    raise SystemExit(f"--network=t5x needs a T5.1.1 size ({', '.join(T5X_EXAMPLE_SIZES)}); "
                     f"t5x's {size!r} is not ours")
  if embedding == "gather":
    class GatherEmbed(t5x_layers.Embed):  # pylint: disable=missing-class-docstring
      def __post_init__(self):
        object.__setattr__(self, "one_hot", False)
        super().__post_init__()
    t5x_layers.Embed = GatherEmbed  # network.py looks it up at construction
  gin.clear_config()
  gin.add_config_file_search_path(os.path.dirname(os.path.dirname(t5x.__file__)))
  model_of = gin.external_configurable(lambda model: model, "compare_t5x_step_model")
  gin.parse_config_files_and_bindings(
      [f"t5x/examples/t5/t5_1_1/{size}.gin"],
      ["DROPOUT_RATE = 0.0", "network.T5Config.dtype = 'float32'",
       "compare_t5x_step_model.model = %MODEL"])
  return model_of()


def t5x_trainer(model, batch):
  from t5x import partitioning, utils  # pylint: disable=g-import-not-at-top
  from t5x import trainer as t5x_trainer_lib  # pylint: disable=g-import-not-at-top
  from t5x.contrib.moe import partitioning as moe_partitioning  # pylint: disable=g-import-not-at-top
  from t5x.contrib.moe import trainer as moe_trainer  # pylint: disable=g-import-not-at-top
  from altup_t5.t5x import adapters as t5x_adapters  # pylint: disable=g-import-not-at-top
  moe = getattr(model.module.config, "uses_moe", False)  # t5x's own config has none
  if moe:
    partitioner = moe_partitioning.MoePjitPartitioner(
        num_expert_partitions=1, num_partitions=1,
        logical_axis_rules=moe_partitioning.standard_logical_axis_rules(
            additional_rules=t5x_adapters.moe_additional_axis_rules()))
  else:
    partitioner = partitioning.PjitPartitioner(
        num_partitions=1, logical_axis_rules=partitioning.standard_logical_axis_rules(
            additional_rules=t5x_adapters.additional_axis_rules()))
  shapes = {k: v.shape for k, v in batch.items()}
  initializer = utils.TrainStateInitializer(
      optimizer_def=model.optimizer_def, init_fn=model.get_initial_variables,
      input_shapes=shapes, input_types={k: v.dtype for k, v in batch.items()},
      partitioner=partitioner)
  cls, extra = ((moe_trainer.MoeTrainer, {"num_expert_partitions": 1}) if moe
                else (t5x_trainer_lib.Trainer, {}))
  trainer = cls(model=model, train_state=initializer.from_scratch(jax.random.PRNGKey(0)),
                partitioner=partitioner, eval_names=[], summary_dir=None,
                train_state_axes=initializer.train_state_axes, rng=jax.random.PRNGKey(1),
                num_microbatches=None,
                learning_rate_fn=utils.create_learning_rate_scheduler(
                    factors="constant * rsqrt_decay", base_learning_rate=1.0,
                    warmup_steps=10000), **extra)
  trainer.compile_train(batch)
  return trainer


def our_trainer(config, batch):
  from altup_t5.training import seq2seq  # pylint: disable=g-import-not-at-top
  from altup_t5.model import network  # pylint: disable=g-import-not-at-top
  from altup_t5.training import partitioning  # pylint: disable=g-import-not-at-top
  from altup_t5.training import trainer  # pylint: disable=g-import-not-at-top
  shapes = trainer.batch_spec(batch)
  engine = trainer.Trainer(seq2seq.Seq2SeqModel(network.Transformer(config)),
                           trainer.OptimizerSettings(), partitioning.make_mesh(), shapes)
  engine.compiled_train_step()
  return engine, engine.init_state(0)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", default="tiny")
  parser.add_argument("--variant", default="altup")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--inputs", type=int, default=512)
  parser.add_argument("--targets", type=int, default=114)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=20)
  parser.add_argument("--network", choices=("ours", "t5x"), default="ours",
                      help="the network t5x's trainer trains: ours from gin/t5x, or t5x's "
                      "own example T5.1.1 network (dense only)")
  parser.add_argument("--t5x_embedding", choices=("one_hot", "gather"), default="one_hot",
                      help="with --network=t5x: its one-hot embedding, or a gather")
  parser.add_argument("--profile", action="store_true",
                      help="then where each step's time goes: XLA:CPU op time per "
                      "category (scripts/profile_step.py's), t5x's beside ours")
  args = parser.parse_args()
  from altup_t5.model import config as config_lib  # pylint: disable=g-import-not-at-top

  if args.network == "t5x":
    if args.variant != "dense":
      raise SystemExit("--network=t5x is t5x's dense T5.1.1; use --variant=dense")
    model = t5x_example_model(args.size, args.t5x_embedding)
    theirs_cfg = model.module.config
    # Ours in t5x's numerics: attention logits in the activation dtype (float32 here).
    cfg = config_lib.config_for(args.size, "dense", dtype="float32",
                                float32_attention_logits=False)
    shape = ("vocab_size", "emb_dim", "num_heads", "head_dim", "mlp_dim",
             "num_encoder_layers", "num_decoder_layers")
    if any(getattr(theirs_cfg, f) != getattr(cfg, f) for f in shape):
      raise SystemExit(f"t5x's {args.size} is {theirs_cfg}, not our {cfg}")
  else:
    model = t5x_model(args.size, args.variant)
    cfg = model.module.config
    # gin/t5x keeps t5x's float32_attention_logits=False; ours runs the same network.
    if cfg != config_lib.config_for(args.size, args.variant, dtype="float32",
                                    float32_attention_logits=False):
      raise SystemExit(f"gin/t5x built {cfg}, not config_for({args.size!r}, "
                       f"{args.variant!r})")
  batch = make_batch(args.batch, args.inputs, args.targets, cfg.vocab_size)
  theirs = t5x_trainer(model, batch)
  ours, state = our_trainer(cfg, batch)
  device_batch = jax.device_put(batch, {k: ours.batch_shardings[k] for k in batch})

  def t5x_step():
    # Also wait for its metrics (fetched in a thread), so none of its work spills
    # into our step's time.
    theirs.train(iter([batch]), num_steps=1).result()
    jax.block_until_ready(theirs.train_state)

  def our_step():
    nonlocal state
    state, metrics = ours.train_step(state, device_batch, 0)
    jax.block_until_ready((state, metrics))

  times = {"t5x": [], "ours": []}
  for i in range(args.warmup + args.repeats):
    for name, step in (("t5x", t5x_step), ("ours", our_step)):
      start = time.perf_counter()
      step()
      if i >= args.warmup:
        times[name].append(time.perf_counter() - start)
  network = ("t5x's example network, " + args.t5x_embedding.replace("_", "-")
             + " embedding" if args.network == "t5x" else "our network")
  print(f"{args.size} {args.variant} (t5x's trainer: {network}): batch {args.batch}, "
        f"inputs {args.inputs}, targets "
        f"{args.targets}, {jax.device_count()} {jax.devices()[0].platform} device(s), "
        f"median of {args.repeats} steps after {args.warmup} warm-up")
  for name, values in times.items():
    print(f"  {name:5s} {statistics.median(values) * 1000:8.1f} ms/step "
          f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")
  print(f"  t5x / ours = {statistics.median(times['t5x']) / statistics.median(times['ours']):.3f}")
  if args.profile:
    print_profile({"t5x": (t5x_step, theirs._compiled_train_step.as_text()),
                   "ours": (our_step, ours.compiled_train_step().as_text())})
  theirs.close()


def print_profile(steps) -> None:
  """XLA:CPU op milliseconds per step, summed over threads, by what the op computes
  (read from each op's flax module path; both networks name their modules alike)."""
  import sys  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import profile_step  # pylint: disable=g-import-not-at-top
  per_step = {}
  for name, (step, hlo) in steps.items():
    total, shares = profile_step.traced_op_shares(step, hlo, steps=3)
    per_step[name] = {label: share * total for label, share in shares.items()}
    per_step[name]["total"] = total
  labels = [l for l, _ in profile_step.CATEGORIES] + ["other", "total"]
  print("  op ms per step (3 traced steps; Adafactor is ours alone: t5x's optimizer "
        "falls under other)")
  print(f"  {'':36s} {'t5x':>9s} {'ours':>9s}")
  for label in labels:
    if any(label in v for v in per_step.values()):
      print(f"  {label:36s} " + " ".join(f"{per_step[n].get(label, 0.0):9.1f}"
                                          for n in ("t5x", "ours")))


if __name__ == "__main__":
  main()
