"""A study's plots (matplotlib, written to files): held-out accuracy and loss against
steps and training time, training loss, the training speedup, and quality against
inference speed (the paper's figure). Curves are the mean over seeds with a shaded
95% interval; one panel per size, one line per method."""

from __future__ import annotations

import math
import os
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on a CI box or a TPU VM
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position

from altup_t5.studies import aggregate  # pylint: disable=g-import-not-at-top,wrong-import-position
from altup_t5.studies import report  # pylint: disable=g-import-not-at-top,wrong-import-position
from altup_t5.studies import stats  # pylint: disable=g-import-not-at-top,wrong-import-position
from altup_t5.studies.results import RunResult  # pylint: disable=g-import-not-at-top,wrong-import-position

# File name -> what it shows (the report's alt text).
PLOTS = {
    "accuracy_vs_steps.png": "held-out accuracy against training steps",
    "accuracy_vs_time.png": "held-out accuracy against training wall time",
    "eval_loss_vs_steps.png": "held-out loss against training steps",
    "train_loss.png": "training loss against steps",
    "training_speedup.png": "training speedup over the dense baseline",
    "quality_vs_speed.png": "quality against normalised inference speed (the paper's "
                            "figure)",
}


def _figure(panels: Sequence[str], title: str):
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5),
                           squeeze=False)
  fig.suptitle(title)
  return fig, axes[0]


def _save(fig, path: str) -> None:
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _legend_if_any(ax, fontsize: str) -> None:
  if ax.get_legend_handles_labels()[0]:  # a size whose runs have nothing to show yet
    ax.legend(fontsize=fontsize)


def _label(group: aggregate.Group) -> str:
  label = report.method_label(group.variant, group.altup_k)
  done = len(group.finished)
  return label if done == len(group.runs) else f"{label} ({group.statuses()})"


def mean_band(series: Sequence[dict[float, float]]):
  """Seeds' {x: y} curves -> (xs, mean, low, high) at the xs every seed has; the band
  is the 95% t interval (none from one seed)."""
  xs = sorted(set.intersection(*(set(s) for s in series))) if series else []
  mean, low, high = [], [], []
  for x in xs:
    interval = stats.mean_ci([s[x] for s in series])
    half = interval.half_width if math.isfinite(interval.half_width) else 0.0
    mean.append(interval.mean)
    low.append(interval.mean - half)
    high.append(interval.mean + half)
  return xs, np.array(mean), np.array(low), np.array(high)


def _draw(ax, series, label, scale=1.0, marker=".") -> None:
  xs, mean, low, high = mean_band(series)
  if not xs:
    return
  (line,) = ax.plot(xs, scale * mean, marker=marker, linewidth=1, label=label)
  if len(series) > 1:
    ax.fill_between(xs, scale * low, scale * high, color=line.get_color(), alpha=0.2,
                    linewidth=0)


def _zoom_past_the_first_drop(ax, curves) -> None:
  """Limit the y axis to what the curves do after the first tenth of training, so
  small differences late in training stay visible under the first steep drop."""
  last = max((x for c in curves for x in c), default=0)
  late = [v for c in curves for x, v in c.items() if x >= 0.1 * last and math.isfinite(v)]
  if late:
    low, high = min(late), max(late)
    margin = 0.05 * (high - low) or 0.01
    ax.set_ylim(low - margin, high + margin)


def _curve_plots(groups, sizes, out_dir: str, study_name: str) -> None:
  time_label = "training wall time (s, excluding evaluation and checkpoints)"
  for name, use_time, quality in (("accuracy_vs_steps.png", False, "accuracy"),
                                  ("accuracy_vs_time.png", True, "accuracy"),
                                  ("eval_loss_vs_steps.png", False, "loss")):
    scale = 100 if quality == "accuracy" else 1
    what = ("held-out span-prediction accuracy" if quality == "accuracy" else
            "held-out loss")
    fig, axes = _figure(sizes, f"{study_name}: {what} (mean over seeds, 95% band)")
    for ax, size in zip(axes, sizes):
      for g in [g for g in groups if g.size == size]:
        series = []
        for r in g.runs:
          if not r.evals:
            continue
          if use_time:  # seeds take different times: each curve keeps its own xs
            series.append({p.train_seconds: getattr(p, quality) for p in r.evals})
          else:
            series.append({p.step: getattr(p, quality) for p in r.evals})
        if use_time and len(series) > 1:  # mean time at each evaluation step
          steps = [{p.step: p for p in r.evals} for r in g.runs if r.evals]
          common = sorted(set.intersection(*(set(s) for s in steps)))
          series = [{float(np.mean([s[k].train_seconds for s in steps])):
                     getattr(s[k], quality) for k in common} for s in steps]
        _draw(ax, series, _label(g), scale)
      ylabel = "accuracy (%)" if quality == "accuracy" else "loss (cross-entropy per token)"
      ax.set(title=f"T5 {size}", xlabel=time_label if use_time else "training step",
             ylabel=ylabel)
      ax.grid(alpha=0.3)
      _legend_if_any(ax, "small")
    _save(fig, os.path.join(out_dir, name))

  fig, axes = _figure(sizes, f"{study_name}: training loss (mean over seeds)")
  for ax, size in zip(axes, sizes):
    curves = []
    for g in [g for g in groups if g.size == size]:
      series = [dict(zip(r.train_steps, r.train_loss)) for r in g.runs if r.train_loss]
      curves += series
      _draw(ax, series, _label(g), marker="")
    _zoom_past_the_first_drop(ax, curves)
    ax.set(title=f"T5 {size}", xlabel="training step",
           ylabel="training loss (cross-entropy per token)")
    ax.grid(alpha=0.3)
    _legend_if_any(ax, "small")
  _save(fig, os.path.join(out_dir, "train_loss.png"))


def _training_speedup_plot(groups, sizes, out_dir: str, study_name: str) -> None:
  fig, axes = _figure(sizes, f"{study_name}: training speedup over the baseline "
                      "(steps to its final quality; mean, 95% interval)")
  bars = (("accuracy", "speedup_steps", "at equal accuracy"),
          ("loss", "speedup_steps", "at equal loss"))
  width = 0.8 / len(bars)
  for ax, size in zip(axes, sizes):
    mine = [g for g in groups if g.size == size]
    for j, (quality, attr, legend) in enumerate(bars):
      xs = [i + (j - (len(bars) - 1) / 2) * width for i in range(len(mine))]
      means, errors = [], []
      for x, g in zip(xs, mine):
        values = [getattr(getattr(r, f"by_{quality}"), attr) for r in g.finished
                  if getattr(r, f"by_{quality}") is not None]
        reached = [v for v in values if v is not None]
        if reached:
          interval = stats.mean_ci(reached)
          means.append(interval.mean)
          errors.append(interval.half_width if math.isfinite(interval.half_width)
                        else 0.0)
        else:  # no bar: say why
          means.append(0.0)
          errors.append(0.0)
          ax.text(x, 0.02, report.NOT_REACHED if values else g.statuses(),
                  rotation=90, ha="center", va="bottom", fontsize="x-small")
      ax.bar(xs, means, width, yerr=errors, capsize=2, label=legend)
    ax.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(range(len(mine)),
                  [report.method_label(g.variant, g.altup_k) for g in mine],
                  rotation=30, ha="right")
    ax.set(title=f"T5 {size}", ylabel="dense's steps / variant's steps")
    _legend_if_any(ax, "x-small")
  _save(fig, os.path.join(out_dir, "training_speedup.png"))


def _quality_vs_speed_plot(results, out_dir: str, study_name: str) -> None:
  """The paper's figure: quality against speed normalised to the smallest dense
  model (log x), one line per method through its sizes, error bars over seeds."""
  panels = [("pretrain", "accuracy", 100, "held-out accuracy (%)"),
            ("pretrain", "loss", 1, "held-out loss")]
  if any(r.stage == "finetune" for r in results):
    panels.append(("finetune", "downstream", 1, "downstream quality"))
  fig, axes = _figure([p[1] for p in panels],
                      f"{study_name}: quality against inference speed")
  qualities = {**aggregate.PRETRAIN_QUALITIES, **aggregate.FINETUNE_QUALITIES}
  for ax, (stage, quality, scale, ylabel) in zip(axes, panels):
    groups = aggregate.group_runs(results, stage)
    norm = aggregate.speed_normaliser(groups)
    for variant in aggregate.METHODS:
      points = []
      for g in [g for g in groups if g.variant == variant]:
        speed, value = g.speed(), g.interval(qualities[quality][0])
        if speed is not None and value is not None and norm:
          half = value.half_width if math.isfinite(value.half_width) else 0.0
          points.append((speed.mean / norm, scale * value.mean, scale * half))
      if points:
        points.sort()
        k = next(g.altup_k for g in groups if g.variant == variant)
        ax.errorbar([p[0] for p in points], [p[1] for p in points],
                    yerr=[p[2] for p in points], marker="o", capsize=2,
                    label=report.method_label(variant, k))
    ax.set_xscale("log")
    unit = "scoring" if stage == "pretrain" else "decoding"
    ax.set(title=f"{quality} ({stage})",
           xlabel=f"{unit} speed (smallest dense model = 1, log scale)", ylabel=ylabel)
    ax.grid(alpha=0.3, which="both")
    _legend_if_any(ax, "x-small")
  _save(fig, os.path.join(out_dir, "quality_vs_speed.png"))


def plot_curves(results: Sequence[RunResult], out_dir: str, study_name: str
                ) -> dict[str, str]:
  """Write the PLOTS files to `out_dir`; returns PLOTS."""
  groups = aggregate.group_runs(results, "pretrain")
  sizes = list(dict.fromkeys(g.size for g in groups)) or ["(none)"]
  _curve_plots(groups, sizes, out_dir, study_name)
  _training_speedup_plot(groups, sizes, out_dir, study_name)
  _quality_vs_speed_plot(results, out_dir, study_name)
  return PLOTS
