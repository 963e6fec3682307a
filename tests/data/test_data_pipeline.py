"""Encoding (truncation/drop counts), grain batches (shuffle, padding, shards, resume), packing."""

import itertools
import json

import numpy as np
import pytest

from rewardjax import data
from rewardjax.data import PairwiseRecord

TOK = data.ByteTokenizer()


def indexed_pairs(n, subsets=("a", "b", None)):
    """Pairs whose margin is their index, so batches reveal which records they hold."""
    return [
        PairwiseRecord(f"prompt {i}", f"yes {i}", f"no {i}", float(i), subsets[i % len(subsets)])
        for i in range(n)
    ]


def run(pipeline, steps=None):
    """The first `steps` batches (all of them for a finite pipeline)."""
    return list(itertools.islice(iter(pipeline), steps))


def test_pairwise_batch_contents():
    records = indexed_pairs(5)
    encoded = data.encode_records(records, TOK, max_length=16)
    (batch,) = run(data.batches(encoded, global_batch_size=5, seed=None, num_epochs=1))
    assert sorted(batch) == sorted(data.BATCH_KEYS["pairwise"])
    assert encoded.subset_names == ("", "a", "b")
    for i, r in enumerate(records):
        for name, response in (("chosen", r.chosen), ("rejected", r.rejected)):
            prompt, full = r.prompt.encode(), (r.prompt + response).encode()
            tokens = np.zeros(16, np.int32)
            tokens[: len(full)] = list(full)
            np.testing.assert_array_equal(batch[f"{name}_tokens"][i], tokens)
            np.testing.assert_array_equal(batch[f"{name}_mask"][i], np.arange(16) < len(full))
            completion = (np.arange(16) >= len(prompt)) & (np.arange(16) < len(full))
            np.testing.assert_array_equal(batch[f"{name}_completion_mask"][i], completion)
        assert batch["subset"][i] == encoded.subset_names.index(r.subset or "")
    np.testing.assert_array_equal(batch["margin"], np.arange(5, dtype=np.float32))
    np.testing.assert_array_equal(batch["weight"], np.ones(5))
    assert {batch[k].dtype for k in batch if k not in ("margin", "weight")} == {np.dtype(np.int32)}


def test_truncation_keeps_prompt_end_and_response_start():
    records = [
        PairwiseRecord("abcdefghij", "XYZ", "UV"),  # prompt keeps 8 - 3 = 5 tokens
        PairwiseRecord("abcdefghij", "X" * 20, "Y" * 20),  # prompt keeps max_prompt_length = 4
        PairwiseRecord("ab", "XY", "UV"),  # fits
        PairwiseRecord("abcdefghij", "AAAAAAq", "AAAAAAr"),  # identical once cut to 4 tokens
    ]
    encoded = data.encode_records(records, TOK, max_length=8, max_prompt_length=4)
    assert encoded.stats.num_truncated == 2
    assert encoded.stats.dropped == {"identical_after_truncation": 1}
    assert encoded.stats.num_kept == 3
    decoded = [[TOK.decode(s) for s in e["seqs"]] for e in encoded.examples]
    assert decoded == [["fghijXYZ", "fghijUV"], ["ghijXXXX", "ghijYYYY"], ["abXY", "abUV"]]
    assert [e["prompt_len"] for e in encoded.examples] == [5, 4, 2]
    dropped = data.encode_records(records, TOK, max_length=8, overlength="drop")
    assert dropped.stats.dropped == {"overlength": 3} and dropped.stats.num_truncated == 0
    assert "dropped overlength: 3" in dropped.stats.summary()


def test_counts_match_lengths_on_random_records():
    rng = np.random.default_rng(0)
    records = [
        PairwiseRecord(
            "p" * rng.integers(0, 30), "c" * rng.integers(1, 30), "r" * rng.integers(1, 30)
        )
        for _ in range(200)
    ]
    over = sum(len(r.prompt) + max(len(r.chosen), len(r.rejected)) > 32 for r in records)
    encoded = data.encode_records(records, TOK, max_length=32)
    assert encoded.stats.num_truncated == over and over > 0
    assert all(len(s) <= 32 for e in encoded.examples for s in e["seqs"])


def margins(batches):
    return [int(m) for b in batches for m, w in zip(b["margin"], b["weight"]) if w > 0]


def test_shuffle_is_seeded_and_each_epoch_covers_all():
    encoded = data.encode_records(indexed_pairs(12), TOK, max_length=16)
    make = lambda seed: run(data.batches(encoded, global_batch_size=4, seed=seed, num_epochs=2))
    first, again, other = margins(make(7)), margins(make(7)), margins(make(8))
    assert first == again and first != other
    assert sorted(first[:12]) == sorted(first[12:]) == list(range(12))
    assert first[:12] != first[12:]  # each epoch is permuted differently
    assert margins(run(data.batches(encoded, global_batch_size=4, seed=None), 3)) == list(range(12))


def test_last_batch_filled_with_weight_zero_or_dropped():
    encoded = data.encode_records(indexed_pairs(10), TOK, max_length=16)
    out = run(data.batches(encoded, global_batch_size=4, seed=1, num_epochs=1))
    assert len(out) == 3
    assert np.concatenate([b["weight"] for b in out]).tolist() == [1.0] * 10 + [0.0] * 2
    assert sorted(margins(out)) == list(range(10))
    kept = run(
        data.batches(encoded, global_batch_size=4, seed=1, num_epochs=1, drop_remainder=True)
    )
    assert len(kept) == 2 and all(b["weight"].all() for b in kept)
    assert len(set(margins(kept))) == 8


def test_two_hosts_get_disjoint_shards_covering_every_record_once():
    encoded = data.encode_records(indexed_pairs(10), TOK, max_length=16)
    common = dict(global_batch_size=4, seed=3, num_epochs=1)
    shards = [run(data.batches(encoded, shard_index=i, shard_count=2, **common)) for i in range(2)]
    assert [len(s) for s in shards] == [3, 3]
    assert all(b["margin"].shape == (2,) for s in shards for b in s)
    seen = margins(shards[0]) + margins(shards[1])
    assert sorted(seen) == list(range(10))
    # Each global step is the union of the hosts' batches.
    whole = run(data.batches(encoded, shard_index=0, shard_count=1, **common))
    for step, b in enumerate(whole):
        union = np.concatenate([shards[0][step]["margin"], shards[1][step]["margin"]])
        assert sorted(union) == sorted(b["margin"])
    with pytest.raises(ValueError, match="not divisible"):
        data.batches(encoded, global_batch_size=5, seed=0, shard_index=0, shard_count=2)


@pytest.mark.parametrize("num_threads", [0, 2])
def test_resume_from_iterator_state(num_threads):
    encoded = data.encode_records(indexed_pairs(10), TOK, max_length=16)
    make = lambda: data.batches(encoded, global_batch_size=4, seed=5, num_threads=num_threads)
    it = iter(make())
    for _ in range(4):  # crosses the epoch boundary (3 batches per epoch)
        next(it)
    state = json.loads(json.dumps(it.get_state()))
    expected = [next(it) for _ in range(4)]
    resumed = iter(make())
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


def test_ranked_rating_unpaired_batches():
    ranked = [data.RankedRecord(f"q{i}", ("a", "bb", f"c{i}"), (2, 0, 1)) for i in range(3)]
    (b,) = run(
        data.batches(
            data.encode_records(ranked, TOK, max_length=8),
            global_batch_size=3,
            seed=0,
            num_epochs=1,
        )
    )
    assert b["tokens"].shape == b["mask"].shape == b["completion_mask"].shape == (3, 3, 8)
    np.testing.assert_array_equal(b["ranks"], [[2, 0, 1]] * 3)
    np.testing.assert_array_equal(b["completion_mask"].sum(-1), [[1, 2, 2]] * 3)

    ratings = [data.RatingRecord("q", f"r{i}", (("a", float(i)), ("b", -1.0))) for i in range(2)]
    encoded = data.encode_records(ratings, TOK, max_length=8)
    (b,) = run(data.batches(encoded, global_batch_size=2, seed=None, num_epochs=1))
    assert encoded.attributes == ("a", "b")
    np.testing.assert_array_equal(b["ratings"], [[0.0, -1.0], [1.0, -1.0]])
    assert sorted(b) == sorted(data.BATCH_KEYS["rating"])

    unpaired = [data.UnpairedRecord("q", "r", d) for d in (True, False)]
    (b,) = run(
        data.batches(
            data.encode_records(unpaired, TOK, max_length=8),
            global_batch_size=2,
            seed=None,
            num_epochs=1,
        )
    )
    assert b["desirable"].dtype == bool and b["desirable"].tolist() == [True, False]


def test_pack_sft():
    records = [data.SFTRecord("p" * (i % 3), "r" * (1 + i % 4)) for i in range(9)]
    encoded = data.encode_records(records, TOK, max_length=8)
    packed = data.pack_sft(encoded)
    assert len(packed.examples) < len(records)
    (b,) = run(
        data.batches(packed, global_batch_size=len(packed.examples), seed=None, num_epochs=1)
    )
    # Every token kept, in order, each sequence in its own segment.
    flat = [t for row, m in zip(b["tokens"], b["mask"]) for t in row[m > 0]]
    assert TOK.decode(flat) == "".join(r.prompt + r.response for r in records)
    assert b["completion_mask"].sum() == sum(len(r.response) for r in records)
    assert b["mask"].max() > 1 and (b["mask"] > 0).sum(-1).max() <= 8
    for row_mask in b["mask"]:
        real = row_mask[row_mask > 0]
        assert (np.diff(real) >= 0).all() and real[0] == 1


def test_encode_errors():
    mixed = [data.SFTRecord("p", "r"), PairwiseRecord("p", "a", "b")]
    with pytest.raises(ValueError, match="one kind"):
        data.encode_records(mixed, TOK, max_length=8)
    with pytest.raises(ValueError, match="max_prompt_length"):
        data.encode_records(mixed[:1], TOK, max_length=8, max_prompt_length=8)


def test_unencodable_record_is_named():
    records = [data.SFTRecord("p", "ok"), data.SFTRecord("p", "bad\x00byte")]
    with pytest.raises(ValueError, match="record 1: text contains a NUL"):
        data.encode_records(records, TOK, max_length=8)
