"""Host-side packing (rewardjax.data.packing): first-fit decreasing against a hand-worked case and
brute-force optima, the packed layout decoded back into every unpacked row, and the packed grain
pipeline: the same examples per shard and step as unpacked, one row count for all shards,
resumable, and the padding fractions it reports equal to those of the batches it serves."""

import dataclasses
import itertools
import math

import numpy as np
import pytest

from rewardjax import data
from rewardjax.data import packing


def _examples(n, k, seed=0, vocab=50, max_prompt=5, max_response=7):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = int(rng.integers(0, max_prompt + 1))
        prompt = rng.integers(1, vocab, p)
        seqs = tuple(
            np.concatenate(
                [prompt, rng.integers(1, vocab, int(rng.integers(0, max_response)))]
            ).astype(np.int32)
            for _ in range(k)
        )
        out.append({"seqs": seqs, "prompt_len": p, "margin": float(i), "subset": i % 2})
    return out


def _dataset(n=22, k=2, **kw):
    kind = {1: "sft", 2: "pairwise"}.get(k, "ranked")
    examples = _examples(n, k, **kw)
    for e in examples:
        if kind != "pairwise":
            del e["margin"], e["subset"]
        if kind == "ranked":
            e["ranks"] = np.arange(k, dtype=np.int32)
    stats = data.EncodeStats(n, 0, {})
    return data.EncodedDataset(kind, examples, 12, stats)


def _partitions(items):
    """Every set partition of `items` (brute force)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for i in range(len(part)):
            yield [*part[:i], [first, *part[i]], *part[i + 1 :]]
        yield [[first], *part]


def test_first_fit_decreasing_on_a_hand_worked_case():
    # Longest first: 5 -> bin 0, 4 -> bin 1, 3 -> bin 0 (full), 3 -> bin 1, 2 -> bin 2, 1 -> bin 1.
    bins = packing.first_fit_decreasing([5, 4, 3, 3, 2, 1], length=8)
    assert bins == [[0, 2], [1, 3, 5], [4]]
    # At most two items per bin: the 1 no longer joins bin 1.
    assert packing.first_fit_decreasing([5, 4, 3, 3, 2, 1], length=8, slots=2) == [
        [0, 2],
        [1, 3],
        [4, 5],
    ]
    with pytest.raises(ValueError, match=r"Packing\.length"):
        packing.first_fit_decreasing([3, 9], length=8)


@pytest.mark.parametrize("seed", range(6))
def test_first_fit_decreasing_is_a_valid_packing_within_the_ffd_bound_of_the_optimum(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 11, 7)
    slots = int(rng.integers(2, 5))
    bins = packing.first_fit_decreasing(lengths, length=10, slots=slots)
    assert sorted(i for b in bins for i in b) == list(range(7))
    assert all(sum(lengths[b]) <= 10 and len(b) <= slots for b in bins)
    optimum = min(
        len(p)
        for p in _partitions(list(range(7)))
        if all(sum(lengths[b]) <= 10 and len(b) <= slots for b in p)
    )
    # Without a slot limit FFD uses at most 11/9 OPT + 6/9 bins (Dósa, 2007).
    unlimited = packing.first_fit_decreasing(lengths, length=10)
    free_optimum = min(
        len(p) for p in _partitions(list(range(7))) if all(sum(lengths[b]) <= 10 for b in p)
    )
    assert len(unlimited) <= 11 / 9 * free_optimum + 6 / 9
    assert optimum <= len(bins) <= 7


@pytest.mark.parametrize("k", [1, 2, 3])
def test_the_packed_layout_decodes_back_into_every_unpacked_row(k):
    dataset = _dataset(n=9, k=k)
    examples = dataset.examples
    weights = [1.0] * 8 + [0.0]
    lengths = packing.example_lengths(examples)
    length = int(lengths.max()) + 3
    rows = len(packing.first_fit_decreasing(lengths, length=length, slots=3)) + 1
    b = packing.pack_examples(dataset.kind, examples, weights, length=length, slots=3, rows=rows)
    assert b["tokens"].shape == (rows, length) and b["last_index"].shape == (rows, 3, k)
    seen, counted = [], 0
    for r, s in itertools.product(range(rows), range(3)):
        i = int(b["example"][r, s])
        in_example = b["segment_ids"][r] == s + 1
        if i < 0:
            assert b["weight"][r, s] == 0 and not in_example.any()
            continue
        seen.append(i)
        e, p = examples[i], examples[i]["prompt_len"]
        assert b["weight"][r, s] == weights[i]
        prompt_pos = np.flatnonzero(in_example & (b["branch_ids"][r] == 0))
        np.testing.assert_array_equal(b["tokens"][r, prompt_pos], e["seqs"][0][:p])
        if p:
            assert b["context_index"][r, s] == prompt_pos[-1]
        for j, seq in enumerate(e["seqs"]):
            response_pos = np.flatnonzero(in_example & (b["branch_ids"][r] == j + 1))
            np.testing.assert_array_equal(b["tokens"][r, response_pos], seq[p:])
            # Unpacked row u = [prompt | y_j]: where each of its tokens sits in the packed row.
            where = np.concatenate([prompt_pos, response_pos])
            if len(seq) > p:
                assert b["last_index"][r, s, j] == where[-1]
            elif p:
                assert b["last_index"][r, s, j] == prompt_pos[-1]
            for t in range(max(p, 1), len(seq)):  # tokens the unpacked row predicts
                assert b["target_mask"][r, where[t]] == 1
                assert b["logit_index"][r, where[t]] == where[t - 1]
                counted += 1
        if k == 2:
            assert b["margin"][r, s] == e["margin"] and b["subset"][r, s] == e["subset"]
    assert sorted(seen) == list(range(9))
    assert b["target_mask"].sum() == counted
    assert np.all(b["tokens"][b["segment_ids"] == 0] == 0)


def _real(batch):
    """Example ids (the margin field) and weights of a batch, in batch order."""
    if data.is_packed(batch):
        order = np.argsort(np.where(batch["example"] < 0, 1 << 30, batch["example"]), axis=None)
        n = int((batch["example"] >= 0).sum())
        take = lambda x: x.reshape(-1)[order[:n]]
        return take(batch["margin"]), take(batch["weight"])
    return batch["margin"], batch["weight"]


def test_packed_batches_hold_the_same_examples_per_shard_one_row_count_and_resume():
    dataset = _dataset(n=22, max_response=9)
    packed_set = dataclasses.replace(dataset, packing=data.Packing(multiple=1, probe_batches=2))
    kw = dict(global_batch_size=8, seed=3, shard_count=2)
    iters = {
        (packed, s): iter(data.batches(packed_set if packed else dataset, shard_index=s, **kw))
        for packed in (False, True)
        for s in range(2)
    }
    for _ in range(7):  # more than two epochs (22 examples + 2 fillers = 3 batches each)
        out = {key: next(it) for key, it in iters.items()}
        for s in range(2):
            ids, w = _real(out[(False, s)])
            got_ids, got_w = _real(out[(True, s)])
            np.testing.assert_array_equal(got_ids, ids)
            np.testing.assert_array_equal(got_w, w)
        assert out[(True, 0)]["tokens"].shape == out[(True, 1)]["tokens"].shape
    it = iters[(True, 1)]
    state = it.get_state()
    want = next(it)
    resumed = iter(data.batches(packed_set, shard_index=1, **kw))
    resumed.set_state(state)
    got = next(resumed)
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_padding_fractions_are_those_of_the_batches_served(k):
    dataset = _dataset(n=40, k=k)
    kw = dict(global_batch_size=8, seed=0, shard_index=0, shard_count=1, num_epochs=1)
    ds = data.batches(dataclasses.replace(dataset, packing=data.Packing()), **kw)
    plan = ds.packing
    packed = list(ds)
    assert plan.num_probed == len(packed) == 5
    assert {b["tokens"].shape for b in packed} == {(plan.base_rows, plan.length)}
    assert plan.length == max(packing.example_lengths(dataset.examples))
    real = sum(int((b["segment_ids"] > 0).sum()) for b in packed)
    computed = sum(b["segment_ids"].size for b in packed)
    assert plan.padding_fraction == pytest.approx(1 - real / computed)
    unpacked = list(data.batches(dataset, **kw))
    assert data.batches(dataset, **kw).packing is None
    masks = [
        m for b in unpacked for key, m in b.items() if key.endswith("mask") and "compl" not in key
    ]
    real = sum(int((m > 0).sum()) for m in masks)
    assert plan.unpacked_padding_fraction == pytest.approx(1 - real / sum(m.size for m in masks))
    assert plan.padding_fraction < plan.unpacked_padding_fraction
    padded = sum(m.size for m in masks)
    assert plan.compute_fraction == pytest.approx(computed / padded) and computed < padded


def test_row_counts_climb_a_short_ladder_and_never_exceed_the_examples():
    plan = packing.PackingPlan(
        length=32,
        slots=4,
        base_rows=6,
        max_rows=16,
        row_multiple=2,
        growth=1.125,
        real_tokens=0,
        packed_tokens=0,
        unpacked_real_tokens=0,
        unpacked_tokens=0,
        num_probed=0,
    )
    ladder = sorted({min(2 * math.ceil(math.ceil(6 * 1.125**j) / 2), 16) for j in range(60)})
    assert len(ladder) <= 6
    for needed in range(1, 17):
        assert plan.rows_for(needed) == min(r for r in ladder if r >= needed)
    with pytest.raises(ValueError, match=r"Packing\.length"):
        plan.rows_for(17)


def test_a_row_length_shorter_than_an_example_is_refused_with_the_fix():
    dataset = _dataset(n=10)
    longest = int(max(packing.example_lengths(dataset.examples)))
    bad = dataclasses.replace(dataset, packing=data.Packing(length=longest - 1))
    with pytest.raises(ValueError, match=f"Packing.length={longest - 1}.*>= {longest}"):
        data.batches(bad, global_batch_size=4, seed=0, shard_index=0, shard_count=1)
