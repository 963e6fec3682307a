"""Tokenise records once, then serve shuffled, sharded, padded batches through grain.

Tokenising eagerly, once, makes the truncation and drop counts exact before training starts and
keeps the iterator state a plain position in a fixed order.

1. `encode_records(records, tokenizer, max_length=...)` tokenises every record (prompt and responses
   separately, see `tokenizers.encode_example`) and fits it into `max_length` tokens: "truncate"
   keeps the end of the prompt (at least `max_prompt_length` tokens of it, or all of it when the
   longest response leaves room) and the start of the responses; "drop" drops the record. Truncated
   and dropped records are counted in `EncodedDataset.stats` and logged, as are pairs (or ranked
   lists) whose responses became identical after truncation, which are dropped. `pack_sft` packs
   SFT examples next-fit into rows of `max_length` tokens (`mask` then holds segment ids 1..k).
2. `batches(dataset, global_batch_size=..., seed=...)` is a grain pipeline: each epoch is a seeded
   permutation (a different one per epoch); by default the epoch is completed to a multiple of the
   global batch with copies of real examples that have `weight` 0 (`drop_remainder=True` drops the
   remainder of each epoch's permutation instead); the global order is sliced element-wise into
   `shard_count` disjoint shards (one per host, by default `jax.process_index()` of
   `jax.process_count()`, or one per data-parallel rank), so each global step's batch is the union
   of the shards' batches; elements are padded to `max_length` with id 0 and batched into the dicts
   of numpy arrays of the batch formats (see `BATCH_KEYS`). The iterator of the returned
   `grain.IterDataset` has `get_state()` / `set_state()` (a small JSON-able dict; orbax saves it
   with `grain.checkpoint.CheckpointSave(iterator)`): restoring it resumes at the same batch, in
   the same order.
3. Packing (`rewardjax.data.packing`, on by default in the trainers where it applies: pairs,
   ranked lists, SFT): with `dataset.packing` set (`dataclasses.replace(dataset,
   packing=packing.Packing())`), `batches` lays each example out prefix-shared, `[prompt | y_1 |
   ... | y_K]`, and packs each batch's examples first-fit decreasing into rows of a fixed length
   with segment and branch ids and per-example index arrays, so a step computes about the real
   token count instead of `K * B * T` (the layout, the fixed-shape policy and the counted waste:
   `packing`'s docstring). The batch of examples is the same as unpacked (same order, fillers,
   shards), only laid out differently, so packed steps give the unpacked results; the iterator
   state is the same position and restores to the same batch. The returned dataset's `packing`
   attribute is the `PackingPlan` (padding fractions; logged once), None when unpacked.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import grain
import numpy as np
from absl import logging

from rewardjax.data.packing import (
    Packing,
    example_lengths,
    first_fit_decreasing,
    pack_examples,
    plan_packing,
)
from rewardjax.data.records import (
    PairwiseRecord,
    RankedRecord,
    RatingRecord,
    Record,
    SFTRecord,
    UnpairedRecord,
)
from rewardjax.data.tokenizers import Tokenizer, encode_example

__all__ = [
    "BATCH_KEYS",
    "EncodeStats",
    "EncodedDataset",
    "batches",
    "collate",
    "encode_records",
    "pack_sft",
]

_KIND_OF = {
    PairwiseRecord: "pairwise",
    RankedRecord: "ranked",
    RatingRecord: "rating",
    UnpairedRecord: "unpaired",
    SFTRecord: "sft",
}

# Keys of each batch format (interfaces: int32 tokens/masks [B, (K,) T], float32 scalars [B]).
BATCH_KEYS = {
    "pairwise": (
        "chosen_tokens",
        "chosen_mask",
        "chosen_completion_mask",
        "rejected_tokens",
        "rejected_mask",
        "rejected_completion_mask",
        "margin",
        "weight",
        "subset",
    ),  # + "chosen_gold", "rejected_gold" on the synthetic task, and "ref_chosen_logps",
    # "ref_rejected_logps" when the records carry precomputed reference log-probs
    "ranked": ("tokens", "mask", "completion_mask", "ranks", "weight"),
    "rating": ("tokens", "mask", "completion_mask", "ratings", "weight"),
    "unpaired": ("tokens", "mask", "completion_mask", "desirable", "weight"),
    "sft": ("tokens", "mask", "completion_mask", "weight"),
}


@dataclasses.dataclass(frozen=True)
class EncodeStats:
    num_records: int
    num_truncated: int
    dropped: Mapping[str, int]  # reason -> count

    @property
    def num_kept(self) -> int:
        return self.num_records - sum(self.dropped.values())

    def summary(self) -> str:
        dropped = ", ".join(f"{k}: {v}" for k, v in sorted(self.dropped.items())) or "none"
        return (
            f"encoded {self.num_records} records: kept {self.num_kept}, "
            f"truncated {self.num_truncated}, dropped {dropped}"
        )


@dataclasses.dataclass(frozen=True)
class EncodedDataset:
    """Tokenised examples of one kind, ready for `batches`.

    Each example is a dict: "seqs" (tuple of K int32 arrays, prompt + response, K = 2 for pairwise,
    1 for rating/unpaired/sft), "prompt_len" (shared by the K sequences) and the kind's scalars
    ("margin", "subset", "chosen_gold", "rejected_gold", "ref_chosen_logps", "ref_rejected_logps",
    "ranks", "ratings", "desirable"); packed
    SFT examples have "segment_ids" and "completion" arrays instead of "prompt_len".
    `packing`: when set, `batches` yields packed batches (`rewardjax.data.packing`).
    """

    kind: str
    examples: Sequence[dict[str, Any]]
    max_length: int
    stats: EncodeStats
    subset_names: tuple[str, ...] = ("",)
    attributes: tuple[str, ...] = ()
    packing: Packing | None = None


def _fit(
    prompt: list[int], responses: list[list[int]], max_length: int, max_prompt_length: int
) -> tuple[list[int], list[list[int]], bool]:
    longest = max(len(r) for r in responses)
    if len(prompt) + longest <= max_length:
        return prompt, responses, False
    keep = max(max_length - longest, min(len(prompt), max_prompt_length))
    return prompt[len(prompt) - keep :], [r[: max_length - keep] for r in responses], True


def _parts(record: Record) -> tuple[list, dict[str, Any]]:
    """The responses of a record and its scalar fields."""
    if isinstance(record, PairwiseRecord):
        refs = (record.ref_chosen_logps, record.ref_rejected_logps)
        scalars = {"margin": record.margin}
        if refs[0] is not None:
            scalars.update(ref_chosen_logps=refs[0], ref_rejected_logps=refs[1])
        return [record.chosen, record.rejected], scalars
    if isinstance(record, RankedRecord):
        return list(record.responses), {"ranks": np.asarray(record.ranks, np.int32)}
    if isinstance(record, RatingRecord):
        return [record.response], {
            "ratings": np.asarray([v for _, v in record.ratings], np.float32)
        }
    if isinstance(record, UnpairedRecord):
        return [record.response], {"desirable": record.desirable}
    return [record.response], {}


def encode_records(
    records: Sequence[Record],
    tokenizer: Tokenizer,
    *,
    max_length: int,
    overlength: str = "truncate",
    max_prompt_length: int | None = None,
) -> EncodedDataset:
    """Tokenises `records` (all of one kind) into an `EncodedDataset` (see the module docstring).

    Args:
      records: validated records of one kind.
      tokenizer: a `ByteTokenizer` or `HFTokenizer`.
      max_length: T, the padded length of every sequence (prompt + response).
      overlength: "truncate" or "drop" for records longer than `max_length`.
      max_prompt_length: prompt tokens kept at least when truncating; `max_length // 2` by default.
    """
    if overlength not in ("truncate", "drop"):
        raise ValueError(f"overlength must be 'truncate' or 'drop', got {overlength!r}")
    max_prompt_length = max_length // 2 if max_prompt_length is None else max_prompt_length
    if not 0 <= max_prompt_length < max_length:
        raise ValueError(f"need 0 <= max_prompt_length < max_length, got {max_prompt_length}")
    kinds = {_KIND_OF[type(r)] for r in records}
    if len(kinds) != 1:
        raise ValueError(f"records must all be of one kind, got {sorted(kinds)}")
    (kind,) = kinds
    subset_names = tuple(sorted({getattr(r, "subset", None) or "" for r in records}))
    subset_index = {name: i for i, name in enumerate(subset_names)}
    attributes = tuple(a for a, _ in records[0].ratings) if kind == "rating" else ()
    has_refs = kind == "pairwise" and records[0].ref_chosen_logps is not None
    examples, dropped, num_truncated = [], collections.Counter(), 0
    for i, record in enumerate(records):
        texts, scalars = _parts(record)
        if kind == "pairwise" and ("ref_chosen_logps" in scalars) != has_refs:
            raise ValueError(
                f"record {i}: reference log-probs (ref_chosen_logps, ref_rejected_logps) are "
                f"{'missing' if has_refs else 'given'}, but record 0 "
                f"{'has' if has_refs else 'has none'}; give them on every record or on none"
            )
        if kind == "rating" and tuple(a for a, _ in record.ratings) != attributes:
            raise ValueError(f"record {i}: rating attributes differ from record 0's {attributes}")
        if kind == "ranked" and len(texts) != len(records[0].responses):
            raise ValueError(f"record {i}: {len(texts)} responses, record 0 has a different K")
        try:
            encoded = [encode_example(tokenizer, record.prompt, t) for t in texts]
        except ValueError as e:
            raise ValueError(f"record {i}: {e}") from e
        prompt, responses = encoded[0][0], [r for _, r in encoded]
        prompt, responses, truncated = _fit(prompt, responses, max_length, max_prompt_length)
        if truncated and overlength == "drop":
            dropped["overlength"] += 1
            continue
        if truncated and "ref_chosen_logps" in scalars:
            # The reference log-probs are those of the whole completions.
            dropped["truncated_with_reference_logps"] += 1
            continue
        if len({tuple(r) for r in responses}) < len(responses):
            dropped["identical_after_truncation"] += 1
            continue
        num_truncated += truncated
        seqs = tuple(np.asarray(prompt + r, np.int32) for r in responses)
        if kind == "pairwise":
            scalars["subset"] = subset_index[record.subset or ""]
        examples.append({"seqs": seqs, "prompt_len": len(prompt), **scalars})
    stats = EncodeStats(len(records), num_truncated, dict(dropped))
    logging.info("%s", stats.summary())
    if not examples:
        raise ValueError(f"{stats.summary()}: nothing left to train on; raise max_length")
    return EncodedDataset(kind, examples, max_length, stats, subset_names, attributes)


def pack_sft(dataset: EncodedDataset) -> EncodedDataset:
    """Packs SFT examples next-fit, in order, into rows of `max_length` tokens with segment ids."""
    if dataset.kind != "sft":
        raise ValueError(f"only SFT examples are packed, got {dataset.kind!r}")
    rows, current = [], []

    def flush():
        if current:
            segs = [np.full(len(e["seqs"][0]), k + 1, np.int32) for k, e in enumerate(current)]
            comp = [np.arange(len(e["seqs"][0])) >= e["prompt_len"] for e in current]
            rows.append(
                {
                    "seqs": (np.concatenate([e["seqs"][0] for e in current]),),
                    "segment_ids": np.concatenate(segs),
                    "completion": np.concatenate(comp).astype(np.int32),
                }
            )
            current.clear()

    used = 0
    for e in dataset.examples:
        if used + len(e["seqs"][0]) > dataset.max_length:
            flush()
            used = 0
        current.append(e)
        used += len(e["seqs"][0])
    flush()
    return dataclasses.replace(dataset, examples=rows)


def _pad(examples: Sequence[dict[str, Any]], k: int, length: int) -> tuple[np.ndarray, ...]:
    """tokens, mask, completion_mask [B, length] of the k-th sequence of each example."""
    tokens = np.zeros((len(examples), length), np.int32)
    mask, completion = np.zeros_like(tokens), np.zeros_like(tokens)
    for i, e in enumerate(examples):
        seq = e["seqs"][k]
        tokens[i, : len(seq)] = seq
        if "segment_ids" in e:
            mask[i, : len(seq)] = e["segment_ids"]
            completion[i, : len(seq)] = e["completion"]
        else:
            mask[i, : len(seq)] = 1
            completion[i, e["prompt_len"] : len(seq)] = 1
    return tokens, mask, completion


def collate(
    kind: str, examples: Sequence[dict[str, Any]], weights: Sequence[float], max_length: int
) -> dict[str, np.ndarray]:
    """Stacks examples of `kind` into one batch dict with the keys of `BATCH_KEYS[kind]`."""
    batch: dict[str, np.ndarray] = {"weight": np.asarray(weights, np.float32)}
    if kind == "pairwise":
        for k, name in enumerate(("chosen", "rejected")):
            padded = _pad(examples, k, max_length)
            for suffix, array in zip(("tokens", "mask", "completion_mask"), padded):
                batch[f"{name}_{suffix}"] = array
        batch["margin"] = np.asarray([e["margin"] for e in examples], np.float32)
        batch["subset"] = np.asarray([e["subset"] for e in examples], np.int32)
        for key in ("chosen_gold", "rejected_gold", "ref_chosen_logps", "ref_rejected_logps"):
            if key in examples[0]:
                batch[key] = np.asarray([e[key] for e in examples], np.float32)
        return batch
    if kind == "ranked":
        per_k = [_pad(examples, k, max_length) for k in range(len(examples[0]["seqs"]))]
        for j, key in enumerate(("tokens", "mask", "completion_mask")):
            batch[key] = np.stack([p[j] for p in per_k], axis=1)
        batch["ranks"] = np.stack([e["ranks"] for e in examples]).astype(np.int32)
        return batch
    batch["tokens"], batch["mask"], batch["completion_mask"] = _pad(examples, 0, max_length)
    if kind == "rating":
        batch["ratings"] = np.stack([e["ratings"] for e in examples]).astype(np.float32)
    elif kind == "unpaired":
        batch["desirable"] = np.asarray([e["desirable"] for e in examples], bool)
    return batch


def batches(
    dataset: EncodedDataset,
    *,
    global_batch_size: int,
    seed: int | None,
    num_epochs: int | None = None,
    drop_remainder: bool = False,
    shard_index: int | None = None,
    shard_count: int | None = None,
    num_threads: int = 1,
) -> grain.IterDataset:
    """A grain pipeline of batches of `dataset` for one shard (see the module docstring).

    Args:
      dataset: from `encode_records` (or `pack_sft`, or the synthetic task); with `packing`
        set (pairs, ranked lists, SFT), packed batches of the same examples.
      global_batch_size: examples per step over all shards; this shard yields
        `global_batch_size // shard_count` per batch.
      seed: shuffle seed (each epoch is permuted differently); None keeps the file order.
      num_epochs: epochs to serve; None repeats forever.
      drop_remainder: drop the last partial global batch of each epoch instead of filling it with
        `weight` 0 copies of real examples.
      shard_index, shard_count: this shard and the number of shards; `jax.process_index()` and
        `jax.process_count()` by default.
      num_threads: grain read threads (prefetching keeps the iterator state exact).

    Returns:
      A `grain.IterDataset`; `iter(...)` gives an iterator with `get_state()` and `set_state()`.
      Its `packing` attribute: the `packing.PackingPlan` when `dataset.packing` is set (then the
      batches are packed, `packing`'s layout), else None.
    """
    if shard_count is None or shard_index is None:
        import jax

        shard_index, shard_count = jax.process_index(), jax.process_count()
    if global_batch_size % shard_count:
        raise ValueError(f"global_batch_size {global_batch_size} not divisible by {shard_count}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, {shard_count})")
    n = len(dataset.examples)
    order = grain.MapDataset.range(n)
    if seed is not None:
        order = order.shuffle(seed=seed)
    if drop_remainder:
        if n < global_batch_size:
            raise ValueError(f"{n} examples < global_batch_size {global_batch_size}")
        order = order[: n - n % global_batch_size]
    elif n % global_batch_size:
        # Indices >= n mark weight-0 fillers (copies of example (i - n) % n).
        filler = grain.MapDataset.range(n, n + (-n) % global_batch_size)
        order = grain.MapDataset.concatenate([order, filler])
    read = grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2)
    if dataset.packing is not None:
        return _packed_batches(
            dataset, order, global_batch_size, num_epochs, shard_index, shard_count, read
        )
    order = order.repeat(num_epochs)[shard_index::shard_count]
    examples, kind, length = dataset.examples, dataset.kind, dataset.max_length

    def make_batch(indices: Sequence[int]) -> dict[str, np.ndarray]:
        chosen = [examples[i % n] for i in indices]
        return collate(kind, chosen, [float(i < n) for i in indices], length)

    ds = order.batch(global_batch_size // shard_count, batch_fn=make_batch).to_iter_dataset(read)
    ds.packing = None
    return ds


def _packed_batches(
    dataset: EncodedDataset,
    epoch: grain.MapDataset,
    global_batch_size: int,
    num_epochs: int | None,
    shard_index: int,
    shard_count: int,
    read: grain.ReadOptions,
) -> grain.IterDataset:
    """`batches` with `dataset.packing` set: the same examples per shard and step, packed.

    Global batches are formed first and each shard takes elements `s::shard_count` of them (the
    same examples as the unpacked element-wise slicing), so that every process can compute every
    shard's row count and all shards pack to the same one.
    """
    packing, examples, kind = dataset.packing, dataset.examples, dataset.kind
    n = len(examples)
    g = global_batch_size
    probe = [
        [epoch[j * g + i] for i in range(g)]
        for j in range(min(len(epoch) // g, packing.probe_batches))
    ]
    plan = plan_packing(dataset, probe, packing, shard_count=shard_count)
    logging.info("%s", plan.summary())
    lengths = example_lengths(examples)

    def make_batch(indices: Sequence[int]) -> dict[str, np.ndarray]:
        indices = np.asarray(indices, np.int64)
        needed = max(
            len(
                first_fit_decreasing(
                    lengths[indices[s::shard_count] % n], length=plan.length, slots=plan.slots
                )
            )
            for s in range(shard_count)
        )
        mine = indices[shard_index::shard_count]
        return pack_examples(
            kind,
            [examples[i % n] for i in mine],
            [float(i < n) for i in mine],
            length=plan.length,
            slots=plan.slots,
            rows=plan.rows_for(needed),
        )

    ds = epoch.repeat(num_epochs).batch(g, batch_fn=make_batch).to_iter_dataset(read)
    ds.packing = plan
    return ds
