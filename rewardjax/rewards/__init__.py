"""Reward functions: one interface for RL, best-of-N and evaluation.

`reward_fn(inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput` with
float32 rewards `[B]` (see `base`). Implementations: `GoldReward` (the synthetic task's gold
reward), `ModelReward` (a trained reward model or ensemble), `RuleReward` (a Python rule on text,
with `exact_match` and `regex_format`), `CombinedReward` (a weighted sum through `transforms`).
Verifiable rewards (`verifiable`): `normalized_match`, `math_match` (boxed answers as exact
rationals), `choice_match`, `tag_format`, `LengthPenalty`, `ReferenceLikelihoodReward`. Rubrics
(`rubrics`): `Rubric` of `RubricItem`s, `RubricReward` (hard-gated weighted fraction, a `judge`
hook), `rubric_votes` (criterion-wise pairwise), `load_rubrics` (JSONL).

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
from rewardjax.rewards.rubrics import (
    ITEM_KINDS,
    VERIFIER_TYPES,
    JudgeQuestion,
    Rubric,
    RubricItem,
    RubricReward,
    RubricVotes,
    load_rubrics,
    make_verifier,
    rubric_scores,
    rubric_votes,
)
from rewardjax.rewards.rules import RuleReward, exact_match, normalize_whitespace, regex_format
from rewardjax.rewards.verifiable import (
    PERCENT_MODES,
    LengthPenalty,
    ReferenceLikelihoodReward,
    choice_match,
    extract_boxed,
    extract_choice,
    extract_tag,
    length_penalty,
    math_equal,
    math_match,
    normalize_answer,
    normalized_match,
    parse_number,
    tag_format,
)

__all__ = [
    "ENSEMBLE_REDUCTIONS",
    "ITEM_KINDS",
    "PERCENT_MODES",
    "REFERENCE_TRANSFORMS",
    "TRANSFORMS",
    "VERIFIER_TYPES",
    "CombinedReward",
    "GoldReward",
    "JudgeQuestion",
    "LengthPenalty",
    "ModelReward",
    "ReferenceLikelihoodReward",
    "RewardFunction",
    "RewardInputs",
    "RewardOutput",
    "Rubric",
    "RubricItem",
    "RubricReward",
    "RubricVotes",
    "RuleReward",
    "check_inputs",
    "choice_match",
    "decode_texts",
    "exact_match",
    "extract_boxed",
    "extract_choice",
    "extract_tag",
    "join_rows",
    "length_penalty",
    "load_rubrics",
    "make_verifier",
    "math_equal",
    "math_match",
    "min_gold_reward",
    "normalize_answer",
    "normalize_whitespace",
    "normalized_match",
    "parse_number",
    "regex_format",
    "rubric_scores",
    "rubric_votes",
    "tag_format",
    "texts_of",
]
