"""Conversions between record layouts: preference pairs into SFT records, ranked lists of two,
unpaired completions or gold-rated responses.

- "sft": the chosen response of each pair;
- "ranked": a list of two responses ranked (0, 1);
- "unpaired": the chosen response as a desirable completion and the rejected one as an undesirable
  completion, as TRL's `unpair_preference_dataset` does (KTO);
- "rating": on the synthetic task, each response rated by its gold reward (attribute "gold").

A trainer picks the layout it needs (`rewardjax.train.tasks`); `convert` builds it or says why it
cannot.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from rewardjax.data.pipeline import EncodedDataset

__all__ = ["convert"]


def _pair_examples(dataset: EncodedDataset, to: str) -> list[dict[str, Any]]:
    """The examples of a pairwise dataset in layout `to` (see the module docstring)."""
    out = []
    for e in dataset.examples:
        (chosen, rejected), prompt_len = e["seqs"], e["prompt_len"]
        if to == "sft":
            out.append({"seqs": (chosen,), "prompt_len": prompt_len})
        elif to == "ranked":
            out.append({"seqs": (chosen, rejected), "prompt_len": prompt_len, "ranks": (0, 1)})
        elif to == "unpaired":
            for seq, desirable in ((chosen, True), (rejected, False)):
                out.append({"seqs": (seq,), "prompt_len": prompt_len, "desirable": desirable})
        else:  # rating: the gold reward of each response
            for seq, gold in ((chosen, e["chosen_gold"]), (rejected, e["rejected_gold"])):
                ratings = np.asarray([gold], np.float32)
                out.append({"seqs": (seq,), "prompt_len": prompt_len, "ratings": ratings})
    return out


def convert(dataset: EncodedDataset, kind: str, *, field: str) -> EncodedDataset:
    """`dataset` in layout `kind` (itself when it already is); `field` names the config field
    that chose `kind`, for the error raised when no conversion exists."""
    if dataset.kind == kind:
        return dataset
    convertible = dataset.kind == "pairwise" and kind in ("sft", "ranked", "unpaired", "rating")
    if kind == "rating" and convertible and "chosen_gold" not in dataset.examples[0]:
        raise ValueError(
            f"{field} trains on ratings; pairwise records carry none (only the synthetic task's "
            "gold rewards can stand in). Use rating records (config.data.layout='rating' or "
            "'helpsteer2')."
        )
    if not convertible:
        raise ValueError(
            f"{field} trains on {kind!r} batches, but the data holds {dataset.kind!r} records "
            f"(config.data.layout); give {kind!r} records or pairwise ones to convert."
        )
    attributes = ("gold",) if kind == "rating" else ()
    examples = _pair_examples(dataset, kind)
    return dataclasses.replace(dataset, kind=kind, examples=examples, attributes=attributes)
