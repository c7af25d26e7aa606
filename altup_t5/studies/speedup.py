"""The paper's speedup at equal quality: read off curves of quality against
inference speed across model sizes.

The AltUp paper (abstract: "up to 87% speedup relative to the dense baselines at the
same accuracy", SuperGLUE and SQuAD; latency measured on TPUv3 with 8 cores) trains
each method at several sizes and compares them on quality-vs-speed curves. Here the
dense baseline's points (one per size) form the reference curve; at a variant's
quality, the dense curve gives the speed a dense model of that quality would have,
interpolated linearly in log speed between the two adjacent sizes. Then

  speedup = speed(variant) / speed(dense at that quality) - 1
          = latency(dense at that quality) / latency(variant) - 1.

Choices the paper does not spell out (kept here, in one place):
- Non-monotone dense curves (a faster dense size of equal or higher quality than a
  slower one): the slower, dominated point is dropped, so the reference is the dense
  Pareto frontier (for each quality, the fastest dense model known to reach it).
- Ties: of dense points with equal speed, the better one is kept; of points with equal
  quality, the faster one (both follow from the frontier rule).
- A variant whose quality lies outside the frontier's quality range (better than the
  best dense size, or worse than the worst) gets `None`: "beyond the baseline's range".
- A frontier of one point gives a number only at exactly that quality.
"""

from __future__ import annotations

import math
from typing import Sequence

BEYOND = "beyond the baseline's range"


def dense_frontier(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
  """(speed, quality) pairs, higher both better -> the Pareto frontier, sorted by
  speed ascending (so quality strictly descending)."""
  for speed, quality in points:
    if not (speed > 0 and math.isfinite(speed) and math.isfinite(quality)):
      raise ValueError(f"dense point (speed={speed}, quality={quality}): speed must be "
                       "a positive number and quality finite")
  # Fastest first; among equal speeds the best quality first.
  frontier = []
  for speed, quality in sorted(points, key=lambda p: (-p[0], -p[1])):
    if not frontier or quality > frontier[-1][1]:
      frontier.append((speed, quality))
  return frontier[::-1]


def dense_speed_at(points: Sequence[tuple[float, float]], quality: float
                   ) -> float | None:
  """The dense speed at `quality` on the frontier, linear in log speed between
  adjacent points; None outside the frontier's quality range."""
  frontier = dense_frontier(points)
  if not frontier:
    return None
  for (s_slow, q_high), (s_fast, q_low) in zip(frontier, frontier[1:]):
    if q_low <= quality <= q_high:
      t = (q_high - quality) / (q_high - q_low)  # 0 at the slower, better point
      return math.exp(math.log(s_slow) + t * (math.log(s_fast) - math.log(s_slow)))
  if len(frontier) == 1 and quality == frontier[0][1]:
    return frontier[0][0]
  return None


def paper_speedup(dense_points: Sequence[tuple[float, float]], speed: float,
                  quality: float) -> float | None:
  """speed / (dense speed at `quality`) - 1, or None ("beyond the baseline's range")."""
  reference = dense_speed_at(dense_points, quality)
  if reference is None:
    return None
  return speed / reference - 1.0
