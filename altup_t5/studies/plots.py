"""A study's plots (matplotlib, written to files): held-out accuracy against steps and
against training time, held-out and training loss against steps, and the speedups at
equal quality; one panel per size, one line (or bar group) per variant."""

from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI box or a TPU VM
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from altup_t5.studies import report  # pylint: disable=g-import-not-at-top,wrong-import-position
from altup_t5.studies.results import FINISHED, RunResult  # pylint: disable=g-import-not-at-top,wrong-import-position

# File name -> what it shows (the report's alt text).
PLOTS = {
    "accuracy_vs_steps.png": "held-out accuracy against training steps",
    "accuracy_vs_time.png": "held-out accuracy against training wall time",
    "eval_loss_vs_steps.png": "held-out loss against training steps",
    "train_loss.png": "training loss against steps",
    "speedup.png": "speedup at equal quality over the dense baseline",
}


def _figure(sizes: Sequence[str], title: str):
  fig, axes = plt.subplots(1, len(sizes), figsize=(6 * len(sizes), 4.5), squeeze=False)
  fig.suptitle(title)
  return fig, axes[0]


def _save(fig, path: str) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _legend_if_any(ax, fontsize: str) -> None:
  if ax.get_legend_handles_labels()[0]:  # a size whose runs have nothing to show yet
    ax.legend(fontsize=fontsize)


def _legend(r: RunResult) -> str:
  label = report.method_label(r.variant, r.altup_k)
  return label if r.status == FINISHED else f"{label} ({r.status})"


def _zoom_past_the_first_drop(ax, steps, values) -> None:
  """Limit the y axis to what the curves do after the first tenth of training, so
  small differences late in training stay visible under the first steep drop."""
  last = max((s for series in steps for s in series), default=0)
  late = [v for series_s, series_v in zip(steps, values)
          for s, v in zip(series_s, series_v) if s >= 0.1 * last and math.isfinite(v)]
  if late:
    low, high = min(late), max(late)
    margin = 0.05 * (high - low) or 0.01
    ax.set_ylim(low - margin, high + margin)


def plot_curves(results: Sequence[RunResult], out_dir: str, study_name: str
                ) -> dict[str, str]:
  """Write the PLOTS files to `out_dir`; returns PLOTS."""
  sizes = report.sizes_of(results)
  by_step = lambda p: p.step
  by_time = lambda p: p.train_seconds
  time_label = "training wall time (s, excluding evaluation and checkpoints)"
  for name, x_of, xlabel, quality in (
      ("accuracy_vs_steps.png", by_step, "training step", "accuracy"),
      ("accuracy_vs_time.png", by_time, time_label, "accuracy"),
      ("eval_loss_vs_steps.png", by_step, "training step", "loss")):
    scale = 100 if quality == "accuracy" else 1
    what = ("held-out span-prediction accuracy" if quality == "accuracy" else
            "held-out loss")
    fig, axes = _figure(sizes, f"{study_name}: {what}")
    for ax, size in zip(axes, sizes):
      for r in report.ordered([r for r in results if r.size == size and r.evals]):
        ax.plot([x_of(p) for p in r.evals],
                [scale * getattr(p, quality) for p in r.evals],
                marker=".", label=_legend(r))
      target = next((getattr(r, f"by_{quality}").target for r in results
                     if r.size == size and getattr(r, f"by_{quality}") is not None), None)
      if target is not None:
        ax.axhline(scale * target, color="grey", linestyle=":", linewidth=1,
                   label=f"baseline's final {quality}")
      ylabel = "accuracy (%)" if quality == "accuracy" else "loss (cross-entropy per token)"
      ax.set(title=f"T5 {size}", xlabel=xlabel, ylabel=ylabel)
      ax.grid(alpha=0.3)
      _legend_if_any(ax, "small")
    _save(fig, os.path.join(out_dir, name))

  fig, axes = _figure(sizes, f"{study_name}: training loss")
  for ax, size in zip(axes, sizes):
    runs = report.ordered([r for r in results if r.size == size and r.train_loss])
    for r in runs:
      ax.plot(r.train_steps, r.train_loss, linewidth=1, label=_legend(r))
    _zoom_past_the_first_drop(ax, [r.train_steps for r in runs],
                              [r.train_loss for r in runs])
    ax.set(title=f"T5 {size}", xlabel="training step",
           ylabel="training loss (cross-entropy per token)")
    ax.grid(alpha=0.3)
    _legend_if_any(ax, "small")
  _save(fig, os.path.join(out_dir, "train_loss.png"))

  fig, axes = _figure(sizes, f"{study_name}: speedup at equal quality over the baseline")
  bars = (("accuracy", "speedup_steps", "accuracy, steps"),
          ("accuracy", "speedup_time", "accuracy, training time"),
          ("loss", "speedup_steps", "loss, steps"),
          ("loss", "speedup_time", "loss, training time"))
  width = 0.8 / len(bars)
  for ax, size in zip(axes, sizes):
    runs = report.ordered([r for r in results if r.size == size])
    for j, (quality, attr, legend) in enumerate(bars):
      xs = [i + (j - (len(bars) - 1) / 2) * width for i in range(len(runs))]
      speedups = [getattr(r, f"by_{quality}") for r in runs]
      values = [getattr(sp, attr) or 0.0 if sp else 0.0 for sp in speedups]
      ax.bar(xs, values, width, label=f"at equal {legend}")
      for x, r, sp in zip(xs, runs, speedups):
        if sp is None or getattr(sp, attr) is None:  # no bar: say why
          ax.text(x, 0.02, report.speedup_text(r, quality, attr), rotation=90,
                  ha="center", va="bottom", fontsize="x-small")
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    labels = [report.method_label(r.variant, r.altup_k) for r in runs]
    ax.set_xticks(range(len(runs)), labels, rotation=30, ha="right")
    ax.set(title=f"T5 {size}", ylabel="baseline's cost / variant's cost")
    _legend_if_any(ax, "x-small")
  _save(fig, os.path.join(out_dir, "speedup.png"))
  return PLOTS
