"""Looking tasks up: every expected name is registered, an unknown name lists the
closest ones, a missing TFDS dataset is one clear error, and importing `altup_t5.data`
stays cheap."""

import subprocess
import sys

import pytest
import seqio

from altup_t5.data import sources
from altup_t5.data import tasks

EXPECTED = (
    ["c4_v220_span_corruption", "c4_v310_span_corruption"]
    + [f"glue_{t}_v002" for t in ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli",
                                  "mnli_mismatched", "mnli_matched", "qnli", "rte", "wnli",
                                  "ax")]
    + [f"super_glue_{t}_v102" for t in ("boolq", "cb", "copa", "multirc", "record", "rte",
                                        "wic", "wsc", "axb", "axg")]
    + ["dpr_v001_simple", "super_glue_wsc_v102_simple_train",
       "super_glue_wsc_v102_simple_eval", "glue_wnli_v002_simple_eval",
       "squad_v010_allanswers", "squad_v010_context_free", "trivia_qa_open",
       "trivia_qa_v010"]
    + [f"super_glue_{t}_v102_1_sentinel" for t in ("boolq", "cb", "copa", "multirc",
                                                   "record", "rte", "wic", "axb", "axg")]
    + ["dpr_v001_simple_1_sentinel", "super_glue_wsc_v102_simple_1_sentinel_train",
       "super_glue_wsc_v102_simple_1_sentinel_eval"]
    + ["glue_v002_proportional", "super_glue_v102_proportional",
       "super_glue_v102_proportional_sentinel", "wsc_dpr_simple_proportional",
       "glue_mnli_and_dev_v002", "local_span_corruption", "local_author", "local_same_work",
       "local_classification"])


def test_every_task_and_mixture_is_registered():
  assert set(EXPECTED) <= set(tasks.registered_names())
  for name in EXPECTED:
    assert tasks.get_task_or_mixture(name).name == name


@pytest.mark.parametrize("name,closest", [
    ("glue_rte", "glue_rte_v002, super_glue_rte_v102"),
    ("c4_span_corruption", "c4_v310_span_corruption, c4_v220_span_corruption, "
                           "local_span_corruption"),
    ("local_autor", "local_author"),
])
def test_unknown_name_lists_the_closest_registered_names(name, closest):
  with pytest.raises(ValueError) as error:
    tasks.get_task_or_mixture(name)
  message = str(error.value)
  assert message.startswith(f"unknown task or mixture {name!r}; closest registered names: "
                            f"{closest}")
  assert "\n" not in message


def test_unknown_name_with_nothing_close():
  with pytest.raises(ValueError, match=r"^unknown task or mixture 'xyzzy'; no registered name "
                                       r"is close; there are \d+, e\.g\. local_author"):
    tasks.get_task_or_mixture("xyzzy")


# ---------------------------------------------------------------- missing TFDS data


@pytest.fixture
def fake_tfds_dir(tmp_path):
  """A TFDS data directory holding something, but not the dataset asked for."""
  (tmp_path / "glue" / "cola" / "2.0.0").mkdir(parents=True)
  (tmp_path / "downloads").mkdir()
  return str(tmp_path)


def expected_message(name, data_dir):
  return (f"TFDS dataset '{name}' is not prepared in the TFDS data directory {data_dir}. "
          f"Prepare it on a machine with network access with `tfds build {name} "
          f"--data_dir=DIR`, then point --tfds_data_dir (or the TFDS_DATA_DIR environment "
          f"variable) at DIR or at any directory holding a prepared copy (TPU users: "
          f"gs://tfds-data/datasets or their own bucket).")


def test_missing_dataset_is_one_clear_error(fake_tfds_dir):
  source = sources.tfds_source("glue/rte:2.0.0", splits=["train", "validation"],
                               data_dir=fake_tfds_dir)
  with pytest.raises(sources.DatasetMissingError) as error:
    source.get_dataset("train")
  assert str(error.value) == expected_message("glue/rte:2.0.0", fake_tfds_dir)
  assert isinstance(error.value, ValueError) and error.value.__cause__ is None
  # Size questions answer "unknown" so that seqio reaches the read and its error.
  assert source.num_input_examples("train") is None and source.list_shards("train") == []


def test_missing_dataset_through_a_registered_task(fake_tfds_dir):
  """The real C4 task, as the trainer reads it (sharded, via seqio.get_dataset)."""
  seqio.utils.set_tfds_data_dir_override(fake_tfds_dir)
  try:
    with pytest.raises(sources.DatasetMissingError) as error:
      seqio.get_dataset("c4_v310_span_corruption", {"inputs": 512, "targets": 114},
                        seqio.EncDecFeatureConverter(), dataset_split="validation",
                        shard_info=seqio.ShardInfo(0, 2))
  finally:
    seqio.utils.set_tfds_data_dir_override(None)
  assert str(error.value) == expected_message("c4/en:3.1.0", fake_tfds_dir)


def test_missing_splits_cannot_be_listed(fake_tfds_dir):
  source = sources.tfds_source("c4/en:3.1.0", data_dir=fake_tfds_dir)  # splits from TFDS
  with pytest.raises(sources.DatasetMissingError, match="'c4/en:3.1.0' is not prepared"):
    _ = source.splits


def test_unknown_tfds_name_keeps_tfds_message(fake_tfds_dir):
  source = sources.tfds_source("glue/no_such_config:2.0.0", splits=["train"],
                               data_dir=fake_tfds_dir)
  with pytest.raises(ValueError, match=r"unknown TFDS dataset 'glue/no_such_config:2.0.0': "
                                       r".*BuilderConfig no_such_config not found"):
    source.get_dataset("train")


def test_importing_the_data_package_loads_no_tensorflow_and_downloads_nothing(tmp_path):
  code = ("import sys, altup_t5.data as d; "
          "print('tensorflow' in sys.modules, 'seqio' in sys.modules, d.data_dir())")
  env = {"ALTUP_T5_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, check=True).stdout.split()
  assert out == ["False", "False", str(tmp_path / "data")]
  assert not (tmp_path / "data").exists()
