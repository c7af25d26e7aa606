"""A study's report: the paper's table, cost and speedup tables and CSV files
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

from altup_t5.studies.results import FINISHED, NOT_RUN, RunResult

# The paper's rows, in its order ("recycled_altup" and "wide" are its "wider model"
# comparisons, "sequence_altup" its extension to the token axis).
METHODS = ("dense", "moe", "altup", "altup_moe", "recycled_altup", "wide", "sequence_altup")
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
  return sorted(results, key=lambda r: METHODS.index(r.variant))


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


def _cell(result: RunResult | None) -> str:
  if result is None:
    return "—"
  if result.status != FINISHED:
    return result.status
  return _pct(result.final.accuracy if result.final else None)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


# --------------------------------------------------------------------- tables
def accuracy_table(results: Sequence[RunResult]) -> str:
  """The paper's layout: methods down, sizes across, final held-out accuracy (%)."""
  sizes = sizes_of(results)
  by_key = {(r.variant, r.size): r for r in results}
  variants = [v for v in METHODS if any(r.variant == v for r in results)]
  k = {r.variant: r.altup_k for r in results}
  rows = [[method_label(v, k[v])] + [_cell(by_key.get((v, s))) for s in sizes]
          for v in variants]
  return _table(["method"] + [f"T5 {s.capitalize()}" for s in sizes], rows)


def accuracy_noise(results: Sequence[RunResult]) -> str:
  """How far apart two accuracies must be to mean anything: the binomial standard
  error over the held-out target tokens of one evaluation."""
  finals = [r.final for r in results if r.status == FINISHED and r.final]
  if not finals or not all(math.isfinite(p.num_tokens) for p in finals):
    return ""
  tokens = min(p.num_tokens for p in finals)
  accuracy = sum(p.accuracy for p in finals) / len(finals)
  error = 100 * math.sqrt(accuracy * (1 - accuracy) / max(tokens, 1))
  return (f"Each evaluation scores {tokens:,.0f} held-out target tokens: at "
          f"{100 * accuracy:.1f}% accuracy the binomial standard error is ±{error:.2f} "
          "points, so smaller differences between cells are noise.")


def cost_table(results: Sequence[RunResult]) -> str:
  header = ["size", "method", "status", "parameters", "XLA GFLOP / step",
            "median step (s)", "tokens/s", "XLA step memory (MiB)", "peak RSS (MiB)",
            "final accuracy (%)", "steps to baseline accuracy", "speedup (steps)",
            "speedup (train time)"]
  rows = []
  for size in sizes_of(results):
    for r in ordered([r for r in results if r.size == size]):
      rows.append([
          size, method_label(r.variant, r.altup_k), r.status,
          _num(r.parameters, ",.0f"), _num(r.xla_flops_per_step, ".1f", 1e9),
          _num(r.median_step_seconds, ".3f"), _num(r.tokens_per_second, ",.0f"),
          _num(r.xla_memory_bytes, ",.0f", 2**20), _num(r.peak_rss_bytes, ",.0f", 2**20),
          _pct(r.final.accuracy if r.final else None),
          speedup_text(r, "accuracy", "steps"),
          speedup_text(r, "accuracy", "speedup_steps"),
          speedup_text(r, "accuracy", "speedup_time")])
  return _table(header, rows)


def loss_table(results: Sequence[RunResult]) -> str:
  """Speedup at the baseline's final held-out loss: a small model's loss keeps
  improving while its accuracy sits on a plateau, so this separates variants early."""
  header = ["size", "method", "final eval loss", "steps to baseline loss",
            "speedup (steps)", "speedup (train time)"]
  rows = [[size, method_label(r.variant, r.altup_k),
           _num(r.final.loss if r.final else None, ".4f"),
           speedup_text(r, "loss", "steps"), speedup_text(r, "loss", "speedup_steps"),
           speedup_text(r, "loss", "speedup_time")]
          for size in sizes_of(results)
          for r in ordered([r for r in results if r.size == size])]
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
CSV_FIELDS = ("size", "variant", "method", "status", "error", "code_digest", "parameters",
              "xla_flops_per_step", "xla_memory_bytes", "peak_rss_bytes",
              "median_step_seconds", "tokens_per_second", "final_step",
              "final_accuracy", "final_eval_loss", "final_train_loss", "train_seconds",
              "wall_seconds", *(f"{q}_{k}" for q in ("accuracy", "loss") for k in (
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
    writer.writerow(["size", "variant", "kind", "step", "accuracy", "loss",
                     "train_seconds"])
    for r in results:
      for p in r.evals:
        writer.writerow([r.size, r.variant, "eval", p.step, p.accuracy, p.loss,
                         p.train_seconds])
      for step, loss in zip(r.train_steps, r.train_loss):
        writer.writerow([r.size, r.variant, "train", step, "", loss, ""])


# --------------------------------------------------------------------- report.md
DEFINITIONS = """\
- *Accuracy*: held-out span-prediction (token) accuracy, teacher-forced, on the task's
  validation split at the last step (the paper's pretraining quality). *Eval loss*
  and the training loss curves: cross-entropy per target token (without the z-loss
  or MoE's auxiliary losses), so variants compare directly.
- *XLA GFLOP / step*: XLA's cost analysis of one compiled train step (it also counts
  avoidable work such as a one-hot embedding matmul). *XLA step memory*: the compiled
  step's arguments plus temporaries. *Peak RSS*: the training process's peak resident
  memory (on an accelerator this is host memory, not device memory).
- *Median step* and *tokens/s*: medians over the logging windows after the first;
  tokens are the padded input and target lengths times the batch.
- *Speedup at equal quality*: the steps (training seconds) the baseline needs to first
  reach its own final accuracy, divided by the steps (seconds) the variant needs to
  first reach it, interpolated linearly between evaluations. "not reached": the
  variant never reached the baseline's final accuracy within the budget. "≥": the
  variant was already there at its first evaluation, so it may have been faster.
  The same at the baseline's final held-out loss (reached when the variant's loss is
  as low)."""


def _budget_line(study) -> str:
  b = study.budget
  lengths = ", ".join(f"{k} {v}" for k, v in study.feature_lengths.items())
  return (f"Task `{study.task}` ({lengths}); {b.train_steps:,} steps at batch "
          f"{b.batch_size}; evaluation every {b.eval_period} steps on {b.eval_steps} "
          "validation batches.")


def result_sections(study, results: Sequence[RunResult]) -> list[str]:
  """The tables that both report.md and REPRODUCTION.md show, headings included."""
  return [
      f"## Held-out span-prediction accuracy (%) after {study.budget.train_steps:,} steps",
      accuracy_table(results),
      accuracy_noise(results),
      "## Cost and speedup at equal quality",
      cost_table(results),
      "## Speedup at equal held-out loss",
      loss_table(results),
  ]


def write_report(study, results: Sequence[RunResult], out_dir: str,
                 commands: Sequence[str], plots: Mapping[str, str]) -> str:
  """report.md, results.csv and curves.csv in `out_dir`, linking to `plots` (file
  name -> what it shows) there; returns the report's text."""
  os.makedirs(out_dir, exist_ok=True)
  write_csv(results, os.path.join(out_dir, "results.csv"))
  write_curves_csv(results, os.path.join(out_dir, "curves.csv"))
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
  """Each method's gain over the baseline (accuracy points): ours per size, and the
  paper's at Small, Base and Large."""
  ours = {}
  for size in sizes_of(results):
    base = next((r for r in results if r.size == size and r.variant == "dense"
                 and r.status == FINISHED and r.final), None)
    for r in results:
      if r.size == size and base and r.status == FINISHED and r.final:
        ours[(r.variant, size)] = 100 * (r.final.accuracy - base.final.accuracy)
  sizes = sizes_of(results)
  paper_sizes = ("small", "base", "large")
  header = (["method"] + [f"ours, {s}" for s in sizes] +
            [f"paper, {s}" for s in paper_sizes])
  rows = []
  for v in [v for v in METHODS if any(r.variant == v for r in results)]:
    row = [method_label(v)]
    row += [_num(ours.get((v, s)), "+.2f") for s in sizes]
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
      "study's output directory):",
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
