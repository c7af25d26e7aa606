r"""`python -m altup_t5.eval`: evaluate a checkpoint on a task (teacher-forced and
inference metrics).

  python -m altup_t5.eval --gin_file=experiments/quickstart_eval.gin \
      --gin.CHECKPOINT_PATH=/tmp/ft/checkpoints --gin.EVAL_OUTPUT_DIR=/tmp/ft/eval

The job is `altup_t5.jobs.evaluate.evaluate`, re-exported for gin files of the flat
layout (`from altup_t5 import eval`, `eval.evaluate:`).
"""

from altup_t5.bench import cpu_tuning

if __name__ == "__main__":
  cpu_tuning.apply()  # before jax starts its threads: see bench/cpu_tuning.py

# pylint: disable=g-import-not-at-top,wrong-import-position,unused-import
from altup_t5 import cli
from altup_t5.jobs.evaluate import evaluate

if __name__ == "__main__":
  cli.run(evaluate, prog="python -m altup_t5.eval")
