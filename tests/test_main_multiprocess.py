"""`python -m rewardjax.main` as two processes on localhost (jax.distributed, gloo CPU collectives).

The same smoke config runs as one process on one device and as two processes of two CPU devices
each, whose (data=2, fsdp=2) mesh spans both: each process reads its own half of every global
batch (split again over its devices) and holds parts of every parameter, checkpoints are written
by both, and process 0 alone writes metrics, the report and the summary. The logged losses,
evaluation and final parameters must agree to float32 rounding. A copy of the two-process run
resumed from its step-3 checkpoint (what a preempted run leaves behind) must end exactly where
the uninterrupted one did. Every subprocess has a timeout.
"""

import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from absl import app, flags
from absl.testing import flagsaver

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds per run; a hang in a collective fails the test instead of blocking CI
TOL = 1e-5  # float32 rounding: the data-parallel mean is reduced in a different order
# SGD keeps rounding differences at rounding size; Adam's m / sqrt(v) blows up those of
# near-zero gradients to the size of the learning rate.
CONFIG = [
    "--config=configs/reward_model.py:smoke",
    "--config.optimizer.name=sgd",
    "--config.optimizer.momentum=0.9",
    "--config.optimizer.learning_rate=0.05",
]
# Two processes: parameters and optimizer state split over the fsdp axis, rows over both axes, and
# the report (process 0 evaluates alone, on host copies of the parameters).
MESH = ["--config.mesh.data=2", "--config.mesh.fsdp=2"]
MULTI = [
    *MESH,
    "--config.report.enabled=True",
    "--config.report.bon_prompts=4",
    "--config.report.bon_samples=8",
]


def _start(env, workdir, *extra_flags, num_devices=1):
    command = [sys.executable, "-m", "rewardjax.main", *CONFIG, f"--workdir={workdir}"]
    count = f" --xla_force_host_platform_device_count={num_devices}" if num_devices > 1 else ""
    env = dict(env, XLA_FLAGS=env["XLA_FLAGS"] + count)
    return subprocess.Popen(
        [*command, *extra_flags],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _start_two(env, workdir, *extra_flags):
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    return [
        _start(
            env,
            workdir,
            *extra_flags,
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
            num_devices=2,
        )
        for i in range(2)
    ]


def _wait(procs, returncode=0):
    """(stdout, stderr) of each process; all are killed if one fails or any runs past TIMEOUT."""
    outs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=TIMEOUT)
            assert proc.returncode == returncode, err[-4000:]
            outs.append((out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return outs


@pytest.fixture(scope="module")
def runs(env, tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    single, multi, resumed = root / "single", root / "multi", root / "resumed"
    procs = [_start(env, single), *_start_two(env, multi, *MULTI)]
    outs = _wait(procs)
    # What a run preempted after its step-3 checkpoint leaves; rerunning the command resumes it.
    shutil.copytree(multi, resumed)
    shutil.rmtree(resumed / "checkpoints" / "6")
    shutil.rmtree(resumed / "tensorboard")
    for name in ("report.md", *(p.name for p in resumed.glob("*.png"))):
        os.remove(resumed / name)
    kept = [r for r in _records(multi) if r["step"] <= 3 and "loss" in r]
    (resumed / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    return {
        "single": single,
        "multi": multi,
        "resumed": resumed,
        "multi_outs": outs[1:],
        # Without evaluation (the report's forward passes would not change the comparison).
        "resumed_outs": _wait(_start_two(env, resumed, *MESH, "--config.eval.enabled=False")),
    }


def _records(workdir):
    with open(workdir / "metrics.jsonl") as f:
        return [json.loads(line) for line in f]


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in _records(workdir) if "loss" in r]


def _state(workdir, step):
    """The checkpointed state read on this process's one device, whatever topology wrote it."""
    path = str(workdir / "checkpoints" / str(step) / "state")
    checkpointer = ocp.StandardCheckpointer()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
        checkpointer.metadata(path).item_metadata.tree,
    )
    return jax.tree.map(np.asarray, checkpointer.restore(path, target))


def _max_diff(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_two_processes_equal_one_process(runs):
    single, multi = runs["single"], runs["multi"]
    # Train losses step by step (each process fed a different half of each batch).
    steps_single, losses_single = zip(*_losses(single))
    steps_multi, losses_multi = zip(*_losses(multi))
    assert steps_multi == steps_single == (2, 3, 4, 6)
    np.testing.assert_allclose(losses_multi, losses_single, rtol=TOL, atol=TOL)
    # Final parameters and optimizer state.
    a, b = _state(single, 6), _state(multi, 6)
    assert int(a["step"]) == int(b["step"]) == 6
    assert _max_diff(a["params"], b["params"]) <= TOL
    assert _max_diff(a["opt_state"], b["opt_state"]) <= TOL
    assert _max_diff(a["params"], _state(single, 3)["params"]) > 1e-3  # the steps moved them
    # The two processes held halves of each parameter: embedding [vocab, embed] split on embed.
    path = str(multi / "checkpoints" / "6" / "state")
    saved = ocp.StandardCheckpointer().metadata(path).item_metadata.tree
    embedding = saved["params"]["params"]["backbone"]["embed"]["embedding"].sharding
    assert tuple(embedding.partition_spec) == ("tensor", "fsdp")
    assert dict(zip(embedding.axis_names, embedding.shape))["fsdp"] == 2
    # The evaluation process 0 ran alone on host copies of the parameters, on the whole eval set.
    (eval_single,) = [r for r in _records(single) if "eval/accuracy" in r]
    (eval_multi,) = [r for r in _records(multi) if "eval/accuracy" in r]
    assert eval_multi["eval/count"] == eval_single["eval/count"] == 16
    for key, value in eval_single.items():
        np.testing.assert_allclose(eval_multi[key], value, rtol=1e-4, atol=1e-4, err_msg=key)


def test_only_process_0_writes_run_files(runs):
    multi = runs["multi"]
    (out0, _), (out1, _) = runs["multi_outs"]
    assert "Finished reward_model: step 6" in out0 and "Report:" in out0
    assert "Finished" not in out1
    # One writer: no duplicated records, one report.
    assert [r["step"] for r in _records(multi)] == [r["step"] for r in _records(runs["single"])]
    assert glob.glob(str(multi / "tensorboard" / "events.out.tfevents.*"))
    assert (multi / "report.md").read_text().count("## Training curves") == 1
    assert json.loads((multi / "config.json").read_text())["train"]["num_steps"] == 6
    # Both processes saved their own data-iterator position.
    data = sorted(os.listdir(multi / "checkpoints" / "6" / "data"))
    assert [f for f in data if f.startswith("process_")] == [
        "process_0-of-2.json",
        "process_1-of-2.json",
    ]


def test_resumed_two_process_run_equals_uninterrupted(runs):
    multi, resumed = runs["multi"], runs["resumed"]
    for _, err in runs["resumed_outs"]:
        assert "Resumed from step 3" in err
    assert _losses(resumed) == _losses(multi)
    a, b = _state(multi, 6), _state(resumed, 6)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_restore_params_reads_a_two_process_checkpoint_on_one_device(runs):
    from rewardjax.train.checkpoint import Checkpointer

    want = _state(runs["multi"], 6)["params"]
    like = jax.tree.map(lambda x: jax.numpy.zeros(x.shape, jax.numpy.bfloat16), want)
    params = Checkpointer(str(runs["multi"] / "checkpoints")).restore_params(like)
    for got, x in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
        assert got.dtype == jax.numpy.bfloat16 and len(got.devices()) == 1
        np.testing.assert_array_equal(np.asarray(got), x.astype(jax.numpy.bfloat16))


@pytest.fixture
def main_flags():
    from rewardjax import main as main_lib

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
    return main_lib


@pytest.mark.parametrize(
    "values, message",
    [
        ({"num_processes": 2, "process_id": 0}, "--coordinator_address missing"),
        ({"coordinator_address": "localhost:1234"}, "--num_processes, --process_id missing"),
        ({"coordinator_address": "h:1", "num_processes": 2, "process_id": 2}, "--process_id=2"),
        ({"coordinator_address": "h:1", "num_processes": 0, "process_id": 0}, "--num_processes=0"),
        ({"coordinator_address": "localhost", "num_processes": 2, "process_id": 0}, "host:port"),
        ({"local_device_ids": ["0"]}, "--local_device_ids only applies"),
        (
            {
                "coordinator_address": "h:1",
                "num_processes": 2,
                "process_id": 0,
                "local_device_ids": ["a"],
            },
            "comma-separated integers",
        ),
    ],
)
def test_inconsistent_process_flags_name_the_flag_and_the_fix(main_flags, values, message):
    with flagsaver.flagsaver(**values):
        with pytest.raises(app.UsageError, match=message) as err:
            main_flags._distributed_args()
    if "missing" in message:
        assert "--num_processes=2 --process_id=0" in str(err.value)  # the example launch


def test_process_flags(main_flags):
    assert main_flags._distributed_args() is None  # single process by default
    given = {"coordinator_address": "localhost:1234", "num_processes": 2, "process_id": 1}
    with flagsaver.flagsaver(**given, local_device_ids=["0", "1"]):
        assert main_flags._distributed_args() == dict(given, local_device_ids=[0, 1])
    with flagsaver.flagsaver(auto_distributed=True):  # the cluster supplies the rest
        assert main_flags._distributed_args() == {"local_device_ids": None}
    # --help shows the module docstring: a two-process localhost launch.
    for i in range(2):
        assert f"--num_processes=2 --process_id={i}" in main_flags.__doc__


def test_sigterm_to_one_process_stops_both_at_the_same_step(env, tmp_path):
    # A long run (the smoke runs' learning-rate schedule, so their compiled step is reused).
    long_run = ["--config.train.num_steps=100000", "--config.optimizer.decay_steps=4"]
    quick = [
        "--config.train.log_every=1",
        "--config.train.checkpoint_every=100000",
        "--config.eval.enabled=False",
    ]
    procs = _start_two(env, tmp_path, *MESH, *long_run, *quick)
    deadline = time.monotonic() + TIMEOUT
    while not (tmp_path / "metrics.jsonl").exists() or not _records(tmp_path):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGTERM)  # process 0 is never signalled
    outs = _wait(procs, returncode=143)
    stopped = {err.split("SIGTERM at step ")[1].split(":")[0] for _, err in outs}
    (step,) = stopped  # the same step on both
    assert os.listdir(tmp_path / "checkpoints") == [step]
    assert _records(tmp_path)[-1]["step"] == int(step)


def test_eval_line_shows_the_headline_metrics_the_run_has(main_flags):
    pairs = {"accuracy": 0.75, "ece": 0.1, "gold_spearman": 0.5}
    assert main_flags._eval_line(pairs) == "Eval: accuracy 0.7500, gold_spearman 0.5000"
    ratings = {"loss": 0.375, "mse/helpfulness": 0.5, "mse/coherence": 0.25, "nll": 1.5}
    want = "Eval: nll 1.5000, mse/coherence 0.2500, mse/helpfulness 0.5000"
    assert main_flags._eval_line(ratings) == want
    assert main_flags._eval_line({"loss": 2.0, "count": 8.0}) == "Eval: count 8.0000, loss 2.0000"
