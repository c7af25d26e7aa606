#!/usr/bin/env bash
# Several jax processes on GPU nodes, one per GPU (jax.distributed over the
# coordinator at the first node). Run this on every node with its NODE_RANK.
#
#   usage: NUM_NODES=2 NODE_RANK=0 COORDINATOR=10.0.0.1:1234 \
#          scripts/gpu_multiprocess.sh GIN_FILE MODEL_DIR [--gin.X=Y ...]
# Defaults: one node, all its GPUs, coordinator on localhost.
# Each process sees one GPU (CUDA_VISIBLE_DEVICES) and reads its own data shard.
set -euo pipefail
gin=$1 model_dir=$2
shift 2
gpus=${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}
nodes=${NUM_NODES:-1} rank=${NODE_RANK:-0}
export JAX_COORDINATOR_ADDRESS=${COORDINATOR:-localhost:12345}
export JAX_NUM_PROCESSES=$((nodes * gpus))
pids=()
for ((g = 0; g < gpus; g++)); do
  JAX_PROCESS_ID=$((rank * gpus + g)) CUDA_VISIBLE_DEVICES=$g \
    python -m altup_t5.train --gin_file="$gin" --gin.MODEL_DIR="$model_dir" "$@" &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
