"""Every registered task and mixture; importing this module registers them all.

  c4_v220_span_corruption, c4_v310_span_corruption       (c4.py)
  glue_*_v002, glue_v002_proportional                    (glue.py)
  super_glue_*_v102, super_glue_v102_proportional        (super_glue.py)
  dpr_v001_simple, super_glue_wsc_v102_simple_{train,eval},
  glue_wnli_v002_simple_eval, wsc_dpr_simple_proportional (wsc_dpr.py, super_glue.py)
  squad_v010_allanswers, squad_v010_context_free,
  trivia_qa_open (closed book), trivia_qa_v010           (qa.py)
  *_1_sentinel, super_glue_v102_proportional_sentinel    (super_glue.py)
  local_span_corruption, local_author, local_same_work,
  local_classification                                   (local_tasks.py, offline)
"""

from __future__ import annotations

import difflib

import seqio

# pylint: disable=unused-import
from altup_t5.data import c4
from altup_t5.data import glue
from altup_t5.data import local_tasks
from altup_t5.data import qa
from altup_t5.data import super_glue
# pylint: enable=unused-import


def registered_names() -> list[str]:
  return sorted(set(seqio.TaskRegistry.names()) | set(seqio.MixtureRegistry.names()))


def get_task_or_mixture(name: str) -> seqio.Task | seqio.Mixture:
  """The registered task or mixture `name`; an unknown name raises a ValueError that
  lists the closest registered names."""
  names = registered_names()
  if name not in names:
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = (f"closest registered names: {', '.join(close)}" if close else
            f"no registered name is close; there are {len(names)}, e.g. "
            f"{', '.join(n for n in names if n.startswith('local_'))}")
    raise ValueError(f"unknown task or mixture {name!r}; {hint}")
  return seqio.get_mixture_or_task(name)
