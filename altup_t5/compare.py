r"""`python -m altup_t5.compare STUDY --out DIR`: train a study's runs side by side and
report them (the paper's table, speedups, CSVs, plots). See `altup_t5.studies.runner`.

  python -m altup_t5.compare configs/cpu_small.toml --out /tmp/cpu_small
"""

import sys

from altup_t5.bench import cpu_tuning

if __name__ == "__main__":
  # The timing phase (`--timing_only`, a child of compare) measures the models in
  # this process, so it runs with the training runs' XLA:CPU settings.
  cpu_tuning.apply()

# pylint: disable=g-import-not-at-top,wrong-import-position
from altup_t5.studies import runner

if __name__ == "__main__":
  sys.exit(runner.main())
