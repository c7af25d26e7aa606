"""Means and 95% Student-t confidence intervals over seeds, and paired differences.

A study runs every (size, variant) with the same seeds, so a variant's difference to
dense is taken seed by seed (same data order and initial key), which removes the
variance the two share; its interval is the t interval of those differences, and the
difference is *significant* when that interval excludes zero.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np
from scipy import stats


@dataclasses.dataclass(frozen=True)
class Interval:
  mean: float
  half_width: float  # nan with one value: no interval from a single seed
  n: int

  @property
  def low(self) -> float:
    return self.mean - self.half_width

  @property
  def high(self) -> float:
    return self.mean + self.half_width

  @property
  def significant(self) -> bool:
    """The interval excludes zero (False when there is no interval)."""
    return math.isfinite(self.half_width) and (self.low > 0 or self.high < 0)


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Interval:
  """Mean and half width of the two-sided Student-t interval (n - 1 dof)."""
  x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
  if x.size == 0:
    raise ValueError("mean_ci needs at least one finite value")
  if x.size == 1:
    return Interval(float(x[0]), float("nan"), 1)
  sem = x.std(ddof=1) / math.sqrt(x.size)
  t = stats.t.ppf(0.5 + confidence / 2, df=x.size - 1)
  return Interval(float(x.mean()), float(t * sem), int(x.size))


def paired_difference(variant: dict[int, float], dense: dict[int, float],
                      confidence: float = 0.95) -> Interval:
  """variant - dense over the seeds both have ({seed: value} each)."""
  seeds = sorted(set(variant) & set(dense))
  if not seeds:
    raise ValueError("paired_difference: no seed in common")
  return mean_ci([variant[s] - dense[s] for s in seeds], confidence)


def format_interval(interval: Interval, fmt: str = ".2f", scale: float = 1.0) -> str:
  mean = format(scale * interval.mean, fmt)
  if not math.isfinite(interval.half_width):
    return mean
  return f"{mean} ± {format(scale * interval.half_width, fmt)}"
