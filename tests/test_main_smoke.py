"""`python -m rewardjax.main` end to end in subprocesses: every config's smoke variant, the SFT ->
DPO chain, SIGTERM, and a misspelt override."""

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    # One persistent XLA cache shared by the runs (and pytest-xdist workers): most programs repeat.
    cache = tmp_path_factory.getbasetemp().parent / "rewardjax_main_xla_cache"
    cache.mkdir(exist_ok=True)
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        # Smoke runs are compile-bound: cheaper LLVM passes cut their CPU time by about a third.
        XLA_FLAGS="--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
    )


def _main(env, config, workdir, *overrides):
    command = [sys.executable, "-m", "rewardjax.main", f"--config=configs/{config}"]
    command += [f"--workdir={workdir}", *overrides]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _check_run_files(workdir, num_steps):
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == str(num_steps)
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert records[-1]["step"] == num_steps
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["num_steps"] == num_steps
    return records


@pytest.fixture(scope="module")
def sft_workdir(env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sft")
    result = _main(env, "sft.py:smoke", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_sft_smoke(sft_workdir):
    records = _check_run_files(sft_workdir, 6)
    assert "eval/nll" in records[-1]


def test_dpo_smoke_starting_from_the_sft_run(env, sft_workdir, tmp_path):
    result = _main(env, "dpo.py:smoke", tmp_path, f"--config.init_from={sft_workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    records = _check_run_files(tmp_path, 6)
    # The reference is the starting policy: the implicit reward is 0 before the first update.
    assert "eval/accuracy" in records[-1]
    assert records[0]["step"] == 2 and "reward_margin" in records[0]


@pytest.fixture(scope="module")
def rm_workdir(env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rm")
    result = _main(env, "reward_model.py:smoke", workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_reward_model_smoke(rm_workdir):
    records = _check_run_files(rm_workdir, 6)
    assert {"eval/accuracy", "eval/gold_pair_accuracy"} <= set(records[-1])


def test_sharded_run_matches_the_single_device_run(env, rm_workdir, tmp_path):
    """data=2 x fsdp=2 x tensor=2 on 8 CPU devices: same losses as on one device."""
    mesh = ["--cpu_devices=8", "--config.mesh.data=2", "--config.mesh.fsdp=2"]
    mesh.append("--config.mesh.tensor=2")
    result = _main(env, "reward_model.py:smoke", tmp_path, *mesh, "--config.eval.enabled=false")
    assert result.returncode == 0, result.stderr[-3000:]
    losses = lambda d: [(r["step"], r["loss"]) for r in _check_run_files(d, 6) if "loss" in r]
    (steps, sharded), (steps_1, single) = zip(*losses(tmp_path)), zip(*losses(rm_workdir))
    assert steps == steps_1 == (2, 3, 4, 6)
    np.testing.assert_allclose(sharded, single, rtol=2e-4)


def test_quickstart_smoke_writes_the_report(env, tmp_path):
    result = _main(env, "quickstart.py:smoke", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_run_files(tmp_path, 6)
    report = os.path.join(tmp_path, "report.md")
    assert f"Report: {report}" in result.stdout
    text = Path(report).read_text()
    for section in ("## Pairs", "## Best-of-n", "## Training curves", "## Proxy vs gold"):
        assert section in text
    for png in ("reliability.png", "bon.png", "training_curves.png", "proxy_vs_gold.png"):
        assert os.path.getsize(os.path.join(tmp_path, png)) > 1000


def test_misspelt_override_fails_loudly(env, tmp_path):
    result = _main(env, "sft.py:smoke", tmp_path, "--config.train.num_stepz=3")
    assert result.returncode != 0
    assert "num_stepz" in result.stderr
    assert not os.path.exists(os.path.join(tmp_path, "checkpoints"))


def test_sigterm_saves_a_checkpoint_before_exit(env, tmp_path):
    command = [sys.executable, "-m", "rewardjax.main", "--config=configs/reward_model.py:smoke"]
    command += [f"--workdir={tmp_path}", "--config.train.num_steps=100000"]
    command += ["--config.train.log_every=1", "--config.train.checkpoint_every=100000"]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    metrics = os.path.join(tmp_path, "metrics.jsonl")
    deadline = time.monotonic() + 300
    while not (os.path.exists(metrics) and len(Path(metrics).read_text().splitlines()) >= 3):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "SIGTERM at step" in stderr
    steps = [int(s) for s in os.listdir(os.path.join(tmp_path, "checkpoints"))]
    logged = [json.loads(line)["step"] for line in Path(metrics).read_text().splitlines()]
    assert len(steps) == 1 and steps[0] >= 3 and steps[0] == logged[-1]
