"""Which batch layout an experiment trains on, conversions between layouts, and their evaluation.

A task and its loss fix the layout of the training batches (`rewardjax.data.BATCH_KEYS`):

- "sft": SFT records, or the chosen responses of preference pairs;
- "dpo": preference pairs, except `loss.name="kto"`, which trains on unpaired desirable /
  undesirable completions: unpaired records, or each pair split into its chosen (desirable) and
  rejected (undesirable) response, as TRL's `unpair_preference_dataset` does;
- "reward_model": pairs with a pairwise loss; ranked lists with a listwise loss
  ("plackett_luce", "listwise_softmax") or with a pairwise loss over their ordered pairs; ratings
  with "rating_regression". Pairs become ranked lists of two (ranks 0, 1), and on the synthetic
  task each response of a pair becomes a response rated by its gold reward (attribute "gold").

Evaluation on a held-out set of a non-pairwise layout averages a step's loss and metrics
(`steps.ranked_loss`, `steps.rating_loss`, `steps.kto_loss`) over the set, weighting each batch by
its real examples.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import numpy as np

from rewardjax.data import EncodedDataset

__all__ = ["LISTWISE_LOSSES", "RATING_LOSSES", "convert", "mean_metrics", "train_kind"]

LISTWISE_LOSSES = ("plackett_luce", "listwise_softmax")
RATING_LOSSES = ("rating_regression", "categorical_rating")


def train_kind(task: str, loss_name: str | None, data_kind: str) -> str:
    """The layout `task` with loss `loss_name` trains on, given data of kind `data_kind`."""
    if task == "sft":
        return "sft"
    if task == "dpo":
        return "unpaired" if loss_name == "kto" else "pairwise"
    if loss_name in LISTWISE_LOSSES:
        return "ranked"
    if loss_name in RATING_LOSSES:
        return "rating"
    return "ranked" if data_kind == "ranked" else "pairwise"


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


def mean_metrics(
    loss_fn: Callable[[Any, Mapping[str, Any]], tuple[jax.Array, Mapping[str, jax.Array]]],
    params: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    batch_fn: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
) -> dict[str, float]:
    """`loss_fn(params, batch) -> (loss, metrics)` averaged over `batches`, each batch weighted by
    the sum of its `weight` (the step's metrics are already means over real examples).

    `loss_fn` and `batch_fn` (e.g. reference log-probs) should be jitted; `batch_fn` runs first.
    """
    totals: dict[str, float] = {}
    count = 0.0
    for batch in batches:
        w = float(np.sum(batch["weight"]))
        batch = batch if batch_fn is None else batch_fn(batch)
        loss, metrics = jax.device_get(loss_fn(params, batch))
        for key, value in {"loss": loss, **metrics}.items():
            totals[key] = totals.get(key, 0.0) + w * float(value)
        count += w
    return {key: total / max(count, 1.0) for key, total in totals.items()}
