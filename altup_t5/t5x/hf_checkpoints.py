"""HuggingFace T5.1.1 directories (`config.json` + `model.safetensors`, or
`pytorch_model.bin` when torch is installed) read into, and written from, our dense
parameter tree.

The mapping (HF torch `Linear` weights are `[out, in]`; our kernels are `[in, out]`):
  shared.weight [vocab, d]                          -> token_embedder/embedding
  {enc,dec}oder.block.0.layer.0.SelfAttention.relative_attention_bias.weight
                                  [buckets, heads]  -> {enc,dec}oder/relpos_bias/rel_embedding
  encoder.block.i.layer.0.SelfAttention.{q,k,v,o}  -> encoder/layers_i/attention/{query,key,value,out}
  encoder.block.i.layer.{0,1}.layer_norm           -> pre_attention_layer_norm, pre_mlp_layer_norm
  encoder.block.i.layer.1.DenseReluDense.{wi_0,wi_1,wo} -> encoder/layers_i/mlp/...
  decoder.block.i.layer.{0,1,2}: SelfAttention, EncDecAttention, DenseReluDense with
      pre_self_attention / pre_cross_attention / pre_mlp layer norms
  {enc,dec}oder.final_layer_norm                    -> encoder_norm, decoder_norm
  lm_head.weight [vocab, d]                         -> decoder/logits_dense/kernel [d, vocab]
Neither system scales queries at run time: T5 folds 1/sqrt(d_kv) into the query
initialiser (our layers.MultiHeadAttention does the same), and the untied T5.1.1 head
is not rescaled by 1/sqrt(d), so the weights carry over unchanged. HF's gated-gelu is
`gelu_new` (the tanh approximation), which is flax's default `nn.gelu`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from collections.abc import Mapping

import numpy as np

from altup_t5.model.config import T5Config, Variant

CONFIG_FILE = "config.json"
SAFETENSORS_FILE = "model.safetensors"
TORCH_FILE = "pytorch_model.bin"

_ATTENTION = {"q": "query", "k": "key", "v": "value", "o": "out"}
_ENCODER_SUBLAYERS = (("SelfAttention", "attention", "pre_attention_layer_norm"),
                      ("DenseReluDense", "mlp", "pre_mlp_layer_norm"))
_DECODER_SUBLAYERS = (("SelfAttention", "self_attention", "pre_self_attention_layer_norm"),
                      ("EncDecAttention", "encoder_decoder_attention",
                       "pre_cross_attention_layer_norm"),
                      ("DenseReluDense", "mlp", "pre_mlp_layer_norm"))


def is_hf_directory(path: str) -> bool:
  """A directory with a config.json (neither our runs nor t5x's write one), so that
  one without weights is told so rather than read as another kind of checkpoint."""
  return os.path.isfile(os.path.join(path, CONFIG_FILE))


# ---------------------------------------------------------------- names

def name_map(cfg: T5Config) -> dict[str, tuple[str, bool]]:
  """{our 'a/b/c' name: (HF name, transposed)} for a dense T5.1.1 of `cfg`'s size."""
  names = {"token_embedder/embedding": ("shared.weight", False),
           "decoder/logits_dense/kernel": ("lm_head.weight", True),
           "encoder/encoder_norm/scale": ("encoder.final_layer_norm.weight", False),
           "decoder/decoder_norm/scale": ("decoder.final_layer_norm.weight", False)}
  for stack, sublayers, layers in (("encoder", _ENCODER_SUBLAYERS, cfg.num_encoder_layers),
                                   ("decoder", _DECODER_SUBLAYERS, cfg.num_decoder_layers)):
    names[f"{stack}/relpos_bias/rel_embedding"] = (
        f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", True)
    for i in range(layers):
      for j, (hf, ours, norm) in enumerate(sublayers):
        prefix, block = f"{stack}/layers_{i}", f"{stack}.block.{i}.layer.{j}"
        names[f"{prefix}/{norm}/scale"] = (f"{block}.layer_norm.weight", False)
        if hf == "DenseReluDense":
          for w in ("wi_0", "wi_1", "wo"):
            names[f"{prefix}/mlp/{w}/kernel"] = (f"{block}.DenseReluDense.{w}.weight", True)
        else:
          for h, o in _ATTENTION.items():
            names[f"{prefix}/{ours}/{o}/kernel"] = (f"{block}.{hf}.{h}.weight", True)
  return names


def hf_config(cfg: T5Config) -> dict:
  """config.json of a HuggingFace T5.1.1 model of `cfg`'s size."""
  return {"architectures": ["T5ForConditionalGeneration"], "model_type": "t5",
          "vocab_size": cfg.vocab_size, "d_model": cfg.emb_dim, "d_kv": cfg.head_dim,
          "d_ff": cfg.mlp_dim, "num_heads": cfg.num_heads,
          "num_layers": cfg.num_encoder_layers,
          "num_decoder_layers": cfg.num_decoder_layers,
          "relative_attention_num_buckets": cfg.relpos_num_buckets,
          "relative_attention_max_distance": cfg.relpos_max_distance,
          "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,
          "scale_decoder_outputs": False,  # transformers 5's name for the same fact
          "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": 1e-6,
          "is_encoder_decoder": True, "pad_token_id": 0, "eos_token_id": 1,
          "decoder_start_token_id": 0}


def head_is_rescaled(config: dict) -> bool:
  """Whether transformers multiplies the decoder output by d_model**-0.5 before the
  head, as original T5 does. transformers 4 reads that off `tie_word_embeddings`
  (T5.1.1's configs say false); transformers 5 always ties the head to `shared` unless
  both are stored, writes `tie_word_embeddings: true`, and keeps the rescaling in
  `scale_decoder_outputs` (false for T5.1.1)."""
  if "scale_decoder_outputs" in config:
    return bool(config["scale_decoder_outputs"])
  return bool(config.get("tie_word_embeddings", True))


def check_config(config: dict, cfg: T5Config, path: str) -> None:
  """A one-line ValueError unless `config` is a T5.1.1 of `cfg`'s size."""
  proj = config.get("feed_forward_proj", "relu")
  if proj != "gated-gelu" or head_is_rescaled(config):
    tied = config.get("tie_word_embeddings", True)
    raise ValueError(f"{path} is not a T5.1.1 checkpoint (feed_forward_proj={proj!r}, "
                     f"tie_word_embeddings={tied}, scale_decoder_outputs="
                     f"{config.get('scale_decoder_outputs')}); only gated-gelu with an "
                     "unscaled head is supported (original T5 uses ReLU and a tied, "
                     "rescaled head)")
  want = hf_config(cfg)
  keys = ("vocab_size", "d_model", "d_ff", "num_heads", "d_kv", "num_layers",
          "relative_attention_num_buckets", "relative_attention_max_distance")
  got = dict(config, num_decoder_layers=config.get("num_decoder_layers",
                                                   config.get("num_layers")))
  wrong = [f"{k}={got.get(k)} (model: {want[k]})" for k in keys + ("num_decoder_layers",)
           if got.get(k, want[k]) != want[k]]
  if wrong:
    raise ValueError(f"{path} is another size than the model: {', '.join(wrong)}")


# ---------------------------------------------------------------- reading

def _read_tensors(path: str) -> dict[str, np.ndarray]:
  st = os.path.join(path, SAFETENSORS_FILE)
  if os.path.isfile(st):
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
    try:
      return load_file(st)
    except Exception as error:  # safetensors raises its own SafetensorError
      raise ValueError(f"{st} is not a readable safetensors file "
                       f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
                       ) from None
  bin_file = os.path.join(path, TORCH_FILE)
  if not os.path.isfile(bin_file):
    raise ValueError(f"{path} holds no {SAFETENSORS_FILE} or {TORCH_FILE}")
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ValueError(f"{bin_file} needs torch to read (pip install torch), or convert it "
                     f"to {SAFETENSORS_FILE}") from None
  try:  # weights_only: tensors and plain containers, never arbitrary pickled objects
    state = torch.load(bin_file, map_location="cpu", weights_only=True)
  except Exception as error:
    raise ValueError(f"{bin_file} is not a readable torch state dict "
                     f"({type(error).__name__})") from None
  return {k: v.float().numpy() for k, v in state.items()}


def read_dense_params(path: str, cfg: T5Config) -> dict:
  """The HF T5.1.1 directory `path` as our dense parameter tree (numpy, float32),
  for a model of `cfg`'s size; one-line ValueErrors for anything else."""
  config_path = os.path.join(path, CONFIG_FILE)
  try:
    with open(config_path) as f:
      config = json.load(f)
  except (OSError, ValueError) as error:
    raise ValueError(f"{config_path} is not a readable JSON config "
                     f"({type(error).__name__})") from None
  check_config(config, cfg.replace(variant=Variant.DENSE), path)
  tensors = _read_tensors(path)
  if "lm_head.weight" not in tensors and "shared.weight" in tensors:
    # A head tied to the embedding (transformers 5 saves T5.1.1 it built itself this
    # way, unscaled as checked above): our untied head starts as that same matrix.
    tensors["lm_head.weight"] = tensors["shared.weight"]
  params = {}
  for ours, (hf, transposed) in name_map(cfg).items():
    if hf not in tensors:
      raise ValueError(f"{path} has no tensor {hf!r} (needed for {ours})")
    value = np.asarray(tensors[hf], np.float32)
    node = params
    *parents, leaf = ours.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = value.T if transposed else value
  return params


# ---------------------------------------------------------------- writing

def _flat(tree, prefix=()):
  for k, v in tree.items():
    if isinstance(v, Mapping):
      yield from _flat(v, prefix + (k,))
    else:
      yield "/".join(prefix + (k,)), v


def write_hf_directory(params: dict, cfg: T5Config, out_dir: str) -> str:
  """Our dense `params` as a HuggingFace T5.1.1 directory; returns its path."""
  if cfg.variant != Variant.DENSE:
    raise ValueError(f"variant {cfg.variant.value!r} has no HuggingFace T5 class; only "
                     "dense checkpoints can be exported")
  flat = dict(_flat(params))
  names = name_map(cfg)
  if set(flat) != set(names):
    extra = sorted(set(flat) - set(names))[:3] or sorted(set(names) - set(flat))[:3]
    raise ValueError(f"the checkpoint is not a dense T5.1.1 of this size (e.g. {extra})")
  tensors = {}
  for ours, (hf, transposed) in names.items():
    value = np.asarray(flat[ours], np.float32)
    tensors[hf] = np.ascontiguousarray(value.T if transposed else value)
  # HF ties the stacks' embed_tokens to `shared`; its loader expects them present.
  tensors["encoder.embed_tokens.weight"] = tensors["shared.weight"]
  tensors["decoder.embed_tokens.weight"] = tensors["shared.weight"]
  if os.path.exists(os.path.join(out_dir, SAFETENSORS_FILE)):
    raise ValueError(f"{out_dir} already holds a {SAFETENSORS_FILE}; choose another OUT_DIR")
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
    json.dump(hf_config(cfg), f, indent=2)
  save_file(tensors, os.path.join(out_dir, SAFETENSORS_FILE), metadata={"format": "pt"})
  return out_dir


def config_from_params(params: dict) -> T5Config:
  """The dense T5Config whose tree `params` is (sizes read off the shapes)."""
  from altup_t5.model.config import config_for  # pylint: disable=g-import-not-at-top
  flat = dict(_flat(params))
  if any("/altup/" in k for k in flat) or any("/expert/" in k for k in flat):
    raise ValueError("an AltUp or MoE checkpoint has no HuggingFace T5 class; only dense "
                     "checkpoints can be exported")
  vocab, d = flat["token_embedder/embedding"].shape
  heads, buckets = flat["encoder/relpos_bias/rel_embedding"].shape
  joined = flat["encoder/layers_0/attention/query/kernel"].shape[1]
  count = lambda s: len({k.split("/")[1] for k in flat if k.startswith(f"{s}/layers_")})
  return config_for("tiny", "dense", vocab_size=vocab, emb_dim=d, num_heads=heads,
                    head_dim=joined // heads,
                    mlp_dim=flat["encoder/layers_0/mlp/wi_0/kernel"].shape[1],
                    num_encoder_layers=count("encoder"),
                    num_decoder_layers=count("decoder"), relpos_num_buckets=buckets)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m altup_t5.t5x.hf_checkpoints",
                                   description=__doc__.split("\n\n")[0])
  commands = parser.add_subparsers(dest="command", required=True)
  export = commands.add_parser("export-hf", help="write a dense checkpoint of ours as a "
                               "HuggingFace T5.1.1 directory")
  export.add_argument("source", help="our MODEL_DIR/checkpoints or one step directory")
  export.add_argument("out_dir", help="directory to write config.json and model.safetensors")
  args = parser.parse_args(argv)
  try:
    from altup_t5.t5x.checkpoints import read_our_params  # pylint: disable=g-import-not-at-top
    params, _ = read_our_params(args.source)
    print(write_hf_directory(params, config_from_params(params), args.out_dir))
  except ValueError as error:
    print(f"{parser.prog}: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
