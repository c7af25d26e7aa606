"""C4 span corruption, T5's pretraining task, on TFDS `c4/en` (prepared beforehand).

  c4_v220_span_corruption  c4/en:2.2.0 (the version T5X's own C4 pretraining gin uses)
  c4_v310_span_corruption  c4/en:3.1.0

T5's pipeline: the `text` field becomes `targets`, is tokenized with the chosen
vocabulary (`vocabularies.CHOSEN`; gin binds `vocabularies.choose`), cached here if
seqio caching is used, span-corrupted (noise density 0.15, mean span 3, which turns
568 raw tokens into 512 inputs and 114 targets), and ends with EOS. Splits: `train` and
`validation`, TFDS's names, as in T5. The data is read from the TFDS data directory;
nothing is downloaded at run time (see `sources`).
"""

from __future__ import annotations

import functools

import seqio

from altup_t5.data import sources
from altup_t5.data import vocabularies
from altup_t5.data.denoising import span_corruption

FEATURES = {
    "inputs": seqio.Feature(vocabularies.CHOSEN, add_eos=True, required=False),
    "targets": seqio.Feature(vocabularies.CHOSEN, add_eos=True),
}
VERSIONS = {"c4_v220_span_corruption": "2.2.0", "c4_v310_span_corruption": "3.1.0"}

for _name, _version in VERSIONS.items():
  seqio.TaskRegistry.add(
      _name,
      source=sources.tfds_source(f"c4/en:{_version}", splits=("train", "validation")),
      preprocessors=[
          functools.partial(seqio.preprocessors.rekey, key_map={"targets": "text"}),
          seqio.preprocessors.tokenize,
          seqio.CacheDatasetPlaceholder(),
          span_corruption,
          seqio.preprocessors.append_eos_after_trim,
      ],
      output_features=FEATURES,
      metric_fns=[])
