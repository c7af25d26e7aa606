"""HuggingFace transformers' T5 as the peer of `bench --peer hf`: the model a user
would pick instead, timed on the same batch, lengths and machine, in the same run.

  pip install torch==2.13.0 'transformers>=4.44'   # a CPU build of torch; see setup.py

The peer is `T5ForConditionalGeneration` built from one of our dense configs (for
`small`, T5.1.1-small: gated-GELU, untied head, d_model 512, d_ff 1024, 6 heads x 64,
8+8 layers, vocab 32128), randomly initialised, float32 parameters, no dropout, on
the CPU. With `bench --dtype bfloat16` it computes under `torch.autocast` in bfloat16
(parameters stay float32, as ours do). Its train step is forward + backward +
`transformers.optimization.Adafactor` (T5's factored second moments, update clipping
1.0, parameter scaling; constant learning rate 1e-3), the optimiser closest to ours.
Its scoring is the eval-mode forward with labels under `no_grad` (teacher-forced, like
ours). Its decoding is `generate` on `batch` copies of the first row, at each of
bench's decode batches (greedy, `min_new_tokens = max_new_tokens`, so it always runs
the full length, as ours does).

It runs in a child process (`PeerProcess`) that times its own work: in a process that
has compiled and run XLA programs, torch's OpenMP threads spent 80% of their time
spinning at barriers (measured: a 0.45 s forward pass took 6 s), and the child also
keeps torch clear of this package's CPU tuning (`cpu_tuning.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing
import os
import time
from typing import Callable

import numpy as np

from altup_t5.model.config import T5Config

INSTALL_HINT = ("pip install torch==2.13.0 'transformers>=4.44' (or pip install -e "
                "'.[hf]'; on a CPU-only machine pin torch so pip takes its CPU build)")


def missing_requirement() -> str | None:
  """None when torch and transformers import, else a one-line reason."""
  try:
    import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    import transformers  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
  except ImportError as error:
    return f"--peer hf skipped: {error.name or 'torch/transformers'} is not installed; {INSTALL_HINT}"
  return None


@dataclasses.dataclass
class HfPeer:
  """Callables that each run one timed unit of work and return when it is done."""
  name: str
  num_params: int
  versions: str
  work: dict[str, Callable[[], None]]  # by kind: KINDS, then decode_kind(batch)


def hf_config(cfg: T5Config):
  """transformers' T5Config with the same architecture as our dense `cfg`."""
  import transformers  # pylint: disable=import-outside-toplevel
  if cfg.mlp_activations != ("gelu", "linear"):
    raise ValueError(f"the HF peer mirrors T5.1.1's gated GELU; mlp_activations="
                     f"{cfg.mlp_activations} has no transformers equivalent here")
  return transformers.T5Config(
      vocab_size=cfg.vocab_size, d_model=cfg.emb_dim, d_kv=cfg.head_dim,
      d_ff=cfg.mlp_dim, num_layers=cfg.num_encoder_layers,
      num_decoder_layers=cfg.num_decoder_layers, num_heads=cfg.num_heads,
      relative_attention_num_buckets=cfg.relpos_num_buckets,
      relative_attention_max_distance=cfg.relpos_max_distance,
      feed_forward_proj="gated-gelu", tie_word_embeddings=False, dropout_rate=0.0,
      # T5's conventions: decoding starts from the pad id 0; EOS is 1.
      decoder_start_token_id=0, pad_token_id=0, eos_token_id=1)


def make_peer(cfg: T5Config, inputs: np.ndarray, targets: np.ndarray,
              decode_tokens: int, decode_batch: tuple[int, ...] = (1,),
              seed: int = 0) -> HfPeer:
  """The peer for `inputs [batch, inputs_length]` and `targets [batch, targets_length]`
  (int token ids, no padding); decoding reads copies of the first row of `inputs`.
  `cfg.dtype` is the compute dtype (bfloat16: autocast)."""
  import torch  # pylint: disable=import-outside-toplevel
  import transformers  # pylint: disable=import-outside-toplevel
  from transformers.optimization import Adafactor  # pylint: disable=import-outside-toplevel

  torch.manual_seed(seed)
  model = transformers.T5ForConditionalGeneration(hf_config(cfg))
  if model.lm_head.weight is model.shared.weight:
    # transformers 5 ties T5's head to its embedding whatever the config says
    # (`tie_word_embeddings=False` only turns off the tied head's d^-0.5 scaling);
    # T5.1.1's head is its own matrix, trained on its own.
    model.lm_head.weight = torch.nn.Parameter(model.shared.weight.detach().clone())
  optimizer = Adafactor(model.parameters(), lr=1e-3, relative_step=False,
                        scale_parameter=True, warmup_init=False)
  input_ids = torch.as_tensor(np.asarray(inputs, np.int64))
  labels = torch.as_tensor(np.asarray(targets, np.int64))
  if str(cfg.dtype) == "bfloat16":
    compute = functools.partial(torch.autocast, "cpu", dtype=torch.bfloat16)
  else:
    compute = contextlib.nullcontext

  def train_step():
    model.train()
    with compute():
      loss = model(input_ids=input_ids, labels=labels).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

  def forward():
    model.train()
    with torch.no_grad(), compute():
      model(input_ids=input_ids, labels=labels)

  def score():
    model.eval()
    with torch.no_grad(), compute():
      model(input_ids=input_ids, labels=labels)

  def decoder(rows: int):
    prompt = input_ids[:1].repeat(rows, 1)  # [rows, inputs_length]

    def decode():
      model.eval()
      with torch.no_grad(), compute():
        out = model.generate(prompt, max_new_tokens=decode_tokens,
                             min_new_tokens=decode_tokens, do_sample=False, num_beams=1)
      if out.shape != (rows, decode_tokens + 1):  # + the start token
        raise RuntimeError(f"HF generate returned {tuple(out.shape)}, expected "
                           f"({rows}, {decode_tokens} new tokens + 1)")
    return decode

  versions = (f"torch {torch.__version__} ({torch.get_num_threads()} threads"
              f"{', bfloat16 autocast' if str(cfg.dtype) == 'bfloat16' else ''}), "
              f"transformers {transformers.__version__}")
  work = {"train_step": train_step, "forward": forward, "score": score}
  work.update({decode_kind(rows): decoder(rows) for rows in decode_batch})
  return HfPeer(name="hf_t5 (torch)",
                num_params=sum(p.numel() for p in model.parameters()),
                versions=versions, work=work)


# ---------------------------------------------------------------- child process

# The units of work that bench times on both sides, then one decode per batch.
KINDS = ("train_step", "forward", "score")


def decode_kind(batch: int) -> str:
  return f"decode_{batch}"


def _serve(connection, cfg: T5Config, inputs, targets, decode_tokens: int,
           decode_batch: tuple[int, ...], seed: int):
  """The child: build the peer, run each requested kind once, reply with
  (wall seconds, process CPU seconds), until asked for None."""
  peer = make_peer(cfg, inputs, targets, decode_tokens, decode_batch, seed)
  for fn in peer.work.values():
    fn()  # first calls are slow: keep them out of every sample
  connection.send((peer.name, peer.num_params, peer.versions))
  while (kind := connection.recv()) is not None:
    work = peer.work[kind]
    cpu, start = os.times(), time.perf_counter()
    work()
    wall, end = time.perf_counter() - start, os.times()
    connection.send((wall, end.user + end.system - cpu.user - cpu.system))


class PeerProcess:
  """The peer in a child process; `run(kind)` times one unit of work there."""

  def __init__(self, cfg: T5Config, inputs, targets, decode_tokens: int,
               decode_batch: tuple[int, ...] = (1,), seed: int = 0):
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, no JAX state
    self._connection, child_end = context.Pipe()
    saved = os.environ.get("ALTUP_T5_CPU_TUNING")
    os.environ["ALTUP_T5_CPU_TUNING"] = "0"  # the child inherits this: torch as shipped
    try:
      self._process = context.Process(
          target=_serve, args=(child_end, cfg, np.asarray(inputs), np.asarray(targets),
                               decode_tokens, tuple(decode_batch), seed), daemon=True)
      self._process.start()
    finally:
      if saved is None:
        del os.environ["ALTUP_T5_CPU_TUNING"]
      else:
        os.environ["ALTUP_T5_CPU_TUNING"] = saved
    self.kinds = KINDS + tuple(decode_kind(b) for b in decode_batch)
    self.name, self.num_params, self.versions = self._receive()

  def _receive(self):
    while not self._connection.poll(1.0):
      if not self._process.is_alive():
        raise RuntimeError(f"the HF peer process died (exit code "
                           f"{self._process.exitcode}); run it alone to see why")
    return self._connection.recv()

  def run(self, kind: str) -> tuple[float, float]:
    if kind not in self.kinds:
      raise ValueError(f"kind={kind!r} is not one of {self.kinds}")
    self._connection.send(kind)
    return self._receive()

  def close(self):
    if self._process.is_alive():
      self._connection.send(None)
      self._process.join(timeout=60)
