"""Training on every batch layout: the layout a task and loss pick, pair conversions, evaluation
by averaged step metrics, and in-process end-to-end runs of the configs' layout variants on local
files (ranked lists, HelpSteer2 ratings, unpaired KTO completions) and on the synthetic task."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from rewardjax import data, train
from rewardjax.train import tasks

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
WORDS = ["good", "bad", "fine", "poor", "great", "awful", "okay", "meh"]


def _config(name, arg):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config(arg)
    c.data.synthetic.num_train_pairs, c.data.synthetic.num_eval_pairs = 32, 8
    return c


def _pairs(n=3):
    """A pairwise dataset as the synthetic task builds it (with gold rewards)."""
    rng = np.random.default_rng(0)
    return data.synthetic.pairs_to_dataset(
        {
            "prompt": rng.integers(0, 4, (n, 2)).astype(np.int32),
            "chosen": rng.integers(0, 4, (n, 3)).astype(np.int32),
            "rejected": rng.integers(0, 4, (n, 3)).astype(np.int32),
            "chosen_gold": rng.normal(size=n).astype(np.float32),
            "rejected_gold": rng.normal(size=n).astype(np.float32),
        }
    )


@pytest.mark.parametrize(
    "task, loss, data_kind, want",
    [
        ("sft", None, "pairwise", "sft"),
        ("dpo", "ipo", "pairwise", "pairwise"),
        ("dpo", "kto", "unpaired", "unpaired"),
        ("reward_model", "bradley_terry", "pairwise", "pairwise"),
        ("reward_model", "hinge", "ranked", "ranked"),
        ("reward_model", "plackett_luce", "pairwise", "ranked"),
        ("reward_model", "rating_regression", "rating", "rating"),
    ],
)
def test_each_task_picks_its_layout_from_the_loss_spec(task, loss, data_kind, want):
    config = ml_collections.ConfigDict({"loss": {"name": loss}})
    assert tasks.get(task).layouts(config, data_kind, None)[0] == want


def test_a_loss_of_the_other_level_is_refused():
    for task, loss in (("reward_model", "dpo"), ("dpo", "bradley_terry")):
        config = ml_collections.ConfigDict({"loss": {"name": loss}})
        with pytest.raises(ValueError, match=f"config.loss.name='{loss}'"):
            tasks.get(task).layouts(config, "pairwise", None)
    with pytest.raises(ValueError, match=r"config\.task='rlhf'"):
        tasks.get("rlhf")


def test_pairs_convert_to_every_layout_and_batch_in_its_format():
    pairs = _pairs()
    chosen = [e["seqs"][0] for e in pairs.examples]
    rejected = [e["seqs"][1] for e in pairs.examples]
    for kind in ("sft", "ranked", "unpaired", "rating"):
        converted = data.convert(pairs, kind, field="test")
        assert converted.kind == kind
        batch = data.collate(
            kind, converted.examples, [1.0] * len(converted.examples), pairs.max_length
        )
        assert set(batch) == set(data.BATCH_KEYS[kind])
    unpaired = data.convert(pairs, "unpaired", field="test").examples
    assert [e["desirable"] for e in unpaired] == [True, False] * 3
    interleaved = [s for pair in zip(chosen, rejected) for s in pair]
    assert all(np.array_equal(e["seqs"][0], s) for e, s in zip(unpaired, interleaved))
    rated = data.convert(pairs, "rating", field="test")
    gold = [g for e in pairs.examples for g in (e["chosen_gold"], e["rejected_gold"])]
    np.testing.assert_array_equal([e["ratings"][0] for e in rated.examples], gold)
    assert rated.attributes == ("gold",)
    ranked = data.convert(pairs, "ranked", field="test").examples
    assert all(tuple(e["ranks"]) == (0, 1) for e in ranked)


def test_conversions_that_do_not_exist_name_the_fields():
    pairs = _pairs()
    no_gold = pairs.__class__(
        "pairwise",
        [{k: v for k, v in e.items() if "gold" not in k} for e in pairs.examples],
        pairs.max_length,
        pairs.stats,
    )
    with pytest.raises(ValueError, match=r"config\.data\.layout='rating'"):
        data.convert(no_gold, "rating", field="task 'reward_model'")
    sft = data.convert(pairs, "sft", field="x")
    with pytest.raises(ValueError, match=r"'ranked' batches.*'sft' records.*config\.data\.layout"):
        data.convert(sft, "ranked", field="task 'reward_model'")


def test_mean_metrics_weights_batches_by_their_real_examples():
    batches = [
        {"weight": np.array([1.0, 1.0, 0.0]), "x": np.array(2.0)},
        {"weight": np.array([1.0, 0.0, 0.0]), "x": np.array(5.0)},
    ]
    got = tasks.mean_metrics(
        lambda p, b: (p * b["x"], {"m": b["x"] + 1}),
        10.0,
        batches,
        batch_fn=lambda b: {**b, "x": b["x"] * 2},
    )
    assert got == pytest.approx({"loss": (40 * 2 + 100) / 3, "m": (5 * 2 + 11) / 3})


def _write(path, records):
    with open(path, "w") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    return str(path)


def _files(c, path):
    c.data.source, c.data.train_path, c.data.max_length, c.data.eval_fraction = (
        "files",
        path,
        24,
        0.25,
    )
    return c


def _run(c, workdir):
    summary = train.run(c, str(workdir))
    assert summary["step"] == c.train.num_steps
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))[-1] == str(c.train.num_steps)
    assert all(np.isfinite(v) for v in summary["train"].values())
    return summary


def test_listwise_multi_response_reward_model_on_a_ranked_file(tmp_path):
    rng = np.random.default_rng(1)
    records = [
        {
            "prompt": f"q{i}",
            "responses": [f"{w} {i}" for w in rng.choice(WORDS, 3, replace=False)],
            "ranks": [int(r) for r in rng.permutation([0, 1, 1] if i % 4 == 0 else [0, 1, 2])],
        }
        for i in range(24)
    ]
    c = _files(_config("reward_model", "listwise,smoke"), _write(tmp_path / "r.jsonl", records))
    c.head.separator = ord("\n")  # the 3 responses of a list in one row
    summary = _run(c, tmp_path / "run")
    assert {"loss", "accuracy", "top1_accuracy"} <= set(summary["train"])
    assert {"loss", "accuracy", "top1_accuracy"} <= set(summary["eval"])


def _helpsteer2_file(path):
    """24 HelpSteer2 records, every attribute rated 0..4 at random."""
    rng = np.random.default_rng(2)
    records = [
        {
            "prompt": f"q{i}",
            "response": f"{rng.choice(WORDS)} {i}",
            **{a: int(rng.integers(0, 5)) for a in data.HELPSTEER2_ATTRIBUTES},
        }
        for i in range(24)
    ]
    return _write(path, records)


def test_rating_reward_model_on_a_helpsteer2_file(tmp_path):
    c = _files(_config("reward_model", "rating,multi_attribute,smoke"), "")
    c.data.train_path = _helpsteer2_file(tmp_path / "h.jsonl")
    c.data.layout, c.head.kwargs.num_attributes = "helpsteer2", 5
    summary = _run(c, tmp_path / "run")
    want = {f"mse/{a}" for a in data.HELPSTEER2_ATTRIBUTES}
    assert want <= set(summary["eval"])
    # The loss is the mean over the attributes of their squared errors.
    mean = np.mean([summary["eval"][k] for k in want])
    np.testing.assert_allclose(summary["eval"]["loss"], mean, rtol=1e-5)


def test_ordinal_head_fits_one_helpsteer2_rating_by_its_likelihood(tmp_path):
    c = _files(_config("reward_model", "rating,ordinal,smoke"), "")
    c.data.train_path, c.data.layout = _helpsteer2_file(tmp_path / "h.jsonl"), "helpsteer2"
    c.loss.name, c.loss.attribute = "categorical_rating", 0
    c.head.kwargs.num_bins, c.head.kwargs.bin_values = 5, [0.0, 1.0, 2.0, 3.0, 4.0]
    summary = _run(c, tmp_path / "run")
    assert {"loss", "nll"} <= set(summary["eval"])
    assert len([k for k in summary["eval"] if k.startswith("mse/")]) == 1  # the one attribute
    assert summary["eval"]["loss"] == summary["eval"]["nll"]
    # Five bins: a fresh head's likelihood is about log 5, and a few steps cannot go far from it.
    assert 0.5 * np.log(5) < summary["eval"]["nll"] < 2 * np.log(5)


def test_categorical_rating_needs_a_rating_bin_head(tmp_path):
    c = _files(_config("reward_model", "rating,smoke"), "")
    c.data.train_path, c.data.layout = _helpsteer2_file(tmp_path / "h.jsonl"), "helpsteer2"
    c.loss.name, c.loss.attribute = "categorical_rating", 0
    with pytest.raises(ValueError, match="rating-bin head"):
        _run(c, tmp_path / "run")


def test_kto_on_an_unpaired_file(tmp_path):
    records = [
        {"prompt": f"q{i}", "response": f"{WORDS[i % 8]} {i}", "desirable": i % 3 != 0}
        for i in range(24)
    ]
    c = _files(_config("dpo", "kto,smoke"), _write(tmp_path / "u.jsonl", records))
    c.data.layout = "unpaired"
    summary = _run(c, tmp_path / "run")
    assert {"kl", "reward_desirable", "reward_undesirable"} <= set(summary["eval"])
    assert summary["train"]["kl"] >= 0.0


@pytest.fixture(scope="module")
def kto_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("kto")
    return workdir, _run(_config("dpo", "kto,smoke"), workdir)


def test_kto_smoke_on_synthetic_pairs_is_evaluated_on_held_out_pairs(kto_run):
    _, summary = kto_run
    assert {"kl", "reward_desirable", "reward_undesirable"} <= set(summary["train"])
    assert {"accuracy", "gold_pair_accuracy"} <= set(summary["eval"])


def test_kto_sharded_over_8_devices_matches_one_device(kto_run, tmp_path):
    """data=2 x fsdp=2 x tensor=2 (the KL estimate's mismatched pairs cross shards): same losses.
    The synthetic sizes are the ones `_config` sets."""
    workdir, _ = kto_run
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        # Cheaper LLVM passes: the run is compile-bound.
        XLA_FLAGS="--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
        "--xla_llvm_disable_expensive_passes=true",
    )
    command = [sys.executable, "-m", "rewardjax.main", "--config=configs/dpo.py:kto,smoke"]
    command += [f"--workdir={tmp_path}", "--config.eval.enabled=false"]
    command += [
        "--config.data.synthetic.num_train_pairs=32",
        "--config.data.synthetic.num_eval_pairs=8",
    ]
    command += ["--config.mesh.data=2", "--config.mesh.fsdp=2", "--config.mesh.tensor=2"]
    result = subprocess.run(
        command, cwd=CONFIGS.parent, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    losses = lambda d: [
        (r["step"], r["loss"], r["kl"])
        for r in train.read_jsonl(f"{d}/metrics.jsonl")
        if "loss" in r
    ]
    sharded, single = np.array(losses(tmp_path)), np.array(losses(workdir))
    assert sharded.shape == single.shape == (4, 3)
    np.testing.assert_allclose(sharded, single, rtol=2e-4, atol=1e-6)


def test_layout_options_that_do_not_apply_are_errors(tmp_path):
    c = _config("reward_model", "listwise,smoke")
    c.loss.use_margin = True
    with pytest.raises(ValueError, match=r"config\.loss\.use_margin"):
        train.run(c, str(tmp_path / "a"))
    c = _config("reward_model", "smoke")
    c.head.separator = 10
    with pytest.raises(ValueError, match=r"config\.head\.separator"):
        train.run(c, str(tmp_path / "c"))
    c = _config("dpo", "kto,smoke")
    c.reference = "in_batch"
    with pytest.raises(ValueError, match=r"config\.reference='in_batch'"):
        train.run(c, str(tmp_path / "b"))
