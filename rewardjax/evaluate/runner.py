"""Run a reward model over data and collect every evaluation in one place (host-side glue).

- `score_pair_batches`: the reward model's scores of the chosen and rejected halves of pairwise
  batches (the `rewardjax.data` layout), gathered into flat numpy arrays.
- `evaluate_pairs`: all pair metrics of those arrays as one `PairReport` (`.as_dict()` gives flat
  float metrics for a metric writer).
- `synthetic_bon_curves`: on the synthetic Markov task, best-of-n by the trained proxy against the
  gold reward, from fresh base-model samples.

Papers: Lambert et al. 2024, "RewardBench", arXiv 2403.13787; Gao et al. 2022, "Scaling Laws for
Reward Model Overoptimization", arXiv 2210.10760.
"""

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.data import synthetic
from rewardjax.evaluate import gold as gold_lib
from rewardjax.evaluate import pairs as pairs_lib
from rewardjax.models import ScoringModel, score_pairs

__all__ = [
    "PairReport",
    "evaluate_pairs",
    "evaluate_reward_model",
    "score_pair_batches",
    "synthetic_bon_curves",
]


class PairReport(NamedTuple):
    """Every pair metric of one evaluation set (arrays are host numpy values)."""

    accuracy: float
    count: float  # Σ weight: the number of real pairs
    subset_names: tuple[str, ...]
    subsets: pairs_lib.SubsetAccuracy
    sections: dict[str, float]  # RewardBench-style section scores (empty if no section matches)
    margin: pairs_lib.MarginStats
    calibration: pairs_lib.Calibration
    gold: gold_lib.GoldAgreement | None  # when gold rewards are known (synthetic task)

    def as_dict(self) -> dict[str, float]:
        """Flat floats: accuracy, count, ece, margin_*, gold_*, accuracy/<subset>, section/<s>."""
        out = {"accuracy": self.accuracy, "count": self.count, "ece": float(self.calibration.ece)}
        out.update({f"margin_{k}": float(v) for k, v in self.margin._asdict().items()})
        if self.gold is not None:
            out.update({f"gold_{k}": float(v) for k, v in self.gold._asdict().items()})
        if len(self.subset_names) > 1:
            for name, acc, n in zip(self.subset_names, self.subsets.accuracy, self.subsets.count):
                if n > 0:
                    out[f"accuracy/{name or '(none)'}"] = float(acc)
        out.update({f"section/{k}": v for k, v in self.sections.items()})
        return out


def evaluate_pairs(
    chosen: np.ndarray,
    rejected: np.ndarray,
    *,
    weight: np.ndarray | None = None,
    subset: np.ndarray | None = None,
    subset_names: Sequence[str] = ("",),
    chosen_gold: np.ndarray | None = None,
    rejected_gold: np.ndarray | None = None,
    num_bins: int = 10,
    binning: str = "width",
    sections: Mapping[str, Sequence[str]] = pairs_lib.REWARDBENCH_SECTIONS,
) -> PairReport:
    """All pair metrics of reward arrays [B]: accuracy, per subset and section, margins, ECE, gold.

    Args:
      chosen, rejected: rewards [B].
      weight: example weights [B] (0 = padding); None weighs all equally.
      subset: subset index of each pair [B] (None: all in subset 0).
      subset_names: the names of the subset indices.
      chosen_gold, rejected_gold: gold rewards [B] (synthetic task), or None.
      num_bins, binning: of the calibration (`pairs.pair_calibration`).
      sections: section -> subset names for `pairs.section_scores`.

    Returns:
      PairReport.
    """
    chosen = np.asarray(chosen)
    if subset is None:
        subset = np.zeros(chosen.shape, np.int32)
    if subset.size and int(np.max(subset)) >= len(subset_names):
        raise ValueError(
            f"evaluate_pairs: subset ids go up to {int(np.max(subset))} but only "
            f"{len(subset_names)} subset_names were given."
        )
    by_subset = pairs_lib.subset_accuracy(
        chosen, rejected, subset, num_subsets=len(subset_names), weight=weight
    )
    by_subset = pairs_lib.SubsetAccuracy(*map(np.asarray, by_subset))
    gold = None
    if chosen_gold is not None and rejected_gold is not None:
        gold = gold_lib.gold_agreement(chosen, rejected, chosen_gold, rejected_gold, weight=weight)
        gold = gold_lib.GoldAgreement(*map(np.asarray, gold))
    cal = pairs_lib.pair_calibration(
        chosen, rejected, num_bins=num_bins, binning=binning, weight=weight
    )
    return PairReport(
        accuracy=float(pairs_lib.pair_accuracy(chosen, rejected, weight=weight)),
        count=float(np.sum(by_subset.count)),
        subset_names=tuple(subset_names),
        subsets=by_subset,
        sections=pairs_lib.section_scores(
            by_subset.accuracy, by_subset.count, subset_names, sections
        ),
        margin=pairs_lib.MarginStats(
            *map(np.asarray, pairs_lib.margin_stats(chosen, rejected, weight=weight))
        ),
        calibration=pairs_lib.Calibration(*map(np.asarray, cal)),
        gold=gold,
    )


def _member_mean(reward: jax.Array) -> jax.Array:
    # An ensemble head returns [E, B]; its evaluation uses the members' mean reward.
    return reward if reward.ndim == 1 else jnp.mean(reward, axis=0)


# Jitted with the (hashable) reward function static: one compilation per model and batch shape,
# shared across calls.
@functools.partial(jax.jit, static_argnums=0)
def _score_pairs(reward_fn, params, batch):
    chosen, rejected = score_pairs(reward_fn, params, batch)
    return _member_mean(chosen.reward), _member_mean(rejected.reward)


@functools.partial(jax.jit, static_argnums=0)
def _score(reward_fn, params, tokens, completion_mask):
    out = reward_fn.apply(params, tokens, jnp.ones_like(tokens), completion_mask)
    return _member_mean(out.reward)


_PAIR_INPUTS = tuple(
    f"{side}_{name}" for side in ("chosen", "rejected") for name in ("tokens", "mask")
)


def score_pair_batches(
    reward_fn: ScoringModel,
    params: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    max_batches: int | None = None,
) -> dict[str, np.ndarray]:
    """Scores pairwise batches and concatenates everything an evaluation needs.

    Each batch is a `rewardjax.data` pairwise batch (`{chosen,rejected}_{tokens,mask}`, optional
    `_completion_mask`, `weight`, `subset`, and `chosen_gold`/`rejected_gold` on the synthetic
    task); the forward pass is jitted once per model and batch shape. An ensemble's reward is its
    members' mean. `reward_fn` must be hashable (flax modules are).

    Args:
      reward_fn: has `apply(params, tokens, mask, completion_mask)` (e.g. `models.RewardModel`).
      params: its parameters.
      batches: an iterable of batches (a finite one, or cut with `max_batches`).
      max_batches: stop after this many batches.

    Returns:
      numpy arrays [N]: "chosen", "rejected", "weight", "subset", and "chosen_gold",
      "rejected_gold" when the batches carry them.
    """

    keys = (*_PAIR_INPUTS, "chosen_completion_mask", "rejected_completion_mask")
    parts: dict[str, list[np.ndarray]] = {}
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        missing = [k for k in _PAIR_INPUTS if k not in batch]
        if missing:
            raise KeyError(f"score_pair_batches: batch {i} lacks the pairwise fields {missing}.")
        chosen, rejected = _score_pairs(
            reward_fn, params, {k: batch[k] for k in keys if k in batch}
        )
        size = chosen.shape[0]
        found = {"chosen": chosen, "rejected": rejected}
        found["weight"] = batch.get("weight", np.ones(size, np.float32))
        found["subset"] = batch.get("subset", np.zeros(size, np.int32))
        for k in ("chosen_gold", "rejected_gold"):
            if k in batch:
                found[k] = batch[k]
        for k, v in found.items():
            parts.setdefault(k, []).append(np.asarray(v))
    if not parts:
        raise ValueError("score_pair_batches: `batches` yielded no batch.")
    return {k: np.concatenate(v) for k, v in parts.items()}


def evaluate_reward_model(
    reward_fn: ScoringModel,
    params: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    *,
    subset_names: Sequence[str] = ("",),
    max_batches: int | None = None,
    **kwargs: Any,
) -> PairReport:
    """`score_pair_batches` then `evaluate_pairs` (kwargs: num_bins, binning, sections)."""
    arrays = score_pair_batches(reward_fn, params, batches, max_batches=max_batches)
    return evaluate_pairs(
        arrays["chosen"],
        arrays["rejected"],
        weight=arrays["weight"],
        subset=arrays["subset"],
        subset_names=subset_names,
        chosen_gold=arrays.get("chosen_gold"),
        rejected_gold=arrays.get("rejected_gold"),
        **kwargs,
    )


def synthetic_bon_curves(
    task: synthetic.MarkovTask,
    reward_fn: ScoringModel,
    params: Any,
    key: jax.Array,
    *,
    num_prompts: int = 32,
    num_samples: int = 256,
    ns: Sequence[int] | None = None,
    batch_size: int = 1024,
) -> gold_lib.BonGoldCurves:
    """Best-of-n by the trained proxy on the synthetic task, judged by the gold reward.

    Samples `num_prompts` prompts and `num_samples` base-model responses to each, scores them with
    the proxy (jitted, `batch_size` sequences at a time) and the gold reward, and returns
    `gold.empirical_bon_gold_curves` averaged over prompts: for each n, the proxy and gold reward of
    best-of-n by the proxy, the gold reward of best-of-n by the gold reward, and the KL
    log n - (n-1)/n (an upper bound that is tight when the sampled responses rarely repeat).

    Reference: Gao et al. 2022, arXiv 2210.10760 (Figure 1, best-of-n).

    Args:
      task: the world (`data.make_markov_task`).
      reward_fn, params: the proxy reward model (token ids = vocabulary tokens + 1).
      key: PRNG key for the samples.
      num_prompts, num_samples: P prompts, M responses per prompt.
      ns: the grid of n in [1, M]; default 1, 2, 4, … up to M.
      batch_size: sequences per forward pass.

    Returns:
      BonGoldCurves with every field of shape [K].
    """
    if ns is None:
        ns = [2**k for k in range(int(np.log2(num_samples)) + 1)]
    k_prompt, k_resp = jax.random.split(key)
    prompts = np.asarray(synthetic.sample_prompts(task, k_prompt, num_prompts))
    prompts = np.repeat(prompts, num_samples, axis=0)  # [P*M, P_len]
    responses = np.asarray(synthetic.sample_responses(task, k_resp, prompts[:, -1]))
    gold = np.asarray(synthetic.gold_reward(task, prompts[:, -1], responses))
    tokens = np.asarray(synthetic.to_ids(np.concatenate([prompts, responses], 1)), np.int32)
    completion = np.zeros_like(tokens)
    completion[:, prompts.shape[1] :] = 1

    total = tokens.shape[0]
    pad = -total % batch_size  # fixed chunk shape: one compilation
    tokens = np.pad(tokens, ((0, pad), (0, 0)), constant_values=1)
    completion = np.pad(completion, ((0, pad), (0, 0)))
    proxy = np.concatenate(
        [
            np.asarray(
                _score(
                    reward_fn, params, tokens[i : i + batch_size], completion[i : i + batch_size]
                )
            )
            for i in range(0, tokens.shape[0], batch_size)
        ]
    )[:total]
    curves = gold_lib.empirical_bon_gold_curves(
        proxy.reshape(num_prompts, num_samples), gold.reshape(num_prompts, num_samples), ns
    )
    rewards = ("proxy_reward", "gold_reward", "gold_best")  # [P, K]: means over the prompts
    return curves._replace(
        n=np.asarray(curves.n),
        kl=np.asarray(curves.kl),
        kl_best=np.asarray(curves.kl_best),
        **{k: np.asarray(getattr(curves, k)).mean(0) for k in rewards},
    )
