"""Small configs and batches shared by the model tests, and a runner for scripts
that need 8 simulated CPU devices."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from altup_t5.model.config import config_for

VARIANTS = ("dense", "wide", "moe", "altup", "recycled_altup", "altup_moe")


def micro_config(variant="dense", **overrides):
  """A network small enough to compile in a second, with every feature switched on:
  3 layers per stack (so K=2 blocks alternate and MoE has a sparse layer), 4 experts."""
  values = dict(vocab_size=96, emb_dim=32, num_heads=2, head_dim=8, mlp_dim=48,
                num_encoder_layers=3, num_decoder_layers=3, num_experts=4,
                moe_group_size=64)
  values.update(overrides)
  return config_for("tiny", variant, **values)


def random_batch(cfg, batch=2, inputs_length=12, targets_length=7, seed=0, pad=True):
  """Unpacked encoder/decoder arrays; targets are never 0 except trailing padding."""
  rng = np.random.default_rng(seed)
  inputs = rng.integers(2, cfg.vocab_size, size=(batch, inputs_length))
  targets = rng.integers(2, cfg.vocab_size, size=(batch, targets_length))
  if pad:  # the last row ends in padding, to exercise the masks
    inputs[-1, inputs_length // 2:] = 0
    targets[-1, targets_length - 2:] = 0
  decoder_inputs = np.concatenate([np.zeros((batch, 1), int), targets[:, :-1]], axis=1)
  decoder_inputs = np.where(targets > 0, decoder_inputs, 0)
  return {"encoder_input_tokens": jnp.asarray(inputs, jnp.int32),
          "decoder_input_tokens": jnp.asarray(decoder_inputs, jnp.int32),
          "decoder_target_tokens": jnp.asarray(targets, jnp.int32)}


def init_params(model, batch, seed=0):
  # Jitted: an eager init of even a micro model takes seconds of op dispatch.
  init = jax.jit(lambda rng: model.init(
      rng, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
      batch["decoder_target_tokens"], enable_dropout=False)["params"])
  return init(jax.random.PRNGKey(seed))


def logits(model, params, batch, **kwargs):
  return model.apply({"params": params}, **batch, enable_dropout=False, **kwargs)


def run_on_8_cpu_devices(script: str, timeout: float, devices: int = 8, args=()):
  """Runs `script` in a fresh Python that sees `devices` CPU devices (XLA reads the
  flag at start-up, so it needs its own process); returns the JSON of its last stdout
  line. `args` become the script's sys.argv[1:]."""
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run([sys.executable, "-c", script, *map(str, args)], cwd=root,
                       env=env, capture_output=True, text=True, timeout=timeout)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])
