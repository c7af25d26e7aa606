"""Studies: which runs go side by side (sizes x variants), on what task and budget.

A study is a TOML file in `configs/` (comments allowed, no new dependency):

  [study]      sizes = ["small", "base"], variants = ["dense", "altup"], description,
               seeds = [0, 1, 2] (default [0]; every (size, variant, seed) is one run),
               exclude = ["large_wide"] (runs of the grid not to train; never a dense
               run that a variant of its size needs)
  [task]       name, feature_lengths = {inputs = .., targets = ..}, vocabulary (optional)
  [budget]     train_steps, batch_size, checkpoint_period, log_period
  [evaluation] period, steps  (held-out teacher-forced accuracy on the task's validation split)
  [finetune]   optional: task, feature_lengths, train_steps, batch_size, eval_period,
               infer_examples, metrics (["task/metric", ...], averaged into the
               downstream quality; default every metric of the final inference
               evaluation), bindings (a table of gin bindings for the fine-tuning runs)
  [gin]        files = [...]  extra gin files after the size, variant and run files;
               [gin.bindings], [gin.by_size.<size>], [gin.by_variant.<variant>],
               [gin.by_run.<size>_<variant>]: `NAME = value` bindings, applied in that
               order (the most specific last, so it wins). Strings become gin
               strings unless they are references (`@name()`, `%MACRO`); quote
               dotted names: "trainer.OptimizerSettings.warmup_steps" = 100.

`dense` must be one of the variants: every speedup is measured against it. The
macros the study's own tables set (STUDY_MACROS) cannot be rebound in [gin].

Run directories are OUT/<size>_<variant>_seed<seed> (pretraining) and, with a
[finetune] table, OUT/<size>_<variant>_seed<seed>_finetune, which starts from the
pretraining run's last checkpoint. A fine-tuning run gets the study's gin files and its
[gin.by_size], [gin.by_variant] and [gin.by_run] bindings (they shape the network),
not [gin.bindings] (pretraining's hyperparameters), then [finetune] bindings.

`load_study` checks everything it can without importing the model or the data, and
raises `StudyError` (a one-line ValueError naming the problem and the allowed values).
Each `Run` knows its MODEL_DIR and the exact `python -m altup_t5.train` flags; the
task name and gin bindings are checked by `compare`, the entry point, before any run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from typing import Any, Mapping

from altup_t5.model import config as config_lib

VARIANTS = tuple(v.value for v in config_lib.Variant)
SIZES = tuple(config_lib.SIZES)
RUN_GIN_FILE = "runs/pretrain.gin"
FINETUNE_GIN_FILE = "runs/finetune.gin"
PRETRAIN, FINETUNE = "pretrain", "finetune"

# Macros a study sets from its own tables: every run of a study must share them, so
# `[gin.*]` bindings may not override them.
STUDY_MACROS = ("MODEL_DIR", "MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS",
                "TRAIN_STEPS", "BATCH_SIZE", "EVAL_PERIOD", "EVAL_STEPS",
                "CHECKPOINT_PERIOD", "LOG_PERIOD", "RANDOM_SEED", "VOCABULARY",
                "INITIAL_CHECKPOINT_PATH")

_TABLES = {  # table -> (required keys, optional keys)
    "study": (("sizes", "variants"), ("name", "description", "seeds", "exclude")),
    "task": (("name", "feature_lengths"), ("vocabulary",)),
    "budget": (("train_steps", "batch_size"),
               ("checkpoint_period", "log_period", "random_seed")),
    "evaluation": (("period", "steps"), ()),
    "gin": ((), ("files", "bindings", "by_size", "by_variant", "by_run")),
    "finetune": (("task", "feature_lengths", "train_steps", "batch_size"),
                 ("eval_period", "infer_examples", "metrics", "bindings")),
}
OPTIONAL_TABLES = ("gin", "finetune")


class StudyError(ValueError):
  """A study file that cannot run as written (found before any run starts)."""


@dataclasses.dataclass(frozen=True)
class Budget:
  train_steps: int  # every run trains exactly this many steps
  batch_size: int
  eval_period: int  # steps between held-out evaluations (and one at the end)
  eval_steps: int  # batches per evaluation
  checkpoint_period: int  # steps between checkpoints: what an interrupted run loses
  log_period: int  # steps between training summaries (the loss curve's resolution)


@dataclasses.dataclass(frozen=True)
class Finetune:
  """The fine-tuning stage: every pretraining run fine-tuned on one task or mixture."""
  task: str
  feature_lengths: Mapping[str, int]
  train_steps: int
  batch_size: int
  eval_period: int  # steps between inference evaluations (and one at the end)
  infer_examples: int | None  # per task; None: the whole validation split
  metrics: tuple[str, ...]  # "task/metric" names averaged; () = all of them
  bindings: Mapping[str, Any]


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a study: a (size, variant, seed) pretraining or fine-tuning."""
  size: str
  variant: str
  seed: int
  stage: str  # PRETRAIN or FINETUNE
  task: str  # what it trains on and evaluates
  train_steps: int
  model_dir: str
  gin_files: tuple[str, ...]
  bindings: tuple[tuple[str, str], ...]  # (NAME, gin value text), in order

  @property
  def group(self) -> str:
    """The (size, variant) the seeds of which are averaged: `<size>_<variant>`."""
    return f"{self.size}_{self.variant}"

  @property
  def name(self) -> str:
    suffix = "_finetune" if self.stage == FINETUNE else ""
    return f"{self.group}_seed{self.seed}{suffix}"

  def flags(self) -> list[str]:
    """The `python -m altup_t5.train` flags of this run."""
    return ([f"--gin_file={f}" for f in self.gin_files] +
            [f"--gin.{name}={value}" for name, value in self.bindings])


@dataclasses.dataclass(frozen=True)
class Study:
  name: str
  path: str
  description: str
  sizes: tuple[str, ...]
  variants: tuple[str, ...]
  seeds: tuple[int, ...]
  exclude: tuple[str, ...]  # `<size>_<variant>` groups not trained
  task: str
  feature_lengths: Mapping[str, int]
  vocabulary: str | None
  budget: Budget
  finetune: Finetune | None
  gin_files: tuple[str, ...]
  bindings: Mapping[str, Any]
  by_size: Mapping[str, Mapping[str, Any]]
  by_variant: Mapping[str, Mapping[str, Any]]
  by_run: Mapping[str, Mapping[str, Any]]

  def groups(self) -> list[tuple[str, str]]:
    """(size, variant) pairs the study trains, size-major, in the study's order."""
    return [(size, variant) for size in self.sizes for variant in self.variants
            if f"{size}_{variant}" not in self.exclude]

  def runs(self, out_dir: str, *, sizes=None, variants=None,
           stage: str = PRETRAIN) -> list[Run]:
    """The study's runs of `stage`, size-major then variant then seed, each with
    MODEL_DIR `out_dir/<name>`; optionally only some sizes or variants."""
    if stage == FINETUNE and self.finetune is None:
      return []
    make = self.run if stage == PRETRAIN else self.finetune_run
    return [make(size, variant, seed, out_dir)
            for size, variant in self.groups()
            if (sizes is None or size in sizes) and
            (variants is None or variant in variants)
            for seed in self.seeds]

  def all_runs(self, out_dir: str, **selection) -> list[Run]:
    """Pretraining runs, then fine-tuning runs (each needs its pretraining run)."""
    return (self.runs(out_dir, **selection) +
            self.runs(out_dir, stage=FINETUNE, **selection))

  def _files(self, size: str, variant: str, run_file: str) -> tuple[str, ...]:
    return (f"models/t5_1_1/{size}.gin", f"models/{variant}.gin", run_file,
            *self.gin_files)

  def _shape_bindings(self, size: str, variant: str) -> list[tuple[str, str]]:
    """[gin.by_size], [gin.by_variant], [gin.by_run]: the most specific last."""
    out = []
    for extra in (self.by_size.get(size, {}), self.by_variant.get(variant, {}),
                  self.by_run.get(f"{size}_{variant}", {})):
      out += [(k, gin_value(v)) for k, v in extra.items()]
    return out

  def run(self, size: str, variant: str, seed: int, out_dir: str) -> Run:
    b = self.budget
    name = f"{size}_{variant}_seed{seed}"
    model_dir = os.path.join(out_dir, name)
    macros = {
        "MODEL_DIR": model_dir,
        "MIXTURE_OR_TASK_NAME": self.task,
        "TASK_FEATURE_LENGTHS": dict(self.feature_lengths),
        "TRAIN_STEPS": b.train_steps,
        "BATCH_SIZE": b.batch_size,
        "EVAL_PERIOD": b.eval_period,
        "EVAL_STEPS": b.eval_steps,
        "CHECKPOINT_PERIOD": b.checkpoint_period,
        "LOG_PERIOD": b.log_period,
        "RANDOM_SEED": seed,
    }
    if self.vocabulary is not None:
      macros["VOCABULARY"] = self.vocabulary
    bindings = [(k, gin_value(v)) for k, v in macros.items()]
    bindings += [(k, gin_value(v)) for k, v in self.bindings.items()]
    bindings += self._shape_bindings(size, variant)
    return Run(size, variant, seed, PRETRAIN, self.task, b.train_steps, model_dir,
               self._files(size, variant, RUN_GIN_FILE), tuple(bindings))

  def finetune_run(self, size: str, variant: str, seed: int, out_dir: str) -> Run:
    f, pretrain = self.finetune, self.run(size, variant, seed, out_dir)
    model_dir = pretrain.model_dir + "_finetune"
    macros = {
        "MODEL_DIR": model_dir,
        "INITIAL_CHECKPOINT_PATH": os.path.join(pretrain.model_dir, "checkpoints"),
        "MIXTURE_OR_TASK_NAME": f.task,
        "TASK_FEATURE_LENGTHS": dict(f.feature_lengths),
        "TRAIN_STEPS": f.train_steps,
        "BATCH_SIZE": f.batch_size,
        "EVAL_PERIOD": f.eval_period,
        "CHECKPOINT_PERIOD": f.train_steps,
        "LOG_PERIOD": self.budget.log_period,
        "RANDOM_SEED": seed,
        "INFER_EXAMPLES": f.infer_examples,
    }
    if self.vocabulary is not None:
      macros["VOCABULARY"] = self.vocabulary
    bindings = [(k, "None" if v is None else gin_value(v)) for k, v in macros.items()]
    bindings += self._shape_bindings(size, variant)
    bindings += [(k, gin_value(v)) for k, v in f.bindings.items()]
    return Run(size, variant, seed, FINETUNE, f.task, f.train_steps, model_dir,
               self._files(size, variant, FINETUNE_GIN_FILE), tuple(bindings))


def gin_value(value: Any) -> str:
  """A TOML value as gin text: strings in double quotes (unless they are gin
  references, `@name()` or `%MACRO`), numbers and booleans as Python writes them,
  lists and tables element by element. Double quotes keep shell-quoted commands
  readable."""
  if isinstance(value, str):
    return value if value[:1] in ("@", "%") else json.dumps(value)
  if isinstance(value, (bool, int, float)):
    return repr(value)
  if isinstance(value, list):
    return "[" + ", ".join(gin_value(v) for v in value) + "]"
  if isinstance(value, dict):
    return "{" + ", ".join(f"{json.dumps(str(k))}: {gin_value(v)}"
                           for k, v in value.items()) + "}"
  raise StudyError(f"cannot pass {value!r} ({type(value).__name__}) to gin")


def load_study(path: str) -> Study:
  """Read and check a study file; raises StudyError with a one-line message."""
  where = f"study {path}"
  try:
    with open(path, "rb") as f:
      raw = tomllib.load(f)
  except FileNotFoundError:
    raise StudyError(f"{where}: no such file") from None
  except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
    raise StudyError(f"{where}: not valid TOML: {error}") from None

  _check_tables(raw, where)
  study, task, budget = raw["study"], raw["task"], raw["budget"]
  evaluation, gin = raw["evaluation"], raw.get("gin", {})

  sizes = _names(study, "sizes", SIZES, f"{where}: [study] sizes")
  variants = _names(study, "variants", VARIANTS, f"{where}: [study] variants")
  if "dense" not in variants:
    raise StudyError(f"{where}: [study] variants must include 'dense' (the baseline "
                     "every speedup is measured against)")

  task_name = _string(task, "name", f"{where}: [task] name")
  lengths = _lengths(task, f"{where}: [task]", "{inputs = 512, targets = 114}")
  vocabulary = task.get("vocabulary")
  if vocabulary is not None:
    from altup_t5.data.vocabularies import KINDS  # pylint: disable=g-import-not-at-top
    if vocabulary not in KINDS:
      raise StudyError(f"{where}: [task] vocabulary={vocabulary!r} is not one of "
                       f"{', '.join(map(repr, KINDS))}")

  steps = _positive(budget, "train_steps", where, "budget")
  parsed_budget = Budget(
      train_steps=steps,
      batch_size=_positive(budget, "batch_size", where, "budget"),
      eval_period=_positive(evaluation, "period", where, "evaluation"),
      eval_steps=_positive(evaluation, "steps", where, "evaluation"),
      checkpoint_period=_positive(budget, "checkpoint_period", where, "budget",
                                  default=steps),
      log_period=_positive(budget, "log_period", where, "budget", default=10))
  seeds = _seeds(study, budget, where)
  exclude = _exclude(study, sizes, variants, where)
  finetune = _finetune(raw["finetune"], where) if "finetune" in raw else None

  files = gin.get("files", [])
  if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
    raise StudyError(f"{where}: [gin] files must be a list of gin file names")
  study_dir = os.path.dirname(os.path.abspath(path))
  # A file next to the study is named by its absolute path; others are looked up by
  # the trainer in the project's gin/ directory (e.g. 'models/t5_1_1/small.gin').
  files = tuple(os.path.normpath(os.path.join(study_dir, f))
                if os.path.isfile(os.path.join(study_dir, f))
                else f for f in files)

  bindings = _bindings(gin.get("bindings", {}), f"{where}: [gin.bindings]")
  by_size = _grouped(gin, "by_size", sizes, where)
  by_variant = _grouped(gin, "by_variant", variants, where)
  by_run = _grouped(gin, "by_run", [f"{s}_{v}" for s in sizes for v in variants], where)

  return Study(
      name=_string(study, "name", f"{where}: [study] name",
                   default=os.path.splitext(os.path.basename(path))[0]),
      path=path, description=_string(study, "description", "", default=""),
      sizes=sizes, variants=variants, seeds=seeds, exclude=exclude, task=task_name,
      feature_lengths=dict(lengths), vocabulary=vocabulary, budget=parsed_budget,
      finetune=finetune,
      gin_files=files, bindings=bindings, by_size=by_size, by_variant=by_variant,
      by_run=by_run)


# --------------------------------------------------------------------- checks
def _seeds(study, budget, where: str) -> tuple[int, ...]:
  """[study] seeds, or the older single [budget] random_seed (default 0)."""
  if "seeds" in study and "random_seed" in budget:
    raise StudyError(f"{where}: [budget] random_seed and [study] seeds both set; list "
                     "the seeds in [study] seeds only")
  if "seeds" not in study:
    return (_integer(budget, "random_seed", where, "budget", default=0),)
  seeds = study["seeds"]
  if (not isinstance(seeds, list) or not seeds or
      not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
    raise StudyError(f"{where}: [study] seeds={seeds!r} must be a non-empty list of "
                     "integers, e.g. [0, 1, 2]")
  repeated = sorted({s for s in seeds if seeds.count(s) > 1})
  if repeated:
    raise StudyError(f"{where}: [study] seeds lists {', '.join(map(str, repeated))} more "
                     "than once; each seed is one run per size and variant")
  return tuple(seeds)


def _exclude(study, sizes, variants, where: str) -> tuple[str, ...]:
  """[study] exclude: runs of the sizes x variants grid not to train. Every size a
  variant keeps needs its dense baseline."""
  grid = [f"{s}_{v}" for s in sizes for v in variants]
  names = study.get("exclude", [])
  if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
    raise StudyError(f"{where}: [study] exclude must be a list of <size>_<variant> names")
  unknown = [n for n in names if n not in grid]
  if unknown:
    raise StudyError(f"{where}: [study] exclude: {', '.join(map(repr, unknown))} not in "
                     f"the study; allowed: {', '.join(grid)}")
  for size in sizes:
    if f"{size}_dense" in names:
      kept = [v for v in variants if v != "dense" and f"{size}_{v}" not in names]
      if kept:
        raise StudyError(f"{where}: the dense baseline lacks size {size!r}, which "
                         f"{', '.join(kept)} has; every variant is compared with dense "
                         "at its size")
  return tuple(names)


def _lengths(table, what: str, example: str) -> dict:
  lengths = table["feature_lengths"]
  if (not isinstance(lengths, dict) or not lengths or
      not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
              for v in lengths.values())):
    raise StudyError(f"{what} feature_lengths must be a table of positive integers, "
                     f"e.g. {example}")
  return lengths


def _finetune(table, where: str) -> Finetune:
  what = f"{where}: [finetune]"
  lengths = _lengths(table, what, "{inputs = 256, targets = 8}")
  steps = _positive(table, "train_steps", where, "finetune")
  infer_examples = table.get("infer_examples")
  if infer_examples is not None:
    infer_examples = _positive(table, "infer_examples", where, "finetune")
  metrics = table.get("metrics", [])
  if (not isinstance(metrics, list) or
      not all(isinstance(m, str) and "/" in m for m in metrics)):
    raise StudyError(f"{what} metrics must be a list of 'task/metric' names, e.g. "
                     "[\"local_author/accuracy\"]")
  return Finetune(
      task=_string(table, "task", f"{what} task"), feature_lengths=dict(lengths),
      train_steps=steps, batch_size=_positive(table, "batch_size", where, "finetune"),
      eval_period=_positive(table, "eval_period", where, "finetune", default=steps),
      infer_examples=infer_examples, metrics=tuple(metrics),
      bindings=_bindings(table.get("bindings", {}), f"{what} bindings"))


def _check_tables(raw: Mapping[str, Any], where: str) -> None:
  unknown = sorted(set(raw) - set(_TABLES))
  if unknown:
    raise StudyError(f"{where}: unknown table(s) {', '.join(unknown)}; allowed: "
                     f"{', '.join(_TABLES)}")
  for table, (required, optional) in _TABLES.items():
    if table not in raw:
      if required and table not in OPTIONAL_TABLES:
        raise StudyError(f"{where}: missing table [{table}] (with "
                         f"{', '.join(required)})")
      continue
    if not isinstance(raw[table], dict):
      raise StudyError(f"{where}: {table} must be a table ([{table}])")
    missing = [k for k in required if k not in raw[table]]
    if missing:
      raise StudyError(f"{where}: [{table}] is missing {', '.join(missing)}")
    extra = sorted(set(raw[table]) - set(required) - set(optional))
    if extra:
      raise StudyError(f"{where}: [{table}] has unknown key(s) {', '.join(extra)}; "
                       f"allowed: {', '.join(required + optional)}")


def _names(table, key: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
  values = table[key]
  if (not isinstance(values, list) or not values or
      not all(isinstance(v, str) for v in values)):
    raise StudyError(f"{what} must be a non-empty list of names; allowed: "
                     f"{', '.join(allowed)}")
  unknown = [v for v in values if v not in allowed]
  if unknown:
    raise StudyError(f"{what}: unknown {', '.join(map(repr, unknown))}; allowed: "
                     f"{', '.join(allowed)}")
  if len(set(values)) != len(values):
    raise StudyError(f"{what} lists a name twice: {values}")
  return tuple(values)


def _string(table, key: str, what: str, default: str | None = None) -> str:
  value = table.get(key, default)
  if not isinstance(value, str) or (default is None and not value):
    raise StudyError(f"{what} must be a non-empty string")
  return value


def _integer(table, key, where, table_name, default=None) -> int:
  value = table.get(key, default)
  if not isinstance(value, int) or isinstance(value, bool):
    raise StudyError(f"{where}: [{table_name}] {key}={value!r} must be an integer")
  return value


def _positive(table, key, where, table_name, default=None) -> int:
  value = _integer(table, key, where, table_name, default)
  if value < 1:
    raise StudyError(f"{where}: [{table_name}] {key}={value} must be >= 1")
  return value


def _bindings(table, what: str) -> dict[str, Any]:
  if not isinstance(table, dict):
    raise StudyError(f"{what} must be a table of NAME = value")
  for name, value in table.items():
    if name in STUDY_MACROS:
      raise StudyError(f"{what}: {name} is set by the study's own tables "
                       "([task], [budget], [evaluation]); bind it there")
    if isinstance(value, dict) and not name[:1].isupper() and "." not in name:
      # TOML reads `a.b = 1` as a nested table; gin names need the dotted key quoted.
      raise StudyError(f"{what}: {name!r} is a table; quote dotted gin names, e.g. "
                       "\"trainer.OptimizerSettings.warmup_steps\" = 1000")
    gin_value(value)
  return dict(table)


def _grouped(gin, key: str, allowed, where: str) -> dict[str, dict[str, Any]]:
  groups = gin.get(key, {})
  if not isinstance(groups, dict):
    raise StudyError(f"{where}: [gin.{key}] must hold tables, e.g. [gin.{key}.NAME]")
  unknown = [name for name in groups if name not in allowed]
  if unknown:
    raise StudyError(f"{where}: [gin.{key}] names {', '.join(map(repr, unknown))}, not "
                     f"in this study; allowed: {', '.join(allowed)}")
  return {name: _bindings(table, f"{where}: [gin.{key}.{name}]")
          for name, table in groups.items()}
