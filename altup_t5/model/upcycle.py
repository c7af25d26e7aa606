"""Upcycling: a trained dense parameter tree -> the tree of an AltUp, Recycled-AltUp or
AltUp+MoE model that starts as the same function (pure functions over numpy trees).

Why it is exact for AltUp: with predict = identity and correct = ones, every layer
leaves all K blocks equal to the dense layer's output when they start equal. So
  - the [vocab, d] embedding becomes K copies, [vocab, K, d] (AltUp only; Recycled-AltUp
    keeps its d-wide table and replicates it at run time);
  - the decoder norm over K*d features of K equal blocks has the dense mean square, so
    its scale is the dense scale copied K times, [K, d];
  - the K*d -> vocab logits kernel is the dense [d, vocab] kernel divided over the K
    blocks, [K, d, vocab] with each block kernel / K, so the K block products sum to it;
  - the encoder's (and Recycled-AltUp's decoder's) sum of K equal blocks is K times the
    dense vector, which the following RMS norm undoes (up to its epsilon, 1e-6).
AltUp+MoE: as sparse upcycling (Komatsuzaki et al., 2023), every expert of a sparse
layer starts as a copy of the dense MLP and the router is fresh (normal, stddev 2e-2,
our router init). Since the experts are equal, a sparse layer gives each token the
dense MLP's output times the sum of the router probabilities of its kept experts
(top-k, not renormalised; a token over capacity loses that expert's share). So the
upcycled model is exactly the dense function only with num_selected_experts =
num_experts and no token dropped (e.g. the eval capacity factor, 2.0); with the default
k=2 of 8 each sparse output is scaled by a mass below 1 (tests/test_upcycle.py checks
both), which training recovers from within a few hundred steps in the sparse-upcycling
paper.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from altup_t5.model.config import T5Config, Variant

ROUTER_STDDEV = 2e-2  # moe.router_init


def _flat(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, Mapping):
      yield from _flat(v, prefix + (k,))
    else:
      yield "/".join(prefix + (k,)), v


def _unflat(flat: dict) -> dict:
  tree = {}
  for name, value in flat.items():
    node = tree
    *parents, leaf = name.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value
  return tree


def _shape(x) -> tuple[int, ...]:
  return tuple(x.shape)


def upcycle(dense: dict, cfg: T5Config, target_shapes: dict, seed: int = 0) -> dict:
  """`dense` (our dense tree, numpy) as the tree of `cfg`'s variant, whose leaves have
  the shapes of `target_shapes` (a tree of anything with `.shape`, e.g. the model's
  abstract parameters). A one-line ValueError when `dense` is not that model's dense
  counterpart."""
  if not cfg.uses_altup:
    raise ValueError(f"upcycling builds altup, recycled_altup or altup_moe parameters, "
                     f"not {cfg.variant.value!r}")
  k = cfg.altup_k
  source = {n: np.asarray(v, np.float32) for n, v in _flat(dense)}
  rng = np.random.default_rng(seed)
  out = {}
  for name, wanted in _flat(target_shapes):
    shape = _shape(wanted)
    parts = name.split("/")
    if parts[-2] == "altup":  # predict = identity, correct = ones (their init values)
      value = np.eye(k, dtype=np.float32) if parts[-1] == "predict_coefs" else np.ones(
          shape, np.float32)
    elif "router" in parts:  # fresh router, as sparse upcycling
      value = (rng.standard_normal(shape) * ROUTER_STDDEV).astype(np.float32)
    elif "expert" in parts:  # .../mlp/expert/wi_0/kernel [E, ...] <- .../mlp/wi_0/kernel
      value = _take(source, "/".join(p for p in parts if p != "expert"), name)
      value = np.broadcast_to(value, shape).copy()
    else:
      value = _take(source, name, name)
      if name == "token_embedder/embedding" and value.ndim == 2 and len(shape) == 3:
        value = np.repeat(value[:, None, :], k, axis=1)  # [vocab, d] -> [vocab, K, d]
      elif name == "decoder/decoder_norm/scale" and len(shape) == 2:
        value = np.repeat(value[None], k, axis=0)  # [d] -> [K, d]
      elif name == "decoder/logits_dense/kernel" and len(shape) == 3:
        value = np.repeat(value[None] / k, k, axis=0)  # [d, vocab] -> [K, d, vocab]
    if _shape(value) != shape:
      raise ValueError(f"cannot upcycle {name}: the dense checkpoint has shape "
                       f"{_shape(value)}, the {cfg.variant.value} model needs {shape}")
    out[name] = value
  return _unflat(out)


def _take(source: dict, dense_name: str, name: str) -> np.ndarray:
  if dense_name not in source:
    raise ValueError(f"cannot upcycle {name}: {dense_name} is missing from the dense "
                     "checkpoint (is it a dense T5.1.1 of this size?)")
  return source[dense_name]


def dense_config(cfg: T5Config) -> T5Config:
  """The dense model `cfg` upcycles from (same sizes)."""
  return cfg.replace(variant=Variant.DENSE)
