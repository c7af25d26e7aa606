r"""`python -m altup_t5.infer`: decode a task's inputs, or a text file's lines.

  python -m altup_t5.infer --gin_file=experiments/quickstart_infer.gin \
      --gin.CHECKPOINT_PATH=/tmp/ft/checkpoints --gin.INFER_OUTPUT=/tmp/ft/out.jsonl

The job is `altup_t5.jobs.infer.infer`, re-exported for gin files of the flat layout
(`from altup_t5 import infer`, `infer.infer:`).
"""

from altup_t5.bench import cpu_tuning

if __name__ == "__main__":
  cpu_tuning.apply()  # before jax starts its threads: see bench/cpu_tuning.py

# pylint: disable=g-import-not-at-top,wrong-import-position,unused-import
from altup_t5 import cli
from altup_t5.jobs.infer import infer

if __name__ == "__main__":
  cli.run(infer, prog="python -m altup_t5.infer")
