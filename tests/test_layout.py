"""The package's layout: subpackages import only what their docstrings allow, importing
the library changes nothing in the process, and the flat layout's gin names still bind."""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

from altup_t5 import resources

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "altup_t5")

# Which altup_t5 subpackages each may import (besides itself and the dependency-free
# top-level modules `errors` and `resources`), as each subpackage's docstring says.
ALLOWED = {
    "model": set(),
    "data": set(),
    "training": {"model", "data"},
    "inference": {"model", "training", "data"},
    "jobs": {"model", "training", "inference", "data", "t5x"},
    "t5x": {"model", "training"},
    "studies": {"model", "training", "inference", "jobs", "data", "cli"},
    "bench": {"model", "training", "inference"},
}
LEAF_MODULES = {"errors", "resources"}


def _imported_subpackages(path: str) -> set[str]:
  """The altup_t5 subpackages or top-level modules a file imports, lazy imports too."""
  found = set()
  for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
    names = []
    if isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    for name in names:
      parts = name.split(".")
      if parts[0] == "altup_t5" and len(parts) > 1:
        found.add(parts[1])
  return found


@pytest.mark.parametrize("subpackage", sorted(ALLOWED))
def test_subpackage_imports_follow_the_chain(subpackage):
  directory = os.path.join(PACKAGE, subpackage)
  assert os.path.isfile(os.path.join(directory, "__init__.py"))
  doc = ast.get_docstring(ast.parse(open(os.path.join(directory, "__init__.py")).read()))
  assert doc and "May import" in doc, f"{subpackage}/__init__.py says what it may import"
  for name in sorted(os.listdir(directory)):
    if name.endswith(".py"):
      used = _imported_subpackages(os.path.join(directory, name))
      used -= {subpackage} | LEAF_MODULES
      assert used <= ALLOWED[subpackage], (f"{subpackage}/{name} imports "
                                           f"{sorted(used - ALLOWED[subpackage])}")


def test_library_modules_never_import_gin():
  for sub in ("model", "data", "training", "inference", "jobs", "t5x", "bench"):
    for name in os.listdir(os.path.join(PACKAGE, sub)):
      if name.endswith(".py"):
        tree = ast.parse(open(os.path.join(PACKAGE, sub, name)).read())
        modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                   for a in n.names}
        modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert "gin" not in modules, f"{sub}/{name} imports gin"


IMPORT_SCRIPT = textwrap.dedent("""
    import ctypes, json, os, sys
    calls = []
    real_cdll = ctypes.CDLL

    class Recorder:  # records every mallopt call made through ctypes
      def __init__(self, *args, **kwargs):
        self._lib = real_cdll(*args, **kwargs)
      def __getattr__(self, name):
        if name == "mallopt":
          return lambda *a: calls.append(a) or 1
        return getattr(self._lib, name)

    ctypes.CDLL = Recorder
    before = os.environ.get("XLA_FLAGS")
    import altup_t5, altup_t5.model, altup_t5.training, altup_t5.inference
    import altup_t5.data, altup_t5.studies, altup_t5.bench, altup_t5.jobs
    from altup_t5.model import network
    from altup_t5.jobs import train
    from altup_t5.bench import bench
    print(json.dumps(dict(before=before, after=os.environ.get("XLA_FLAGS"),
                          mallopt=calls, jax_imported_by_altup_t5="jax" in sys.modules)))
""")


def test_importing_the_library_changes_neither_xla_flags_nor_malloc():
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",
                                                         "ALTUP_T5_CPU_TUNING")}
  env["XLA_FLAGS"] = "--xla_cpu_enable_fast_math=false"
  out = subprocess.run([sys.executable, "-c", IMPORT_SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  import json  # pylint: disable=g-import-not-at-top
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["after"] == result["before"] == "--xla_cpu_enable_fast_math=false"
  assert result["mallopt"] == []


def test_an_entry_point_applies_the_cpu_tuning_the_library_does_not():
  script = ("import os, runpy, sys; sys.argv = ['bench', '--help'];\n"
            "from altup_t5.bench import cpu_tuning\n"
            "try:\n  runpy.run_module('altup_t5.bench', run_name='__main__')\n"
            "except SystemExit:\n  pass\n"
            "print(os.environ.get('XLA_FLAGS', ''), '|', cpu_tuning.applied)")
  env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS",
                                                         "ALTUP_T5_CPU_TUNING")}
  out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  last = out.stdout.strip().splitlines()[-1]
  assert "[]" not in last.split("|")[1]  # something was applied (a CPU-only Linux host)


FLAT_LAYOUT_SCRIPT = textwrap.dedent("""
    import json, sys
    import gin
    from altup_t5 import cli
    from altup_t5.training import optimizer
    cli.parse_gin([sys.argv[1]], [], [])
    model = gin.query_parameter("%MODEL").scoped_configurable_fn()
    print(json.dumps(dict(
        variant=model.config.variant.value, emb_dim=model.config.emb_dim,
        learning_rate=gin.get_bindings(optimizer.OptimizerSettings)["base_learning_rate"])))
""")


def test_flat_layout_gin_names_still_bind(tmp_path):
  # In its own process: the old names register configurables in gin's global registry.
  old = tmp_path / "old_style.gin"
  old.write_text(textwrap.dedent("""
      from __gin__ import dynamic_registration
      from altup_t5 import config
      from altup_t5 import models
      from altup_t5 import network
      from altup_t5 import trainer
      MODEL = @models.Seq2SeqModel()
      models.Seq2SeqModel.module = @network.Transformer()
      network.Transformer.config = @config.config_for()
      config.config_for.size = 'tiny'
      config.config_for.variant = 'recycled_altup'
      trainer.OptimizerSettings.base_learning_rate = 0.5
  """))
  out = subprocess.run([sys.executable, "-c", FLAT_LAYOUT_SCRIPT, str(old)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  import json  # pylint: disable=g-import-not-at-top
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result == {"variant": "recycled_altup", "emb_dim": 128, "learning_rate": 0.5}


def test_shipped_files_are_found_through_the_package():
  assert os.path.isfile(os.path.join(resources.gin_dir(), "models/t5_1_1/tiny.gin"))
  assert os.path.isfile(os.path.join(resources.configs_dir(), "paper_t5.toml"))
  assert resources.find_config("configs/paper_t5.toml").endswith("paper_t5.toml")
