"""`python -m altup_t5.bench`: every variant timed side by side (see bench.py)."""

from altup_t5.bench import cpu_tuning

cpu_tuning.apply()  # before jax starts its threads: the bench measures what users run

# pylint: disable=g-import-not-at-top,wrong-import-position
from altup_t5.bench import bench

bench.main()
