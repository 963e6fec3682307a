"""The training loop end to end in-process: exact resume, determinism, non-finite stop, writers."""

import glob
import json
import logging
import os
import struct

import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboardX.crc32c import crc32c
from tensorboardX.proto import event_pb2

from rewardjax import train
from rewardjax.train import defaults


def _config(**train_fields):
    c = defaults.reward_model_config()
    defaults.smoke_overrides(c)
    c.eval.enabled = False
    c.train.update(train_fields)
    return c


def _write_pairs(path, n=40):
    """A local JSONL file of pairwise records (canonical layout), one with a margin."""
    rng = np.random.default_rng(0)
    words = ["good", "bad", "fine", "poor", "great", "awful"]
    with open(path, "w") as f:
        for i in range(n):
            a, b = rng.choice(words, 2, replace=False)
            record = {"prompt": f"q{i}: rate it", "chosen": f"{a} {i}", "rejected": f"{b} {i}"}
            f.write(json.dumps(record | ({"margin": 1.5} if i == 0 else {})) + "\n")
    return str(path)


def _file_config(path, **train_fields):
    c = _config(**train_fields)
    c.data.source, c.data.train_path, c.data.max_length = "files", path, 24
    return c


def _saved_state(workdir, step):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    return ocp.StandardCheckpointer().restore(path)


def _losses(workdir):
    return [(r["step"], r["loss"]) for r in train.read_jsonl(f"{workdir}/metrics.jsonl")]


def _masked_crc(data):
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _events(path):
    """The events of a TFRecord event file (format parsed and checksums checked here)."""
    with open(path, "rb") as f:
        data = f.read()
    events, pos = [], 0
    while pos < len(data):
        header, (crc_header,) = data[pos : pos + 8], struct.unpack("<I", data[pos + 8 : pos + 12])
        (length,) = struct.unpack("<Q", header)
        payload = data[pos + 12 : pos + 12 + length]
        (crc_payload,) = struct.unpack("<I", data[pos + 12 + length : pos + 16 + length])
        assert (crc_header, crc_payload) == (_masked_crc(header), _masked_crc(payload))
        events.append(event_pb2.Event.FromString(payload))
        pos += 16 + length
    return events


def _tensorboard_scalars(logdir, tag):
    """(step, value) of `tag` read back from the event files."""
    out = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for event in _events(path):
            out += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
    return out


def test_metric_writer_writes_jsonl_and_tensorboard_events(tmp_path):
    values = {"loss": 0.25, "eval/acc": 1 / 3, "nan": float("nan"), "big": -1e300, "tokens": 2**40}
    for _ in range(2):  # a second writer (a resumed run) appends, in a new event file
        writer = train.MetricWriter(str(tmp_path))
        writer.write(7, values)
        writer.close()
    assert (
        train.read_jsonl(writer.jsonl_path)
        == [
            {
                "step": 7,
                "loss": 0.25,
                "eval/acc": 1 / 3,
                "nan": None,
                "big": -1e300,
                "tokens": 2**40,
            }
        ]
        * 2
    )
    paths = glob.glob(os.path.join(writer.tensorboard_dir, "events.out.tfevents.*"))
    assert len(paths) == 2
    for path in paths:
        version, scalars = _events(path)
        assert version.file_version == "brain.Event:2"
        assert scalars.step == 7
        got = {v.tag: v.simple_value for v in scalars.summary.value}
        want = np.float32([0.25, 1 / 3, np.nan, -np.inf, 2**40])
        np.testing.assert_array_equal(np.float32(list(got.values())), want)
        assert list(got) == list(values)


@pytest.mark.parametrize("step", [-1, -(2**40), 2.5])
def test_metric_writer_rejects_a_step_that_is_not_a_non_negative_integer(tmp_path, step):
    """A negative step once sent the hand-written varint encoder into an endless loop."""
    writer = train.MetricWriter(str(tmp_path))
    writer.write(3, {"loss": 1.0})
    with pytest.raises(ValueError, match=r"step=.*integer >= 0"):
        writer.write(step, {"loss": 2.0})
    writer.write(np.int64(4), {"loss": 0.5})
    writer.close()
    assert [r["step"] for r in train.read_jsonl(writer.jsonl_path)] == [3, 4]
    assert _tensorboard_scalars(writer.tensorboard_dir, "loss") == [(3, 1.0), (4, 0.5)]


def test_resumed_run_equals_uninterrupted_run(tmp_path, caplog):
    """On a local JSONL file: the resumed run must also continue the data order exactly."""
    data = _write_pairs(tmp_path / "pairs.jsonl")
    full, sliced = str(tmp_path / "full"), str(tmp_path / "sliced")
    assert train.run(_file_config(data), full)["step"] == 6
    # The same run cut after 3 steps (a checkpoint is saved), then resumed from the work directory.
    assert train.run(_file_config(data, stop_at_step=3), sliced)["step"] == 3
    with caplog.at_level(logging.INFO):
        assert train.run(_file_config(data), sliced)["step"] == 6
    assert "Resumed from step 3" in caplog.text

    a, b = _saved_state(full, 6), _saved_state(sliced, 6)
    for name in ("params", "opt_state", "step", "rng"):
        leaves_a, leaves_b = _leaves(a[name]), _leaves(b[name])
        assert len(leaves_a) == len(leaves_b) > 0
        for x, y in zip(leaves_a, leaves_b):
            np.testing.assert_array_equal(x, y)
    # Each step was trained once, on the same batches: the logged losses agree step by step.
    assert _losses(full) == _losses(sliced)
    assert [s for s, _ in _losses(full)] == [2, 3, 4, 6]

    # Writers: JSONL, TensorBoard events with the same values, the resolved config.
    tb = _tensorboard_scalars(os.path.join(full, "tensorboard"), "loss")
    np.testing.assert_allclose([v for _, v in tb], [v for _, v in _losses(full)], rtol=1e-6)
    assert [s for s, _ in tb] == [s for s, _ in _losses(full)]
    with open(os.path.join(full, "config.json")) as f:
        saved = json.load(f)
    assert saved["task"] == "reward_model" and saved["train"]["num_steps"] == 6


def _leaves(tree):
    if isinstance(tree, dict):
        return [x for k in sorted(tree) for x in _leaves(tree[k])]
    if isinstance(tree, list | tuple):
        return [x for v in tree for x in _leaves(v)]
    return [np.asarray(tree)]


def test_file_data_is_split_and_converted_for_sft(tmp_path):
    c = _file_config(_write_pairs(tmp_path / "pairs.jsonl", n=40))
    c.data.eval_fraction = 0.25
    loaded = train.load_data(c)
    assert (len(loaded.train.examples), len(loaded.eval.examples)) == (30, 10)
    assert loaded.train.kind == "pairwise" and loaded.task is None
    held_out = {bytes(e["seqs"][0]) for e in loaded.eval.examples}
    assert not held_out & {bytes(e["seqs"][0]) for e in loaded.train.examples}
    c.task = "sft"
    sft = train.load_data(c)
    assert sft.train.kind == "sft"
    assert [bytes(e["seqs"][0]) for e in sft.train.examples] == [
        bytes(e["seqs"][0]) for e in loaded.train.examples
    ]
    c.data.train_path = ""
    with pytest.raises(ValueError, match=r"config\.data\.train_path"):
        train.load_data(c)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    """Warm-up from 0: step 1 changes nothing; step 2's update (lr 5e29) ruins the parameters
    while its loss and gradient, computed before the update, are still finite. The parameter
    norm after the update stops the run there, so the kept checkpoint (step 1) is finite and the
    advised rerun (a sane learning rate, the same work directory) resumes and completes."""
    c = _config(checkpoint_every=1, log_every=1)
    c.optimizer.learning_rate = 1e30
    c.optimizer.warmup_steps = 2
    workdir = str(tmp_path)
    with pytest.raises(train.NonFiniteLossError, match=r"Non-finite param_norm") as err:
        train.run(c, workdir)
    bad_step = int(err.value.args[0].split(" at step ")[1].split(";")[0])
    kept = sorted(int(s) for s in os.listdir(os.path.join(workdir, "checkpoints")))
    assert kept and kept[-1] == bad_step - 1
    assert f"last good checkpoint is step {bad_step - 1}" in str(err.value)
    saved = _saved_state(workdir, kept[-1])
    assert all(np.isfinite(x).all() for x in _leaves(saved["params"]))
    c.optimizer.learning_rate = 1e-3
    summary = train.run(c, workdir)
    assert summary["step"] == c.train.num_steps and np.isfinite(summary["train"]["loss"])
