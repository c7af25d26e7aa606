"""Shared command line of the entry points (train, eval, infer): t5x's gin flags.

  python -m altup_t5.train --gin_file=experiments/quickstart.gin \
      --gin.MODEL_DIR=/tmp/run --gin.TRAIN_STEPS=100

`--gin_file` may repeat; files are looked up in `--gin_search_paths`, the current
directory and the project's gin directory (`resources.gin_dir()`: the installed
package's copy, or the checkout's `gin/`), and `include`s also in the directory of
each file given by path. `--gin.NAME=VALUE` binds a macro or a
parameter (unquoted values that are not Python literals are taken as strings).
Wrong usage -- a missing file, a misspelt binding, a required macro left unset, an
unknown task, a mesh that does not fit -- prints one line and exits with status 2
before any work starts. This is the only gin-aware module besides the entry points.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import inspect
import logging
import os
import sys
import tokenize
from typing import Callable, Sequence

import gin

from altup_t5 import legacy_names, resources
from altup_t5.errors import SettingError, UsageError  # re-exported: entry points catch them here

PROJECT_GIN_DIR = resources.gin_dir()
# Set to 1 to allow command-line bindings that the configuration never uses (on
# purpose: a macro kept for a gin file that is not included this time). Inherited by
# the runs that `compare` starts.
ALLOW_UNUSED_ENV = "ALTUP_T5_GIN_ALLOW_UNUSED"


def _binding(flag: str) -> str:
  name, sep, value = flag[len("--gin."):].partition("=")
  if not sep or not name:
    raise UsageError(f"bad flag {flag!r}: use --gin.NAME=VALUE")
  value = value.strip()
  if not _is_gin_value(value):
    value = repr(value)  # --gin.MODEL_DIR=/tmp/run means the string '/tmp/run'
  return f"{name} = {value}"


def _is_gin_value(value: str) -> bool:
  if value[:1] in ("@", "%", "'", '"', "[", "(", "{"):
    return True
  try:
    ast.literal_eval(value)
    return True
  except (ValueError, SyntaxError):
    return False


class _OneLineParser(argparse.ArgumentParser):
  """argparse, but a bad flag is one line (no usage block; --help still shows it)."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message}\n")


def parse_flags(argv: Sequence[str], prog: str) -> tuple[list[str], list[str], list[str]]:
  """-> (gin files, search paths, bindings). Exits 2 on a bad flag (argparse)."""
  parser = _OneLineParser(
      prog=prog, description="Run with t5x-style gin configuration.",
      epilog="Example: --gin_file=experiments/quickstart.gin --gin.MODEL_DIR=/tmp/run")
  parser.add_argument("--gin_file", action="append", default=[],
                      help="gin file to parse (repeatable)")
  parser.add_argument("--gin_search_paths", action="append", default=[],
                      help="comma-separated directories to look for gin files in")
  args, rest = parser.parse_known_args(argv)
  bindings = []
  for flag in rest:
    if not flag.startswith("--gin."):
      parser.error(f"unrecognized argument {flag!r} (expected --gin_file, "
                   "--gin_search_paths or --gin.NAME=VALUE)")
    try:
      bindings.append(_binding(flag))
    except UsageError as error:
      parser.error(str(error))
  if not args.gin_file:
    parser.error("no --gin_file given (e.g. --gin_file=experiments/quickstart.gin)")
  paths = [p for group in args.gin_search_paths for p in group.split(",") if p]
  return args.gin_file, paths, bindings


def parse_gin(files: Sequence[str], search_paths: Sequence[str],
              bindings: Sequence[str]) -> None:
  gin.clear_config()
  legacy_names.install()  # gin files of the flat layout (`from altup_t5 import config`)
  # A file given by path may include its siblings: its directory is searched too.
  own_dirs = [os.path.dirname(os.path.abspath(f)) for f in files if os.path.isfile(f)]
  searched = list(search_paths) + [os.getcwd(), PROJECT_GIN_DIR] + own_dirs
  for path in searched:
    gin.add_config_file_search_path(path)
  for name in files:
    if not (os.path.isfile(name) or any(os.path.isfile(os.path.join(d, name))
                                        for d in searched)):
      raise UsageError(f"gin file {name!r} not found in {', '.join(searched)}")
  # gin logs every search path it tries before the one that has the file.
  logging.disable(logging.ERROR)
  try:
    # The files first, so that what the command line adds can be told apart.
    gin.parse_config_files_and_bindings(list(files), None, finalize_config=False)
    from_files = set(gin.config._CONFIG)  # pylint: disable=protected-access
    gin.parse_config_files_and_bindings(None, list(bindings))
  except (ValueError, SyntaxError, KeyError, TypeError, IOError,
          tokenize.TokenError) as error:
    raise UsageError(_gin_message(error)) from None
  finally:
    logging.disable(logging.NOTSET)
  if os.environ.get(ALLOW_UNUSED_ENV, "") not in ("1", "true", "yes"):
    check_bindings_used(bindings, from_files)


# --------------------------------------------------------------------- unused bindings
def _references(value, found: list) -> list:
  """Every `@configurable` and `%MACRO` reference inside a bound value."""
  if isinstance(value, gin.config.ConfigurableReference):
    found.append(value)
  elif isinstance(value, (list, tuple, set)):
    for item in value:
      _references(item, found)
  elif isinstance(value, dict):
    for item in value.values():
      _references(item, found)
  return found


def check_bindings_used(bindings: Sequence[str], from_files: set) -> None:
  """Each `NAME = value` binding given on the command line (or by a study) must be
  used: a macro referenced as `%NAME` somewhere, a parameter of a configurable that
  the configuration calls (referenced as `@...`, or configured by the files, like
  the entry point). A misspelt name otherwise binds nothing, silently."""
  config = gin.config._CONFIG  # pylint: disable=protected-access
  refs = [r for params in config.values() for v in params.values()
          for r in _references(v, [])]
  macros = {r.scopes[-1] if r.scopes else r.scoped_selector.split("/")[0]
            for r in refs if r.selector == "gin.macro"}
  # Macros referenced by a macro nobody uses (`MODEL = @...`) still count: the
  # point is misspellings, and a referenced name is spelt as the files spell it.
  called = {r.config_key[1] for r in refs if r.selector != "gin.macro"}
  scopes = ({s for r in refs if r.selector != "gin.macro" for s in r.scopes}
            | {k[0] for k in from_files if k[1] != "gin.macro"})
  configured = {k[1] for k in from_files}
  for binding in bindings:
    name = binding.split("=", 1)[0].strip()
    scope, _, selector = name.rpartition("/")
    if "." not in selector:  # a macro
      if name not in macros:
        _unused(name, sorted(macros))
      continue
    configurable_name = selector.rpartition(".")[0]
    match = gin.config._REGISTRY.get_match(configurable_name)  # pylint: disable=protected-access
    if match is None:
      continue  # gin has already refused unknown configurables
    full = match.selector
    used = (full in called or full in configured) and (not scope or scope in scopes)
    if not used:
      short = {k[1].rsplit(".", 1)[-1] for k in from_files if k[1] != "gin.macro"}
      short |= {c.rsplit(".", 1)[-1] for c in called}
      _unused(name, sorted(short), what=configurable_name.rsplit(".", 1)[-1])


def _unused(name: str, used: Sequence[str], what: str | None = None) -> None:
  close = difflib.get_close_matches(what or name, used, n=3, cutoff=0.6)
  hint = (f"; did you mean {' or '.join(f'`{c}`' for c in close)}?" if close else
          f"; nothing used is close to it")
  kind = "is bound but never used" if what is None else (
      f"binds a parameter of `{what}`, which this configuration never calls")
  raise UsageError(f"`{name}` {kind}{hint} (set {ALLOW_UNUSED_ENV}=1 to allow it)")


def _gin_message(error: Exception) -> str:
  text = " ".join(str(error).split())
  if "set to `%gin.REQUIRED` but not subsequently overridden" in text:
    macro = text.split("/")[0]
    return f"required gin macro {macro} is not set: pass --gin.{macro}=..."
  text = text.split(" in config string:")[0]  # gin appends the whole configuration
  return f"gin configuration error: {text[:300]}"


def _configured(fn: Callable) -> Callable:
  """`fn` with its gin bindings; every required argument must be bound."""
  try:
    configured = gin.get_configurable(fn)
  except ValueError:
    raise UsageError(f"the gin files configure nothing for {fn.__module__}.{fn.__name__}: "
                     "include the run file (e.g. runs/pretrain.gin)") from None
  required = [name for name, p in inspect.signature(fn).parameters.items()
              if p.default is inspect.Parameter.empty]
  bound = gin.get_bindings(fn)
  missing = [name for name in required if name not in bound]
  if missing:
    raise UsageError(f"{fn.__name__}() needs gin bindings for {', '.join(missing)}")
  return configured


def _choose_vocabulary() -> None:
  """Apply `vocabularies.choose` if the gin files bind it (T5-format tasks' vocabulary)."""
  from altup_t5.data import vocabularies  # pylint: disable=g-import-not-at-top
  try:
    choose = gin.get_configurable(vocabularies.choose)
  except ValueError:
    return
  try:
    choose()
  except ValueError as error:
    raise UsageError(str(error)) from None


def run(fn: Callable, argv: Sequence[str] | None = None, prog: str = "") -> object:
  """Parse flags and gin files, then call `fn` with its gin bindings."""
  argv = sys.argv[1:] if argv is None else argv
  files, paths, bindings = parse_flags(argv, prog)
  try:
    parse_gin(files, paths, bindings)
    _choose_vocabulary()
    configured = _configured(fn)
    return configured()
  except UsageError as error:  # SettingError too, however gin wrapped it
    print(f"{prog}: error: {_first_line(error)}", file=sys.stderr)
    sys.exit(2)
  except FloatingPointError as error:  # a diverged run: say where, keep the checkpoints
    print(f"{prog}: stopped: {_first_line(error)}", file=sys.stderr)
    sys.exit(1)
  except Exception as error:  # pylint: disable=broad-except
    # A read-only or full disk (an OSError, or TensorFlow's own error types when its
    # file writers hit it): one line; the checkpoints already saved stay readable.
    if not _is_disk_error(error):
      raise
    print(f"{prog}: stopped: {type(error).__name__}: {_first_line(error)}", file=sys.stderr)
    sys.exit(1)


def _is_disk_error(error: Exception) -> bool:
  if isinstance(error, OSError):
    return True
  text = str(error)
  return type(error).__module__.startswith("tensorflow") and (
      "Read-only file system" in text or "No space left on device" in text)


def _first_line(error: Exception) -> str:
  # gin appends "In call to configurable ..." lines to exceptions raised inside.
  return str(error).strip().splitlines()[0]
