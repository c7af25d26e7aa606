"""The exception types for wrong usage, and the checks that settings dataclasses run
where they are built (no dependencies, so any layer may use them)."""

from __future__ import annotations

import numbers
from typing import Any, Iterable


class UsageError(ValueError):
  """Wrong configuration or input, found before any work started (exit status 2)."""


class SettingError(UsageError):
  """A setting of the wrong type or range, raised by our own validation. cli turns it
  into one line and exit status 2 whatever gin wraps around it; a plain ValueError
  from deep inside a library (jax, tf) stays a traceback."""


def _shown(value: Any) -> str:
  return repr(value) if isinstance(value, str) else str(value)


def check_int(name: str, value: Any, *, minimum: int | None = None,
              allow_none: bool = False) -> None:
  """`value` is an int (not a bool) >= `minimum` (or None if `allow_none`)."""
  if value is None and allow_none:
    return
  allowed = "an integer" + (f" >= {minimum}" if minimum is not None else "")
  allowed += " or None" if allow_none else ""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise SettingError(f"{name}={_shown(value)} must be {allowed}")
  if minimum is not None and value < minimum:
    raise SettingError(f"{name}={value} must be >= {minimum}")


def check_number(name: str, value: Any, *, minimum: float | None = None,
                 maximum: float | None = None, exclusive_minimum: bool = False,
                 exclusive_maximum: bool = False) -> None:
  """`value` is a real number in the given range."""
  low = "" if minimum is None else f"{'>' if exclusive_minimum else '>='} {minimum}"
  high = "" if maximum is None else f"{'<' if exclusive_maximum else '<='} {maximum}"
  allowed = "a number" + (f" {low}" if low else "") + (" and" if low and high else "")
  allowed += f" {high}" if high else ""
  ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
  if ok and value != value:  # NaN
    ok = False
  if ok and minimum is not None:
    ok = value > minimum if exclusive_minimum else value >= minimum
  if ok and maximum is not None:
    ok = value < maximum if exclusive_maximum else value <= maximum
  if not ok:
    raise SettingError(f"{name}={_shown(value)} must be {allowed}")


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
  allowed = list(allowed)
  if not any(value is a or (type(value) is type(a) and value == a) for a in allowed):
    raise SettingError(f"{name}={_shown(value)} is not one of "
                       f"{', '.join(map(_shown, allowed))}")


def check_type(name: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
  if not isinstance(value, kind):
    raise SettingError(f"{name}={_shown(value)} must be {what}")
