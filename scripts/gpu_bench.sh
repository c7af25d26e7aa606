#!/usr/bin/env bash
# What each variant costs on an accelerator: `python -m altup_t5.bench` at T5.1.1
# `small` and `base` in bfloat16 (float32 parameters), every variant, side by side.
#   usage: scripts/gpu_bench.sh [OUT_DIR]    (default $OUT if set, else /tmp/gpu_bench)
# Runs, for each size, one bench process (a size that fails or runs out of time
# leaves the sizes before it complete, and the summary still reads them):
#   python -m altup_t5.bench --sizes SIZE --dtype bfloat16 --batch 32 --lengths 512,114
#     --steps 5 --warmup 2 --decode_batch 1,8,32 --json OUT_DIR/bench_SIZE.json
# Batch 32 at 512/114 (20k tokens a step), not bench's CPU default of 2: at batch 2 an
# H200 is bound by kernel launches, and its fraction of peak says little.
# Prints `jax.devices()` first, the bench's tables as they come (also in
# OUT_DIR/bench_SIZE.log), and at the end, per size and read from the JSON: the dense
# train step's fraction of the same-run bf16 matmul peak, and every variant's
# train-step time ratio to dense (with its model-FLOP ratio, scoring's and decoding's
# time ratios beside it).
# Meant for ONE GPU (decode batch 1 must be a multiple of the data-parallel size):
# set CUDA_VISIBLE_DEVICES=0 on a multi-GPU host.
# Measured on one H200 (docs/bench_gpu_h200.md): `small` alone took 542 s, nearly all
# of it compiling (185-281 s per variant, 4 variants compiled side by side on 16 CPUs);
# each variant compiles a train step, a forward pass, scoring and 3 decoders. So give
# each size its own call of about 10 minutes (GPU_BENCH_SIZES=small, then base), or
# name fewer variants (GPU_BENCH_VARIANTS=altup,recycled_altup; dense is always added)
# or decode batches. The XLA compilation cache lives in $JAX_COMPILATION_CACHE_DIR
# (default /tmp/gpu_bench_jax_cache), so a rerun on the same machine compiles little.
# Overrides (for a CPU check, e.g. GPU_BENCH_SIZES=micro GPU_BENCH_STEPS=1
# GPU_BENCH_WARMUP=0 GPU_BENCH_VARIANTS=dense,altup GPU_BENCH_BATCH=2
# GPU_BENCH_LENGTHS=32,8 GPU_BENCH_DECODE_TOKENS=4 GPU_BENCH_DECODE_BATCH=1,2):
# GPU_BENCH_SIZES (small,base), GPU_BENCH_VARIANTS (all), GPU_BENCH_STEPS (5),
# GPU_BENCH_WARMUP (2), GPU_BENCH_BATCH (32), GPU_BENCH_LENGTHS (512,114),
# GPU_BENCH_DECODE_TOKENS (64), GPU_BENCH_DECODE_BATCH (1,8,32),
# GPU_BENCH_DTYPE (bfloat16), PYTHON (python), GPU_BENCH_TIME_LIMIT (none: seconds for
# the whole script; a size still running when it nears is killed, the summary still
# printed, so a lease of fixed length returns every size that finished).
set -uo pipefail
out=${1:-${OUT:-/tmp/gpu_bench}}
python=${PYTHON:-python}
sizes=${GPU_BENCH_SIZES:-small,base}
mkdir -p "$out" || exit 2
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-/tmp/gpu_bench_jax_cache}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-3}

"$python" -c "import jax; print('jax', jax.__version__, jax.devices())" \
  | tee "$out/devices.txt" || exit 1
variants=()
if [[ -n "${GPU_BENCH_VARIANTS:-}" ]]; then variants=(--variants "$GPU_BENCH_VARIANTS"); fi
failed=()
for size in ${sizes//,/ }; do
  start=$SECONDS
  rm -f "$out/bench_$size.json"
  limit=()
  if [[ -n "${GPU_BENCH_TIME_LIMIT:-}" ]]; then
    left=$((GPU_BENCH_TIME_LIMIT - SECONDS - 20))  # 20 s kept for the summary
    if (( left < 30 )); then
      echo "[$size] skipped: GPU_BENCH_TIME_LIMIT=$GPU_BENCH_TIME_LIMIT s nearly spent" \
        | tee "$out/bench_$size.log"
      failed+=("$size"); continue
    fi
    limit=(timeout --signal=KILL "$left")
  fi
  if ! "${limit[@]}" "$python" -m altup_t5.bench --sizes "$size" "${variants[@]}" \
    --dtype "${GPU_BENCH_DTYPE:-bfloat16}" --batch "${GPU_BENCH_BATCH:-32}" \
    --lengths "${GPU_BENCH_LENGTHS:-512,114}" --steps "${GPU_BENCH_STEPS:-5}" \
    --warmup "${GPU_BENCH_WARMUP:-2}" --decode_tokens "${GPU_BENCH_DECODE_TOKENS:-64}" \
    --decode_batch "${GPU_BENCH_DECODE_BATCH:-1,8,32}" --json "$out/bench_$size.json" \
    2>&1 | tee "$out/bench_$size.log"; then
    failed+=("$size")
  fi
  echo "[$size] $((SECONDS - start)) s" | tee -a "$out/bench_$size.log"
done

# The summary, from the JSON files alone.
"$python" - "$out" ${sizes//,/ } <<'EOF' | tee "$out/summary.txt"
import json, os, sys
out, sizes = sys.argv[1], sys.argv[2:]
for size in sizes:
  path = os.path.join(out, f"bench_{size}.json")
  if not os.path.exists(path):
    print(f"{size}: no results (see {out}/bench_{size}.log)")
    continue
  data = json.load(open(path))
  result = data["sizes"][size]
  rows = result["rows"]
  dense = rows[0]
  print(f"{size} ({data['environment']['summary'].split(';')[0]}): dense train step "
        f"{dense['model_flops_per_second'] / 1e12:.3f} TFLOP/s = "
        f"{100 * dense['fraction_of_peak']:.1f}% of the same-run {result['peak_dtype']} "
        f"matmul peak ({result['peak_flops'] / 1e12:.3f} TFLOP/s)")
  for r in rows:
    decode = ", ".join(f"batch {d['batch']} {d['ratio']:.3f}x" for d in r["decode"])
    print(f"  {r['variant']:>15}: step {r['step_ratio']:.3f}x dense "
          f"(FLOP ratio {r['model_flops_ratio']:.3f}x; time/FLOP "
          f"{r['time_over_flops_ratio']:.3f}); scoring {r['score_ratio']:.3f}x; "
          f"decoding {decode}")
EOF
echo "total $SECONDS s"
if (( ${#failed[@]} )); then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
