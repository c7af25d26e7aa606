#!/usr/bin/env bash
# The offline default, end to end on a CPU: pretrain a tiny AltUp T5 on the local
# corpus (prepared on first use), fine-tune it on the local labelled tasks, evaluate.
#   usage: scripts/quickstart_cpu.sh [RUN_ROOT]        (default /tmp/altup_quickstart)
# Expected on 2 CPU cores: about 4 min in all (1 min 46 s pretraining, about 1 min 45 s
# fine-tuning, 19 s evaluation; see each gin file's header for the results).
set -euo pipefail
root=${1:-/tmp/altup_quickstart}
python -m altup_t5.train --gin_file=experiments/quickstart.gin \
  --gin.MODEL_DIR="$root/pretrain"
python -m altup_t5.train --gin_file=experiments/quickstart_finetune.gin \
  --gin.MODEL_DIR="$root/finetune" --gin.INITIAL_CHECKPOINT_PATH="$root/pretrain/checkpoints"
python -m altup_t5.eval --gin_file=experiments/quickstart_eval.gin \
  --gin.CHECKPOINT_PATH="$root/finetune/checkpoints" --gin.EVAL_OUTPUT_DIR="$root/eval"
