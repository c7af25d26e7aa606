"""Our modules in t5x's own trainer (gin/t5x), and t5x's checkpoints read by ours.

Without t5x (CI): every gin/t5x file parses with t5x's configurables skipped, each size
composes with each variant into the intended config and t5x model class, and both of
t5x's checkpoint layouts read back exactly. The tests that need t5x skip with the reason;
run them where t5x is installed (README "Using T5X's trainer"), e.g.
  /work/venv_t5x/bin/python -m pytest tests/test_t5x.py
"""

import contextlib
import copy
import functools
import importlib
import io
import os
import re
import subprocess
import sys

import flax
import gin
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
import tensorflow as tf
import tensorstore as ts
from flax import serialization

import model_helpers
from altup_t5.inference import decoding
from altup_t5.training import checkpoints
from altup_t5.jobs import load  # load_params reads ours and t5x's
from altup_t5.model import config
from altup_t5.training import seq2seq
from altup_t5.training import partitioning
from altup_t5.t5x import checkpoints as t5x_checkpoints
from altup_t5.training import trainer

try:
  import t5x  # pylint: disable=g-import-not-at-top
  T5X_MISSING = None
except ImportError as error:  # t5x is GitHub-only: see README "Using T5X's trainer"
  t5x = None
  T5X_MISSING = (f"t5x is not importable ({type(error).__name__}: {error}); install it as "
                 "README 'Using T5X's trainer' says to run these tests")
requires_t5x = pytest.mark.skipif(T5X_MISSING is not None, reason=T5X_MISSING or "")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(ROOT, "tests")
T5X_GIN = os.path.join(ROOT, "gin", "t5x")
GIN_FILES = sorted(os.path.relpath(os.path.join(d, f), T5X_GIN)
                   for d, _, fs in os.walk(T5X_GIN) for f in fs if f.endswith(".gin"))
SIZES = ("micro", "tiny", "tiny2x", "small", "base", "large", "xl", "xxl")
VARIANTS = ("dense", "altup", "recycled_altup", "moe", "altup_moe", "wide")
MOE_VARIANTS = ("moe", "altup_moe")


# ------------------------------------------------------------------ parsing gin/t5x

_IMPORT = re.compile(r"^\s*(?:from\s+(\S+)\s+)?import\s+(\S+)(?:\s+as\s+(\S+))?", re.M)
_INCLUDE = re.compile(r"^\s*include\s+['\"]([^'\"]+)['\"]", re.M)


def _t5x_root():
  return os.path.dirname(os.path.dirname(t5x.__file__)) if t5x else None


def _skipped_aliases(path: str) -> set[str]:
  """gin aliases in `path` (and the files it includes) that belong to t5x: modules that
  fail to import only because t5x is missing, and `__main__` (t5x's scripts)."""
  aliases, stack = set(), [path]
  while stack:
    text = open(stack.pop(), encoding="utf-8").read()
    for source, name, alias in _IMPORT.findall(text):
      if source == "__gin__":
        continue
      module = f"{source}.{name}" if source else name
      alias = alias or (name if source else name.split(".")[0])
      if module == "__main__":
        aliases.add(alias)
        continue
      try:
        importlib.import_module(module)
      except ModuleNotFoundError as error:
        if error.name.split(".")[0] != "t5x":
          raise  # a wrong import of ours is a real error
        aliases.add(alias)
    for include in _INCLUDE.findall(text):
      found = [os.path.join(r, include) for r in (T5X_GIN, _t5x_root()) if r
               and os.path.isfile(os.path.join(r, include))]
      stack.extend(found[:1])
  return aliases


class _SkipAliases(set):
  """gin's `skip_unknown` as a set: skip exactly the selectors under these aliases."""

  def __init__(self, aliases):
    super().__init__()
    self.aliases = aliases

  def __contains__(self, selector):
    return selector.split(".")[0] in self.aliases

  def __bool__(self):  # also skip their failed imports
    return True


def _is_missing_t5x_file(path: str) -> bool:
  """One of t5x's own gin files (`t5x/configs/runs/pretrain.gin`, ...), t5x missing."""
  return (t5x is None and not path.startswith(T5X_GIN)
          and re.search(r"(^|/)t5x/(configs|contrib|examples)/.*\.gin$", path) is not None)


# Without t5x, an `include 't5x/configs/runs/...'` reads as an empty file; with it,
# t5x's own files are found as t5x's train.py finds them (beside the package).
gin.config.register_file_reader(lambda path: io.StringIO(""), _is_missing_t5x_file)
if t5x is not None:
  gin.add_config_file_search_path(_t5x_root())


def parse_t5x_gin(files, bindings=()):
  """Parses gin/t5x files as `--gin_search_paths=gin/t5x` would, skipping t5x's
  configurables when t5x is missing; no finalize (t5x's references stay unresolved)."""
  gin.clear_config()
  paths = [os.path.join(T5X_GIN, f) for f in files]
  aliases = set().union(*(_skipped_aliases(p) for p in paths))
  # gin tries the working directory first: `include 'models/...'` must find gin/t5x's
  # files, not gin/'s (which other tests' entry points add to gin's search paths).
  with contextlib.chdir(T5X_GIN):
    gin.parse_config_files_and_bindings(paths, list(bindings),
                                        skip_unknown=_SkipAliases(aliases),
                                        finalize_config=False)


@pytest.mark.parametrize("name", GIN_FILES)
def test_every_t5x_gin_file_parses(name):
  parse_t5x_gin([name], ["DROPOUT_RATE = 0.0"])
  if name.startswith("runs/") and name != "runs/from_exported.gin":
    from altup_t5.data import tasks  # pylint: disable=g-import-not-at-top
    task = gin.query_parameter("%MIXTURE_OR_TASK_NAME")
    assert tasks.get_task_or_mixture(task).name == task  # a registered name, no typo
    assert set(gin.query_parameter("%TASK_FEATURE_LENGTHS")) == {"inputs", "targets"}


def _composed(files):
  parse_t5x_gin(files, ["DROPOUT_RATE = 0.0"])
  cfg = gin.get_configurable(config.config_for)()
  return cfg, gin.query_parameter("%MODEL").selector


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("size", SIZES)
def test_size_and_variant_files_compose_in_either_order(size, variant):
  files = [f"models/t5_1_1/{size}.gin", f"models/{variant}.gin"]
  cfg, model_class = _composed(files)
  assert (cfg, model_class) == _composed(files[::-1])
  expected = config.config_for(
      size, variant, dropout_rate=0.0, dtype="float32" if size in ("micro", "tiny", "tiny2x") else "bfloat16",
      float32_attention_logits=False,  # t5x's default, which gin/t5x keeps
      **({"num_experts": 8} if variant in MOE_VARIANTS else {}))
  assert cfg == expected
  # MoE variants need t5x's MoE wrapper: it adds the auxiliary losses.
  assert model_class == ("moe_models.MoeEncoderDecoderModel" if variant in MOE_VARIANTS
                         else "models.EncoderDecoderModel")


def test_t5x_tests_report_why_they_skip():
  if t5x is None:
    assert "t5x is not importable" in requires_t5x.kwargs["reason"]
  else:
    assert not requires_t5x.args[0]


# ------------------------------------------------------------------ t5x's layouts, no t5x

@functools.lru_cache(maxsize=None)
def _micro_params(variant="altup"):
  cfg = model_helpers.micro_config(variant)
  module = seq2seq.Transformer(cfg)
  return module, model_helpers.init_params(module, model_helpers.random_batch(cfg))


def _abstract(params, sharding=None):
  return jax.tree_util.tree_map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), params)


def _assert_same(a, b):
  """Same tree (t5x's FrozenDicts read as dicts), dtypes and values, bit for bit."""
  a, b = flax.core.unfreeze(a), flax.core.unfreeze(b)
  flat_a, tree_a = jax.tree_util.tree_flatten(a)
  flat_b, tree_b = jax.tree_util.tree_flatten(b)
  assert tree_a == tree_b
  for x, y in zip(flat_a, flat_b):
    assert np.asarray(x).dtype == np.asarray(y).dtype
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_exported_checkpoint_reads_back_exactly(tmp_path):
  _, params = _micro_params()
  old = jax.tree_util.tree_map(lambda x: x + 1, params)
  t5x_checkpoints.write_params(old, tmp_path, step=3)
  path = t5x_checkpoints.write_params(params, tmp_path, step=11)
  assert path == str(tmp_path / "checkpoint_11")
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  for where in (path, tmp_path):  # a step directory, or a t5x MODEL_DIR (newest step)
    _assert_same(t5x_checkpoints.read_params(where, _abstract(params, device)), params)
    _assert_same(load.load_params(str(where), _abstract(params, device)), params)
  with pytest.raises(ValueError, match="already exists"):
    t5x_checkpoints.write_params(params, tmp_path, step=11)


def _write_legacy(step_dir, target, inline=(), on_gcs=(), bfloat16=()):
  """t5x's legacy layout, written here from its description (t5x.checkpoints.Checkpointer):
  msgpack {'version': 3, 'optimizer': {'target', 'state'}}; each array a zarr directory
  `target.<path with dots>/` named by a relative tensorstore spec, or inline."""
  os.makedirs(step_dir)
  def leaf(name, value):
    if name in inline:
      return np.asarray(value)
    dtype = "bfloat16" if name in bfloat16 else "float32"
    relative = "target." + name.replace("/", ".") + "/"
    metadata = {"shape": list(value.shape), "chunks": list(value.shape),
                "compressor": {"id": "gzip", "level": 1}}
    store = ts.open({"driver": "zarr", "dtype": dtype, "metadata": metadata,
                     "kvstore": {"driver": "file", "path": os.path.join(step_dir, relative)}},
                    create=True).result()
    store.write(np.asarray(value).astype(ml_dtypes.bfloat16 if dtype == "bfloat16"
                                         else np.float32)).result()
    kvstore = ({"driver": "gcs", "bucket": "t5x-dummy-bucket", "path": relative}
               if name in on_gcs else {"driver": "file", "path": relative})
    return {"driver": "zarr", "dtype": dtype, "kvstore": kvstore, "metadata": metadata}
  flat = t5x_checkpoints._flat(target)  # pylint: disable=protected-access
  tree = {}
  for name, value in flat.items():
    node = tree
    for part in name.split("/")[:-1]:
      node = node.setdefault(part, {})
    node[name.split("/")[-1]] = leaf(name, value)
  contents = {"version": 3, "optimizer": {"target": tree, "state": {"step": np.int32(7)}}}
  with open(os.path.join(step_dir, "checkpoint"), "wb") as f:
    f.write(serialization.msgpack_serialize(contents))


def test_legacy_t5x_checkpoint_is_read(tmp_path):
  module, params = _micro_params()
  names = sorted(t5x_checkpoints._flat(params))  # pylint: disable=protected-access
  embedding = "token_embedder/embedding"
  _write_legacy(str(tmp_path / "checkpoint_7"), params, inline=names[:2],
                on_gcs=names[2:4], bfloat16=[embedding])
  listed = t5x_checkpoints.checkpoint_params(tmp_path)
  assert listed[embedding] == (params["token_embedder"]["embedding"].shape, "bfloat16")
  restored = load.load_params(str(tmp_path), _abstract(params))
  flat = t5x_checkpoints._flat(restored)  # pylint: disable=protected-access
  for name, value in t5x_checkpoints._flat(params).items():  # pylint: disable=protected-access
    want = np.asarray(value)
    if name == embedding:  # stored in bfloat16, read back as float32
      want = want.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert flat[name].dtype == np.float32
    np.testing.assert_array_equal(flat[name], want, err_msg=name)
  del module


def test_a_checkpoint_of_another_variant_is_refused_with_what_differs(tmp_path):
  _, altup = _micro_params("altup")
  _, dense = _micro_params("dense")
  t5x_checkpoints.write_params(altup, tmp_path, step=1)
  with pytest.raises(ValueError) as error:
    load.load_params(str(tmp_path), _abstract(dense))
  message = str(error.value)
  assert "does not fit the model" in message and "\n" not in message
  assert "not in the model (e.g. decoder/layers_0/altup/correct_coefs" in message
  assert "token_embedder/embedding: checkpoint (96, 2, 32), model (96, 32)" in message
  with pytest.raises(ValueError, match="is not a t5x checkpoint"):
    t5x_checkpoints.read_params(str(tmp_path / "nowhere"), _abstract(dense))
  # A MeshTF model directory also has a file named `checkpoint` (TensorFlow's index).
  meshtf = tmp_path / "meshtf"
  meshtf.mkdir()
  (meshtf / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-1000000"\n')
  with pytest.raises(ValueError, match="checkpoint is not a t5x msgpack checkpoint"):
    load.load_params(str(meshtf), _abstract(dense))


def test_export_command_writes_our_newest_checkpoint_for_t5x(tmp_path, capsys):
  _, params = _micro_params()
  tx = optax.adafactor(1e-3)
  saver = checkpoints.Checkpoints(str(tmp_path / "run" / "checkpoints"),
                                  checkpoints.CheckpointSettings(async_save=False))
  for step, p in ((2, jax.tree_util.tree_map(jnp.zeros_like, params)), (5, params)):
    saver.save(step, trainer.TrainState(step=jnp.int32(step), params=p,
                                        opt_state=tx.init(p)),
               iter(tf.data.Dataset.range(3)), 0)
  saver.close()
  assert t5x_checkpoints.main(["export", str(tmp_path / "run" / "checkpoints"),
                               str(tmp_path / "t5x")]) == 0
  assert capsys.readouterr().out.strip() == str(tmp_path / "t5x" / "checkpoint_5")
  _assert_same(t5x_checkpoints.read_params(tmp_path / "t5x", _abstract(params)),
               jax.tree_util.tree_map(np.asarray, params))
  # Ours is not mistaken for t5x's, and exporting a t5x checkpoint says why it is wrong.
  assert not t5x_checkpoints.is_t5x_checkpoint(tmp_path / "run" / "checkpoints")
  assert t5x_checkpoints.main(["export", str(tmp_path / "t5x" / "checkpoint_5"),
                               str(tmp_path / "again")]) == 2
  assert "is it a t5x checkpoint?" in capsys.readouterr().err


# ------------------------------------------------------------------ inside t5x (needs t5x)

# The toy trainer's model (tests/gin/toy_pretrain.gin), so that our trainer can also
# fine-tune what t5x trains in the end-to-end test; byte vocabulary (EOS id 1).
MICRO = ("config.config_for.vocab_size = 384", "config.config_for.emb_dim = 64",
         "config.config_for.num_heads = 2", "config.config_for.mlp_dim = 128",
         "config.config_for.num_encoder_layers = 2",
         "config.config_for.num_decoder_layers = 2", "NUM_EXPERTS = 4",
         "DROPOUT_RATE = 0.0", "VOCABULARY_KIND = 'byte'")
T5X_VARIANTS = ("dense", "altup", "recycled_altup", "moe", "altup_moe")
BATCH, INPUTS, TARGETS, EOS = 4, 16, 8, 1


def _evaluate(reference):
  """The object a gin reference (`@x()` or `%MACRO`) stands for: gin evaluates a
  reference when it deep-copies it, as it does for a configurable's arguments."""
  return copy.deepcopy(reference)


def _t5x_setup(variant, tmp_dir):
  """t5x's model and partitioner from gin/t5x, as a t5x run file would bind them."""
  moe = variant in MOE_VARIANTS
  run_gin = os.path.join(tmp_dir, "test_run.gin")
  with open(run_gin, "w", encoding="utf-8") as f:
    f.write("\n".join([
        "from __gin__ import dynamic_registration",
        "from altup_t5 import config",
        "from t5x import partitioning",
        "from t5x.contrib.moe import partitioning as moe_partitioning",
        "include 'models/t5_1_1/tiny.gin'", f"include 'models/{variant}.gin'",
        # As t5x/configs/runs/*.gin (the MoE run files leave logical_axis_rules to us).
        "PARTITIONER = " + ("@moe_partitioning.MoePjitPartitioner()" if moe
                            else "@partitioning.PjitPartitioner()"),
        "partitioning.PjitPartitioner.num_partitions = 1",
        "partitioning.PjitPartitioner.logical_axis_rules = "
        "@partitioning.standard_logical_axis_rules()",
        "moe_partitioning.MoePjitPartitioner.num_partitions = 1",
        "moe_partitioning.MoePjitPartitioner.num_expert_partitions = 1", *MICRO]) + "\n")
  parse_t5x_gin([run_gin])
  return _evaluate(gin.query_parameter("%MODEL")), _evaluate(
      gin.query_parameter("%PARTITIONER"))


def _toy_batch(seed=0):
  rng = np.random.default_rng(seed)
  targets = rng.integers(2, 384, (BATCH, TARGETS)).astype(np.int32)
  targets[-1, -3:] = 0  # padding, to exercise the masks and loss weights
  inputs = rng.integers(2, 384, (BATCH, INPUTS)).astype(np.int32)
  inputs[-1, INPUTS // 2:] = 0
  decoder_inputs = np.concatenate([np.zeros((BATCH, 1), np.int32), targets[:, :-1]], 1)
  return {"encoder_input_tokens": inputs, "decoder_target_tokens": targets,
          "decoder_input_tokens": np.where(targets > 0, decoder_inputs, 0),
          "decoder_loss_weights": (targets > 0).astype(np.int32)}


class _T5xRun:
  """One variant built from gin/t5x and trained one step by t5x's own Trainer."""

  def __init__(self, variant, tmp_dir):
    from t5x import utils  # pylint: disable=g-import-not-at-top
    from t5x import trainer as t5x_trainer  # pylint: disable=g-import-not-at-top
    from t5x.contrib.moe import trainer as moe_trainer  # pylint: disable=g-import-not-at-top
    self.variant, self.moe = variant, variant in MOE_VARIANTS
    self.model, self.partitioner = _t5x_setup(variant, tmp_dir)
    self.batch = _toy_batch()
    shapes = {k: v.shape for k, v in self.batch.items()}
    self.initializer = utils.TrainStateInitializer(
        optimizer_def=self.model.optimizer_def, init_fn=self.model.get_initial_variables,
        input_shapes=shapes, input_types={k: jnp.int32 for k in shapes},
        partitioner=self.partitioner)
    # Creating the train state validates `params_axes` and the Adafactor factor rules.
    initial = self.initializer.from_scratch(jax.random.PRNGKey(0))
    # Host copies: the train step donates (deletes) the state it is given.
    self.initial_params = jax.device_get(initial.params)
    self.initial_slots = jax.device_get(initial.param_states)
    cls, extra = ((moe_trainer.MoeTrainer, {"num_expert_partitions": 1}) if self.moe
                  else (t5x_trainer.Trainer, {}))
    self.trainer = cls(
        model=self.model, train_state=initial, partitioner=self.partitioner,
        eval_names=[], summary_dir=None, train_state_axes=self.initializer.train_state_axes,
        rng=jax.random.PRNGKey(1), num_microbatches=None,
        learning_rate_fn=utils.create_learning_rate_scheduler(
            factors="constant", base_learning_rate=0.01), **extra)
    self.initial_loss = float(self._loss(self.initial_params))
    self.trainer.train(iter([self.batch]), num_steps=1)
    self.state = self.trainer.train_state

  def _loss(self, params):
    return jax.jit(self.model.loss_fn)(params, self.batch, None)[0]


@pytest.fixture(scope="module", params=T5X_VARIANTS)
def t5x_run(request, tmp_path_factory):
  if T5X_MISSING:
    pytest.skip(T5X_MISSING)
  run = _T5xRun(request.param, str(tmp_path_factory.mktemp(request.param)))
  yield run
  run.trainer.close()


@requires_t5x
def test_t5x_trains_our_module_with_our_loss_and_factor_rules(t5x_run):
  run, cfg = t5x_run, t5x_run.model.module.config
  assert cfg.variant.value == run.variant and cfg.emb_dim == 64
  # t5x's loss (its own cross entropy, z-loss and, for MoE, its sown-metric reader)
  # equals our trainer's loss for the same parameters and batch.
  ours = seq2seq.Seq2SeqModel(run.model.module, seq2seq.LossSettings())
  our_loss, _ = jax.jit(ours.loss_and_metrics)(run.initial_params, run.batch, None)
  np.testing.assert_allclose(run.initial_loss, float(our_loss), rtol=1e-5)
  _, metrics = jax.jit(run.model.loss_fn)(run.initial_params, run.batch, None)
  assert ("experts/auxiliary_loss" in metrics) == run.moe
  # One step of t5x's Trainer (pjit, Adafactor) lowers the loss on that batch.
  assert int(run.state.step) == 1
  assert float(run._loss(run.state.params)) < run.initial_loss  # pylint: disable=protected-access
  if cfg.embedding_blocks > 1:
    # `altup_blocks: row` factors the [vocab, K, d] table as one [vocab, K*d] matrix:
    # statistics over vocab rows and over all K*d columns (not K separate [vocab, d]).
    slots = run.state.param_states["token_embedder"]["embedding"]
    assert slots.v_row.shape == (cfg.embedding_blocks, cfg.emb_dim)
    assert slots.v_col.shape == (cfg.vocab_size,)


@requires_t5x
def test_t5x_decoding_of_our_module_matches_ours(t5x_run):
  run = t5x_run
  ours = seq2seq.Seq2SeqModel(run.model.module)
  inputs = jnp.asarray(run.batch["encoder_input_tokens"])
  decode = lambda **kw: np.asarray(decoding.decode_with_model(  # pylint: disable=g-long-lambda
      ours.module, run.state.params, inputs, max_decode_length=TARGETS, eos_id=EOS,
      **kw)[0])
  # t5x's default decode_fn is beam search; one beam is greedy.
  np.testing.assert_array_equal(np.asarray(run.model.predict_batch(run.state.params, run.batch)),
                                decode(method="greedy"))
  beams, _ = run.model.predict_batch_with_aux(run.state.params, run.batch, num_decodes=4)
  np.testing.assert_array_equal(np.asarray(beams),
                                decode(method="beam", beam_size=4, alpha=0.6))


def _our_abstract_params(module):
  """Our trainer's abstract parameters (shapes, dtypes, shardings), as train.py builds them."""
  shapes = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in _toy_batch().items()}
  engine = trainer.Trainer(seq2seq.Seq2SeqModel(module), trainer.OptimizerSettings(),
                           partitioning.make_mesh(), shapes)
  abstract = jax.tree_util.tree_map(
      lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
      engine.abstract_state.params, engine.state_shardings.params)
  return engine, abstract


@requires_t5x
def test_t5x_checkpoints_restore_into_our_trainer_with_the_same_logits(t5x_run, tmp_path):
  from t5x import checkpoints as t5x_ckpt  # pylint: disable=g-import-not-at-top
  run = t5x_run
  legacy_dir, orbax_dir = str(tmp_path / "legacy"), str(tmp_path / "orbax")
  t5x_ckpt.Checkpointer(run.state, run.partitioner, legacy_dir).save(run.state)
  os.makedirs(orbax_dir)  # (t5x writes into the parent of a directory that is missing)
  manager = t5x_ckpt.OrbaxCheckpointManagerInterface(orbax_dir, run.state, run.partitioner)
  manager.save(run.state)
  manager.wait_until_finished()
  manager.close()
  expected = np.asarray(jax.jit(run.model._compute_logits)(  # pylint: disable=protected-access
      run.state.params, run.batch))
  engine, abstract = _our_abstract_params(run.model.module)
  logits = jax.jit(lambda p: run.model.module.apply(
      {"params": p}, **{k: v for k, v in run.batch.items() if k != "decoder_loss_weights"},
      enable_dropout=False))
  for layout in (legacy_dir, orbax_dir):
    path = os.path.join(layout, "checkpoint_1")
    state = engine.state_from_params(load.load_params(path, abstract))
    _assert_same(state.params, run.state.params)
    # Same parameters bit for bit; logits up to XLA's float32 rounding.
    np.testing.assert_allclose(np.asarray(logits(state.params)), expected, rtol=1e-5,
                               atol=1e-5)


@requires_t5x
def test_t5x_reads_our_exported_checkpoint_for_inference_and_fine_tuning(t5x_run, tmp_path):
  from t5x import utils  # pylint: disable=g-import-not-at-top
  run = t5x_run
  path = t5x_checkpoints.write_params(jax.tree_util.tree_map(np.asarray, run.state.params),
                                      tmp_path, step=7)
  # eval.py / infer.py: an inference state, as they restore it (strict=False).
  inference = utils.TrainStateInitializer(
      optimizer_def=None, init_fn=run.model.get_initial_variables,
      input_shapes={k: v.shape for k, v in run.batch.items()},
      input_types={k: jnp.int32 for k in run.batch}, partitioner=run.partitioner)
  restore = utils.RestoreCheckpointConfig(path=path, mode="specific", dtype="float32",
                                          strict=False)
  state, _ = utils.create_checkpoint_manager_and_restore(
      inference, run.partitioner, restore, path, None, use_orbax=True)
  assert int(state.step) == 7
  _assert_same(state.params, run.state.params)
  # train.py with runs/from_exported.gin: parameters restored, optimizer from scratch.
  parse_t5x_gin(["runs/from_exported.gin"])
  restore = _evaluate(gin.query_parameter("utils.RestoreCheckpointConfig.assignment_map"))
  restore = utils.RestoreCheckpointConfig(
      path=path, mode="specific", dtype="float32", fallback_to_scratch=True,
      assignment_map=restore)
  state, _ = utils.create_checkpoint_manager_and_restore(
      run.initializer, run.partitioner, restore, path, jax.random.PRNGKey(5),
      model_dir=str(tmp_path / "finetune"), use_orbax=True)
  _assert_same(state.params, run.state.params)
  _assert_same(state.param_states, run.initial_slots)  # all-zero slots


@requires_t5x
@pytest.mark.parametrize("variant", VARIANTS)
def test_t5x_rule_tables_name_every_axis_of_ours(variant):
  from flax.linen import partitioning as nn_partitioning  # pylint: disable=g-import-not-at-top
  from t5x import partitioning as t5x_partitioning  # pylint: disable=g-import-not-at-top
  from t5x.contrib.moe import partitioning as t5x_moe  # pylint: disable=g-import-not-at-top
  from altup_t5.t5x import adapters as t5x_adapters  # pylint: disable=g-import-not-at-top
  module = seq2seq.Transformer(model_helpers.micro_config(variant))
  batch = model_helpers.random_batch(module.config)
  variables = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), **batch,
                                                 enable_dropout=False))
  used = {a for axes in jax.tree_util.tree_leaves(
      partitioning.params_logical_axes(variables),
      is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec)) for a in axes}
  assert used <= set(t5x_adapters.logical_factor_rules())  # else t5x raises KeyError
  dense = t5x_partitioning.standard_logical_axis_rules(
      additional_rules=t5x_adapters.additional_axis_rules())
  moe = t5x_moe.standard_logical_axis_rules(
      additional_rules=t5x_adapters.moe_additional_axis_rules())
  for rules in (dense, moe):  # every name of our table, parameters and activations
    assert partitioning.LOGICAL_AXIS_NAMES <= {name for name, _ in rules}
  mesh_of = lambda axes, rules: tuple(nn_partitioning.logical_to_mesh_axes(axes, rules))
  assert mesh_of(("vocab", "altup_blocks", "embed"), dense) == ("model", None, None)
  assert mesh_of(("expert", "expert_group", "expert_capacity", "embed"), dense) == (
      None, "data", None, None)
  assert mesh_of(("expert", "expert_group"), moe) == ("expert", "data")


@requires_t5x
@pytest.mark.slow
def test_t5x_train_eval_infer_and_our_trainer_round_trip(tmp_path):
  """t5x's train.py, eval.py and infer.py with gin/t5x on the toy task; our trainer
  fine-tunes t5x's checkpoint; t5x's train.py fine-tunes our exported one."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu",
             PYTHONPATH=os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]))
  toy = tmp_path / "toy.gin"
  toy.write_text("\n".join([
      "from __gin__ import dynamic_registration", "import toy_tasks",
      "from altup_t5 import config", *MICRO,
      "MIXTURE_OR_TASK_NAME = 'toy_reverse'",
      "TASK_FEATURE_LENGTHS = {'inputs': 64, 'targets': 48}", "BATCH_SIZE = 8",
      "USE_CACHED_TASKS = False", "TRAIN_STEPS = 2"]) + "\n")
  model = ["--gin_file=models/t5_1_1/tiny.gin", "--gin_file=models/altup.gin"]

  def t5x_main(script, run_file, *flags):
    command = [sys.executable, "-m", f"t5x.{script}", f"--gin_search_paths={T5X_GIN}",
               *model, f"--gin_file={run_file}", f"--gin_file={toy}", *flags]
    done = subprocess.run(command, env=env, cwd=str(tmp_path), capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done

  t5x_dir = tmp_path / "t5x"
  t5x_main("train", "t5x/configs/runs/pretrain.gin", f"--gin.MODEL_DIR='{t5x_dir}'",
           "--gin.train.eval_period=2", "--gin.utils.SaveCheckpointConfig.period=2")
  assert (t5x_dir / "checkpoint_2" / "state").is_dir()
  checkpoint = f"--gin.CHECKPOINT_PATH='{t5x_dir / 'checkpoint_2'}'"
  t5x_main("eval", "t5x/configs/runs/eval.gin", checkpoint,
           f"--gin.EVAL_OUTPUT_DIR='{tmp_path / 'eval'}'",
           "--gin.utils.DatasetConfig.split='validation'")
  metrics = (tmp_path / "eval" / "inference_eval" / "toy_reverse-metrics.jsonl").read_text()
  assert '"step": 2, "exact_match"' in metrics  # the toy task's metric, at our checkpoint
  t5x_main("infer", "t5x/configs/runs/infer.gin", checkpoint,
           f"--gin.INFER_OUTPUT_DIR='{tmp_path / 'infer'}'",
           "--gin.utils.DatasetConfig.split='validation'")
  [predictions] = (tmp_path / "infer").glob("toy_reverse-predict.jsonl-*-of-*[0-9]")
  lines = predictions.read_text().splitlines()
  assert len(lines) == 96 and all('"prediction": ' in line for line in lines)  # validation

  # Our trainer fine-tunes t5x's checkpoint (same toy model, tests/gin/toy_pretrain.gin).
  ours = tmp_path / "ours"
  done = subprocess.run(
      [sys.executable, os.path.join(TESTS, "train_runner.py"), "train",
       f"--gin_file={os.path.join(TESTS, 'gin', 'toy_pretrain.gin')}",
       "--gin_file=models/altup.gin", f"--gin.MODEL_DIR={ours}", "--gin.TRAIN_STEPS=2",
       f"--gin.INITIAL_CHECKPOINT_PATH={t5x_dir / 'checkpoint_2'}"],
      env=env, capture_output=True, text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-3000:]
  assert f"fine-tuning from {t5x_dir / 'checkpoint_2'}" in done.stdout + done.stderr

  # ... and t5x's train.py fine-tunes ours, exported.
  exported = tmp_path / "exported"
  assert t5x_checkpoints.main(["export", str(ours / "checkpoints"), str(exported)]) == 0
  t5x_main("train", "t5x/configs/runs/finetune.gin", "--gin_file=runs/from_exported.gin",
           f"--gin.MODEL_DIR='{tmp_path / 't5x_ft'}'", "--gin.TRAIN_STEPS=4",
           f"--gin.INITIAL_CHECKPOINT_PATH='{exported / 'checkpoint_2'}'",
           "--gin.EVAL_PERIOD=2", "--gin.utils.SaveCheckpointConfig.period=2")
  # It started at the exported step (2), not from scratch (which would save step 0).
  assert sorted(p.name for p in (tmp_path / "t5x_ft").glob("checkpoint_*")) == [
      "checkpoint_2", "checkpoint_4"]
