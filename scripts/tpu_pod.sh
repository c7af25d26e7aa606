#!/usr/bin/env bash
# Run one command on every worker of a Cloud TPU VM pod (each worker runs the same
# command; jax.distributed finds its peers and each host reads its own data shard).
#
#   usage: scripts/tpu_pod.sh TPU_NAME ZONE setup
#          scripts/tpu_pod.sh TPU_NAME ZONE train GIN_FILE MODEL_DIR [--gin.X=Y ...]
# e.g.     scripts/tpu_pod.sh my-v4-32 us-central2-b train \
#            experiments/paper/pretrain_base_altup.gin gs://my-bucket/altup/base_altup
#
# `setup` clones nothing: it copies this checkout to every worker and installs it.
# MODEL_DIR must be on GCS (gs://...) so that every worker sees the same checkpoints.
set -euo pipefail
tpu=$1 zone=$2 action=$3
shift 3
run() { gcloud compute tpus tpu-vm ssh "$tpu" --zone="$zone" --worker=all --command="$1"; }
case "$action" in
  setup)
    gcloud compute tpus tpu-vm scp --recurse --zone="$zone" --worker=all \
      "$(cd "$(dirname "$0")/.." && pwd)" "$tpu":~/altup-t5
    run 'cd ~/altup-t5 && python3 -m pip install -e . && python3 -m pip install "jax[tpu]"'
    ;;
  train|eval|infer)
    gin=$1 model_dir=$2
    shift 2
    run "cd ~/altup-t5 && python3 -m altup_t5.$action --gin_file=$gin --gin.MODEL_DIR=\\\"$model_dir\\\" $*"
    ;;
  *) echo "unknown action $action (setup, train, eval, infer)" >&2; exit 2 ;;
esac
