"""Where the offline data lives: one documented default, overridable."""

import os

DATA_DIR_ENV = "ALTUP_T5_DATA_DIR"
DEFAULT_DATA_DIR = os.path.join("~", ".cache", "altup_t5")


def data_dir(override: str | None = None) -> str:
  """`override`, else $ALTUP_T5_DATA_DIR, else ~/.cache/altup_t5 (absolute)."""
  chosen = override or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
  return os.path.abspath(os.path.expanduser(chosen))
