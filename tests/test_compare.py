"""Studies and `python -m altup_t5.compare`: the speedup at equal quality on hand-made
curves, the report's tables and files, bad input before any run, and a toy study run
end to end (one run failing between two that finish), then continued."""

import csv
import os
import re

import numpy as np
import pytest

from altup_t5.studies import runner
from altup_t5.studies import plots
from altup_t5.studies import report
from altup_t5.studies import study as study_lib
from altup_t5.studies import results as study_results
from altup_t5.studies.results import EvalPoint, RunResult

TESTS = os.path.dirname(os.path.abspath(__file__))
TOY_STUDY = os.path.join(TESTS, "studies", "toy.toml")
SEEDS_STUDY = os.path.join(TESTS, "studies", "toy_seeds.toml")


def write_study(tmp_path, text, name="study.toml"):
  """A copy of the toy study with `text` substituted in."""
  path = tmp_path / name
  path.write_text(text)
  return str(path)


def toy_text(**replace):
  text = open(TOY_STUDY, encoding="utf-8").read()
  text = text.replace('files = ["../gin/toy_study.gin"]',
                      f'files = ["{os.path.join(TESTS, "gin", "toy_study.gin")}"]')
  for old, new in replace.items():
    assert old in text, old
    text = text.replace(old, new)
  return text


def csv_rows(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.DictReader(f))


# --------------------------------------------------------------------- speedup
def test_first_reach_interpolates_between_the_evaluations_around_the_crossing():
  steps, accuracy = [100, 200, 300], [0.20, 0.30, 0.40]
  # 0.35 is half way from 0.30 (step 200) to 0.40 (step 300).
  assert study_results.first_reach(steps, accuracy, 0.35) == pytest.approx(250.0)
  # 0.32 is a fifth of the way: 200 + 0.2 * 100.
  assert study_results.first_reach(steps, accuracy, 0.32) == pytest.approx(220.0)
  assert study_results.first_reach(steps, accuracy, 0.30) == 200.0  # exactly on a point
  assert study_results.first_reach(steps, accuracy, 0.10) == 100.0  # at the first eval
  assert study_results.first_reach(steps, accuracy, 0.41) is None  # never
  # The first crossing counts, even if the curve dips below again later.
  assert study_results.first_reach([1, 2, 3, 4], [0.1, 0.5, 0.2, 0.6], 0.3) == \
      pytest.approx(1.5)


def hand_made_results():
  """dense ends at 0.35 after 300 steps / 30 s; altup crosses 0.35 between its
  evaluations at 100 and 200 steps; moe never gets there; wide is past it at its
  first evaluation."""
  def run(variant, points):
    r = RunResult("tiny", variant, f"/runs/tiny_{variant}", status=study_results.FINISHED,
                  parameters=1000, xla_flops_per_step=2e9)
    r.evals = [EvalPoint(step, acc, 5.0 - acc, seconds) for step, acc, seconds in points]
    return r
  dense = run("dense", [(100, 0.20, 10.0), (200, 0.30, 20.0), (300, 0.35, 30.0)])
  altup = run("altup", [(100, 0.25, 12.0), (200, 0.40, 24.0), (300, 0.45, 36.0)])
  moe = run("moe", [(100, 0.20, 11.0), (200, 0.30, 22.0), (300, 0.34, 33.0)])
  wide = run("wide", [(100, 0.36, 20.0), (200, 0.50, 40.0), (300, 0.55, 60.0)])
  return [dense, moe, altup, wide]


def test_speedup_at_equal_quality_on_hand_made_curves():
  dense, moe, altup, wide = results = hand_made_results()
  study_results.add_speedups(results)
  for r in results:
    assert r.by_accuracy.target == 0.35
  assert dense.by_accuracy.steps == 300.0 and dense.by_accuracy.speedup_steps == 1.0
  # altup: 0.35 is 2/3 of the way from 0.25 (step 100, 12 s) to 0.40 (step 200, 24 s).
  assert altup.by_accuracy.steps == pytest.approx(100 + 100 * 2 / 3)
  assert altup.by_accuracy.seconds == pytest.approx(12 + 12 * 2 / 3)  # 20 s
  assert altup.by_accuracy.speedup_steps == pytest.approx(300 / (100 + 100 * 2 / 3))
  assert altup.by_accuracy.speedup_time == pytest.approx(30 / 20)
  assert moe.by_accuracy.steps is None and moe.by_accuracy.speedup_steps is None
  assert moe.by_accuracy.speedup_time is None
  # wide: at 0.36 >= 0.35 by its first evaluation (step 100, 20 s): 300/100 and
  # 30/20 at least.
  assert wide.by_accuracy.speedup_steps == 3.0 and wide.by_accuracy.speedup_time == 1.5
  assert wide.by_accuracy.lower_bound
  assert not (altup.by_accuracy.lower_bound or dense.by_accuracy.lower_bound)


def test_speedup_at_equal_loss_counts_lower_as_better():
  dense, moe, altup, wide = results = hand_made_results()
  # Losses are 5 - accuracy: dense ends at 4.65; moe's 4.70, 4.66 never get there.
  study_results.add_speedups(results)
  assert dense.by_loss.target == pytest.approx(4.65)
  assert moe.by_loss.steps is None
  # altup: 4.65 lies 2/3 of the way from 4.75 (step 100) to 4.60 (step 200).
  assert altup.by_loss.steps == pytest.approx(100 + 100 * 2 / 3)
  assert altup.by_loss.speedup_steps == pytest.approx(1.8)
  assert wide.by_loss.lower_bound and wide.by_loss.speedup_steps == 3.0


def test_a_size_without_a_finished_baseline_gets_no_speedups():
  dense, _, altup, _ = results = hand_made_results()
  dense.status = study_results.FAILED
  study_results.add_speedups(results)
  assert altup.by_accuracy is None and altup.by_loss is None
  assert report.speedup_text(altup, "accuracy", "speedup_steps") == "no baseline"
  assert report.speedup_text(dense, "accuracy", "speedup_steps") == "failed"


def _table_rows(text, heading):
  """{first two cells: row} of the markdown table under `heading`."""
  part = text.split(heading)[1].split("\n## ")[0]
  return {tuple(l.split(" | ")[:2]): l for l in part.splitlines()
          if l.startswith("| ") and "method |" not in l}


def test_report_shows_not_reached_in_words_and_the_interpolated_speedup(tmp_path):
  results = hand_made_results()
  study_results.add_speedups(results)
  study = study_lib.load_study(TOY_STUDY)
  figures = plots.plot_curves(results, str(tmp_path), study.name)
  text = report.write_report(study, results, str(tmp_path), ["python -m ..."], figures)
  # The paper's layout: methods as rows in the paper's order, final accuracy in %
  # (one seed: no interval).
  table = text.split("## Held-out span")[1].split("## Held-out loss")[0]
  rows = [l for l in table.splitlines() if l.startswith("| ") and "method" not in l]
  assert rows == ["| Baseline | 35.00 |", "| MoE | 34.00 |", "| AltUp (K=2) | 45.00 |",
                  "| 2x wider | 55.00 |"]
  training = _table_rows(text, "## Training speedup")
  assert training[("| tiny", "MoE")] == ("| tiny | MoE | not reached | not reached | "
                                         "not reached | not reached |")
  assert training[("| tiny", "AltUp (K=2)")] == ("| tiny | AltUp (K=2) | 1.80x | 1.50x | "
                                                 "1.80x | 1.50x |")
  assert training[("| tiny", "Baseline")] == ("| tiny | Baseline | 1.00x | 1.00x | 1.00x "
                                              "| 1.00x |")
  assert training[("| tiny", "2x wider")].startswith("| tiny | 2x wider | ≥ 3.00x | "
                                                     "≥ 1.50x |")
  # Not timed: no speed, so no paper speedup; the per-run table says so.
  speed = _table_rows(text, "## Inference speed and the paper's speedup")
  assert speed[("| tiny", "AltUp (K=2)")] == "| tiny | AltUp (K=2) | — | — | — | — |"
  rows = {r["variant"]: r for r in csv_rows(tmp_path / "results.csv")}
  assert rows["moe"]["accuracy_speedup_steps"] == "not reached"
  assert rows["moe"]["accuracy_steps_to_target"] == "not reached"
  assert rows["moe"]["loss_speedup_time"] == "not reached"
  assert float(rows["altup"]["accuracy_speedup_steps"]) == pytest.approx(1.8)
  assert float(rows["altup"]["accuracy_speedup_time"]) == pytest.approx(1.5)
  assert float(rows["altup"]["loss_speedup_steps"]) == pytest.approx(1.8)
  assert float(rows["wide"]["accuracy_speedup_steps"]) == 3.0
  assert rows["wide"]["accuracy_speedup_is_lower_bound"] == "True"
  assert rows["altup"]["accuracy_speedup_is_lower_bound"] == "False"
  assert float(rows["altup"]["final_accuracy"]) == 0.45
  curves = csv_rows(tmp_path / "curves.csv")
  assert len([c for c in curves if c["kind"] == "eval"]) == 12
  for name in plots.PLOTS:
    assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_timing_samples_run_with_the_garbage_collector_off_and_rotate():
  import gc
  from altup_t5.studies import timing
  seen = []

  def work(name):
    return lambda: seen.append((name, gc.isenabled(), gc.get_freeze_count() > 0))
  subjects = [timing.Timed(n, {"score": work(n)}, {"score": 4.0}) for n in "abc"]
  assert gc.isenabled()
  timing.measure(subjects, rounds=3, calls=2)
  # Every sample ran with the collector off and setup's objects frozen ...
  assert all(not enabled and frozen for _, enabled, frozen in seen)
  # ... each round starts one subject later, so no run always goes first, and each
  # sample is one untimed call, then two timed ones.
  assert [n for n, _, _ in seen] == [n for n in "abc" "bca" "cab" for _ in range(3)]
  # Afterwards the collector is back as it was, nothing left frozen.
  assert gc.isenabled() and gc.get_freeze_count() == 0
  assert all(len(s.samples["score"]) == 3 for s in subjects)
  assert set(subjects[0].rates()) == {"score_examples_per_second"}


def test_a_timing_sample_is_the_mean_of_its_timed_calls(monkeypatch):
  from altup_t5.studies import timing
  now = [0.0]

  def call():  # every call takes exactly 1 s of the fake clock
    now[0] += 1.0
  monkeypatch.setattr(timing.time, "perf_counter", lambda: now[0])
  subject = timing.Timed("a", {"score": call}, {"score": 4.0})
  timing.measure([subject], rounds=2, calls=2)
  # 1 s per call: the untimed warm call is outside the window (else 1.5 s) and the
  # window is divided by its calls (else 2 s).
  assert subject.samples["score"] == [1.0, 1.0]
  assert subject.rates() == {"score_examples_per_second": 4.0}
  assert now[0] == 6.0  # 2 rounds x (1 warm + 2 timed)


def test_a_failed_timing_phase_is_reported_and_the_rest_still_written(tmp_path):
  import json
  results = hand_made_results()
  study_results.add_speedups(results)
  # One run could not be timed, the others were.
  (tmp_path / "timing.json").write_text(json.dumps({"runs": {
      "tiny_dense_seed0": {"error": "", "score_examples_per_second": 100.0},
      "tiny_moe_seed0": {"error": "ValueError: no checkpoint"},
      "tiny_altup_seed0": {"error": "", "score_examples_per_second": 90.0}}}))
  runner._attach_timing(results, str(tmp_path), "")  # pylint: disable=protected-access
  dense, moe, altup, wide = results
  assert moe.timing_error == "ValueError: no checkpoint" and dense.timing_error == ""
  assert altup.score_examples_per_second == 90.0
  assert wide.timing_error == "not timed"
  study = study_lib.load_study(TOY_STUDY)
  text = report.write_report(study, results, str(tmp_path), ["python -m ..."],
                             plots.plot_curves(results, str(tmp_path), "timed"))
  speed = _table_rows(text, "## Inference speed and the paper's speedup")
  assert speed[("| tiny", "MoE")].startswith("| tiny | MoE | timing failed |")
  # One dense size: the paper's speedup is defined only at dense's own quality.
  assert speed[("| tiny", "Baseline")] == "| tiny | Baseline | 100.0 | 1.000 | +0% | +0% |"
  assert "beyond the baseline's range" in speed[("| tiny", "AltUp (K=2)")]
  # The whole phase failing: every run says so, and the report is still written.
  results = hand_made_results()
  runner._attach_timing(results, str(tmp_path / "none"), "killed by signal SIGKILL")  # pylint: disable=protected-access
  assert {r.timing_error for r in results} == {
      "timing phase failed: killed by signal SIGKILL"}
  text = report.write_report(study, results, str(tmp_path), ["python -m ..."], {})
  assert text.count("timing failed") >= 4 and "## Every run" in text


def seeded_results():
  """Two sizes x (dense, altup) x three seeds, with timings: final accuracy, loss,
  non-sentinel accuracy and floor written out by hand."""
  accuracy = {("micro", "dense"): [0.30, 0.32, 0.31], ("micro", "altup"): [0.33, 0.34, 0.35],
              ("tiny", "dense"): [0.40, 0.42, 0.41], ("tiny", "altup"): [0.42, 0.45, 0.435]}
  speed = {("micro", "dense"): 400.0, ("micro", "altup"): 380.0,
           ("tiny", "dense"): 200.0, ("tiny", "altup"): 190.0}
  results = []
  for (size, variant), values in accuracy.items():
    for seed, acc in enumerate(values):
      r = RunResult(size, variant, f"/r/{size}_{variant}_seed{seed}", seed=seed,
                    status=study_results.FINISHED, parameters=10 if size == "micro" else 20)
      r.evals = [EvalPoint(100, acc - 0.1, 6.0 - acc, 1.0),
                 EvalPoint(200, acc, 5.0 - acc, 2.0, nonsentinel_accuracy=acc - 0.25,
                           trivial_floor=0.25)]
      r.score_examples_per_second = speed[(size, variant)] + seed  # seeds differ a bit
      results.append(r)
  return results


def test_report_gives_intervals_paired_differences_and_the_papers_speedup(tmp_path):
  from scipy import stats as scipy_stats
  results = seeded_results()
  study_results.add_speedups(results)
  study = study_lib.load_study(TOY_STUDY)
  text = report.write_report(study, results, str(tmp_path), ["python -m ..."],
                             plots.plot_curves(results, str(tmp_path), "seeded"))
  # Accuracy: mean and t interval over three seeds, against scipy.
  def ci(values):
    low, high = scipy_stats.t.interval(0.95, len(values) - 1, loc=np.mean(values),
                                       scale=scipy_stats.sem(values))
    return np.mean(values), (high - low) / 2
  mean, half = ci([42.0, 45.0, 43.5])
  table = text.split("## Held-out span")[1].split("## Held-out loss")[0]
  assert f"| AltUp (K=2) | 34.00 ± {100 * ci([.33, .34, .35])[1]:.2f} | " \
      f"{mean:.2f} ± {half:.2f} |" in table
  # Paired differences: tiny altup - dense = [2, 3, 2.5] points, significant; micro
  # [3, 2, 4] points: 3 ± 2.48, also above zero.
  diff = _table_rows(text, "## Difference to dense")[("| tiny", "AltUp (K=2)")]
  d_mean, d_half = ci([2.0, 3.0, 2.5])
  assert diff.startswith(f"| tiny | AltUp (K=2) | +{d_mean:.2f} ± {d_half:.2f} * |")
  # Loss is 5 - accuracy: the same differences, negative, in nats.
  assert f"| -{d_mean / 100:.4f} ± {d_half / 100:.4f} * |" in diff
  floor = _table_rows(text, "## Above the trivial floor")[("| micro", "Baseline")]
  assert "| 25.00 ± 0.00 | 6.00 ± " in floor  # 31 % accuracy, 25 % floor
  # The paper's speedup: micro altup (34%, 381/s) against the dense curve (31% at
  # 401/s, 41% at 201/s): dense at 34% runs 401 * (201/401)^0.3 examples/s.
  speed = _table_rows(text, "## Inference speed and the paper's speedup")
  expected = 381.0 / (401.0 * (201.0 / 401.0) ** 0.3) - 1
  assert speed[("| micro", "AltUp (K=2)")].startswith(
      f"| micro | AltUp (K=2) | 381.0 ± ")
  assert f"| {100 * expected:+.0f}% |" in speed[("| micro", "AltUp (K=2)")]
  # tiny altup (43%) is better than the best dense size (41%): beyond the range.
  assert "beyond the baseline's range" in speed[("| tiny", "AltUp (K=2)")]
  groups = [g for g in csv_rows(tmp_path / "groups.csv") if g["quality"] == "accuracy"]
  tiny_altup = next(g for g in groups if g["size"] == "tiny" and g["variant"] == "altup")
  assert float(tiny_altup["ci95_half_width"]) == pytest.approx(half / 100)
  assert tiny_altup["diff_significant"] == "True"
  assert tiny_altup["paper_speedup"] == "beyond the baseline's range"


def test_accuracy_noise_is_the_binomial_standard_error_of_one_evaluation():
  results = hand_made_results()[:2]  # final accuracies 0.35 and 0.34: mean 0.345
  for r in results:
    r.final.num_tokens = 10_000
  # 100 * sqrt(0.345 * 0.655 / 10000) = 0.4754 points
  assert report.accuracy_noise(results) == (
      "Each evaluation scores 10,000 held-out target tokens: at 34.5% accuracy the "
      "binomial standard error of one run's accuracy is ±0.48 points.")
  results[0].final.num_tokens = float("nan")  # not logged: say nothing
  assert report.accuracy_noise(results) == ""


def test_report_warns_when_runs_trained_with_different_code():
  results = hand_made_results()
  for r, digest in zip(results, ("aaa", "aaa", "bbb", "")):
    r.code_digest = digest
  assert report.code_versions(results) == (
      "**Warning:** the runs trained with 2 different versions of the altup_t5 sources "
      "(aaa: tiny_dense_seed0, tiny_moe_seed0; bbb: tiny_altup_seed0); their results "
      "and timings may not "
      "compare.")
  results[2].code_digest = "aaa"
  assert report.code_versions(results) == ""


# --------------------------------------------------------------------- study files
def test_a_study_becomes_one_train_command_per_size_and_variant(tmp_path):
  study = study_lib.load_study(TOY_STUDY)
  runs = study.runs(str(tmp_path))
  assert [r.name for r in runs] == ["tiny_dense_seed0", "tiny_moe_seed0",
                                    "tiny_altup_seed0"]
  moe = runs[1]
  assert moe.model_dir == str(tmp_path / "tiny_moe_seed0")
  assert moe.flags()[:4] == [
      "--gin_file=models/t5_1_1/tiny.gin", "--gin_file=models/moe.gin",
      "--gin_file=runs/pretrain.gin",
      "--gin_file=" + os.path.join(TESTS, "gin", "toy_study.gin")]
  bindings = dict(moe.bindings)
  assert bindings["TASK_FEATURE_LENGTHS"] == '{"inputs": 64, "targets": 48}'
  assert bindings["MIXTURE_OR_TASK_NAME"] == '"toy_reverse"'
  assert bindings["TRAIN_STEPS"] == "4" and bindings["MESH_MODEL"] == "3"
  assert bindings["RANDOM_SEED"] == "0"
  assert "MESH_MODEL" not in dict(runs[0].bindings)  # by_variant: moe only
  assert study.runs(str(tmp_path), stage=study_lib.FINETUNE) == []  # no [finetune]


def test_seeds_and_the_finetuning_stage_make_one_run_each(tmp_path):
  study = study_lib.load_study(SEEDS_STUDY)
  runs = study.all_runs(str(tmp_path))
  names = [r.name for r in runs]
  assert names[:4] == ["micro_dense_seed0", "micro_dense_seed1", "micro_altup_seed0",
                       "micro_altup_seed1"]
  assert len(names) == 16 and names[8] == "micro_dense_seed0_finetune"
  pretrain, finetune = runs[1], runs[9]
  assert dict(pretrain.bindings)["RANDOM_SEED"] == "1"
  assert dict(pretrain.bindings)["config.config_for.emb_dim"] == "32"  # by_size
  assert finetune.gin_files[2] == "runs/finetune.gin"
  bindings = dict(finetune.bindings)
  assert bindings["INITIAL_CHECKPOINT_PATH"] == json_string(
      tmp_path / "micro_dense_seed1" / "checkpoints")
  assert bindings["MODEL_DIR"] == json_string(tmp_path / "micro_dense_seed1_finetune")
  assert bindings["RANDOM_SEED"] == "1" and bindings["INFER_EXAMPLES"] == "8"
  assert bindings["config.config_for.emb_dim"] == "32"  # the network's shape, again
  assert "LOSS_NORMALIZING_FACTOR" not in bindings  # [gin.bindings]: pretraining's


def json_string(path):
  return '"' + str(path) + '"'


def test_toml_values_become_gin_text():
  assert study_lib.gin_value("NUM_REAL_TARGET_TOKENS") == '"NUM_REAL_TARGET_TOKENS"'
  assert study_lib.gin_value("@trainer.OptimizerSettings()") == "@trainer.OptimizerSettings()"
  assert study_lib.gin_value("%BATCH_SIZE") == "%BATCH_SIZE"
  assert study_lib.gin_value(True) == "True" and study_lib.gin_value(1e-3) == "0.001"
  assert study_lib.gin_value({"inputs": 512, "tags": ["a", 1.5]}) == \
      '{"inputs": 512, "tags": ["a", 1.5]}'


CONFIGS = os.path.join(os.path.dirname(TESTS), "configs")


@pytest.mark.parametrize("name", sorted(os.listdir(CONFIGS)))
def test_every_study_in_configs_checks_and_says_how_to_run_it(name, tmp_path):
  path = os.path.join(CONFIGS, name)
  study = study_lib.load_study(path)
  runner.check_runs(study, study.runs(str(tmp_path)))  # gin files, bindings, task
  header = open(path, encoding="utf-8").read().split("\n[")[0]
  assert f"python3 -m altup_t5.compare configs/{name}" in header or \
      f"python -m altup_t5.compare configs/{name}" in header
  for expectation in ("Hardware:", "Expected time", "Expected result"):
    assert expectation in header


@pytest.mark.parametrize("old, new, message", [
    ('variants = ["dense", "moe", "altup"]', 'variants = ["dense", "altupp"]',
     "[study] variants: unknown 'altupp'; allowed: dense, wide, moe, altup, "
     "recycled_altup, altup_moe"),
    ('sizes = ["tiny"]', 'sizes = ["tiny", "medium"]',
     "[study] sizes: unknown 'medium'; allowed: tiny, small, base, large, xl, xxl"),
    ('variants = ["dense", "moe", "altup"]', 'variants = ["altup"]',
     "[study] variants must include 'dense'"),
    ("train_steps = 4", "train_steps = 0", "[budget] train_steps=0 must be >= 1"),
    ("[gin.by_variant.moe]\nMESH_MODEL = 3", '[gin.bindings]\nTRAIN_STEPS = 5',
     "[gin.bindings]: TRAIN_STEPS is set by the study's own tables"),
    ("[gin.by_variant.moe]\nMESH_MODEL = 3",
     "[gin.bindings]\ntrainer.OptimizerSettings.warmup_steps = 5",
     "'trainer' is a table; quote dotted gin names"),
    ("[gin.by_variant.moe]", "[gin.by_variant.wide]",
     "[gin.by_variant] names 'wide', not in this study; allowed: dense, moe, altup"),
    ("[evaluation]", "[evaluations]", "unknown table(s) evaluations"),
    ('sizes = ["tiny"]', 'sizes = ["tiny"]\nseeds = []',
     "[study] seeds=[] must be a non-empty list of integers, e.g. [0, 1, 2]"),
    ('sizes = ["tiny"]', 'sizes = ["tiny"]\nseeds = [0, 1, 0]',
     "[study] seeds lists 0 more than once"),
    ('sizes = ["tiny"]', 'sizes = ["tiny"]\nseeds = [1]\n[budget_]',
     "unknown table(s) budget_"),
    ("log_period = 1", "log_period = 1\nrandom_seed = 3\n[study_]",
     "unknown table(s) study_"),
    ('sizes = ["tiny"]', 'sizes = ["tiny", "micro"]\nexclude = ["micro_dense"]',
     "the dense baseline lacks size 'micro', which moe, altup has"),
    ('sizes = ["tiny"]', 'sizes = ["tiny"]\nexclude = ["tiny_wide"]',
     "[study] exclude: 'tiny_wide' not in the study; allowed: tiny_dense, tiny_moe"),
    ("[gin]", '[finetune]\ntask = "toy_reverse"\n[gin]',
     "[finetune] is missing feature_lengths, train_steps, batch_size"),
])
def test_bad_study_files_are_refused_with_one_line(tmp_path, old, new, message):
  path = write_study(tmp_path, toy_text(**{old: new}))
  with pytest.raises(study_lib.StudyError) as error:
    study_lib.load_study(path)
  assert message in str(error.value)
  assert "\n" not in str(error.value)


def test_seeds_in_the_study_and_a_random_seed_in_the_budget_are_refused(tmp_path):
  text = toy_text(**{'sizes = ["tiny"]': 'sizes = ["tiny"]\nseeds = [1, 2]',
                     "log_period = 1": "log_period = 1\nrandom_seed = 3"})
  with pytest.raises(study_lib.StudyError) as error:
    study_lib.load_study(write_study(tmp_path, text))
  assert "[budget] random_seed and [study] seeds both set" in str(error.value)
  # The older single seed still works: one run per size and variant with it.
  study = study_lib.load_study(write_study(tmp_path, toy_text(
      **{"log_period = 1": "log_period = 1\nrandom_seed = 3"})))
  assert study.seeds == (3,) and study.runs("/o")[0].name == "tiny_dense_seed3"


@pytest.mark.parametrize("task, message", [
    ("toy_reversed", "[finetune] task 'toy_reversed' is not a registered task or "
     "mixture; allowed: "),
    ("local_span_corruption", "[finetune] task 'local_span_corruption' has no metrics "
     "to evaluate its decoded outputs with; choose a labelled task"),
])
def test_a_finetuning_task_that_does_not_exist_or_has_no_metrics_exits_2(
    tmp_path, capsys, task, message):
  text = open(SEEDS_STUDY, encoding="utf-8").read().replace(
      'task = "toy_reverse"', f'task = "{task}"').replace(
          'files = ["../gin/toy_study.gin"]',
          f'files = ["{os.path.join(TESTS, "gin", "toy_study.gin")}"]')
  out_dir = tmp_path / "out"
  code, _, err = run_compare(capsys, write_study(tmp_path, text), "--out", out_dir)
  assert code == 2
  (line,) = err.strip().splitlines()
  assert message in line
  assert not out_dir.exists()


def run_compare(capsys, *argv):
  code = runner.main([str(a) for a in argv])
  out, err = capsys.readouterr()
  return code, out, err


@pytest.mark.parametrize("old, new, allowed", [
    ('variants = ["dense", "moe", "altup"]', 'variants = ["dense", "switch"]',
     "allowed: dense, wide, moe, altup, recycled_altup, altup_moe"),
    ('sizes = ["tiny"]', 'sizes = ["huge"]', "allowed: tiny, small, base, large, xl, xxl"),
])
def test_unknown_variant_or_size_exits_2_before_any_run(tmp_path, capsys, old, new,
                                                        allowed):
  out_dir = tmp_path / "out"
  code, out, err = run_compare(capsys, write_study(tmp_path, toy_text(**{old: new})),
                               "--out", out_dir)
  assert code == 2
  (line,) = err.strip().splitlines()
  assert line.startswith("python -m altup_t5.compare: error: study ")
  assert allowed in line
  assert not out_dir.exists()


def test_unknown_task_or_bad_binding_exits_2_before_any_run(tmp_path, capsys):
  out_dir = tmp_path / "out"
  code, _, err = run_compare(
      capsys, write_study(tmp_path, toy_text(toy_reverse="toy_reversed")),
      "--out", out_dir)
  assert code == 2
  (line,) = err.strip().splitlines()
  assert "[task] name 'toy_reversed' is not a registered task or mixture; allowed: " \
      in line
  allowed = line.split("allowed: ")[1].split(", ")
  assert "toy_reverse" in allowed and "local_span_corruption" in allowed
  assert "c4_v220_span_corruption" in allowed

  # A binding gin cannot apply, and a network field that does not exist.
  for binding, expected in (
      ('"optimizer.OptimizerSettings.warmup_stepz" = 5',
       "run tiny_dense_seed0: gin configuration error: "),
      ('"config.config_for.emb_dimm" = 5', "run tiny_dense_seed0: unknown T5Config field(s) "
       "['emb_dimm']")):
    path = write_study(tmp_path, toy_text(**{
        "[gin.by_variant.moe]": f"[gin.bindings]\n{binding}\n[gin.by_variant.moe]"}))
    code, _, err = run_compare(capsys, path, "--out", out_dir)
    assert code == 2
    (line,) = err.strip().splitlines()
    assert expected in line
  assert not out_dir.exists()

  code, _, err = run_compare(capsys, TOY_STUDY, "--out", out_dir, "--only", "wide")
  assert code == 2
  assert "--only: 'wide' is not in the study; allowed: dense, moe, altup" in err

  code, _, err = run_compare(capsys, TOY_STUDY, "--out", "gs://bucket/study")
  assert code == 2
  assert err.strip() == ("python -m altup_t5.compare: error: --out='gs://bucket/study': "
                         "must be a directory on a file system; for a bucket, mount it "
                         "(e.g. gcsfuse) and pass the mount point")


def test_dry_run_prints_the_runs_and_where_each_stands(tmp_path, capsys):
  out_dir = tmp_path / "out"
  # A half-finished dense run: checkpoints up to step 2 (orbax names them by step).
  os.makedirs(out_dir / "tiny_dense_seed0" / "checkpoints" / "2")
  os.makedirs(out_dir / "tiny_dense_seed0" / "checkpoints" / "1")
  code, out, _ = run_compare(capsys, TOY_STUDY, "--out", out_dir, "--dry_run")
  assert code == 0
  lines = out.splitlines()
  assert lines[0] == "[1/3] tiny dense seed 0: resumed at step 2 of 4"
  assert lines[1].startswith("  python -m altup_t5.train --gin_file=models/t5_1_1/tiny.gin")
  assert lines[2] == "[2/3] tiny moe seed 0: new, 4 steps"
  assert lines[4] == "[3/3] tiny altup seed 0: new, 4 steps"
  assert not (out_dir / "report.md").exists()


def test_the_runs_share_a_compilation_cache_under_out_unless_one_is_set(
    tmp_path, monkeypatch):
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  env = runner.child_env(str(tmp_path / "out"))
  assert env["JAX_COMPILATION_CACHE_DIR"] == str(tmp_path / "out" / ".jax_cache")
  monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", "/elsewhere")
  assert runner.child_env(str(tmp_path / "out"))["JAX_COMPILATION_CACHE_DIR"] == \
      "/elsewhere"


def test_error_line_skips_the_progress_bar_and_names_signals():
  tail = ("step 2 eval: accuracy=0\n 33%|███▎      | 2/6 [00:40<01:14, 18.62s/step, "
          "loss=5.9]python -m altup_t5.train: stopped: loss is nan at step 3\n"
          " 33%|███▎      | 2/6 [00:42<01:24, 21.04s/step, loss=5.9]\n")
  assert runner.error_line(tail, 1) == (
      "python -m altup_t5.train: stopped: loss is nan at step 3")
  assert runner.error_line("", -9) == "killed by signal SIGKILL"


# --------------------------------------------------------------------- end to end
@pytest.fixture
def toy_env(monkeypatch):
  # The training processes import toy_tasks (named in tests/gin/toy_study.gin).
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      [TESTS] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
  monkeypatch.setenv("JAX_PLATFORMS", "cpu")


def test_toy_study_end_to_end_with_a_failing_run_then_continued(tmp_path, capsys,
                                                                 toy_env):
  out_dir = tmp_path / "study"

  code, out, err = run_compare(capsys, TOY_STUDY, "--out", out_dir)
  assert code == 1  # one run failed
  progress = [l for l in out.splitlines() if l.startswith("[")]
  assert progress[0] == ("[1/3] tiny dense seed 0: running (new, 4 steps); study time "
                         "so far 0 s")
  assert re.fullmatch(r"\[1/3\] tiny dense seed 0: finished in .*, held-out accuracy "
                      r"\d+\.\d\d%", progress[1])
  assert progress[3].startswith("[2/3] tiny moe seed 0: failed (exit 2) after ")
  assert progress[5].startswith("[3/3] tiny altup seed 0: finished in ")
  assert "initialised from scratch; training to step 4" in err  # the run's own output

  text = (out_dir / "report.md").read_text()
  table = text.split("## Held-out span")[1].split("## Held-out loss")[0]
  rows = [l for l in table.splitlines() if l.startswith("| ") and "method" not in l]
  assert [r.split(" | ")[0] for r in rows] == ["| Baseline", "| MoE", "| AltUp (K=2)"]
  assert rows[1] == "| MoE | failed |"
  assert re.fullmatch(r"\| Baseline \| \d+\.\d\d \|", rows[0])
  error = (r"python -m altup_t5\.train: error: mesh model=3 x expert=1 does not divide "
           r"the (\d+) devices; allowed: divisors of \1")
  assert re.search(r"- `tiny_moe_seed0` \(failed\): " + error + "\n", text)
  # The timing phase timed the two finished runs (scoring examples/s).
  speed = _table_rows(text, "## Inference speed and the paper's speedup")
  assert re.match(r"\| tiny \| AltUp \(K=2\) \| [\d,]+\.\d \| \d\.\d{3} \|",
                  speed[("| tiny", "AltUp (K=2)")])

  rows = {r["variant"]: r for r in csv_rows(out_dir / "results.csv")}
  assert list(rows) == ["dense", "moe", "altup"]
  assert rows["moe"]["status"] == "failed"
  assert re.fullmatch(error, rows["moe"]["error"])
  for variant in ("dense", "altup"):
    row = rows[variant]
    assert row["status"] == "finished" and row["final_step"] == "4"
    assert 0.0 < float(row["final_accuracy"]) < 1.0
    # Byte vocabulary: EOS is the only trivial target, one per example.
    assert 0.0 < float(row["final_trivial_floor"]) < 0.2
    assert int(row["parameters"]) > 0 and float(row["xla_flops_per_step"]) > 0
    assert float(row["median_step_seconds"]) > 0 and float(row["peak_rss_bytes"]) > 0
    assert float(row["score_examples_per_second"]) > 0 and row["timing_error"] == ""
  assert re.fullmatch(r"[0-9a-f]{12}", rows["dense"]["code_digest"])
  assert float(rows["dense"]["accuracy_speedup_steps"]) == 1.0
  # altup's speedup is a number or, if it never reached dense's quality, says so.
  assert rows["altup"]["accuracy_speedup_steps"] == "not reached" or \
      float(rows["altup"]["accuracy_speedup_steps"]) > 0
  evals = [c for c in csv_rows(out_dir / "curves.csv") if c["kind"] == "eval"]
  assert [(c["variant"], c["step"]) for c in evals if c["variant"] != "moe"] == [
      ("dense", "2"), ("dense", "4"), ("altup", "2"), ("altup", "4")]
  for name in plots.PLOTS:
    assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

  # Again, for the runs that finished: both are skipped (nothing trains, nothing is
  # timed again), and a REPRODUCTION.md skeleton is written with the plots next to it.
  metrics = (out_dir / "tiny_dense_seed0" / "metrics.jsonl").read_text()
  timing = (out_dir / "timing.json").read_text()
  doc = tmp_path / "docs" / "REPRODUCTION.md"
  code, out, err = run_compare(capsys, TOY_STUDY, "--out", out_dir,
                               "--only", "dense,altup", "--doc", doc)
  assert code == 0
  assert out.splitlines()[:2] == ["[1/2] tiny dense seed 0: finished earlier, skipped",
                                  "[2/2] tiny altup seed 0: finished earlier, skipped"]
  assert "initialised" not in err and "resumed" not in err
  assert (out_dir / "tiny_dense_seed0" / "metrics.jsonl").read_text() == metrics
  assert (out_dir / "timing.json").read_text() == timing
  assert "| MoE | failed |" in (out_dir / "report.md").read_text()  # still reported
  text = doc.read_text()
  assert "**TODO(lead):**" in text and "## Comparison with the paper" in text
  assert "python -m altup_t5.compare " in text and "--gin_file=models/altup.gin" in text
  for name in plots.PLOTS:
    assert f"(toy/{name})" in text
    assert (tmp_path / "docs" / "toy" / name).exists()


def test_seeded_study_with_finetuning_end_to_end_then_continued(tmp_path, capsys,
                                                                toy_env):
  out_dir = tmp_path / "study"
  # Part of it first (as if it had been interrupted after the dense runs), leaving
  # the timing phase to a later call ...
  code, out, _ = run_compare(capsys, SEEDS_STUDY, "--out", out_dir, "--only", "dense",
                             "--skip_timing")
  assert code == 0
  assert not (out_dir / "timing.json").exists()
  # The processes compiled into the study's one compilation cache (seed 1 loads seed
  # 0's train step from it).
  cached = [p.name for p in (out_dir / runner.COMPILATION_CACHE).iterdir()]
  assert any(name.startswith("jit__train_step_fn-") for name in cached), cached
  assert [l.split(":")[0] for l in out.splitlines() if "finished in" in l] == [
      "[1/8] micro dense seed 0", "[2/8] micro dense seed 1", "[3/8] tiny dense seed 0",
      "[4/8] tiny dense seed 1", "[5/8] micro dense seed 0 finetune",
      "[6/8] micro dense seed 1 finetune", "[7/8] tiny dense seed 0 finetune",
      "[8/8] tiny dense seed 1 finetune"]
  # ... then the whole study: the dense runs are skipped, the others train.
  code, out, err = run_compare(capsys, SEEDS_STUDY, "--out", out_dir)
  assert code == 0
  lines = [l for l in out.splitlines() if l.startswith("[")]
  assert sum("finished earlier, skipped" in l for l in lines) == 8
  assert sum("finished in" in l for l in lines) == 8
  assert "fine-tuning from " + str(out_dir / "micro_altup_seed1" / "checkpoints") in err

  rows = csv_rows(out_dir / "results.csv")
  assert [(r["size"], r["variant"], r["seed"], r["stage"]) for r in rows][:3] == [
      ("micro", "dense", "0", "pretrain"), ("micro", "dense", "1", "pretrain"),
      ("micro", "altup", "0", "pretrain")]
  assert len(rows) == 16 and all(r["status"] == "finished" for r in rows)
  for r in rows:
    assert float(r["score_examples_per_second"]) > 0
    if r["stage"] == "finetune":
      assert float(r["decode_tokens_per_second"]) > 0
      assert 0.0 <= float(r["downstream"]) <= 100.0  # exact match, in %
  groups = csv_rows(out_dir / "groups.csv")
  accuracy = [g for g in groups if g["quality"] == "accuracy"]
  assert [(g["size"], g["variant"], g["seeds"]) for g in accuracy] == [
      ("micro", "dense", "2"), ("micro", "altup", "2"), ("tiny", "dense", "2"),
      ("tiny", "altup", "2")]
  for g in accuracy:  # two seeds: a finite interval
    assert float(g["ci95_half_width"]) >= 0.0
  downstream = [g for g in groups if g["quality"] == "downstream"]
  assert len(downstream) == 4 and all(g["stage"] == "finetune" for g in downstream)

  text = (out_dir / "report.md").read_text()
  assert "over 2 seed(s) (0, 1)" in text
  fine = _table_rows(text, "## Fine-tuned on `toy_reverse`")
  assert set(fine) == {("| Baseline", ""), ("| AltUp (K=2)", "")} or len(fine) >= 2
  assert "## Inference speed and the paper's speedup at equal quality (fine-tuned)" \
      in text
  assert "`tiny_altup_seed1_finetune`" in text  # the per-run table
  for name in plots.PLOTS:
    assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
