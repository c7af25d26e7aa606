"""Studies: which runs go side by side (sizes x variants), on what task and budget.

A study is a TOML file in `configs/` (comments allowed, no new dependency):

  [study]      sizes = ["small", "base"], variants = ["dense", "altup"], description
  [task]       name, feature_lengths = {inputs = .., targets = ..}, vocabulary (optional)
  [budget]     train_steps, batch_size, checkpoint_period, log_period, random_seed
  [evaluation] period, steps  (held-out teacher-forced accuracy on the task's validation split)
  [gin]        files = [...]  extra gin files after the size, variant and run files;
               [gin.bindings], [gin.by_size.<size>], [gin.by_variant.<variant>],
               [gin.by_run.<size>_<variant>]: `NAME = value` bindings, applied in that
               order (the most specific last, so it wins). Strings become gin
               strings unless they are references (`@name()`, `%MACRO`); quote
               dotted names: "trainer.OptimizerSettings.warmup_steps" = 100.

`dense` must be one of the variants: every speedup is measured against it. The
macros the study's own tables set (STUDY_MACROS) cannot be rebound in [gin].

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

# Macros a study sets from its own tables: every run of a study must share them, so
# `[gin.*]` bindings may not override them.
STUDY_MACROS = ("MODEL_DIR", "MIXTURE_OR_TASK_NAME", "TASK_FEATURE_LENGTHS",
                "TRAIN_STEPS", "BATCH_SIZE", "EVAL_PERIOD", "EVAL_STEPS",
                "CHECKPOINT_PERIOD", "LOG_PERIOD", "RANDOM_SEED", "VOCABULARY")

_TABLES = {  # table -> (required keys, optional keys)
    "study": (("sizes", "variants"), ("name", "description")),
    "task": (("name", "feature_lengths"), ("vocabulary",)),
    "budget": (("train_steps", "batch_size"),
               ("checkpoint_period", "log_period", "random_seed")),
    "evaluation": (("period", "steps"), ()),
    "gin": ((), ("files", "bindings", "by_size", "by_variant", "by_run")),
}


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
  random_seed: int


@dataclasses.dataclass(frozen=True)
class Run:
  """One training run of a study."""
  size: str
  variant: str
  model_dir: str
  gin_files: tuple[str, ...]
  bindings: tuple[tuple[str, str], ...]  # (NAME, gin value text), in order

  @property
  def name(self) -> str:
    return f"{self.size}_{self.variant}"

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
  task: str
  feature_lengths: Mapping[str, int]
  vocabulary: str | None
  budget: Budget
  gin_files: tuple[str, ...]
  bindings: Mapping[str, Any]
  by_size: Mapping[str, Mapping[str, Any]]
  by_variant: Mapping[str, Mapping[str, Any]]
  by_run: Mapping[str, Mapping[str, Any]]

  def runs(self, out_dir: str, *, sizes=None, variants=None) -> list[Run]:
    """The study's runs, size-major, each with MODEL_DIR `out_dir/<size>_<variant>`;
    optionally only some sizes or variants."""
    return [self.run(size, variant, out_dir)
            for size in self.sizes if sizes is None or size in sizes
            for variant in self.variants if variants is None or variant in variants]

  def run(self, size: str, variant: str, out_dir: str) -> Run:
    model_dir = os.path.join(out_dir, f"{size}_{variant}")
    files = (f"models/t5_1_1/{size}.gin", f"models/{variant}.gin", RUN_GIN_FILE,
             *self.gin_files)
    b = self.budget
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
        "RANDOM_SEED": b.random_seed,
    }
    if self.vocabulary is not None:
      macros["VOCABULARY"] = self.vocabulary
    bindings = [(k, gin_value(v)) for k, v in macros.items()]
    for extra in (self.bindings, self.by_size.get(size, {}),
                  self.by_variant.get(variant, {}), self.by_run.get(f"{size}_{variant}", {})):
      bindings += [(k, gin_value(v)) for k, v in extra.items()]
    return Run(size, variant, model_dir, files, tuple(bindings))


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
  lengths = task["feature_lengths"]
  if (not isinstance(lengths, dict) or not lengths or
      not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
              for v in lengths.values())):
    raise StudyError(f"{where}: [task] feature_lengths must be a table of positive "
                     "integers, e.g. {inputs = 512, targets = 114}")
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
      log_period=_positive(budget, "log_period", where, "budget", default=10),
      random_seed=_integer(budget, "random_seed", where, "budget", default=0))

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
      sizes=sizes, variants=variants, task=task_name,
      feature_lengths=dict(lengths), vocabulary=vocabulary, budget=parsed_budget,
      gin_files=files, bindings=bindings, by_size=by_size, by_variant=by_variant,
      by_run=by_run)


# --------------------------------------------------------------------- checks
def _check_tables(raw: Mapping[str, Any], where: str) -> None:
  unknown = sorted(set(raw) - set(_TABLES))
  if unknown:
    raise StudyError(f"{where}: unknown table(s) {', '.join(unknown)}; allowed: "
                     f"{', '.join(_TABLES)}")
  for table, (required, optional) in _TABLES.items():
    if table not in raw:
      if required:
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
