"""Packed batches: variable-length examples in fixed-length rows with segment ids (host side).

A padded batch costs `K * B * T` tokens of compute whatever the real lengths are; a packed batch
costs `R * L`, with `R` rows of `L` tokens holding the batch's real tokens back to back. Each
example is laid out prefix-shared (Wang et al., "Accelerating Direct Preference Optimization with
Prefix Sharing", arXiv 2410.20305),

    [prompt | y_1 | ... | y_K]          (pairs: K = 2, ranked lists: K, SFT: K = 1)

and the examples of a batch are packed first-fit decreasing (Johnson, "Near-optimal bin packing
algorithms", 1973) into rows of `L` tokens, at most `S` examples per row. With the backbone's
segment and branch attention (`models.Transformer(segment_ids=, branch_ids=)`) response k of an
example attends to its own prompt and to its own earlier tokens only, and its rotary positions
restart after the prompt, so every hidden state equals the one of the unpacked, unshared row
`[prompt | y_k]`: rewards are read at each response's last token, log-probs gathered per token.

Public API (what `rewardjax.data.batches` uses, and what a benchmark may call directly):

- `Packing(length=None, multiple=1, row_multiple=1, probe_batches=64, growth=1.125)`: the request,
  set as `EncodedDataset.packing` (`dataclasses.replace(dataset, packing=Packing())`); `batches`
  then yields packed batches, and the iterable it returns has the `PackingPlan` as `.packing`.
  `length=None`: L is the longest example (`example_lengths`), rounded up to `multiple`.
- `PACKABLE_KINDS`: "pairwise", "ranked", "sft".
- `example_lengths(dataset) -> [N]`: tokens of each example laid out prefix-shared.
- `first_fit_decreasing(lengths, length=L, slots=S) -> list of rows (lists of item indices)`.
- `pack_examples(kind, examples, weights, length=L, slots=S, rows=R) -> dict` (the layout below).
- `plan_packing(dataset, index_batches, ...) -> PackingPlan`: L, S, the base row count and the
  padding fractions measured on the batches given (`batches` probes the first epoch's).
- `PackingPlan.rows_for(needed)`: the row count a batch that needs `needed` rows is padded to.

Consumers: `rewardjax.train.steps.reward_model_step` (pairs, every head),
`ranked_reward_model_step`, `dpo_step` and `reference_logps` (the DPO family), `sft_step` take
packed batches as they are (they test `is_packed(batch)`); `models.score_packed` (rewards
`[R, S, K]`) and `models.prefix.packed_logprobs` (log-probs `[R, S, K]`) are the model-side
pieces. The trainers set `packing` from `config.train.packing` (`train.data.with_packing`).

Layout of a packed batch (numpy, int32 unless said; R rows, L tokens, S slots, K responses):

- `tokens [R, L]`; `segment_ids [R, L]`: 0 on padding, s + 1 on the example in slot s of the row;
  `branch_ids [R, L]`: 0 on prompts, k on response k (1..K);
- `logit_index [R, L]`: where the logits predicting each token sit (`i - 1`, except the first
  token of a response: the example's last prompt token), `target_mask [R, L]`: 1 on the response
  tokens that count in a log-prob (as in the unpacked row: not a row's very first token);
- `last_index [R, S, K]`: each response's last token (its prompt's last token when empty), where a
  reward model pools; `context_index [R, S]`: the example's last prompt token;
- `weight [R, S]` float32 (0 on empty slots and on the pipeline's fillers); `example [R, S]`: the
  position of the example in the batch given, -1 on empty slots; the kind's per-example fields
  with the slot axes in front: pairs `margin`, `subset` and, when present, `chosen_gold`,
  `rejected_gold`, `ref_chosen_logps`, `ref_rejected_logps` `[R, S]`; ranked lists
  `ranks [R, S, K]`.
  `is_packed(batch)` tells the layouts apart (`segment_ids` is present only here).

Fixed shapes under `jit` (the choice, and why). `L` and `S` are fixed per loader: L from the data
(every example fits one row), S the most examples any row of the probed batches holds (a row
never takes more, so S only costs a few more rows when it binds). The row count R of a batch is
what first-fit decreasing needs, rounded up to a small geometric ladder: `R_0` (the most rows any
probed batch of the first epoch needs, over all shards, a multiple of `row_multiple` so rows
split evenly over the data-parallel devices), then `ceil(R_0 * growth^j)` up to the local batch
size (one example per row, which always fits). The first epoch's batches therefore all compile
to one shape, and a rarer, fuller batch later costs one extra compilation per rung (a handful at
most, never one per batch), with at most `growth - 1` (12.5 %) extra padding rows. Every shard
of a global batch packs to the same R (each process computes all shards' needs from the global
order, which every process holds), so multi-host batches concatenate. Nothing is dropped: a
batch never needs more rows than it has examples.

Waste is counted: `PackingPlan.padding_fraction` (padding tokens / `R * L` over the probed
batches) next to `unpacked_padding_fraction` (padding / `K * B * T` of the padded batches) and
`compute_fraction` (`R * L / (K * B * T)`: prefix sharing and packing together) are
logged once when the loader is built and set as the `packing` attribute of what `batches`
returns; the steps also report each batch's `padding_fraction` as a metric.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "PACKABLE_KINDS",
    "PACKED_KEYS",
    "Packing",
    "PackingPlan",
    "example_lengths",
    "first_fit_decreasing",
    "is_packed",
    "pack_examples",
    "plan_packing",
]

PACKABLE_KINDS = ("pairwise", "ranked", "sft")

# Keys every packed batch has; the kind's per-example fields come on top (module docstring).
PACKED_KEYS = (
    "tokens",
    "segment_ids",
    "branch_ids",
    "logit_index",
    "target_mask",
    "last_index",
    "context_index",
    "weight",
    "example",
)

_PAIR_FIELDS = ("margin", "chosen_gold", "rejected_gold", "ref_chosen_logps", "ref_rejected_logps")


@dataclasses.dataclass(frozen=True)
class Packing:
    """How to pack a dataset's batches (set as `EncodedDataset.packing`).

    Attributes:
      length: L, tokens per row; None: the longest example (prefix-shared), rounded up to
        `multiple`. A longer L packs more examples per row (less padding, longer attention).
      multiple: L is rounded up to a multiple of this (e.g. 128 for fused attention kernels).
      row_multiple: each batch's row count is a multiple of this (the data-parallel devices of
        one process, so the rows split evenly).
      probe_batches: batches of the first epoch packed when the loader is built, to fix the row
        count R_0, the slots S and to measure the padding fraction.
      growth: ratio of the row-count ladder above R_0 (module docstring).
    """

    length: int | None = None
    multiple: int = 1
    row_multiple: int = 1
    probe_batches: int = 64
    growth: float = 1.125

    def __post_init__(self):
        if self.length is not None and self.length < 1:
            raise ValueError(f"Packing.length must be None or >= 1, got {self.length}.")
        for name in ("multiple", "row_multiple", "probe_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"Packing.{name} must be >= 1, got {getattr(self, name)}.")
        if self.growth <= 1.0:
            raise ValueError(f"Packing.growth must be > 1, got {self.growth}.")


@dataclasses.dataclass(frozen=True)
class PackingPlan:
    """The fixed shapes of a loader's packed batches and the waste measured on probed batches.

    Attributes:
      length: L, tokens per row. slots: S, examples per row at most.
      base_rows: R_0, rows of a batch of the first epoch (per shard).
      max_rows: the most rows a batch may take (its examples, rounded up to `row_multiple`).
      row_multiple, growth: the ladder of row counts (`rows_for`).
      real_tokens, packed_tokens: totals over the probed batches (all shards): real tokens
        (prompts once), `R * L` of the packed rows.
      unpacked_real_tokens, unpacked_tokens: the same batches padded to `[B, K, T]`: real tokens
        (each prompt K times), `K * B * T`.
      num_probed: global batches probed.
    """

    length: int
    slots: int
    base_rows: int
    max_rows: int
    row_multiple: int
    growth: float
    real_tokens: int
    packed_tokens: int
    unpacked_real_tokens: int
    unpacked_tokens: int
    num_probed: int

    @property
    def padding_fraction(self) -> float:
        """Padding tokens / tokens computed, packed (over the probed batches)."""
        return 1.0 - self.real_tokens / max(self.packed_tokens, 1)

    @property
    def unpacked_padding_fraction(self) -> float:
        """Padding tokens / tokens computed of the same batches padded to `[B, K, T]`."""
        return 1.0 - self.unpacked_real_tokens / max(self.unpacked_tokens, 1)

    @property
    def compute_fraction(self) -> float:
        """Tokens computed packed / tokens computed padded (`R * L / (K * B * T)`)."""
        return self.packed_tokens / max(self.unpacked_tokens, 1)

    def rows_for(self, needed: int) -> int:
        """The smallest rung `ceil(R_0 * growth^j)` (a multiple of `row_multiple`, at most
        `max_rows`) that holds `needed` rows."""
        if needed > self.max_rows:
            raise ValueError(
                f"a batch needs {needed} packed rows, more than its {self.max_rows} examples "
                "(one per row always fits): an example is longer than Packing.length; raise it."
            )
        rows, j = self.base_rows, 0
        while rows < needed:
            j += 1
            rows = min(
                _round_up(math.ceil(self.base_rows * self.growth**j), self.row_multiple),
                self.max_rows,
            )
        return rows

    def summary(self) -> str:
        return (
            f"packing: rows of {self.length} tokens, <= {self.slots} examples per row, "
            f"{self.base_rows} rows per batch (first epoch); padding {self.padding_fraction:.1%} "
            f"of the computed tokens (padded batches: {self.unpacked_padding_fraction:.1%}); "
            f"{self.compute_fraction:.1%} of the padded batches' tokens, over {self.num_probed} "
            "batches"
        )


def _round_up(x: int, multiple: int) -> int:
    return multiple * max(1, math.ceil(x / multiple))


def is_packed(batch: Mapping[str, Any]) -> bool:
    """True for a packed batch (it has `segment_ids`), False for a padded one."""
    return "segment_ids" in batch


def _lengths_of(example: Mapping[str, Any]) -> tuple[int, list[int]]:
    """(prompt length, response lengths) of an encoded example."""
    if "prompt_len" not in example:
        raise ValueError(
            "packing takes encoded examples with 'seqs' and 'prompt_len' (encode_records, the "
            "synthetic task); pack_sft's rows are packed already: pack the unpacked dataset."
        )
    p = int(example["prompt_len"])
    return p, [len(s) - p for s in example["seqs"]]


def example_lengths(examples: Sequence[Mapping[str, Any]], *, shared: bool = True) -> np.ndarray:
    """`P + Σ_k C_k` of each encoded example (its prefix-shared layout), int64 `[N]`; with
    `shared=False`, `Σ_k (P + C_k)` (its K padded rows' real tokens)."""
    out = np.empty(len(examples), np.int64)
    for i, e in enumerate(examples):
        p, cs = _lengths_of(e)
        out[i] = (p if shared else p * len(cs)) + sum(cs)
    return out


def first_fit_decreasing(
    lengths: Sequence[int] | np.ndarray, *, length: int, slots: int | None = None
) -> list[list[int]]:
    """Items packed first-fit decreasing into bins of `length` tokens and at most `slots` items.

    Items are placed longest first (ties in index order), each into the first open bin with room
    (tokens and a free slot), else into a new bin. Deterministic.

    Args:
      lengths: `[N]` item lengths, each at most `length`.
      length: the bin size L. slots: items per bin at most (None: no limit).

    Returns:
      The bins in order of opening, each the item indices in the order placed.
    """
    lengths = np.asarray(lengths, np.int64)
    if lengths.size and lengths.max() > length:
        i = int(np.argmax(lengths))
        raise ValueError(
            f"item {i} has {lengths[i]} tokens, more than the row length {length}; raise "
            "Packing.length (or leave it None: the longest example)."
        )
    slots = len(lengths) if slots is None else slots
    room = np.empty(len(lengths), np.int64)
    count = np.zeros(len(lengths), np.int64)
    bins: list[list[int]] = []
    for i in np.argsort(-lengths, kind="stable"):
        fits = (room[: len(bins)] >= lengths[i]) & (count[: len(bins)] < slots)
        b = int(np.argmax(fits)) if fits.any() else len(bins)
        if b == len(bins):
            bins.append([])
            room[b] = length
        bins[b].append(int(i))
        room[b] -= lengths[i]
        count[b] += 1
    return bins


def pack_examples(
    kind: str,
    examples: Sequence[Mapping[str, Any]],
    weights: Sequence[float],
    *,
    length: int,
    slots: int,
    rows: int | None = None,
) -> dict[str, np.ndarray]:
    """Packs `examples` of `kind` (with their weights) into `rows` rows (the module's layout).

    Args:
      kind: "pairwise", "ranked" or "sft".
      examples: encoded examples ("seqs": K arrays prompt + response, "prompt_len", the kind's
        fields).
      weights: `[B]` example weights (0 for fillers).
      length, slots: L and S. rows: R, at least what `first_fit_decreasing` needs (default: that).

    Returns:
      The packed batch, a dict of numpy arrays.
    """
    if kind not in PACKABLE_KINDS:
        raise ValueError(f"packing takes {PACKABLE_KINDS} examples, got {kind!r}.")
    sizes = [_lengths_of(e) for e in examples]
    bins = first_fit_decreasing([p + sum(cs) for p, cs in sizes], length=length, slots=slots)
    rows = len(bins) if rows is None else rows
    if rows < len(bins):
        raise ValueError(f"{len(examples)} examples need {len(bins)} rows, got rows={rows}.")
    k = len(examples[0]["seqs"])
    out = {
        name: np.zeros((rows, length), np.int32)
        for name in ("tokens", "segment_ids", "branch_ids", "logit_index", "target_mask")
    }
    out["logit_index"][:] = np.arange(length, dtype=np.int32)
    out["last_index"] = np.zeros((rows, slots, k), np.int32)
    out["context_index"] = np.zeros((rows, slots), np.int32)
    out["weight"] = np.zeros((rows, slots), np.float32)
    out["example"] = np.full((rows, slots), -1, np.int32)
    fields: dict[str, np.ndarray] = {}
    if kind == "pairwise":
        fields["subset"] = np.zeros((rows, slots), np.int32)
        for key in _PAIR_FIELDS:
            if key in examples[0]:
                fields[key] = np.zeros((rows, slots), np.float32)
    elif kind == "ranked":
        fields["ranks"] = np.zeros((rows, slots, k), np.int32)
    for r, members in enumerate(bins):
        start = 0
        for s, i in enumerate(members):
            e, (p, cs) = examples[i], sizes[i]
            seqs = e["seqs"]
            end = start + p
            out["tokens"][r, start:end] = seqs[0][:p]
            out["segment_ids"][r, start : start + p + sum(cs)] = s + 1
            last_prompt = max(end - 1, 0)
            out["context_index"][r, s] = last_prompt
            for j, c in enumerate(cs):
                span = slice(end, end + c)
                out["tokens"][r, span] = seqs[j][p:]
                out["branch_ids"][r, span] = j + 1
                if c:
                    # Token 0 of a response is predicted by the last prompt token; it counts
                    # when the prompt is not empty (an unpacked row never predicts its first).
                    out["logit_index"][r, end] = last_prompt
                    out["target_mask"][r, end] = int(p > 0)
                    out["logit_index"][r, end + 1 : end + c] = np.arange(end, end + c - 1)
                    out["target_mask"][r, end + 1 : end + c] = 1
                out["last_index"][r, s, j] = end + c - 1 if c else last_prompt
                end += c
            out["weight"][r, s] = weights[i]
            out["example"][r, s] = i
            for key, array in fields.items():
                array[r, s] = e[key]
            start = end
    out.update(fields)
    return out


def plan_packing(
    dataset: Any,
    index_batches: Sequence[Sequence[int]],
    packing: Packing,
    *,
    shard_count: int = 1,
) -> PackingPlan:
    """Fixes L, S and R_0 of a loader from probed global batches, and measures the waste.

    Args:
      dataset: an `EncodedDataset` of a packable kind.
      index_batches: global batches of example indices (indices >= N are fillers of example
        `i % N`), e.g. the first epoch's.
      packing: the request (`Packing`).
      shard_count: shards per global batch (shard s takes elements `s::shard_count`).

    Returns:
      The `PackingPlan` (module docstring).
    """
    if dataset.kind not in PACKABLE_KINDS:
        raise ValueError(f"packing takes {PACKABLE_KINDS} datasets, got {dataset.kind!r}.")
    lengths = example_lengths(dataset.examples)
    n = len(lengths)
    longest = int(lengths.max())
    if packing.length is None:
        length = _round_up(longest, packing.multiple)
    else:
        length = packing.length
        if longest > length:
            raise ValueError(
                f"Packing.length={length} is shorter than the longest example ({longest} tokens "
                f"laid out prefix-shared): raise it to >= {longest}, or leave it None (in a "
                "trainer: config.train.packing_length)."
            )
    k = len(dataset.examples[0]["seqs"])
    local = len(index_batches[0]) // shard_count
    parts = [
        lengths[np.asarray(batch, np.int64)[s::shard_count] % n]
        for batch in index_batches
        for s in range(shard_count)
    ]
    # Unconstrained slots first: S is the fullest row; with it, the same packings.
    packed = [first_fit_decreasing(part, length=length) for part in parts]
    slots = max(len(b) for bins in packed for b in bins)
    base_rows = _round_up(max(len(bins) for bins in packed), packing.row_multiple)
    real = int(sum(int(part.sum()) for part in parts))
    unshared = example_lengths(dataset.examples, shared=False)
    unpacked_real = sum(int(unshared[np.asarray(b, np.int64) % n].sum()) for b in index_batches)
    return PackingPlan(
        length=length,
        slots=slots,
        base_rows=base_rows,
        max_rows=_round_up(local, packing.row_multiple),
        row_multiple=packing.row_multiple,
        growth=packing.growth,
        real_tokens=real,
        packed_tokens=base_rows * length * len(parts),
        unpacked_real_tokens=unpacked_real,
        unpacked_tokens=k * dataset.max_length * local * len(parts),
        num_probed=len(index_batches),
    )
