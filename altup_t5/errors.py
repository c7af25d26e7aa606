"""The one exception type for wrong usage (no dependencies, so any layer may raise it)."""


class UsageError(ValueError):
  """Wrong configuration or input, found before any work started (exit status 2)."""
