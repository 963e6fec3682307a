"""`python -m rewardjax.main` end to end in subprocesses: every config's smoke variant, the SFT ->
DPO chain, SIGTERM, and a misspelt override. Beyond "it ran": the synthetic reward model beats
chance, DPO's implicit reward is 0 before the first update, and checkpoint step folders are
ordered (and resumed from) by number, not by name."""

import glob
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def _main(env, config, workdir, *overrides):
    command = [sys.executable, "-m", "rewardjax.main", f"--config=configs/{config}"]
    command += [f"--workdir={workdir}", *overrides]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def _checkpoint_steps(workdir):
    """The step folders of `workdir/checkpoints` as numbers, ascending ("12" after "9")."""
    names = os.listdir(os.path.join(workdir, "checkpoints"))
    return sorted(int(name) for name in names if name.isdigit())


def _check_run_files(workdir, last_step, num_steps=None):
    assert _checkpoint_steps(workdir)[-1] == last_step
    assert glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    assert records[-1]["step"] == last_step
    with open(os.path.join(workdir, "config.json")) as f:
        assert json.load(f)["train"]["num_steps"] == (num_steps or last_step)
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
    result = _main(
        env,
        "dpo.py:smoke",
        tmp_path,
        f"--config.init_from={sft_workdir}",
        "--config.train.log_every=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = _check_run_files(tmp_path, 6)
    assert "eval/accuracy" in records[-1]
    # The reference is the starting policy, so at step 1 (metrics of the parameters before the
    # first update) the implicit rewards beta * log(pi / ref) are exactly 0 and the loss is
    # -log sigmoid(0) = log 2.
    first = records[0]
    assert first["step"] == 1
    assert first["reward_chosen"] == first["reward_rejected"] == first["reward_margin"] == 0.0
    assert first["loss"] == pytest.approx(math.log(2), rel=1e-6)
    # ... and training moves the policy away from the reference.
    assert any(r.get("reward_margin", 0.0) != 0.0 for r in records[1:])


# The reward-model smoke run, long enough to beat chance (12 steps of 32 pairs, 256 eval pairs)
# and to leave step folders 3, 6, 9, 12 (checkpoint_every=3 in the smoke variant): by name "9"
# would sort last.
RM_OVERRIDES = [
    "--config.train.num_steps=12",
    "--config.train.batch_size=32",
    "--config.optimizer.learning_rate=3e-3",
    "--config.data.synthetic.num_train_pairs=1024",
    "--config.data.synthetic.num_eval_pairs=256",
    "--config.train.max_to_keep=5",
]


@pytest.fixture(scope="module")
def rm_workdir(env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rm")
    result = _main(env, "reward_model.py:smoke", workdir, *RM_OVERRIDES)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_reward_model_smoke_beats_chance(rm_workdir):
    records = _check_run_files(rm_workdir, 12)
    assert _checkpoint_steps(rm_workdir) == [3, 6, 9, 12]
    final = records[-1]
    assert final["eval/count"] == 256
    # Chance is 0.5 (sd 0.031 over 256 pairs). Seeds 0-3 gave accuracy 0.64, 0.62, 0.65, 0.71
    # (against the noisy labels) and 0.63, 0.64, 0.66, 0.72 (against the gold reward's order).
    assert final["eval/accuracy"] > 0.55, final
    assert final["eval/gold_pair_accuracy"] > 0.55, final


def test_sharded_run_matches_the_single_device_run(env, rm_workdir, tmp_path):
    """data=2 x fsdp=2 x tensor=2 on 8 CPU devices: same losses as on one device (first 6 steps)."""
    mesh = ["--cpu_devices=8", "--config.mesh.data=2", "--config.mesh.fsdp=2"]
    mesh += ["--config.mesh.tensor=2", "--config.train.stop_at_step=6"]
    result = _main(
        env, "reward_model.py:smoke", tmp_path, *RM_OVERRIDES, *mesh, "--config.eval.enabled=false"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sharded = [(r["step"], r["loss"]) for r in _check_run_files(tmp_path, 6, 12) if "loss" in r]
    single = [(r["step"], r["loss"]) for r in _check_run_files(rm_workdir, 12) if "loss" in r]
    (steps, sharded), (steps_1, single) = zip(*sharded), zip(*single[: len(sharded)])
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


def test_sigterm_saves_a_checkpoint_before_exit(env, rm_workdir, tmp_path):
    """Resumes a copy of the 12-step reward-model run (from step 12, the numerically latest of
    3, 6, 9, 12), then SIGTERM saves the step it reached and exits with 143."""
    workdir = tmp_path / "run"
    shutil.copytree(rm_workdir, workdir)
    metrics = workdir / "metrics.jsonl"
    before = len(metrics.read_text().splitlines())
    command = [sys.executable, "-m", "rewardjax.main", "--config=configs/reward_model.py:smoke"]
    command += [f"--workdir={workdir}", *RM_OVERRIDES, "--config.train.num_steps=100000"]
    command += ["--config.train.log_every=1", "--config.train.checkpoint_every=100000"]
    proc = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while len(metrics.read_text().splitlines()) < before + 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 143, stderr[-3000:]
    assert "Resumed from step 12 " in stderr and "SIGTERM at step" in stderr
    logged = [json.loads(line)["step"] for line in metrics.read_text().splitlines()[before:]]
    assert logged[0] == 13 and logged == list(range(13, 13 + len(logged)))
    assert _checkpoint_steps(workdir) == [3, 6, 9, 12, logged[-1]]
