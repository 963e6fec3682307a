"""Reward functions: one interface for RL, best-of-N and evaluation.

`reward_fn(inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput` with
float32 rewards `[B]` (see `base`). Implementations: `GoldReward` (the synthetic task's gold
reward), `ModelReward` (a trained reward model or ensemble), `RuleReward` (a Python rule on text,
with `exact_match` and `regex_format`), `CombinedReward` (a weighted sum through `transforms`).

Typical use::

    gold = rewards.GoldReward(task)
    proxy = rewards.ModelReward(model, params, ensemble="worst_case")
    out = proxy(rewards.RewardInputs(prompt_ids, prompt_mask, completion_ids, completion_mask))
    out.rewards  # float32 [B]
"""

from rewardjax.rewards.base import (
    RewardFunction,
    RewardInputs,
    RewardOutput,
    check_inputs,
    decode_texts,
    join_rows,
    texts_of,
)
from rewardjax.rewards.combined import REFERENCE_TRANSFORMS, TRANSFORMS, CombinedReward
from rewardjax.rewards.gold import GoldReward, min_gold_reward
from rewardjax.rewards.model import ENSEMBLE_REDUCTIONS, ModelReward
from rewardjax.rewards.rules import RuleReward, exact_match, normalize_whitespace, regex_format

__all__ = [
    "ENSEMBLE_REDUCTIONS",
    "REFERENCE_TRANSFORMS",
    "TRANSFORMS",
    "CombinedReward",
    "GoldReward",
    "ModelReward",
    "RewardFunction",
    "RewardInputs",
    "RewardOutput",
    "RuleReward",
    "check_inputs",
    "decode_texts",
    "exact_match",
    "join_rows",
    "min_gold_reward",
    "normalize_whitespace",
    "regex_format",
    "texts_of",
]
