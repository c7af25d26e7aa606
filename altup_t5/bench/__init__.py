"""Benchmarks: `bench` (every variant's step, scoring and decoding time side by side,
FLOPs, memory, a same-run matmul peak), `hf_peer` (HuggingFace's T5 with the same
configuration, timed beside ours) and `cpu_tuning` (process-wide CPU settings that the
entry points apply before jax starts).

May import: model, training, inference. `cpu_tuning` imports nothing of jax, so entry
points can apply it first.
"""
