r"""What each fast path buys: the code as it is against its plain version, in one process.

  python scripts/fast_path_gains.py --size tiny --batch 8 --lengths 128,32
  python scripts/fast_path_gains.py --size small --batch 2 --lengths 512,114 --rounds 6

Each rewrite made for speed computes what its plain version does (tests/test_fast_paths.py
and the decoding tests check that). Here the dense model is built twice, as it is and
with the plain version patched in, and both are timed in interleaved rounds (medians),
so a busy machine slows both alike. Separate processes are no way to compare them on a
shared 2-core machine: there the same step's median moved by 20% from run to run.
- `rows_dense`: `layers.Dense` flattens the leading axes to one row axis; plain: the
  contraction over `[batch, length, in]` (train step, scoring);
- `toeplitz_bias`: the relative-position bias laid out from one value per k - q
  (`layers.toeplitz`); plain: a `[heads, q_len, k_len]` gather from the bucket table,
  whose gradient is a scatter-add over all q * k positions (train step);
- `init_cache`: the decode cache of `decoding.init_cache` (the memory's cross-attention
  keys/values projected once, read-only at every step); plain: a cache made as t5x
  makes it, from dummy inputs, filled at the first step through a `lax.cond` that every
  later step passes the keys/values through (greedy decoding at `--decode_batch`).
Expected on 2 CPU cores: about 2 minutes at tiny, 10 at small. Nothing here is a
pass/fail check.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from altup_t5.bench import cpu_tuning  # pylint: disable=g-import-not-at-top

cpu_tuning.apply()  # as the entry points do, before JAX starts its threads

# pylint: disable=g-import-not-at-top,wrong-import-position
import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax import lax

from altup_t5.bench import bench
from altup_t5.inference import decoding
from altup_t5.inference import predictor as predictor_lib
from altup_t5.model import layers
from altup_t5.model import network
from altup_t5.model.config import config_for
from altup_t5.training import partitioning
from altup_t5.training import seq2seq
from altup_t5.training import trainer


class PlainDense(layers.Dense):
  """The contraction over `[..., in]` as written, without flattening to rows."""

  @nn.compact
  def __call__(self, inputs):
    n = self.contract_dims
    kernel_shape = tuple(inputs.shape[-n:]) + (self.features,)
    init = self.kernel_init
    if n > 1:
      init = nn.initializers.variance_scaling(
          1.0, "fan_in", "truncated_normal", in_axis=tuple(range(n)), out_axis=-1)
    kernel = layers.param_with_axes("kernel", init, kernel_shape, jnp.float32,
                                    axes=self.kernel_axes)
    inputs = inputs.astype(self.dtype).reshape(inputs.shape[:inputs.ndim - n] + (-1,))
    kernel = kernel.astype(self.dtype).reshape((-1, self.features))
    return lax.dot_general(inputs, kernel, (((inputs.ndim - 1,), (0,)), ((), ())))


class PlainRelativePositionBias(layers.RelativePositionBias):
  """The bias gathered position by position: `table[:, bucket(k - q)]`."""

  @nn.compact
  def __call__(self, q_len: int, k_len: int):
    cfg = self.config
    table = layers.param_with_axes("rel_embedding", layers.relpos_init,
                                   (cfg.num_heads, cfg.relpos_num_buckets), jnp.float32,
                                   axes=("heads", "relpos_buckets"))
    relative = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
    buckets = layers.relative_position_bucket(relative, self.bidirectional,
                                              cfg.relpos_num_buckets,
                                              cfg.relpos_max_distance)
    return jnp.take(table.astype(cfg.activation_dtype), buckets, axis=1)[None]


def t5x_style_cache(model, params, encoded, encoder_input_tokens, max_decode_length):
  """A cache made as t5x makes it: a full-length call on dummy inputs; its
  `memory_filled` flags stay, so the first step fills the memory's keys/values."""
  del encoded
  dummy = jnp.ones((encoder_input_tokens.shape[0], max_decode_length), jnp.int32)
  _, variables = model.apply(
      {"params": params}, jnp.ones_like(encoder_input_tokens), dummy, dummy,
      decode=True, enable_dropout=False, mutable=["cache"])
  return variables["cache"]


# name -> (what it patches: (module, attribute, plain version), the work it speeds up)
FAST_PATHS = {
    "rows_dense": ((layers, "Dense", PlainDense), ("train_step", "score")),
    "toeplitz_bias": ((layers, "RelativePositionBias", PlainRelativePositionBias),
                      ("train_step",)),
    "init_cache": ((decoding, "init_cache", t5x_style_cache), ("decode",)),
}


@contextlib.contextmanager
def patched(patch):
  """The plain version in place (traced and compiled inside), or nothing."""
  if patch is None:
    yield
    return
  module, name, plain = patch
  current = getattr(module, name)
  setattr(module, name, plain)
  try:
    yield
  finally:
    setattr(module, name, current)


def build(size: str, settings: bench.BenchSettings, decode_rows: int, patch=None):
  """Callables running each kind of work once, compiled (with `patch` applied)."""
  cfg = config_for(size, "dense")
  batch = bench.random_batch(cfg, settings)
  with patched(patch):
    model = seq2seq.Seq2SeqModel(network.Transformer(cfg))
    engine = trainer.Trainer(model, trainer.OptimizerSettings(), partitioning.make_mesh(),
                             trainer.batch_spec(batch))
    device_batch = jax.device_put(batch, engine.batch_shardings)
    box = {"state": engine.init_state(0)}
    params = engine.init_state(1).params
    scorer = predictor_lib.Predictor(engine.placement, rows=settings.batch)
    decoder = predictor_lib.Predictor(engine.placement, rows=decode_rows)
    prompt = jax.device_put(np.repeat(batch["encoder_input_tokens"][:1], decode_rows, 0),
                            engine.placement.batch_sharding(2))

    def train_step():
      box["state"], _ = engine.train_step(box["state"], device_batch, 0)
      jax.block_until_ready(box["state"])

    work = {
        "train_step": train_step,
        "score": lambda: jax.block_until_ready(scorer.score(params, device_batch)),
        "decode": lambda: jax.block_until_ready(decoder.decode_batch(
            params, prompt, max_decode_length=settings.decode_tokens,
            eos_id=cfg.vocab_size)),
    }
    for fn in work.values():
      fn()  # traced and compiled here, with the patch in place
  return work


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--size", default="tiny")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--lengths", default="128,32", help="inputs,targets")
  parser.add_argument("--decode_batch", type=int, default=1)
  parser.add_argument("--rounds", type=int, default=12)
  parser.add_argument("--only", default=",".join(FAST_PATHS),
                      help=f"a comma list of {','.join(FAST_PATHS)}")
  args = parser.parse_args()
  inputs, targets = (int(x) for x in args.lengths.split(","))
  settings = bench.BenchSettings(batch=args.batch, inputs_length=inputs,
                                 targets_length=targets)
  names = [n for n in args.only.split(",") if n]
  unknown = sorted(set(names) - set(FAST_PATHS))
  if unknown:
    parser.error(f"--only: unknown {', '.join(unknown)}")
  current = build(args.size, settings, args.decode_batch)
  plain = {n: build(args.size, settings, args.decode_batch, FAST_PATHS[n][0])
           for n in names}
  # (fast path, kind) -> [current samples], [plain samples]
  samples = {(n, k): ([], []) for n in names for k in FAST_PATHS[n][1]}
  for round_ in range(args.rounds + 2):  # 2 untimed rounds first
    for (name, kind), (ours, theirs) in samples.items():
      for fn, out in ((current[kind], ours), (plain[name][kind], theirs)):
        start = time.perf_counter()
        fn()
        if round_ >= 2:
          out.append(time.perf_counter() - start)
  print(f"{args.size} dense, batch {args.batch}, lengths {inputs}/{targets}, decoding "
        f"{settings.decode_tokens} tokens at batch {args.decode_batch}; medians of "
        f"{args.rounds} interleaved rounds")
  print(f"  {'fast path':14s} {'work':11s} {'as is':>10s} {'plain':>10s} {'plain / as is':>14s}")
  for (name, kind), (ours, theirs) in samples.items():
    a, b = np.median(ours), np.median(theirs)
    print(f"  {name:14s} {kind:11s} {1e3 * a:8.1f}ms {1e3 * b:8.1f}ms {b / a:14.3f}")


if __name__ == "__main__":
  main()
