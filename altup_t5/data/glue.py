"""GLUE as seqio tasks in T5's text-to-text format; importing this module registers them.

Tasks `glue_{cola,sst2,mrpc,qqp,stsb,mnli,mnli_mismatched,mnli_matched,qnli,rte,wnli,ax}_v002`
and the mixtures `glue_v002_proportional` and `glue_mnli_and_dev_v002`, with the names,
text formats, postprocessors and metrics of the original T5 (`t5.data.tasks`), so a run's
numbers compare with its tables:

  rte sentence1: A man is playing. sentence2: Someone plays.   ->  entailment
  stsb sentence1: ... sentence2: ...                           ->  3.4

The inputs are the benchmark name, then `name: value` for each text feature in sorted
order (MNLI and the AX diagnostic are both "mnli"); the target is the label's name, or
"<unk>" for an unlabelled (test) example. Each task reads every split its TFDS builder
makes; MNLI's validation sets are also the tasks `glue_mnli_matched_v002` and
`glue_mnli_mismatched_v002` (split "validation"), as in T5.

TFDS version: `glue/*:1.0.0`, T5's (a TPU user's prepared T5 data is 1.0.0), by default.
TFDS 4.9.10 builds 2.0.0 by default and still builds 1.0.0 and 1.0.1; per TFDS's release
notes 1.0.1 replaced dead download links and 2.0.0 changed QQP's data source, with the
formats unchanged. The setting: environment variable ALTUP_T5_GLUE_TFDS_VERSION (read
when this module is imported), or `register_glue_tasks(version)` afterwards.

The module also holds what the other T5 task modules share: the output features (on
`vocabularies.CHOSEN`), T5's GLUE-style formatter and the registration helper.
"""

from __future__ import annotations

import dataclasses
import os
import functools
from typing import Callable, Mapping, Sequence

import seqio
import tensorflow as tf

from altup_t5.data import metrics
from altup_t5.data import postprocessors
from altup_t5.data import sources
from altup_t5.data import vocabularies

T5_GLUE_TFDS_VERSION = "1.0.0"  # t5.data.glue_utils / t5's tasks.py
GLUE_TFDS_VERSIONS = ("1.0.0", "1.0.1", "2.0.0")  # the versions TFDS 4.9 can build
GLUE_TFDS_VERSION_ENV = "ALTUP_T5_GLUE_TFDS_VERSION"


def glue_tfds_version(version: str | None = None) -> str:
  """`version`, else $ALTUP_T5_GLUE_TFDS_VERSION, else T5's 1.0.0; a `ValueError` for
  a version TFDS cannot build."""
  chosen = version or os.environ.get(GLUE_TFDS_VERSION_ENV) or T5_GLUE_TFDS_VERSION
  if chosen not in GLUE_TFDS_VERSIONS:
    source = "version" if version else GLUE_TFDS_VERSION_ENV
    raise ValueError(f"{source}={chosen!r} is not a GLUE TFDS version TFDS can build: "
                     f"one of {', '.join(GLUE_TFDS_VERSIONS)} (T5's is "
                     f"{T5_GLUE_TFDS_VERSION})")
  return chosen


GLUE_TFDS_VERSION = glue_tfds_version()  # what the registered tasks read
UNLABELLED_TARGET = "<unk>"  # the target of examples whose label is -1 (test splits)

OUTPUT_FEATURES = {
    "inputs": seqio.Feature(vocabularies.CHOSEN, add_eos=True, required=False),
    "targets": seqio.Feature(vocabularies.CHOSEN, add_eos=True),
}


# ------------------------------------------------------------------- T5's formats

def regex_literal(text: tf.Tensor) -> tf.Tensor:
  """`text` as a literal inside an RE2 pattern (spans and answers may hold
  metacharacters)."""
  return tf.strings.regex_replace(text, r"([\\.^$|?*+()\[\]{}])", r"\\\1")


def join_features(x: dict[str, tf.Tensor], benchmark_name: str,
                  feature_names: Sequence[str] | None = None) -> tf.Tensor:
  """"{benchmark} {key}: {value} {key}: {value} ...", keys sorted unless given.

  Values are joined as they are (no stripping), exactly as T5 does.
  """
  keys = feature_names or sorted(set(x) - {"label", "idx"})
  parts = [benchmark_name]
  for key in keys:
    parts += [f"{key}:", x[key]]
  return tf.strings.join(parts, separator=" ")


def label_text(label: tf.Tensor, label_names: Sequence[str], benchmark_name: str) -> tf.Tensor:
  """Class index -> its name; -1 (no label) -> "<unk>"; anything else fails clearly."""
  label = tf.cast(label, tf.int32)
  valid = tf.debugging.assert_less(
      label, len(label_names),
      message=f"{benchmark_name}: a label must be -1 (unlabelled) or an index into "
      f"{list(label_names)}")
  with tf.control_dependencies([valid]):
    name = tf.gather(tf.constant(list(label_names)), tf.maximum(label, 0))
  return tf.where(label < 0, tf.constant(UNLABELLED_TARGET), name)


@seqio.map_over_dataset
def glue_text(x, benchmark_name: str, label_names: Sequence[str],
              feature_names: Sequence[str] | None = None):
  """A classification example -> {"inputs", "targets", "idx"} (T5's `glue` preprocessor)."""
  return {
      "inputs": join_features(x, benchmark_name, feature_names),
      "targets": label_text(x["label"], label_names, benchmark_name),
      "idx": x["idx"],
  }


@seqio.map_over_dataset
def stsb_text(x):
  """STS-B's similarity in [0, 5] -> the nearest multiple of 0.2 as text ("3.4").

  T5 casts the regression as 26 classes this way; `tf.round` rounds halves to even and
  works in float32, exactly as T5's preprocessor does.
  """
  score = tf.round(x["label"] * 5) / 5
  return {
      "inputs": join_features(x, "stsb", ("sentence1", "sentence2")),
      "targets": tf.strings.as_string(score, precision=1),
      "idx": x["idx"],
  }


# ------------------------------------------------------------------- registration

def register_text_task(name: str, tfds_name: str,
                       splits: Sequence[str] | Mapping[str, str],
                       text_preprocessor: Callable[..., tf.data.Dataset],
                       metric_fns: Sequence[Callable[..., dict]],
                       postprocess_fn: Callable[..., object]) -> seqio.Task:
  """Registers (or re-registers, so a module reload works) one T5-format text task.

  `splits` are named explicitly because TFDS only knows a builder's splits once its
  data is prepared, and seqio would otherwise see none; a map names the TFDS split (or
  slice) each task split reads, e.g. {"validation": "train[78785:]"}.
  """
  if name in seqio.TaskRegistry.names():
    seqio.TaskRegistry.remove(name)
  return seqio.TaskRegistry.add(
      name,
      source=sources.tfds_source(tfds_name, splits=splits),
      preprocessors=[
          text_preprocessor,
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features=OUTPUT_FEATURES,
      metric_fns=list(metric_fns),
      postprocess_fn=postprocess_fn,
  )


def register_mixture(name: str, rates: dict[str, float]) -> seqio.Mixture:
  if name in seqio.MixtureRegistry.names():
    seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, list(rates.items()))


# ---------------------------------------------------------------------- the tasks

_STANDARD_SPLITS = ("train", "validation", "test")
_MNLI_LABELS = ("entailment", "neutral", "contradiction")


@dataclasses.dataclass(frozen=True)
class GlueTask:
  config: str                        # TFDS builder config, e.g. "rte"
  label_names: tuple[str, ...] | None  # TFDS's ClassLabel names, in order; None = STS-B
  metric_fns: tuple[Callable[..., dict], ...]
  splits: tuple[str, ...] = _STANDARD_SPLITS

  @property
  def name(self) -> str:
    return f"glue_{self.config}_v002"

  @property
  def benchmark_name(self) -> str:
    # The diagnostic is MNLI-style NLI; T5 formats it (and both MNLI halves) as "mnli".
    return "mnli" if self.config.startswith("mnli") or self.config == "ax" else self.config


_ACC = (metrics.accuracy,)
_F1_ACC = (metrics.f1_score_with_invalid, metrics.accuracy)

GLUE_TASKS = (
    GlueTask("cola", ("unacceptable", "acceptable"), (metrics.matthews_corrcoef,)),
    GlueTask("sst2", ("negative", "positive"), _ACC),
    GlueTask("mrpc", ("not_equivalent", "equivalent"), _F1_ACC),
    GlueTask("qqp", ("not_duplicate", "duplicate"), _F1_ACC),
    GlueTask("stsb", None, (metrics.pearson_corrcoef, metrics.spearman_corrcoef)),
    GlueTask("mnli", _MNLI_LABELS, _ACC, ("train", "validation_matched",
                                          "validation_mismatched", "test_matched",
                                          "test_mismatched")),
    GlueTask("mnli_mismatched", _MNLI_LABELS, _ACC, ("validation", "test")),
    GlueTask("mnli_matched", _MNLI_LABELS, _ACC, ("validation", "test")),
    GlueTask("qnli", ("entailment", "not_entailment"), _ACC),
    GlueTask("rte", ("entailment", "not_entailment"), _ACC),
    GlueTask("wnli", ("not_entailment", "entailment"), _ACC),
    GlueTask("ax", _MNLI_LABELS, (), ("test",)),  # diagnostic: test labels are hidden
)

# Mixing rates of `glue_v002_proportional`: the size of each training set, as T5 did
# (`t5.data.glue_utils.GLUE_WEIGHT_MAPPING`). TFDS ships no split sizes for these builders
# (`tfds.builder("glue/rte:1.0.0").info.splits` is empty until the data is prepared), so
# these are the sizes of TFDS's prepared GLUE train splits as T5 recorded them, which
# also match the GLUE paper; glue 2.0.0's re-hosted QQP has 363,846 rows instead of
# 363,849, a difference of 0.001% that does not matter for a mixing rate. WNLI is left
# out as in T5 (whose models learned Winograd from WSC/DPR); the evaluation-only tasks
# are members at rate 0, so evaluating the mixture evaluates them too.
GLUE_TRAIN_EXAMPLES = {
    "glue_cola_v002": 8_551,
    "glue_sst2_v002": 67_349,
    "glue_mrpc_v002": 3_668,
    "glue_qqp_v002": 363_849,
    "glue_stsb_v002": 5_749,
    "glue_mnli_v002": 392_702,
    "glue_qnli_v002": 104_743,
    "glue_rte_v002": 2_490,
    "glue_mnli_mismatched_v002": 0,
    "glue_mnli_matched_v002": 0,
    "glue_ax_v002": 0,
}
GLUE_MIXTURE = "glue_v002_proportional"
MNLI_AND_DEV_MIXTURE = "glue_mnli_and_dev_v002"


def _register_glue_task(task: GlueTask) -> seqio.Task:
  if task.label_names is None:
    preprocessor, postprocess_fn = stsb_text, postprocessors.string_to_float
  else:
    preprocessor = functools.partial(glue_text, benchmark_name=task.benchmark_name,
                                     label_names=task.label_names)
    postprocess_fn = postprocessors.class_id(task.label_names)
  return register_text_task(task.name, f"glue/{task.config}:{GLUE_TFDS_VERSION}",
                            task.splits, preprocessor, task.metric_fns, postprocess_fn)


def register_glue_tasks(version: str | None = None) -> str:
  """(Re-)registers the GLUE tasks and mixture on TFDS `glue/*:<version>` (see
  `glue_tfds_version`); returns the version."""
  global GLUE_TFDS_VERSION
  GLUE_TFDS_VERSION = glue_tfds_version(version)
  for task in GLUE_TASKS:
    _register_glue_task(task)
  register_mixture(GLUE_MIXTURE, GLUE_TRAIN_EXAMPLES)
  # T5's MNLI with its two validation sets, each at rate 1.
  register_mixture(MNLI_AND_DEV_MIXTURE, {name: 1.0 for name in GLUE_TRAIN_EXAMPLES
                                          if "mnli" in name})
  return GLUE_TFDS_VERSION


register_glue_tasks(GLUE_TFDS_VERSION)
