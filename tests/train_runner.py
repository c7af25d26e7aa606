"""`python tests/train_runner.py ENTRY --gin_file=...`: an entry point with the toy
task registered (the entry points themselves only know the project's tasks)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import toy_tasks  # pylint: disable=unused-import,g-import-not-at-top
from altup_t5 import cli  # pylint: disable=g-import-not-at-top

if __name__ == "__main__":
  entry, argv = sys.argv[1], sys.argv[2:]
  if entry == "train":
    from altup_t5.jobs import train as module  # pylint: disable=g-import-not-at-top
    fn = module.train
  elif entry == "eval":
    import altup_t5.jobs.evaluate as module  # pylint: disable=g-import-not-at-top
    fn = module.evaluate
  else:
    from altup_t5.jobs import infer as module  # pylint: disable=g-import-not-at-top
    fn = module.infer
  cli.run(fn, argv, prog=f"python -m altup_t5.{entry}")
