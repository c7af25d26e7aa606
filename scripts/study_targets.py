r"""Where a finished study stands on issue 11's two budget targets, and what budget
would reach them, extrapolated from the study's own runs.

  python scripts/study_targets.py /tmp/cpu_full [--size tiny2x]

(a) The dense baseline at the largest size ends at least 5 points above the trivial
    floor in token accuracy (mean over seeds, with its 95% t interval).
(b) The 95% interval of the AltUp-minus-dense held-out loss difference (paired by seed)
    at that size is narrower than +-0.01 nats.

Extrapolations, each stated with what it assumes:
- (a): a least-squares line in log(steps) through the mean dense accuracy above the
  floor at each of the study's evaluations, solved for 5 points. Span corruption's
  plateau makes this optimistic or pessimistic by an unknown amount: it is a rough
  order of magnitude, not a prediction.
- (b): the seeds n for which t(0.975, n-1) * s / sqrt(n) < 0.01, with s the measured
  standard deviation of the paired differences (assumes s does not change with n).
Reads OUT/results.csv and OUT/curves.csv only; trains nothing.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from collections import defaultdict

import numpy as np
from scipy import stats

from altup_t5.studies import stats as study_stats

FLOOR_MARGIN = 0.05  # (a): 5 points of token accuracy
LOSS_HALF_WIDTH = 0.01  # (b): nats


def _rows(path: str) -> list[dict]:
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


def seeds_for_half_width(sd: float, target: float, most: int = 1000) -> int | None:
  """The smallest n >= 2 with t(0.975, n-1) * sd / sqrt(n) < target."""
  for n in range(2, most + 1):
    if stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n) < target:
      return n
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("out", help="the study's output directory")
  parser.add_argument("--size", default=None, help="default: the study's last size")
  args = parser.parse_args()
  results = [r for r in _rows(os.path.join(args.out, "results.csv"))
             if r["stage"] == "pretrain" and r["status"] == "finished"]
  size = args.size or results[-1]["size"]
  mine = [r for r in results if r["size"] == size]
  dense = {int(r["seed"]): r for r in mine if r["variant"] == "dense"}
  altup = {int(r["seed"]): r for r in mine if r["variant"] == "altup"}

  above = [float(r["final_accuracy"]) - float(r["final_trivial_floor"])
           for r in dense.values()]
  interval = study_stats.mean_ci(above)
  steps = int(next(iter(dense.values()))["final_step"])
  print(f"(a) {size} dense, {len(above)} seeds, {steps} steps: accuracy above the "
        f"trivial floor {100 * interval.mean:+.2f} ± {100 * interval.half_width:.2f} "
        f"points (target >= {100 * FLOOR_MARGIN:.0f}): "
        f"{'met' if interval.mean >= FLOOR_MARGIN else 'not met'}")
  curves = defaultdict(list)  # step -> [accuracy above the floor, per seed]
  floor = float(next(iter(dense.values()))["final_trivial_floor"])
  for c in _rows(os.path.join(args.out, "curves.csv")):
    if (c["size"], c["variant"], c["stage"], c["kind"]) == (size, "dense", "pretrain",
                                                            "eval"):
      curves[int(c["step"])].append(float(c["accuracy"]) - floor)
  points = sorted((s, float(np.mean(v))) for s, v in curves.items())
  if len(points) >= 2 and interval.mean < FLOOR_MARGIN:
    log_steps = np.log([p[0] for p in points])
    slope, intercept = np.polyfit(log_steps, [p[1] for p in points], 1)
    fitted = ", ".join(f"{s}: {100 * a:+.2f}" for s, a in points)
    if slope > 0:
      needed = math.exp((FLOOR_MARGIN - intercept) / slope)
      print(f"    extrapolated (least squares in log steps through {fitted} points): "
            f"about {needed:,.0f} steps")
    else:
      print(f"    no extrapolation: the mean accuracy above the floor does not grow "
            f"with log steps ({fitted} points)")

  common = sorted(set(dense) & set(altup))
  diffs = {s: float(altup[s]["final_eval_loss"]) for s in common}
  base = {s: float(dense[s]["final_eval_loss"]) for s in common}
  paired = study_stats.paired_difference(diffs, base)
  print(f"(b) {size} AltUp - dense held-out loss, {len(common)} paired seeds: "
        f"{paired.mean:+.4f} ± {paired.half_width:.4f} nats (target half width < "
        f"{LOSS_HALF_WIDTH}): {'met' if paired.half_width < LOSS_HALF_WIDTH else 'not met'}")
  if len(common) >= 2 and not paired.half_width < LOSS_HALF_WIDTH:
    sd = float(np.std([diffs[s] - base[s] for s in common], ddof=1))
    n = seeds_for_half_width(sd, LOSS_HALF_WIDTH)
    print(f"    paired sd {sd:.4f} nats: {n if n else 'more than 1000'} seeds would "
          f"give a half width under {LOSS_HALF_WIDTH} at this budget")


if __name__ == "__main__":
  main()
