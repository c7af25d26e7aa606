"""Process-wide settings that make JAX on a CPU host faster, applied by the entry
points (`python -m altup_t5.train`, `.eval`, `.infer`, `.bench`, and the tests'
conftest) before they import jax -- before JAX starts its threads, which is why this
module must not import jax. Importing `altup_t5` or any subpackage applies nothing.
Set ALTUP_T5_CPU_TUNING=0 to leave even an entry point's process untouched.

Both were measured with `python -m altup_t5.bench` (jax 0.10.2); the first, and the
YNNPACK flag against jaxlib's default, on a 2-core AMD EPYC (T5.1.1-small, batch 2,
lengths 512/114, process CPU seconds per train step):

1. glibc keeps freed memory for reuse. XLA:CPU allocates each step's buffers (about
   1 GB of temporaries for `small`) afresh; glibc serves allocations over 32 MB, and
   every large one made by a worker thread, with mmap and returns them with munmap on
   free, so every step page-faults its whole working set in again (0.3-0.4 s of
   system time per dense step). One malloc arena, no mmap and no trimming make the
   process keep its peak heap and reuse it. Skipped when an accelerator plugin is
   installed: there the host mostly runs the input pipeline, whose many threads
   would share the one arena.
2. XLA:CPU's YNNPACK library for each dot alone and for reductions (jaxlib 0.10's
   default fuses more, and in the backward pass it fuses the gated-GELU gradient
   into a transposing copy that costs more than the MLP's matmuls: -10% per dense
   train step against the default). Each dot alone rather than fused with its
   neighbours (`INDIVIDUAL_DOT`, not `DOT`): on a 2-core Intel Xeon (AVX-512), the same
   train step (within +-2.5%) and 11-16% more teacher-forced scoring at `tiny` and
   `small` (batch 8, 128/32), 13-18% less forward time at the CPU studies' sizes
   (`scripts/profile_step.py`, issue 12). Only for jaxlib 0.10.x, where the flag was
   measured; an XLA_FLAGS that already sets it wins.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import importlib.util
import os
import sys

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type"
_YNN_FUSIONS = "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT,LIBRARY_FUSION_TYPE_REDUCE"
_ACCELERATOR_PLUGINS = ("libtpu", "jax_cuda12_plugin", "jax_cuda13_plugin",
                        "jax_rocm60_plugin", "jax_rocm7_plugin")

applied: list[str] = []  # what `apply` changed, for reports (bench prints it)
_done = False


def _has_accelerator_plugin() -> bool:
  platforms = os.environ.get("JAX_PLATFORMS", "")
  if platforms and "cpu" not in platforms.split(","):
    return True
  return any(importlib.util.find_spec(name) for name in _ACCELERATOR_PLUGINS)


def _keep_freed_memory() -> bool:
  if not sys.platform.startswith("linux") or _has_accelerator_plugin():
    return False
  try:
    libc = ctypes.CDLL("libc.so.6")
  except OSError:  # not glibc (e.g. musl): leave its allocator alone
    return False
  # -1 becomes SIZE_MAX: never give the heap back (an int cannot say more than 2 GB).
  return all(libc.mallopt(p, v) == 1 for p, v in (
      (_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))


def _library_calls_for_dots_and_reductions() -> bool:
  try:
    jaxlib_version = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return False
  flags = os.environ.get("XLA_FLAGS", "")
  if not jaxlib_version.startswith("0.10.") or _YNN_FLAG in flags:
    return False
  os.environ["XLA_FLAGS"] = f"{flags} {_YNN_FLAG}={_YNN_FUSIONS}".strip()
  return True


def apply() -> list[str]:
  """Applies both settings once per process (later calls do nothing)."""
  global _done
  if _done or os.environ.get("ALTUP_T5_CPU_TUNING", "1") == "0":
    return applied
  _done = True
  if _keep_freed_memory():
    applied.append("glibc malloc: one arena, no mmap, no trim")
  if _library_calls_for_dots_and_reductions():
    applied.append(f"XLA_FLAGS {_YNN_FLAG}={_YNN_FUSIONS}")
  return applied
