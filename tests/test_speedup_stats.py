"""The paper's speedup on hand-made quality-vs-speed curves, and the seed statistics
against scipy.stats."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from altup_t5.studies import speedup
from altup_t5.studies import stats

# Three dense sizes: (examples/s, accuracy). Slower sizes are better.
DENSE = [(400.0, 0.50), (200.0, 0.60), (100.0, 0.70)]


def test_interpolates_linearly_in_log_speed_between_adjacent_sizes():
  # 0.55 is half way from 0.60 (200/s) to 0.50 (400/s): sqrt(200 * 400) in log speed.
  assert speedup.dense_speed_at(DENSE, 0.55) == pytest.approx(math.sqrt(200 * 400))
  # A quarter of the way from 0.70 (100/s) towards 0.60 (200/s).
  assert speedup.dense_speed_at(DENSE, 0.675) == pytest.approx(100 * 2 ** 0.25)
  assert speedup.dense_speed_at(DENSE, 0.60) == pytest.approx(200.0)  # on a point
  # A variant at 0.65 running at 200/s: dense needs 100*sqrt(2)/s for 0.65.
  assert speedup.paper_speedup(DENSE, 200.0, 0.65) == pytest.approx(
      200 / (100 * math.sqrt(2)) - 1)
  # Dense itself has speedup 0 at each of its sizes.
  for s, q in DENSE:
    assert speedup.paper_speedup(DENSE, s, q) == pytest.approx(0.0)


def test_outside_the_dense_range_is_beyond_the_baselines_range():
  assert speedup.paper_speedup(DENSE, 150.0, 0.71) is None  # above the best
  assert speedup.paper_speedup(DENSE, 900.0, 0.49) is None  # below the worst
  assert speedup.paper_speedup([(100.0, 0.7)], 100.0, 0.7) == 0.0
  assert speedup.paper_speedup([(100.0, 0.7)], 100.0, 0.69) is None


def test_non_monotone_dense_curves_use_the_pareto_frontier():
  # The middle size (200/s) is worse than the faster one (400/s): dropped.
  bumpy = [(400.0, 0.55), (200.0, 0.52), (100.0, 0.70)]
  assert speedup.dense_frontier(bumpy) == [(100.0, 0.70), (400.0, 0.55)]
  # 0.625 is half way from 0.70 to 0.55: sqrt(100 * 400) = 200.
  assert speedup.dense_speed_at(bumpy, 0.625) == pytest.approx(200.0)
  assert speedup.dense_speed_at(bumpy, 0.52) is None  # below the frontier's worst


def test_ties_keep_the_faster_or_the_better_point():
  equal_quality = [(400.0, 0.6), (200.0, 0.6), (100.0, 0.7)]
  assert speedup.dense_frontier(equal_quality) == [(100.0, 0.7), (400.0, 0.6)]
  equal_speed = [(200.0, 0.5), (200.0, 0.6), (100.0, 0.7)]
  assert speedup.dense_frontier(equal_speed) == [(100.0, 0.7), (200.0, 0.6)]
  with pytest.raises(ValueError, match="speed must be a positive number"):
    speedup.dense_frontier([(0.0, 0.5)])


def test_mean_ci_matches_scipy():
  values = [0.291, 0.296, 0.288, 0.301, 0.294]
  interval = stats.mean_ci(values)
  low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                     scale=scipy_stats.sem(values))
  assert interval.mean == pytest.approx(np.mean(values))
  assert interval.low == pytest.approx(low) and interval.high == pytest.approx(high)
  single = stats.mean_ci([0.3])
  assert math.isnan(single.half_width) and not single.significant
  assert stats.format_interval(single, ".1f", 100) == "30.0"


def test_paired_difference_matches_scipy_and_marks_significance():
  dense = {0: 4.90, 1: 4.95, 2: 4.88}
  altup = {0: 4.85, 1: 4.91, 2: 4.84, 7: 1.0}  # seed 7 has no partner: ignored
  diff = stats.paired_difference(altup, dense)
  d = [altup[s] - dense[s] for s in (0, 1, 2)]
  low, high = scipy_stats.t.interval(0.95, 2, loc=np.mean(d), scale=scipy_stats.sem(d))
  assert (diff.low, diff.high) == (pytest.approx(low), pytest.approx(high))
  assert diff.n == 3 and diff.significant  # all three differences are about -0.04
  noisy = stats.paired_difference({0: 1.0, 1: 0.0}, {0: 0.5, 1: 0.5})
  assert not noisy.significant
  with pytest.raises(ValueError, match="no seed in common"):
    stats.paired_difference({0: 1.0}, {1: 1.0})
