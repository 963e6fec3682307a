"""Where the DPO reference log-probs come from (config.reference): computed in every step
("initial"), computed once before training ("precompute"), or read from the records ("in_batch").
All three give the same training run; bad or missing reference fields are clear errors."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from rewardjax import data, train
from rewardjax.train.tasks import dpo as dpo_task

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
WORDS = ["good", "bad", "fine", "poor", "great", "awful", "okay", "meh", "nice", "dull"]


def _dpo_config(reference, train_path=None):
    spec = importlib.util.spec_from_file_location("dpo", CONFIGS / "dpo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("smoke")
    c.reference = reference
    c.eval.enabled = False
    c.data.synthetic.num_train_pairs, c.data.synthetic.num_eval_pairs = 32, 0
    if train_path:
        c.data.source, c.data.train_path = "files", str(train_path)
        c.data.max_length, c.data.eval_fraction = 128, 0.0
    return c


def _losses(workdir):
    return np.array(
        [r["loss"] for r in train.read_jsonl(f"{workdir}/metrics.jsonl") if "loss" in r]
    )


def _records(n=12):
    rng = np.random.default_rng(0)
    say = lambda k: " ".join(rng.choice(WORDS, size=k))
    return [{"prompt": say(3), "chosen": say(4), "rejected": say(5)} for _ in range(n)]


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def test_precomputed_reference_equals_the_reference_in_every_step(tmp_path):
    train.run(_dpo_config("initial"), str(tmp_path / "initial"))
    train.run(_dpo_config("precompute"), str(tmp_path / "precompute"))
    on_the_fly, once = _losses(tmp_path / "initial"), _losses(tmp_path / "precompute")
    assert on_the_fly.shape == once.shape == (4,)  # log_every 2 of 6 steps, and the last
    np.testing.assert_allclose(once, on_the_fly, rtol=1e-5)


def test_reference_log_probs_from_the_records(tmp_path, monkeypatch):
    """The log-probs "precompute" computes, written into the file, train the same run."""
    records = _records()
    plain = _write(tmp_path / "plain.jsonl", records)
    captured = []
    original = dpo_task.precompute_reference_logps
    monkeypatch.setattr(
        dpo_task,
        "precompute_reference_logps",
        lambda *a, **k: captured.append(original(*a, **k)) or captured[-1],
    )
    train.run(_dpo_config("precompute", plain), str(tmp_path / "precompute"))
    (dataset,) = captured
    # Nothing truncated or dropped: file order is example order, log-probs of whole completions.
    assert dataset.stats.num_truncated == 0 and len(dataset.examples) == len(records)
    with_refs = [
        {
            **r,
            "ref_chosen_logps": e["ref_chosen_logps"],
            "ref_rejected_logps": e["ref_rejected_logps"],
        }
        for r, e in zip(records, dataset.examples, strict=True)
    ]
    assert all(r["ref_chosen_logps"] < 0 and r["ref_rejected_logps"] < 0 for r in with_refs)
    path = _write(tmp_path / "refs.jsonl", with_refs)
    train.run(_dpo_config("in_batch", path), str(tmp_path / "in_batch"))
    np.testing.assert_allclose(
        _losses(tmp_path / "in_batch"), _losses(tmp_path / "precompute"), rtol=1e-6
    )


def test_in_batch_without_reference_fields_is_an_error(tmp_path):
    path = _write(tmp_path / "plain.jsonl", _records())
    with pytest.raises(ValueError, match=r"ref_chosen_logps.*config\.reference='precompute'"):
        train.run(_dpo_config("in_batch", path), str(tmp_path / "run"))


def test_reference_fields_reach_the_batch_and_bad_ones_are_named(tmp_path):
    records = [
        {**r, "ref_chosen_logps": -1.0 - i, "ref_rejected_logps": -2.0 - i}
        for i, r in enumerate(_records(4))
    ]
    loaded, _ = data.load_records(_write(tmp_path / "ok.jsonl", records), layout="pairwise")
    encoded = data.encode_records(loaded, data.ByteTokenizer(), max_length=256)
    batch = next(iter(data.batches(encoded, global_batch_size=4, seed=None, num_epochs=1)))
    np.testing.assert_array_equal(batch["ref_chosen_logps"], [-1.0, -2.0, -3.0, -4.0])
    np.testing.assert_array_equal(batch["ref_rejected_logps"], [-2.0, -3.0, -4.0, -5.0])
    # Truncation changes the completion, so its reference log-prob no longer applies: dropped.
    lengths = [max(len(s) for s in e["seqs"]) for e in encoded.examples]
    cut = min(lengths)
    short = data.encode_records(loaded, data.ByteTokenizer(), max_length=cut)
    too_long = sum(n > cut for n in lengths)
    assert 0 < too_long < 4 and short.stats.num_kept == 4 - too_long
    assert short.stats.dropped == {"truncated_with_reference_logps": too_long}

    half = [dict(records[0])]
    del half[0]["ref_rejected_logps"]
    with pytest.raises(data.RecordError, match=r"line 1.*ref_rejected_logps"):
        data.load_records(_write(tmp_path / "half.jsonl", half), layout="pairwise")
    mixed = [records[0], _records(1)[0]]
    loaded, _ = data.load_records(_write(tmp_path / "mixed.jsonl", mixed), layout="pairwise")
    with pytest.raises(ValueError, match=r"record 1: reference log-probs .* missing"):
        data.encode_records(loaded, data.ByteTokenizer(), max_length=64)


def test_unknown_reference_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"config\.reference='frozen'.*'precompute'"):
        train.run(_dpo_config("frozen"), str(tmp_path / "run"))
