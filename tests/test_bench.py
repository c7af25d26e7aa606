"""`python -m altup_t5.bench`: the model-FLOP count against hand counts, the table's
arithmetic on made-up timings, flag errors, and one real run on a tiny budget.

No test here asserts a time: performance is read from the bench's output, not checked.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from altup_t5.bench import bench
from altup_t5.bench import hf_peer
from altup_t5.model.config import config_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def micro(variant="dense", **overrides):
  # d=16, 2 heads of 4 (joined 8), mlp 24, vocab 100, one layer per stack.
  values = dict(vocab_size=100, emb_dim=16, num_heads=2, head_dim=4, mlp_dim=24,
                num_encoder_layers=1, num_decoder_layers=1)
  values.update(overrides)
  return config_for("tiny", variant, **values)


# Batch 3, 5 input tokens, 4 target tokens. Multiply-adds counted by hand:
B, L, T = 3, 5, 4
ENCODER_LAYER = (5 * 16 * 8) * 4 + (5 * 5 * 8) * 2 + (5 * 16 * 24) * 3  # = 8720
DECODER_LAYER = ((4 * 16 * 8) * 4 + (4 * 4 * 8) * 2  # self-attention: q, k, v, out; QK, AV
                 + (4 * 16 * 8) * 2 + (5 * 16 * 8) * 2  # cross: q, out on targets; k, v on inputs
                 + (4 * 5 * 8) * 2  # cross: QK, AV
                 + (4 * 16 * 24) * 3)  # wi_0, wi_1, wo  # = 9536
LOGITS = 4 * 16 * 100  # per example
DENSE_MACS = B * (ENCODER_LAYER + DECODER_LAYER + LOGITS)


def test_dense_model_flops_equal_a_hand_count_of_one_layer_per_stack():
  assert ENCODER_LAYER == 8720 and DECODER_LAYER == 9536  # the arithmetic above
  cfg = micro()
  assert bench.model_flops(cfg, B, L, T, train=False) == 2 * DENSE_MACS
  assert bench.model_flops(cfg, B, L, T, train=True) == 3 * 2 * DENSE_MACS


def test_altup_adds_its_predict_and_the_wider_logits():
  predict = 2 * 2 * 16  # K^2 * d per token and layer
  tokens = B * L + B * T  # one layer per stack
  recycled = DENSE_MACS + tokens * predict
  altup = recycled + B * LOGITS  # K*d -> vocab doubles the logits
  assert bench.model_flops(micro("recycled_altup"), B, L, T, train=False) == 2 * recycled
  assert bench.model_flops(micro("altup"), B, L, T, train=False) == 2 * altup


def test_moe_counts_the_expert_slots_at_the_capacity_in_force():
  cfg = micro("moe", num_experts=4, num_selected_experts=2, moe_layer_interval=1)
  mlp = 16 * 24 * 3  # one token through one expert's wi_0, wi_1, wo
  # Training (factor 1.25): encoder ceil(1.25*2*15/4) = 10 slots per expert, decoder
  # ceil(1.25*2*12/4) = 8; the router is a [tokens, d] x [d, 4] matmul.
  train_macs = (DENSE_MACS - B * 5 * mlp - B * 4 * mlp
                + 4 * 10 * mlp + 15 * 16 * 4 + 4 * 8 * mlp + 12 * 16 * 4)
  assert bench.model_flops(cfg, B, L, T, train=True) == 3 * 2 * train_macs
  # Evaluation (factor 2.0): ceil(2*2*15/4) = 15 and ceil(2*2*12/4) = 12 slots.
  eval_macs = (DENSE_MACS - B * 5 * mlp - B * 4 * mlp
               + 4 * 15 * mlp + 15 * 16 * 4 + 4 * 12 * mlp + 12 * 16 * 4)
  assert bench.model_flops(cfg, B, L, T, train=False) == 2 * eval_macs


def test_wide_is_the_dense_count_of_the_wider_shape():
  wide = micro("wide")  # d, heads and mlp times 2
  assert (wide.emb_dim, wide.num_heads, wide.mlp_dim) == (32, 4, 48)
  # Every matmul but the attention scores/values grows 4x (both sides doubled);
  # scores and values grow 2x (heads doubled); the logits 2x (d doubled).
  scores = B * ((5 * 5 * 8) * 2 + (4 * 4 * 8) * 2 + (4 * 5 * 8) * 2)
  logits = B * LOGITS
  rest = DENSE_MACS - scores - logits
  assert bench.model_flops(wide, B, L, T, train=False) == 2 * (4 * rest + 2 * scores
                                                                + 2 * logits)


def _subject(name, flops, step, forward, decode, cpu=1.0, score=1.0):
  """`decode`: seconds per decode call, one number or {batch: seconds}."""
  decode = decode if isinstance(decode, dict) else {1: decode}
  return bench.Subject(
      name=name, num_params=10, model_flops=flops, work={},
      samples={"train_step": [(step, cpu), (9.0, cpu), (step, cpu)],  # median: step
               "forward": [(forward, 0.0)],
               "score": [(score, 0.0), (0.1, 0.0), (score, 0.0)],  # median: score
               **{f"decode_{b}": [(t, 0.0)] for b, t in decode.items()}})


def test_summary_divides_by_dense_medians_from_the_same_run():
  settings = bench.BenchSettings(batch=2, inputs_length=6, targets_length=4,
                                 decode_tokens=8)
  rows = bench.summarize([_subject("dense", 100.0, 2.0, 1.0, 4.0, cpu=1.0),
                          _subject("altup", 111.0, 2.3, 1.2, 5.0, cpu=1.2)],
                         peak_flops=200.0, settings=settings)
  dense, altup = rows
  assert dense["step_ratio"] == 1.0 and dense["fraction_of_peak"] == 100.0 / 2.0 / 200.0
  assert altup["model_flops_ratio"] == pytest.approx(1.11)
  assert altup["step_ratio"] == pytest.approx(2.3 / 2.0)
  assert altup["time_over_flops_ratio"] == pytest.approx((2.3 / 2.0) / 1.11)
  assert altup["step_cpu_ratio"] == pytest.approx(1.2)
  assert altup["cpu_time_over_flops_ratio"] == pytest.approx(1.2 / 1.11)
  assert altup["forward_ratio"] == pytest.approx(1.2)
  assert altup["decode"] == [{"batch": 1, "seconds": 5.0,
                              "tokens_per_second": pytest.approx(8 / 5.0),
                              "ratio": pytest.approx(5.0 / 4.0)}]
  assert altup["train_tokens_per_second"] == pytest.approx(2 * (6 + 4) / 2.3)
  table = bench.format_table(rows).splitlines()
  assert len(table) == 4 and table[3].startswith("| altup | ")
  assert "| 2.300 (1.150×) | 1.20 (1.200×) | 1.036, 1.081 |" in table[3]
  assert "| decode tok/s, batch 1 (×dense time) |" in table[0]


def test_summary_reports_scoring_and_decoding_at_every_batch_against_dense():
  # Two rounds of made-up samples per kind; scoring's median is its middle sample.
  settings = bench.BenchSettings(batch=4, inputs_length=6, targets_length=4,
                                 decode_tokens=10, decode_batch=(1, 8))
  dense = _subject("dense", 100.0, 2.0, 1.0, {1: 0.5, 8: 1.0}, score=0.8)
  altup = _subject("altup", 111.0, 2.3, 1.2, {1: 0.6, 8: 1.5}, score=1.0)
  peer = _subject("hf_t5 (torch)", 100.0, 4.0, 2.0, {1: 2.0, 8: 2.5}, score=3.2)
  rows = bench.summarize([dense, altup, peer], peak_flops=200.0, settings=settings)
  by_name = {r["variant"]: r for r in rows}
  # 4 examples per scoring call: 4 / 0.8 = 5 per second for dense, 4 / 1.0 for AltUp.
  assert by_name["dense"]["score_examples_per_second"] == pytest.approx(5.0)
  assert by_name["altup"]["score_examples_per_second"] == pytest.approx(4.0)
  assert by_name["altup"]["score_ratio"] == pytest.approx(1.0 / 0.8)
  assert by_name["dense"]["score_ratio"] == 1.0
  # 10 new tokens per row: batch 1 makes 10 tokens a call, batch 8 makes 80.
  assert [(d["batch"], d["tokens_per_second"], d["ratio"])
          for d in by_name["altup"]["decode"]] == [
              (1, pytest.approx(10 / 0.6), pytest.approx(0.6 / 0.5)),
              (8, pytest.approx(80 / 1.5), pytest.approx(1.5 / 1.0))]
  table = bench.format_table(rows).splitlines()
  header = [c.strip() for c in table[0].split("|")[1:-1]]
  assert header[7:11] == ["forward s (×dense)", "score ex/s (×dense time)",
                          "decode tok/s, batch 1 (×dense time)",
                          "decode tok/s, batch 8 (×dense time)"]
  altup_cells = [c.strip() for c in table[3].split("|")[1:-1]]
  assert altup_cells[8:11] == ["4.00 (1.250×)", "16.7 (1.200×)", "53.3 (1.500×)"]
  # Ours over the peer: scoring 5 / (4 / 3.2) = 4.00x; decoding (10 / 0.5) / (10 / 2.0)
  # = 4.00x at batch 1 and (80 / 1.0) / (80 / 2.5) = 2.50x at batch 8.
  summary = bench.peer_summary(rows, "torch x")
  assert "our scoring 4.00× its examples/s" in summary
  assert "our greedy decoding 4.00× at batch 1, 2.50× at batch 8 its `generate`" in summary


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps=0 must be >= 1"),
    (["--variants", "dense,huge"], "unknown 'huge'; allowed: dense,wide,moe"),
    (["--sizes", "medium"], "unknown 'medium'; allowed: tiny,small"),
    (["--lengths", "512"], "--lengths='512' must be two positive integers"),
    (["--peer", "tf"], "argument --peer: invalid choice: 'tf'"),
    (["--dtype", "float16"], "argument --dtype: invalid choice: 'float16'"),
    (["--decode_batch", "1,0"], "--decode_batch='1,0' must be positive integers "
                                "separated by commas, e.g. 1,8,32"),
    (["--decode_batch", "1,,8"], "--decode_batch='1,,8' must be positive integers"),
    (["--decode_batch", "-1"], "--decode_batch='-1' must be positive integers"),
    (["--decode_batch", "8,x"], "--decode_batch='8,x' must be positive integers"),
    (["--decode_batch", "1,8,1,8"], "--decode_batch='1,8,1,8' repeats 1,8 (see --help)"),
    (["--compile_workers", "0"], "--compile_workers=0 must be >= 1"),
])
def test_bad_flags_exit_2_with_one_line(argv, message, capsys):
  with pytest.raises(SystemExit) as exit_info:
    bench.parse_args(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and message in err


def test_decode_batches_and_dtype_parse_in_order_with_float32_by_default():
  default = bench.parse_args([])
  assert (default.decode_batch, default.dtype) == ((1,), "float32")
  settings = bench.parse_args(["--decode_batch", "32, 1,8", "--dtype", "bfloat16"])
  assert (settings.decode_batch, settings.dtype) == ((32, 1, 8), "bfloat16")
  assert bench.kinds(settings) == ("train_step", "forward", "score",
                                   "decode_32", "decode_1", "decode_8")


def test_variants_compiled_side_by_side_keep_their_order(monkeypatch):
  """Dense stays first (the reference) whichever variant finishes compiling first."""
  running, most = set(), []

  def make_subject(cfg, settings, mesh):
    running.add(cfg.variant.value)
    most.append(len(running))
    time.sleep(0.3 if cfg.variant.value == "dense" else 0.05)  # dense finishes last
    running.discard(cfg.variant.value)
    return cfg.variant.value

  monkeypatch.setattr(bench, "make_subject", make_subject)
  settings = bench.BenchSettings(variants=("dense", "altup", "moe"), compile_workers=2)
  lines = []
  assert bench.prepare_subjects("tiny", settings, None, lines.append) == [
      "dense", "altup", "moe"]
  assert max(most) == 2  # two at a time, never more
  assert lines[-1].startswith("  dense: ready in")  # logged as each one finishes
  assert bench.parse_args(["--compile_workers", "3"]).compile_workers == 3


def test_dense_is_always_measured_first_as_the_reference():
  assert bench.parse_args(["--variants", "altup,moe"]).variants == ("dense", "altup", "moe")


def test_missing_torch_gives_one_line_with_the_install_command(monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
  note = hf_peer.missing_requirement()
  assert note.startswith("--peer hf skipped: torch is not installed")
  assert "pip install torch==2.13.0" in note and "\n" not in note


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_hf_peer_mirrors_the_micro_config_and_times_every_kind(dtype):
  if hf_peer.missing_requirement():
    pytest.skip(hf_peer.missing_requirement())
  settings = bench.BenchSettings(decode_tokens=3, decode_batch=(1, 3))
  rng = np.random.default_rng(0)
  # In its child process, as bench runs it (torch beside XLA in one process crashes).
  peer = hf_peer.PeerProcess(micro(dtype=dtype), rng.integers(2, 100, (2, 5)),
                             rng.integers(2, 100, (2, 4)), settings.decode_tokens,
                             settings.decode_batch)
  try:
    # Hand count for micro(): embedding 100*16; encoder layer q,k,v,o 4*16*8 + mlp
    # 3*16*24 + 2 norms of 16; decoder layer 2 attentions + mlp + 3 norms; one relpos
    # table of 32 buckets x 2 heads per stack; two final norms; the untied 16*100 head.
    encoder_layer = 4 * 16 * 8 + 3 * 16 * 24 + 2 * 16
    decoder_layer = 2 * 4 * 16 * 8 + 3 * 16 * 24 + 3 * 16
    assert peer.num_params == (1600 + encoder_layer + decoder_layer + 2 * 32 * 2
                               + 2 * 16 + 1600)
    assert peer.kinds == bench.kinds(settings)
    for kind in peer.kinds:  # decoding raises there unless it made [batch, 3 + 1] ids
      wall, cpu = peer.run(kind)
      # CPU seconds come in 10 ms clock ticks: a short call may show 0 (or -1e-16
      # from the float subtraction).
      assert wall > 0 and cpu > -1e-9
    with pytest.raises(ValueError, match="'decode_8' is not one of"):
      peer.run("decode_8")
    assert ("bfloat16 autocast" in peer.versions) == (dtype == "bfloat16")
  finally:
    peer.close()


# An accelerator node may have jax, flax and optax but none of the data libraries
# (the CUDA image of scripts/gpu_bench.sh has no tensorflow): the bench runs with them
# made unimportable.
WITHOUT_DATA_LIBRARIES = textwrap.dedent("""
    import runpy, sys
    ABSENT = {"tensorflow", "seqio", "clu", "gin", "tensorflow_datasets"}

    class Absent:
      def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
          raise ImportError(f"{name} is not installed on this node")

    sys.meta_path.insert(0, Absent())
    sys.argv[0] = "altup_t5.bench"
    runpy.run_module("altup_t5.bench", run_name="__main__", alter_sys=True)
""")


def test_a_tiny_run_prints_one_row_per_variant(tmp_path):
  out = tmp_path / "bench.json"
  result = subprocess.run(
      [sys.executable, "-c", WITHOUT_DATA_LIBRARIES, "--sizes", "tiny",
       "--variants", "dense,recycled_altup", "--steps", "1", "--warmup", "0",
       "--lengths", "32,8", "--decode_tokens", "4", "--decode_batch", "1,2",
       "--json", str(out)],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
  assert result.returncode == 0, result.stderr[-2000:]
  rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
  assert [r.split("|")[1].strip() for r in rows] == ["variant", "dense", "recycled_altup"]
  assert "(1.000×)" in rows[1]
  header = [c.strip() for c in rows[0].split("|")[1:-1]]
  assert header[8:11] == ["score ex/s (×dense time)", "decode tok/s, batch 1 (×dense time)",
                          "decode tok/s, batch 2 (×dense time)"]
  assert all(len(r.split("|")) == len(rows[0].split("|")) for r in rows)
  assert "float32 activations" in result.stdout and "float32 matmul peak" in result.stdout
  data = json.loads(out.read_text())
  dense, recycled = data["sizes"]["tiny"]["rows"]
  # Recycled-AltUp adds exactly K^2 + K = 6 scalars to each of the 4 + 4 layers.
  assert recycled["params"] - dense["params"] == 6 * 8
  cfg = config_for("tiny")
  assert dense["model_flops_per_step"] == bench.model_flops(cfg, 2, 32, 8, train=True)
  for row in (dense, recycled):
    assert row["step_seconds"] > 0 and row["score_examples_per_second"] > 0
    assert [d["batch"] for d in row["decode"]] == [1, 2]
    for d in row["decode"]:  # batch rows of 4 new tokens per call
      assert np.isclose(d["tokens_per_second"], 4 * d["batch"] / d["seconds"])
    assert row["xla_flops_per_step"] > 0 and row["step_memory_bytes"] > 0
  assert dense["score_ratio"] == 1.0 and [d["ratio"] for d in dense["decode"]] == [1.0, 1.0]
  assert np.isclose(recycled["score_examples_per_second"], 2 / recycled["score_seconds"])
  assert data["sizes"]["tiny"]["peak_dtype"] == "float32"
  assert np.isclose(recycled["step_ratio"],
                    recycled["step_seconds"] / dense["step_seconds"])
