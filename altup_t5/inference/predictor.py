"""The one predict/score step: teacher-forced scoring and decoding, jitted once per
shape with the parameters' mesh shardings and the activation sharding rules, for
evaluation, inference, the training loop's evaluations and bench alike.

`BATCH_SIZE` is the global number of rows here as in training: a scoring batch is
each host's share of rows (laid out by `batches.to_global`); decoding takes
the same rows on every host (as t5x's inference does), pads them to a whole number
of `rows`-row batches with `batches.pad_rows`, and returns every host the
decoded rows.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Mapping

import jax
import numpy as np
from jax.experimental import multihost_utils

from altup_t5 import errors
from altup_t5.inference import decoding
from altup_t5.training import batches
from altup_t5.training import seq2seq
from altup_t5.training.placement import Placement

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class DecodeSettings:
  """How inference decodes (T5 evaluates fine-tuned models greedily)."""
  method: str = "greedy"  # "greedy", "beam" or "sample"
  beam_size: int = 4
  alpha: float = 0.6  # beam search length penalty ((5 + len) / 6) ** alpha
  temperature: float = 1.0  # for "sample"
  seed: int = 0  # for "sample": the same seed decodes the same tokens

  def __post_init__(self):
    if self.method not in decoding.METHODS:
      raise errors.SettingError(f"decode method={self.method!r} is not one of "
                                f"{', '.join(map(repr, decoding.METHODS))}")
    errors.check_int("beam_size", self.beam_size, minimum=1)
    errors.check_number("alpha", self.alpha, minimum=0)
    errors.check_number("temperature", self.temperature, minimum=0)
    errors.check_int("decode seed", self.seed)


class Predictor:
  """Scores and decodes with one model on one mesh; `rows` is the global batch."""

  def __init__(self, placement: Placement, rows: int,
               decode: DecodeSettings = DecodeSettings()):
    self.placement = placement
    self.model: seq2seq.Seq2SeqModel = placement.model
    self.rows = rows
    self.decode_settings = decode
    batches.check_batch_fits_mesh(rows, placement.mesh)
    shardings = placement.param_shardings
    with placement.context():
      # Batches arrive laid out by the input pipeline (evaluation batches may lack
      # segment ids), so only the parameters' shardings are fixed here.
      self._score = jax.jit(self.model.eval_metrics, in_shardings=(shardings, None),
                            out_shardings=placement.replicated)
    self._decoders = {}  # (max_decode_length, eos_id) -> jitted decode

  def _decoder(self, max_decode_length: int, eos_id: int):
    key = (int(max_decode_length), int(eos_id))
    if key not in self._decoders:
      rows = self.placement.batch_sharding(2)
      self._decoders[key] = jax.jit(
          functools.partial(self._decode_fn, max_decode_length=key[0], eos_id=key[1]),
          in_shardings=(self.placement.param_shardings, rows), out_shardings=rows)
    return self._decoders[key]

  @classmethod
  def for_model(cls, model: seq2seq.Seq2SeqModel, mesh,
                example_batch: Mapping[str, jax.ShapeDtypeStruct], rows: int,
                decode: DecodeSettings = DecodeSettings()) -> "Predictor":
    return cls(Placement(model, mesh, example_batch), rows, decode)

  # ------------------------------------------------------------ scoring
  def score(self, params, batch: Mapping[str, Array]):
    """Teacher-forced metrics of one global batch (no dropout), as (total, count)."""
    with self.placement.context():
      return self._score(params, batch)

  # ------------------------------------------------------------ decoding
  def _decode_fn(self, params, encoder_input_tokens, *, max_decode_length, eos_id):
    s = self.decode_settings
    tokens, _ = decoding.decode_with_model(
        self.model.module, params, encoder_input_tokens,
        max_decode_length=max_decode_length, eos_id=eos_id, method=s.method,
        beam_size=s.beam_size, alpha=s.alpha, temperature=s.temperature,
        rng=jax.random.PRNGKey(s.seed))
    return tokens  # [rows, max_decode_length], 0 after EOS

  def decode_batch(self, params, encoder_input_tokens: Array, *,
                   max_decode_length: int, eos_id: int) -> Array:
    """One global batch of `rows` rows, already on the mesh -> decoded ids."""
    decode = self._decoder(max_decode_length, eos_id)
    with self.placement.context():
      return decode(params, encoder_input_tokens)

  def predict(self, params, encoder_input_tokens: np.ndarray, *,
              max_decode_length: int, eos_id: int) -> np.ndarray:
    """Decodes any number of rows `[n, inputs_length]` (the same on every host) in
    batches of `rows`; returns `[n, max_decode_length]` (0 after EOS)."""
    inputs = np.asarray(encoder_input_tokens, np.int32)
    n, out = len(inputs), []
    sharding = self.placement.batch_sharding(2)
    for start in range(0, n, self.rows):
      chunk = batches.pad_rows({"x": inputs[start:start + self.rows]},
                                      self.rows)["x"]
      # Every host holds all rows: each device takes its slice of them.
      global_chunk = jax.make_array_from_callback(chunk.shape, sharding,
                                                  lambda index, c=chunk: c[index])
      tokens = self.decode_batch(params, global_chunk,
                                 max_decode_length=max_decode_length, eos_id=eos_id)
      out.append(np.asarray(multihost_utils.process_allgather(tokens, tiled=True)))
    if not out:
      return np.zeros((0, max_decode_length), np.int32)
    return np.concatenate(out)[:n]
