"""altup-t5: Alternating Updates (AltUp) for T5.1.1 in JAX/Flax.

Subpackages, in import order (each may import only those before it; data is used by
training and studies):
  model/      T5Config and config_for, layers, AltUp, MoE, the Transformer, FLOPs
  data/       seqio tasks, vocabularies, span corruption, metrics, offline corpus
  training/   losses, optimizer, partitioning, trainer, input pipeline, checkpoints
  inference/  decoding, the one predict/score step, evaluation
  jobs/       train, evaluate, infer: what the gin files configure
  studies/    study files, runner, results, report, plots (`python -m altup_t5.compare`)
  bench/      benchmarks, the HuggingFace peer, CPU tuning (`python -m altup_t5.bench`)
  t5x/        t5x's trainer and checkpoints
Entry points: `python -m altup_t5.{train,eval,infer,compare,bench}`.

Importing the package changes nothing in the process (no XLA flags, no malloc
settings: the entry points apply CPU tuning). The names below load lazily.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "AltUp": "altup_t5.model.altup",
    "ComputeOn": "altup_t5.model.config",
    "Router": "altup_t5.model.config",
    "Schedule": "altup_t5.model.config",
    "T5Config": "altup_t5.model.config",
    "Variant": "altup_t5.model.config",
    "config_for": "altup_t5.model.config",
    "Transformer": "altup_t5.model.network",
}


def __getattr__(name):
  if name in _EXPORTS:
    return getattr(importlib.import_module(_EXPORTS[name]), name)
  raise AttributeError(f"module 'altup_t5' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_EXPORTS))
