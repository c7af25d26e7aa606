"""Where the shipped gin files and study configs are: inside the installed package
(a wheel or `pip install .` copies the checkout's top-level `gin/` and `configs/` into
`altup_t5/gin` and `altup_t5/configs`), else next to the package in a source checkout
(`pip install -e .`, or running from the repository)."""

from __future__ import annotations

import os

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _shipped(name: str) -> str:
  installed = os.path.join(_PACKAGE_DIR, name)
  if os.path.isdir(installed):
    return installed
  return os.path.join(os.path.dirname(_PACKAGE_DIR), name)


def gin_dir() -> str:
  """The project's gin files (`models/`, `runs/`, `experiments/`, `t5x/`)."""
  return _shipped("gin")


def configs_dir() -> str:
  """The project's study files (`cpu_quick.toml`, `paper_t5.toml`, ...)."""
  return _shipped("configs")


def find_config(path: str) -> str:
  """`path` as given if it exists, else the shipped study file of that name, so that
  `compare configs/cpu_small.toml` works from any directory after a plain install."""
  if os.path.exists(path):
    return path
  shipped = os.path.join(configs_dir(), os.path.basename(path))
  return shipped if os.path.exists(shipped) else path
