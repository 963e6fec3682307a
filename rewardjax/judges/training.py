"""Preference pairs as pairwise judge rows, to train a judge with the existing SFT and DPO trainers.

Each pair (prompt x, chosen y⁺, rejected y⁻) becomes, in both presentation orders,

    [x, sep, y⁺, sep, y⁻, sep] -> "A"        [x, sep, y⁻, sep, y⁺, sep] -> "B"

stored as a pairwise example whose chosen sequence ends with the correct verdict id and whose
rejected sequence ends with the other one (prompt = the judge row): SFT trains on the chosen side
(the cross-entropy of the verdict token), DPO on both (the verdict's log-ratio). Both orders in
the data teach the judge that the verdict follows the content, not the position (Zheng et al.
2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv 2306.05685, §3.3 on position
bias; the swap augmentation of Zhu et al. 2023, "JudgeLM", arXiv 2310.17631).

The separator and the two verdicts are new ids appended past the data's vocabulary
(`JudgeIds.for_vocab(vocab_size)`), so the model's vocabulary grows by `JudgeIds.extra` = 3.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from rewardjax.data import EncodedDataset

__all__ = ["JudgeIds", "pairs_to_judge_dataset"]


class JudgeIds(NamedTuple):
    """The ids a token-level pairwise judge adds: separator, verdict "A", verdict "B"."""

    sep: int
    a: int
    b: int

    extra = 3  # ids added past the data's vocabulary

    @classmethod
    def for_vocab(cls, vocab_size: int) -> JudgeIds:
        """Ids `vocab_size`, `vocab_size + 1`, `vocab_size + 2` (the first ids past the data's)."""
        return cls(vocab_size, vocab_size + 1, vocab_size + 2)


def pairs_to_judge_dataset(
    dataset: EncodedDataset, ids: JudgeIds, *, both_orders: bool = True
) -> EncodedDataset:
    """Pairwise judge rows of a pairwise dataset (module docstring).

    Args:
      dataset: kind "pairwise": examples with "seqs" (chosen, rejected), each prompt + response
        ids, and "prompt_len".
      ids: the separator and verdict ids (past every id of `dataset`).
      both_orders: two rows per pair (chosen shown first -> "A", chosen shown second -> "B");
        False: one row, the order alternating pair by pair (even index: chosen first).

    Returns:
      A pairwise dataset: chosen = judge row + correct verdict, rejected = judge row + the other
      verdict, "prompt_len" = the judge row's length; `max_length` = the longest row + 1; margin,
      subset and gold rewards carried over from the pair.

    Raises:
      ValueError: when `dataset` is not pairwise, or holds an id >= `ids.sep`.
    """
    if dataset.kind != "pairwise":
        raise ValueError(
            f"pairs_to_judge_dataset: the data holds {dataset.kind!r} records; a judge is trained "
            "on pairwise ones (config.data.layout='pairwise' or the synthetic task)"
        )
    sep = np.asarray([ids.sep], np.int32)
    examples, longest = [], 0
    for i, e in enumerate(dataset.examples):
        (chosen, rejected), p = e["seqs"], e["prompt_len"]
        chosen, rejected = np.asarray(chosen, np.int32), np.asarray(rejected, np.int32)
        top = max(int(chosen.max(initial=0)), int(rejected.max(initial=0)))
        if top >= ids.sep:
            raise ValueError(
                f"pairs_to_judge_dataset: example {i} holds id {top} >= the separator id "
                f"{ids.sep}; build JudgeIds.for_vocab(<the data's vocabulary size>)"
            )
        prompt, good, bad = chosen[:p], chosen[p:], rejected[p:]
        orders = [(good, bad, ids.a, ids.b), (bad, good, ids.b, ids.a)]
        if not both_orders:
            orders = [orders[i % 2]]
        for first, second, right, wrong in orders:
            row = np.concatenate([prompt, sep, first, sep, second, sep])
            extra = {k: v for k, v in e.items() if k not in ("seqs", "prompt_len")}
            seqs = (np.append(row, right).astype(np.int32), np.append(row, wrong).astype(np.int32))
            examples.append({"seqs": seqs, "prompt_len": len(row), **extra})
            longest = max(longest, len(row) + 1)
    return dataclasses.replace(dataset, examples=examples, max_length=longest)
