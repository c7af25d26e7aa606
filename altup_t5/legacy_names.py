"""The flat layout's module names, for gin files written before the subpackages.

A gin file of that layout says `from altup_t5 import config` and binds
`config.config_for.size`; with these aliases, `altup_t5.config` is the module
`altup_t5.model.config` itself, so such files keep binding the same functions and
classes. Only the gin command line (`cli.parse_gin`) installs the aliases: a library
user importing `altup_t5` sees the subpackages alone. The entry modules
(`altup_t5.train`, `.eval`, `.infer`) are real and re-export their jobs' names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old module -> new module (one line each; the README lists them).
ALIASES = {
    "altup_t5.config": "altup_t5.model.config",
    "altup_t5.network": "altup_t5.model.network",
    "altup_t5.models": "altup_t5.training.seq2seq",
    "altup_t5.trainer": "altup_t5.training.trainer",
    "altup_t5.checkpoints": "altup_t5.training.checkpoints",
    "altup_t5.input_pipeline": "altup_t5.training.input_pipeline",
    "altup_t5.evaluation": "altup_t5.inference.evaluation",
    "altup_t5.t5x_adapters": "altup_t5.t5x.adapters",
}


class _AliasLoader(importlib.abc.Loader):
  def __init__(self, target: str):
    self.target = target

  def create_module(self, spec):
    return importlib.import_module(self.target)  # the same module object

  def exec_module(self, module):
    pass  # already executed under its own name


class _AliasFinder(importlib.abc.MetaPathFinder):
  def find_spec(self, fullname, path=None, target=None):
    if fullname not in ALIASES:
      return None
    return importlib.util.spec_from_loader(fullname, _AliasLoader(ALIASES[fullname]))


_FINDER = _AliasFinder()


def install() -> None:
  """Make the old names importable (idempotent)."""
  if _FINDER not in sys.meta_path:
    sys.meta_path.insert(0, _FINDER)  # before path finders: these names have no file
