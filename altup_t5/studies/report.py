"""A study's report: the paper's table with intervals over seeds, the paired
differences to dense, inference speed and the paper's speedup at equal quality, the
training speedup, the downstream (fine-tuning) table, per-run cost, CSV files
(`write_report`), and a docs/REPRODUCTION.md skeleton (`write_reproduction_doc`).
The plots they link to are drawn by `altup_t5.studies.plots`."""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import platform
import shutil
import time
from typing import Mapping, Sequence

from altup_t5.studies import aggregate
from altup_t5.studies import speedup as speedup_lib
from altup_t5.studies import stats
from altup_t5.studies.aggregate import METHODS, Group
from altup_t5.studies.results import FINISHED, NOT_RUN, RunResult
# Pretraining accuracy (%) on held-out C4 after 500k steps: the AltUp slides' table
# (DESIGN.md section 1). Recycled-AltUp and the 2x-wide model are not in it.
PAPER_ACCURACY = {
    "dense": {"small": 59.10, "base": 63.35, "large": 65.58},
    "moe": {"small": 59.42, "base": 63.62, "large": 65.71},
    "altup": {"small": 59.67, "base": 63.97, "large": 65.73},
    "altup_moe": {"small": 59.91, "base": 64.13, "large": 65.95},
}
NOT_REACHED = "not reached"


def method_label(variant: str, k: int = 2) -> str:
  return {"dense": "Baseline", "moe": "MoE", "altup": f"AltUp (K={k})",
          "altup_moe": f"AltUp (K={k}) + MoE", "recycled_altup": f"Recycled-AltUp (K={k})",
          "wide": f"{k}x wider", "sequence_altup": "Sequence-AltUp (stride 2)"}[variant]


def ordered(results: Sequence[RunResult]) -> list[RunResult]:
  return sorted(results, key=lambda r: (METHODS.index(r.variant), r.seed))


def sizes_of(results: Sequence[RunResult]) -> list[str]:
  return list(dict.fromkeys(r.size for r in results))


# --------------------------------------------------------------------- formatting
def _pct(accuracy: float | None) -> str:
  return "—" if accuracy is None else f"{100 * accuracy:.2f}"


def _num(value: float | None, fmt: str, scale: float = 1.0) -> str:
  if value is None or not math.isfinite(value):
    return "—"
  return format(value / scale, fmt)


def speedup_text(result: RunResult, quality: str, attr: str) -> str:
  """`attr` ("speedup_steps", "speedup_time" or "steps") of the run's speedup at the
  baseline's `quality` ("accuracy" or "loss"), or why there is none."""
  if result.status != FINISHED:
    return result.status
  speedup = getattr(result, f"by_{quality}")
  if speedup is None:
    return "no baseline"
  value = getattr(speedup, attr)
  if value is None:
    return NOT_REACHED
  if attr == "steps":
    return f"{value:,.1f}"
  return f"{'≥ ' if speedup.lower_bound else ''}{value:.2f}x"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


# --------------------------------------------------------------------- tables
def _interval_text(interval: stats.Interval | None, scale: float = 1.0,
                   fmt: str = ".2f") -> str:
  return "—" if interval is None else stats.format_interval(interval, fmt, scale)


def _difference_text(interval: stats.Interval | None, scale: float = 1.0,
                     fmt: str = "+.2f") -> str:
  """`+0.31 ± 0.12 *`: the star marks an interval that excludes zero."""
  if interval is None:
    return "—"
  text = format(scale * interval.mean, fmt)  # signed; the half width is not
  if math.isfinite(interval.half_width):
    text += f" ± {format(scale * interval.half_width, fmt.replace('+', ''))}"
  return text + (" *" if interval.significant else "")


def _group_cell(group: Group | None, getter, scale: float, fmt: str) -> str:
  if group is None:
    return "—"
  if not group.finished:
    return group.runs[0].status if len({r.status for r in group.runs}) == 1 else \
        group.statuses()
  return _interval_text(group.interval(getter), scale, fmt)


def quality_table(results: Sequence[RunResult], quality: str, scale: float = 1.0,
                  fmt: str = ".2f", stage: str = "pretrain") -> str:
  """The paper's layout: methods down, sizes across; mean ± 95% interval over seeds."""
  groups = aggregate.group_runs(results, stage)
  sizes = list(dict.fromkeys(g.size for g in groups))
  getter = {**aggregate.PRETRAIN_QUALITIES, **aggregate.FINETUNE_QUALITIES}[quality][0]
  by_key = {(g.variant, g.size): g for g in groups}
  variants = [v for v in METHODS if any(g.variant == v for g in groups)]
  k = {g.variant: g.altup_k for g in groups}
  rows = [[method_label(v, k[v])] +
          [_group_cell(by_key.get((v, s)), getter, scale, fmt) for s in sizes]
          for v in variants]
  return _table(["method"] + [f"T5 {s.capitalize()}" for s in sizes], rows)


def accuracy_table(results: Sequence[RunResult]) -> str:
  """Held-out span-prediction accuracy (%), mean ± 95% interval over seeds."""
  return quality_table(results, "accuracy", 100)


def seeds_line(results: Sequence[RunResult]) -> str:
  seeds = sorted({r.seed for r in results})
  return (f"Mean ± half width of the 95% Student-t interval over {len(seeds)} seed(s) "
          f"({', '.join(map(str, seeds))}); a single seed gives no interval. "
          "\"*\": the paired difference's interval excludes zero.")


def floor_table(results: Sequence[RunResult]) -> str:
  """Accuracy on the targets that are not sentinels or EOS, and those tokens' share
  (the floor a model reaches by predicting only them)."""
  groups = aggregate.group_runs(results, "pretrain")
  getters = aggregate.PRETRAIN_QUALITIES
  rows = []
  for g in groups:
    acc, floor = g.interval(getters["accuracy"][0]), g.interval(getters["trivial_floor"][0])
    above = g.interval(lambda r: (r.final.accuracy - r.final.trivial_floor)
                       if r.final else None)
    rows.append([g.size, method_label(g.variant, g.altup_k),
                 _interval_text(acc, 100), _interval_text(floor, 100),
                 _interval_text(above, 100),
                 _interval_text(g.interval(getters["nonsentinel_accuracy"][0]), 100),
                 _interval_text(g.interval(getters["loss"][0]), fmt=".4f")])
  return _table(["size", "method", "accuracy (%)", "trivial floor (%)",
                 "accuracy above the floor (points)", "non-sentinel accuracy (%)",
                 "held-out loss"], rows)


def difference_table(results: Sequence[RunResult]) -> str:
  """Each variant minus dense at its size, seed by seed."""
  groups = aggregate.group_runs(results, "pretrain")
  q = aggregate.PRETRAIN_QUALITIES
  rows = []
  for g in groups:
    dense = aggregate.dense_of(groups, g.size)
    if g.variant == "dense":
      continue
    rows.append([g.size, method_label(g.variant, g.altup_k),
                 _difference_text(aggregate.paired(g, dense, q["accuracy"][0]), 100),
                 _difference_text(aggregate.paired(g, dense, q["loss"][0]), fmt="+.4f"),
                 _difference_text(aggregate.paired(g, dense,
                                                   q["nonsentinel_accuracy"][0]), 100)])
  return _table(["size", "method", "Δ accuracy (points)", "Δ held-out loss",
                 "Δ non-sentinel accuracy (points)"], rows)


def _speedup_cell(value) -> str:
  if value is None:
    return "—"
  if isinstance(value, str):
    return value
  return f"{100 * value:+.0f}%"


def speed_table(results: Sequence[RunResult], stage: str = "pretrain") -> str:
  """Inference speed per group and the paper's speedup at equal quality."""
  groups = aggregate.group_runs(results, stage)
  norm = aggregate.speed_normaliser(groups)
  unit = "scoring examples/s" if stage == "pretrain" else "decoding tokens/s"
  qualities = ((("accuracy", "loss") if stage == "pretrain" else ("downstream",)))
  table = {**aggregate.PRETRAIN_QUALITIES, **aggregate.FINETUNE_QUALITIES}
  rows = []
  for g in groups:
    speed = g.speed()
    errors = sorted({r.timing_error for r in g.finished if r.timing_error})
    row = [g.size, method_label(g.variant, g.altup_k),
           _interval_text(speed, fmt=",.1f") if speed else
           ("timing failed" if errors else "—"),
           _num(speed.mean / norm if speed and norm else None, ".3f")]
    for quality in qualities:
      getter, higher = table[quality]
      row.append(_speedup_cell(aggregate.paper_speedup(groups, g, getter, higher)))
    rows.append(row)
  header = ["size", "method", unit, "speed (smallest dense = 1)"]
  header += [f"speedup at equal {q} (paper)" for q in qualities]
  return _table(header, rows)


def training_speedup_table(results: Sequence[RunResult]) -> str:
  """The project's *training speedup*: the baseline's steps (seconds) to its final
  quality over the variant's, per seed, then averaged over the seeds that reached it."""
  groups = aggregate.group_runs(results, "pretrain")
  rows = []
  for g in groups:
    row = [g.size, method_label(g.variant, g.altup_k)]
    for quality in ("accuracy", "loss"):
      for attr in ("speedup_steps", "speedup_time"):
        speedups = [getattr(r, f"by_{quality}") for r in g.finished
                    if getattr(r, f"by_{quality}") is not None]
        values = [getattr(sp, attr) for sp in speedups]
        reached = [v for v in values if v is not None]
        if not g.finished:
          row.append(g.statuses())
        elif not reached:
          row.append(NOT_REACHED if values else "no baseline")
        else:
          # "≥": a seed already past the target at its first evaluation.
          bound = "≥ " if any(sp.lower_bound for sp in speedups) else ""
          text = bound + stats.format_interval(stats.mean_ci(reached), ".2f") + "x"
          row.append(text if len(reached) == len(values) else
                     f"{text} ({len(values) - len(reached)} of {len(values)} seeds "
                     f"{NOT_REACHED})")
    rows.append(row)
  return _table(["size", "method", "at equal accuracy (steps)",
                 "at equal accuracy (train time)", "at equal loss (steps)",
                 "at equal loss (train time)"], rows)


def downstream_difference_table(results: Sequence[RunResult]) -> str:
  groups = aggregate.group_runs(results, "finetune")
  getter = aggregate.FINETUNE_QUALITIES["downstream"][0]
  rows = [[g.size, method_label(g.variant, g.altup_k),
           _difference_text(aggregate.paired(g, aggregate.dense_of(groups, g.size),
                                             getter))]
          for g in groups if g.variant != "dense"]
  return _table(["size", "method", "Δ downstream quality"], rows)


def downstream_metrics_table(results: Sequence[RunResult]) -> str:
  """Every metric of the fine-tuned models' last inference evaluation, mean ± CI."""
  groups = aggregate.group_runs(results, "finetune")
  names = sorted({n for g in groups for r in g.finished for n in r.infer_metrics})
  rows = [[g.size, method_label(g.variant, g.altup_k)] +
          [_interval_text(g.interval(lambda r, n=n: r.infer_metrics.get(n)))
           for n in names] for g in groups]
  return _table(["size", "method", *names], rows)


def accuracy_noise(results: Sequence[RunResult]) -> str:
  """How far apart two accuracies must be to mean anything: the binomial standard
  error over the held-out target tokens of one evaluation."""
  finals = [r.final for r in results if r.status == FINISHED and r.final
            and r.stage == "pretrain"]
  if not finals or not all(math.isfinite(p.num_tokens) for p in finals):
    return ""
  tokens = min(p.num_tokens for p in finals)
  accuracy = sum(p.accuracy for p in finals) / len(finals)
  error = 100 * math.sqrt(accuracy * (1 - accuracy) / max(tokens, 1))
  return (f"Each evaluation scores {tokens:,.0f} held-out target tokens: at "
          f"{100 * accuracy:.1f}% accuracy the binomial standard error of one run's "
          f"accuracy is ±{error:.2f} points.")


def cost_table(results: Sequence[RunResult]) -> str:
  """One row per run: what it cost and its own numbers."""
  header = ["run", "status", "parameters", "XLA GFLOP / step", "median step (s)",
            "tokens/s", "XLA step memory (MiB)", "peak RSS (MiB)", "final accuracy (%)",
            "final eval loss", "scoring examples/s", "decoding tokens/s",
            "downstream quality"]
  rows = []
  for stage in ("pretrain", "finetune"):
    for size in sizes_of(results):
      for r in ordered([r for r in results if r.size == size and r.stage == stage]):
        rows.append([
            f"`{r.name}`", r.status, _num(r.parameters, ",.0f"),
            _num(r.xla_flops_per_step, ".1f", 1e9), _num(r.median_step_seconds, ".3f"),
            _num(r.tokens_per_second, ",.0f"), _num(r.xla_memory_bytes, ",.0f", 2**20),
            _num(r.peak_rss_bytes, ",.0f", 2**20),
            _pct(r.final.accuracy if r.final else None),
            _num(r.final.loss if r.final else None, ".4f"),
            _num(r.score_examples_per_second, ",.1f") if not r.timing_error
            else "timing failed",
            _num(r.decode_tokens_per_second, ",.1f"), _num(r.downstream, ".4f")])
  return _table(header, rows)


def code_versions(results: Sequence[RunResult]) -> str:
  """A warning when the runs trained with different library sources."""
  digests = {}
  for r in results:
    if r.code_digest:
      digests.setdefault(r.code_digest, []).append(r.name)
  if len(digests) < 2:
    return ""
  groups = "; ".join(f"{d}: {', '.join(names)}" for d, names in digests.items())
  return (f"**Warning:** the runs trained with {len(digests)} different versions of the "
          f"altup_t5 sources ({groups}); their results and timings may not compare.")


def failures(results: Sequence[RunResult]) -> str:
  lines = [f"- `{r.name}` ({r.status}): {r.error or 'no error message'}"
           for r in results if r.status not in (FINISHED, NOT_RUN)]
  return "\n".join(lines)


# --------------------------------------------------------------------- CSV
CSV_FIELDS = ("size", "variant", "seed", "stage", "method", "status", "error",
              "code_digest", "parameters", "xla_flops_per_step", "xla_memory_bytes",
              "peak_rss_bytes", "median_step_seconds", "tokens_per_second", "final_step",
              "final_accuracy", "final_nonsentinel_accuracy", "final_trivial_floor",
              "final_eval_loss", "final_train_loss", "train_seconds", "wall_seconds",
              "downstream", "score_examples_per_second", "decode_tokens_per_second",
              "timing_error", *(f"{q}_{k}" for q in ("accuracy", "loss") for k in (
                  "target", "steps_to_target", "seconds_to_target", "speedup_steps",
                  "speedup_time", "speedup_is_lower_bound")), "model_dir")


def _row(r: RunResult) -> dict:
  final = r.final
  row = {f.name: getattr(r, f.name) for f in dataclasses.fields(r)
         if f.name in CSV_FIELDS}
  row.update(
      method=method_label(r.variant, r.altup_k),
      final_step=final.step if final else None,
      final_accuracy=final.accuracy if final else None,
      final_nonsentinel_accuracy=final.nonsentinel_accuracy if final else None,
      final_trivial_floor=final.trivial_floor if final else None,
      final_eval_loss=final.loss if final else None,
      final_train_loss=r.train_loss[-1] if r.train_loss else None,
      train_seconds=final.train_seconds if final else None)
  for quality in ("accuracy", "loss"):
    speedup = getattr(r, f"by_{quality}")
    if speedup is None:
      continue
    values = {"target": speedup.target, "steps_to_target": speedup.steps,
              "seconds_to_target": speedup.seconds,
              "speedup_steps": speedup.speedup_steps,
              "speedup_time": speedup.speedup_time,
              "speedup_is_lower_bound": speedup.lower_bound}
    for key, value in values.items():
      # A run that never reached the baseline's quality says so in words.
      row[f"{quality}_{key}"] = NOT_REACHED if value is None else value
  return {k: "" if row.get(k) is None else row[k] for k in CSV_FIELDS}


def write_csv(results: Sequence[RunResult], path: str) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
    writer.writeheader()
    for r in results:
      writer.writerow(_row(r))


def write_curves_csv(results: Sequence[RunResult], path: str) -> None:
  """Every evaluation point and training-loss record, one row each."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(["size", "variant", "seed", "stage", "kind", "step", "accuracy",
                     "loss", "nonsentinel_accuracy", "train_seconds"])
    for r in results:
      for p in r.evals:
        writer.writerow([r.size, r.variant, r.seed, r.stage, "eval", p.step, p.accuracy,
                         p.loss, p.nonsentinel_accuracy, p.train_seconds])
      for step, loss in zip(r.train_steps, r.train_loss):
        writer.writerow([r.size, r.variant, r.seed, r.stage, "train", step, "", loss,
                         "", ""])


GROUP_FIELDS = ("stage", "size", "variant", "method", "seeds", "finished", "quality",
                "mean", "ci95_half_width", "low", "high", "diff_to_dense_mean",
                "diff_ci95_half_width", "diff_significant", "speed_mean",
                "speed_ci95_half_width", "paper_speedup")


def write_groups_csv(results: Sequence[RunResult], path: str) -> None:
  """One row per (stage, size, variant, quality): the interval over seeds, the
  paired difference to dense and the paper's speedup at equal quality."""
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.DictWriter(f, fieldnames=GROUP_FIELDS)
    writer.writeheader()
    for stage, qualities in (("pretrain", aggregate.PRETRAIN_QUALITIES),
                             ("finetune", aggregate.FINETUNE_QUALITIES)):
      groups = aggregate.group_runs(results, stage)
      for g in groups:
        speed = g.speed()
        for name, (getter, higher) in qualities.items():
          interval = g.interval(getter)
          diff = aggregate.paired(g, aggregate.dense_of(groups, g.size), getter)
          paper = aggregate.paper_speedup(groups, g, getter, higher)
          row = {"stage": stage, "size": g.size, "variant": g.variant,
                 "method": method_label(g.variant, g.altup_k), "seeds": len(g.runs),
                 "finished": len(g.finished), "quality": name,
                 "mean": interval and interval.mean,
                 "ci95_half_width": interval and interval.half_width,
                 "low": interval and interval.low, "high": interval and interval.high,
                 "diff_to_dense_mean": diff and diff.mean,
                 "diff_ci95_half_width": diff and diff.half_width,
                 "diff_significant": diff and diff.significant,
                 "speed_mean": speed and speed.mean,
                 "speed_ci95_half_width": speed and speed.half_width,
                 "paper_speedup": paper}
          writer.writerow({k: "" if v is None else v for k, v in row.items()})


# --------------------------------------------------------------------- report.md
DEFINITIONS = """\
- *Accuracy*: held-out span-prediction (token) accuracy, teacher-forced, on the task's
  validation split at the last step (the paper's pretraining quality). *Held-out
  loss* and the training loss curves: cross-entropy per target token (without the
  z-loss or MoE's auxiliary losses), so variants compare directly.
- *Trivial floor*: the share of held-out target tokens that are sentinels or EOS,
  which span corruption makes predictable without a language model; a model that
  gets only those right scores the floor. *Non-sentinel accuracy*: the accuracy on
  the other target tokens.
- *Intervals*: mean ± half width of the two-sided 95% Student-t interval over seeds
  (n - 1 degrees of freedom). *Δ* columns: the variant minus dense, seed by seed (the
  same seed gives both the same data order), with the t interval of those
  differences; "*" marks an interval that excludes zero.
- *Speedup at equal quality (paper)*: the AltUp paper's measure. Each method is
  trained at several sizes; the dense runs' (mean inference speed, mean quality)
  points over the sizes form the reference curve, interpolated linearly in log speed
  between adjacent sizes (dominated dense points dropped). At a variant's mean
  quality the curve gives the speed a dense model of that quality would have, and
  speedup = variant's speed / that speed - 1 (equivalently dense latency / variant
  latency - 1). A variant better than the best dense size or worse than the worst is
  "beyond the baseline's range". Speed: teacher-forced scoring examples/s at the
  evaluation shape for pretraining, greedy decoding tokens/s at the task's target
  length for fine-tuned models, measured after training in one process with all
  runs interleaved (studies/timing.py).
- *Training speedup* (this project's measure, not the paper's): the steps (training
  seconds) dense needs to first reach its own final quality over the steps (seconds)
  the variant of the same seed needs to first reach it, interpolated linearly between
  evaluations, then averaged over the seeds that reached it. "not reached": never
  within the budget. It says how fast a variant learns, not how fast it runs.
- *Downstream quality*: the mean of the chosen metrics of a fine-tuned model's last
  inference evaluation (decoded outputs, the task's own postprocessor and metrics).
- *XLA GFLOP / step*: XLA's cost analysis of one compiled train step. *XLA step
  memory*: the compiled step's arguments plus temporaries. *Peak RSS*: the training
  process's peak resident memory. *Median step* and *tokens/s*: medians over the
  logging windows after the first."""


def _budget_line(study) -> str:
  b = study.budget
  lengths = ", ".join(f"{k} {v}" for k, v in study.feature_lengths.items())
  return (f"Task `{study.task}` ({lengths}); {b.train_steps:,} steps at batch "
          f"{b.batch_size}; evaluation every {b.eval_period} steps on {b.eval_steps} "
          "validation batches.")


def result_sections(study, results: Sequence[RunResult]) -> list[str]:
  """The tables that both report.md and REPRODUCTION.md show, headings included."""
  steps = study.budget.train_steps
  sections = [
      f"## Held-out span-prediction accuracy (%) after {steps:,} steps",
      seeds_line(results),
      accuracy_table(results),
      accuracy_noise(results),
      "## Held-out loss",
      quality_table(results, "loss", fmt=".4f"),
      "## Above the trivial floor",
      floor_table(results),
      "## Difference to dense, paired by seed",
      difference_table(results),
      "## Inference speed and the paper's speedup at equal quality (pretraining)",
      speed_table(results, "pretrain"),
      "## Training speedup (steps or seconds to dense's final quality)",
      training_speedup_table(results),
  ]
  if study.finetune is not None:
    f = study.finetune
    metrics = ", ".join(f"`{m}`" for m in f.metrics) or "every metric, averaged"
    sections += [
        f"## Fine-tuned on `{f.task}` ({f.train_steps:,} steps at batch "
        f"{f.batch_size}): downstream quality ({metrics})",
        quality_table(results, "downstream", fmt=".4f", stage="finetune"),
        downstream_difference_table(results),
        "### Every metric of the last inference evaluation",
        downstream_metrics_table(results),
        "## Inference speed and the paper's speedup at equal quality (fine-tuned)",
        speed_table(results, "finetune"),
    ]
  sections += ["## Every run", cost_table(results)]
  return sections


def write_report(study, results: Sequence[RunResult], out_dir: str,
                 commands: Sequence[str], plots: Mapping[str, str]) -> str:
  """report.md, results.csv and curves.csv in `out_dir`, linking to `plots` (file
  name -> what it shows) there; returns the report's text."""
  os.makedirs(out_dir, exist_ok=True)
  write_csv(results, os.path.join(out_dir, "results.csv"))
  write_curves_csv(results, os.path.join(out_dir, "curves.csv"))
  write_groups_csv(results, os.path.join(out_dir, "groups.csv"))
  failed = failures(results)
  text = "\n\n".join(filter(None, [
      f"# Study `{study.name}`",
      study.description.strip(),
      _budget_line(study),
      code_versions(results),
      *result_sections(study, results),
      failed and "## Runs that did not finish\n\n" + failed,
      "## Plots",
      "\n".join(f"![{what}]({name})" for name, what in plots.items()),
      "## Definitions",
      DEFINITIONS,
      "## Commands",
      "```bash\n" + "\n".join(commands) + "\n```",
      f"_Written {time.strftime('%Y-%m-%d %H:%M')} from the run directories in "
      f"`{out_dir}`._",
  ])) + "\n"
  with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
    f.write(text)
  return text


# --------------------------------------------------------------------- REPRODUCTION.md
TODO = "**TODO(lead):** {}"  # visible when rendered, easy to grep


def paper_comparison(results: Sequence[RunResult]) -> str:
  """Each method's gain over the baseline (accuracy points): ours per size (the
  paired difference over seeds), and the paper's at Small, Base and Large."""
  groups = aggregate.group_runs(results, "pretrain")
  getter = aggregate.PRETRAIN_QUALITIES["accuracy"][0]
  sizes = list(dict.fromkeys(g.size for g in groups))
  ours = {(g.variant, g.size): aggregate.paired(g, aggregate.dense_of(groups, g.size),
                                                getter) for g in groups}
  paper_sizes = ("small", "base", "large")
  header = (["method"] + [f"ours, {s}" for s in sizes] +
            [f"paper, {s}" for s in paper_sizes])
  rows = []
  for v in [v for v in METHODS if any(g.variant == v for g in groups)]:
    row = [method_label(v)]
    row += [("0" if v == "dense" else _difference_text(ours.get((v, s)), 100))
            for s in sizes]
    paper = PAPER_ACCURACY.get(v)
    row += [_num(paper[s] - PAPER_ACCURACY["dense"][s], "+.2f") if paper else "—"
            for s in paper_sizes]
    rows.append(row)
  return _table(header, rows)


def write_reproduction_doc(study, results: Sequence[RunResult], out_dir: str,
                           doc_path: str, commands: Sequence[str],
                           plots: Mapping[str, str], study_command: str,
                           doc_command: str) -> str:
  """A REPRODUCTION.md skeleton: tables, plots (copied next to the doc, under a
  folder named after the study), commands, and a paper comparison whose prose is
  left to a person (marked TODO). Returns the text."""
  doc_dir = os.path.dirname(os.path.abspath(doc_path))
  figures = os.path.join(doc_dir, study.name)
  os.makedirs(figures, exist_ok=True)
  for name in plots:
    source = os.path.join(out_dir, name)
    if os.path.exists(source):
      shutil.copyfile(source, os.path.join(figures, name))
  total = sum(r.wall_seconds or 0.0 for r in results)
  finished = sum(r.status == FINISHED for r in results)
  devices = sorted({d for r in results for d in r.devices})
  machine = (f"This page was written on {platform.platform()} with {os.cpu_count()} CPU "
             f"cores; the runs used JAX device(s) {', '.join(devices) or 'unknown'}.")
  text = "\n\n".join(filter(None, [
      "# Reproducing AltUp's T5 pretraining comparison",
      TODO.format("one paragraph: what was run, on what machine, and the headline."),
      f"## The study: `{study.path}`",
      study.description.strip(),
      _budget_line(study),
      f"{finished} of {len(results)} runs finished; the runs took {total / 60:.1f} "
      "minutes of wall time in total (the last attempt of each, evaluation and "
      "start-up included). " + machine,
      code_versions(results),
      "## Commands",
      "The study (it skips finished runs and resumes interrupted ones, so the same "
      "command continues it), then this page's skeleton from its results:",
      "```bash\n" + study_command + "\n" + doc_command + "\n```",
      "Each run is one training job; `compare` ran these (MODEL_DIR under the "
      "study's output directory)" + (
          f" for seed {study.seeds[0]}; the other seeds' commands differ only in "
          "RANDOM_SEED and MODEL_DIR (OUT/report.md lists every run's):"
          if len(study.seeds) > 1 else ":"),
      "```bash\n" + "\n".join(commands) + "\n```",
      *result_sections(study, results),
      failures(results) and "Runs that did not finish:\n\n" + failures(results),
      "## Plots",
      "\n\n".join(f"![{what}]({study.name}/{name})" for name, what in plots.items()),
      "## Comparison with the paper",
      "Gain over the baseline in accuracy points (ours at our sizes; the paper's "
      "from its pretraining table at 500k steps on C4):",
      paper_comparison(results),
      TODO.format("what reproduced (ordering of methods, sign and size of gains, "
                  "speedup at equal quality) and what did not."),
      TODO.format("why our numbers differ: scale (model, data, steps), the offline "
                  "corpus instead of C4, a single seed, CPU timing."),
      "## Definitions",
      DEFINITIONS,
  ])) + "\n"
  with open(doc_path, "w", encoding="utf-8") as f:
    f.write(text)
  return text
