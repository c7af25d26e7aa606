r"""`python -m altup_t5.train`: pretrain or fine-tune a T5 from gin files.

  python -m altup_t5.train --gin_file=experiments/quickstart.gin \
      --gin.MODEL_DIR=/tmp/altup_quickstart

The job itself is `altup_t5.jobs.train.train`. Its names are re-exported here so
that gin files of the flat layout (`from altup_t5 import train`, `train.train:`)
keep binding it.
"""

from altup_t5.bench import cpu_tuning

if __name__ == "__main__":
  cpu_tuning.apply()  # before jax starts its threads: see bench/cpu_tuning.py

# pylint: disable=g-import-not-at-top,wrong-import-position,unused-import
from altup_t5 import cli
from altup_t5.jobs.train import MeshSettings, RunSettings, train

if __name__ == "__main__":
  cli.run(train, prog="python -m altup_t5.train")
