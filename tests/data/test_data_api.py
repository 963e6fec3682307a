"""The public names of rewardjax.data, and the README-style path from a file to batches."""

import json

import numpy as np

from rewardjax import data


def test_public_names_resolve():
    assert len(set(data.__all__)) == len(data.__all__)
    for name in data.__all__:
        assert getattr(data, name) is not None, name
    for name in data.synthetic.__all__:
        assert callable(getattr(data.synthetic, name)) or name == "ID_OFFSET", name


def test_file_to_batches(tmp_path):
    rows = [
        {
            "chosen": f"\n\nHuman: q{i}\n\nAssistant: good {i}",
            "rejected": f"\n\nHuman: q{i}\n\nAssistant: bad",
        }
        for i in range(5)
    ] + [
        {"chosen": "\n\nHuman: q\n\nAssistant: same", "rejected": "\n\nHuman: q\n\nAssistant: same"}
    ]
    path = tmp_path / "hh.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, report = data.load_records(str(path), layout="hh", on_error="skip")
    assert (report.num_kept, report.skipped) == (5, {"rejected": 1})
    assert "skipped 1 (by field: rejected: 1)" in report.summary()
    encoded = data.encode_records(records, data.ByteTokenizer(), max_length=48)
    (batch,) = list(data.batches(encoded, global_batch_size=8, seed=0, num_epochs=1))
    assert batch["chosen_tokens"].shape == (8, 48)
    assert batch["weight"].tolist() == [1.0] * 5 + [0.0] * 3
    completions = [
        data.ByteTokenizer().decode(t[m > 0])
        for t, m in zip(batch["chosen_tokens"][:5], batch["chosen_completion_mask"][:5])
    ]
    assert sorted(completions) == [f"good {i}\n" for i in range(5)]
    assert np.all(batch["chosen_mask"] >= batch["chosen_completion_mask"])
