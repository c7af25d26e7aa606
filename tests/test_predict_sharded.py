"""The one predict path: evaluation, inference and bench on 8 simulated CPU devices
(mesh data=4 x model=2) give the scores and decoded tokens of one device."""

import os
import textwrap

import pytest

import toy_tasks  # pylint: disable=unused-import  (registers toy_reverse)
from altup_t5 import cli
from altup_t5.jobs import train as train_lib
from model_helpers import run_on_8_cpu_devices

GIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gin")

SCRIPT = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, "tests")
    import jax, numpy as np
    import toy_tasks  # registers toy_reverse
    from altup_t5 import cli
    from altup_t5.bench import bench
    from altup_t5.jobs import evaluate as eval_lib
    from altup_t5.jobs import infer as infer_lib
    from altup_t5.training import partitioning
    from model_helpers import micro_config

    checkpoint, out_dir, mesh_model = sys.argv[1], sys.argv[2], int(sys.argv[3])
    gin, task = "tests/gin", ["--gin.MIXTURE_OR_TASK_NAME='toy_reverse'",
                              "--gin.TASK_FEATURE_LENGTHS={'inputs': 64, 'targets': 48}",
                              "--gin.VOCABULARY='byte'", "--gin.BATCH_SIZE=8",
                              f"--gin.MESH_MODEL={mesh_model}"]
    scores = cli.run(eval_lib.evaluate, [
        f"--gin_file={gin}/toy_model.gin", "--gin_file=runs/eval.gin", *task,
        f"--gin.CHECKPOINT_PATH={checkpoint}", f"--gin.EVAL_OUTPUT_DIR={out_dir}/eval",
        "--gin.INFER_EXAMPLES=12"], prog="eval")
    # 12 examples in batches of 8 rows: the second batch is padded.
    cli.run(infer_lib.infer, [
        f"--gin_file={gin}/toy_model.gin", "--gin_file=runs/infer.gin", *task,
        f"--gin.CHECKPOINT_PATH={checkpoint}", f"--gin.INFER_OUTPUT={out_dir}/out.jsonl",
        "--gin.INFER_EXAMPLES=12", "--gin.DECODE_METHOD='beam'", "--gin.BEAM_SIZE=2"],
        prog="infer")
    predictions = [json.loads(line)["prediction"] for line in open(f"{out_dir}/out.jsonl")]
    # bench's decode goes through the same predictor, on bench's mesh of all devices.
    settings = bench.BenchSettings(batch=8, inputs_length=16, targets_length=8,
                                   decode_tokens=6, decode_batch=(8,))
    mesh = partitioning.make_mesh(model=mesh_model)
    subject = bench.make_subject(micro_config("altup", num_heads=4), settings, mesh)
    print(json.dumps(dict(devices=jax.device_count(), mesh=dict(mesh.shape),
                          scores=scores, predictions=predictions,
                          bench=np.asarray(subject.outputs["decoded"][8]).tolist())))
""")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("toy")
  cli.run(train_lib.train, [f"--gin_file={GIN}/toy_pretrain.gin",
                            f"--gin.MODEL_DIR={model_dir}", "--gin.TRAIN_STEPS=60",
                            "--gin.CHECKPOINT_PERIOD=60", "--gin.LOG_PERIOD=60"],
          prog="train")
  return model_dir / "checkpoints"


@pytest.mark.slow
def test_eval_infer_and_bench_on_8_devices_equal_one_device(checkpoint, tmp_path):
  one = run_on_8_cpu_devices(SCRIPT, timeout=900, devices=1,
                             args=(checkpoint, tmp_path / "one", 1))
  eight = run_on_8_cpu_devices(SCRIPT, timeout=900, devices=8,
                               args=(checkpoint, tmp_path / "eight", 2))
  assert (one["devices"], eight["devices"]) == (1, 8)
  assert eight["mesh"] == {"data": 4, "expert": 1, "model": 2}
  assert set(one["scores"]) == set(eight["scores"])
  assert eight["scores"] == pytest.approx(one["scores"], rel=1e-5)
  assert len(one["predictions"]) == 12
  assert eight["predictions"] == one["predictions"]
  assert eight["bench"] == one["bench"]
