"""Generative judges: a `models.CausalLM` reads a judge prompt and the probability of a verdict
token is the score.

- `PointwiseJudge`: P(yes) or the expected rating over "1".."10", one jitted forward pass;
- `PairwiseJudge`: P(A) vs P(B) in both presentation orders, averaged, with the position bias;
- `CritiqueJudge`: a sampled rationale, then the verdict token; parse failures counted;
- `false_positive_rate` / `probe_judges`: acceptance of content-free responses ("One Token to Fool
  LLM-as-a-Judge", arXiv 2507.08794);
- `JudgeReward`: a judge as a `rewards.RewardFunction`; `PointwiseJudge.as_rubric_judge()` for
  `rewards.RubricReward`;
- `TextTemplate` (Jinja, tokenised) and `TokenTemplate` (ids, the synthetic task);
  `verdict_token_ids` checks that each verdict is one token;
- `pairs_to_judge_dataset`: preference pairs as judge rows for the SFT / DPO trainers
  (`configs/judge.py`).

Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv 2306.05685.
"""

from rewardjax.judges.critique import FAILURE_REASONS, CritiqueJudge, CritiqueScores, parse_verdict
from rewardjax.judges.probe import MASTER_KEYS, ProbeResult, false_positive_rate, probe_judges
from rewardjax.judges.reward import JUDGE_REWARDS, JudgeReward
from rewardjax.judges.scoring import (
    PairwiseJudge,
    PairwiseScores,
    PointwiseJudge,
    PointwiseScores,
    last_logits,
    pad_rows,
    pairwise_from_orders,
    verdict_probs,
)
from rewardjax.judges.templates import (
    DEFAULT_PAIRWISE_TEMPLATE,
    DEFAULT_POINTWISE_TEMPLATE,
    RATING_POINTWISE_TEMPLATE,
    TextTemplate,
    TokenTemplate,
    verdict_token_ids,
)
from rewardjax.judges.training import JudgeIds, pairs_to_judge_dataset

__all__ = [
    "DEFAULT_PAIRWISE_TEMPLATE",
    "DEFAULT_POINTWISE_TEMPLATE",
    "FAILURE_REASONS",
    "JUDGE_REWARDS",
    "MASTER_KEYS",
    "RATING_POINTWISE_TEMPLATE",
    "CritiqueJudge",
    "CritiqueScores",
    "JudgeIds",
    "JudgeReward",
    "PairwiseJudge",
    "PairwiseScores",
    "PointwiseJudge",
    "PointwiseScores",
    "ProbeResult",
    "TextTemplate",
    "TokenTemplate",
    "false_positive_rate",
    "last_logits",
    "pad_rows",
    "pairs_to_judge_dataset",
    "pairwise_from_orders",
    "parse_verdict",
    "probe_judges",
    "verdict_probs",
    "verdict_token_ids",
]
