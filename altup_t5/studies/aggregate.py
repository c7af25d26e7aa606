"""A study's runs grouped over seeds: per (stage, size, variant) the mean and 95%
interval of every quality number, the paired difference to dense, and the paper's
speedup at equal quality read off the groups' mean quality and mean inference speed.

Only finished runs count. A quality is averaged over the seeds that have it; a paired
difference uses the seeds where both the variant and dense finished (studies/stats.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

from altup_t5.studies import speedup as speedup_lib
from altup_t5.studies import stats
from altup_t5.studies.results import FINISHED, RunResult

# The paper's rows, in its order (the last are its "wider model" comparisons and the
# sequence extension).
METHODS = ("dense", "moe", "altup", "altup_moe", "recycled_altup", "wide",
           "sequence_altup")

Getter = Callable[[RunResult], "float | None"]


def _final(attr: str) -> Getter:
  return lambda r: getattr(r.final, attr) if r.final else None


# Quality numbers: name -> (how to read it from a run, higher is better).
PRETRAIN_QUALITIES: dict[str, tuple[Getter, bool]] = {
    "accuracy": (_final("accuracy"), True),
    "loss": (_final("loss"), False),
    "nonsentinel_accuracy": (_final("nonsentinel_accuracy"), True),
    "trivial_floor": (_final("trivial_floor"), True),
}
FINETUNE_QUALITIES: dict[str, tuple[Getter, bool]] = {
    "downstream": (lambda r: r.downstream, True),
}
# The speed the paper's speedup uses: scoring for pretraining, decoding for fine-tuned
# models (the paper measures inference latency on the downstream tasks).
SPEED = {"pretrain": "score_examples_per_second",
         "finetune": "decode_tokens_per_second"}


@dataclasses.dataclass
class Group:
  stage: str
  size: str
  variant: str
  runs: list[RunResult]  # every seed, finished or not
  altup_k: int = 2

  @property
  def finished(self) -> list[RunResult]:
    return [r for r in self.runs if r.status == FINISHED]

  def by_seed(self, getter: Getter) -> dict[int, float]:
    out = {}
    for r in self.finished:
      value = getter(r)
      if value is not None and math.isfinite(value):
        out[r.seed] = float(value)
    return out

  def interval(self, getter: Getter) -> stats.Interval | None:
    values = self.by_seed(getter)
    return stats.mean_ci(list(values.values())) if values else None

  def speed(self) -> stats.Interval | None:
    return self.interval(lambda r: getattr(r, SPEED[self.stage]))

  def statuses(self) -> str:
    """'3/3 finished' or the statuses of the seeds that did not finish."""
    done = len(self.finished)
    others = sorted({r.status for r in self.runs if r.status != FINISHED})
    return f"{done}/{len(self.runs)} finished" + (f"; {', '.join(others)}" if others
                                                   else "")


def group_runs(results: Sequence[RunResult], stage: str) -> list[Group]:
  """Groups of `stage`, size-major (in the results' order), methods in METHODS order."""
  sizes = list(dict.fromkeys(r.size for r in results))
  groups = []
  for size in sizes:
    for variant in METHODS:
      runs = [r for r in results if r.stage == stage and r.size == size
              and r.variant == variant]
      if runs:
        groups.append(Group(stage, size, variant, sorted(runs, key=lambda r: r.seed),
                            runs[0].altup_k))
  return groups


def dense_of(groups: Sequence[Group], size: str) -> Group | None:
  return next((g for g in groups if g.size == size and g.variant == "dense"), None)


def paired(group: Group, dense: Group | None, getter: Getter
           ) -> stats.Interval | None:
  """variant - dense, seed by seed (None without a seed both finished)."""
  if dense is None or group is dense:
    return None
  mine, theirs = group.by_seed(getter), dense.by_seed(getter)
  if not set(mine) & set(theirs):
    return None
  return stats.paired_difference(mine, theirs)


def paper_speedup(groups: Sequence[Group], group: Group, getter: Getter,
                  higher_is_better: bool) -> float | str | None:
  """The paper's speedup of `group` at its mean quality against the dense groups'
  curve of (mean speed, mean quality) over sizes: a number, `speedup.BEYOND`, or
  None when speed or quality is not known."""
  def point(g: Group):
    speed, quality = g.speed(), g.interval(getter)
    if speed is None or quality is None:
      return None
    sign = 1.0 if higher_is_better else -1.0  # the frontier wants higher = better
    return speed.mean, sign * quality.mean

  dense_points = [p for g in groups if g.variant == "dense" for p in [point(g)] if p]
  mine = point(group)
  if mine is None or not dense_points:
    return None
  value = speedup_lib.paper_speedup(dense_points, *mine)
  return speedup_lib.BEYOND if value is None else value


def speed_normaliser(groups: Sequence[Group]) -> float | None:
  """The mean speed of the smallest dense model (fewest parameters): "dense Small = 1"
  on the quality-vs-speed plot."""
  dense = [g for g in groups if g.variant == "dense" and g.speed() is not None]
  if not dense:
    return None
  params = lambda g: min((r.parameters for r in g.finished if r.parameters),
                         default=math.inf)
  return min(dense, key=params).speed().mean
