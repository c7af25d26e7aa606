"""Data for altup-t5: seqio tasks, T5's span corruption, the offline corpus.

  data_dir()                     where offline data lives ($ALTUP_T5_DATA_DIR, else
                                 ~/.cache/altup_t5)
  ensure_prepared(data_dir=None) prepares the offline corpus and vocabulary if missing
  get_task_or_mixture(name)      registers every task; unknown names get close matches
  span_corruption(dataset, sequence_length, output_features, noise_density=0.15,
                  mean_noise_span_length=3.0)
                                 T5's span-corruption seqio preprocessor (in `denoising`)
  vocabularies                   choose() / CHOSEN and the t5, local and byte vocabularies
  tasks                          importing it registers every task and mixture

Importing the package is cheap: TensorFlow and seqio load on first use of a name that
needs them, and nothing is downloaded until a task's data is read.

May import: nothing else of altup_t5 (seqio, TensorFlow, sentencepiece, scipy and
scikit-learn do the work); training and studies use it.
"""

import importlib

from altup_t5.data.local_corpus import ensure_prepared
from altup_t5.data.paths import data_dir

_LAZY_MODULES = ("denoising", "tasks", "vocabularies")

__all__ = ["data_dir", "ensure_prepared", "get_task_or_mixture", "span_corruption",
           *_LAZY_MODULES]


def __getattr__(name: str):
  if name in _LAZY_MODULES:
    return importlib.import_module(f"{__name__}.{name}")
  if name == "span_corruption":
    return importlib.import_module(f"{__name__}.denoising").span_corruption
  if name == "get_task_or_mixture":
    return importlib.import_module(f"{__name__}.tasks").get_task_or_mixture
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
