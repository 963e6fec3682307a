"""A pointwise judge as a `rewards.RewardFunction` (RL, best-of-n, evaluation), and as the judge
hook of `rewards.RubricReward` (`PointwiseJudge.as_rubric_judge`).

Reward of row b, with s_b the judge's score (P(yes | yes or no), or the expected rating):

    prob:      r_b = s_b
    log_odds:  r_b = log s_b - log(1 - s_b)     (yes/no only; clipped to s ∈ [eps, 1 - eps])

Rows are built from ids with a `TokenTemplate` (the prompt's and completion's real tokens), or
from text with a `TextTemplate` (`RewardInputs` text, else decoded with the policy's tokenizer,
the completion's final stop token dropped). Rows with ids outside the judge's vocabulary get
`invalid_reward` (NaN by default), counted in `aux["invalid"]`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax.numpy as jnp
import numpy as np

from rewardjax.data import Tokenizer
from rewardjax.judges.scoring import PointwiseJudge
from rewardjax.judges.templates import TokenTemplate
from rewardjax.rewards.base import RewardInputs, RewardOutput, check_inputs, texts_of

__all__ = ["JUDGE_REWARDS", "JudgeReward"]

JUDGE_REWARDS = ("prob", "log_odds")


class JudgeReward:
    """Rewards from a `PointwiseJudge` (module docstring).

    Args:
      judge: the pointwise judge.
      tokenizer: the policy's tokenizer, to decode ids for a `TextTemplate` when `RewardInputs`
        has no text (None: the text must be given).
      references: prompt -> reference answer (a mapping, or a function of the prompt), or None.
      criteria: the template's `criteria` for every row, or None.
      reward: "prob" or "log_odds" (`JUDGE_REWARDS`).
      eps: the clip of "log_odds".
      invalid_reward: the reward of rows with ids outside the judge's vocabulary.

    Returns (on call): `RewardOutput(rewards [B], None, aux)`; aux: "judge_score" [B] (s_b),
    "verdict_mass" [B] (the judge's raw probability of saying any verdict), "invalid" [B].
    """

    needs_reference = False

    def __init__(
        self,
        judge: PointwiseJudge,
        *,
        tokenizer: Tokenizer | None = None,
        references: Mapping[str, str] | Callable[[str], str] | None = None,
        criteria: str | None = None,
        reward: str = "prob",
        eps: float = 1e-6,
        invalid_reward: float = float("nan"),
    ):
        if reward not in JUDGE_REWARDS:
            raise ValueError(f"JudgeReward: reward={reward!r}; choose one of {JUDGE_REWARDS}")
        if reward == "log_odds" and judge.values is not None:
            raise ValueError("JudgeReward: reward='log_odds' needs a yes/no judge (values=None)")
        self.judge, self.tokenizer = judge, tokenizer
        self.references, self.criteria = references, criteria
        self.reward, self.eps, self.invalid_reward = reward, float(eps), float(invalid_reward)

    def _reference(self, prompt: str):
        r = self.references
        if r is None:
            return None
        if isinstance(r, Mapping):
            if prompt not in r:
                raise ValueError(
                    f"JudgeReward: no reference answer for prompt {prompt[:80]!r}; add it to "
                    "references"
                )
            return r[prompt]
        return r(prompt)

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        del reference
        b, _ = check_inputs(inputs)
        if isinstance(self.judge.template, TokenTemplate):
            pt, pm = np.asarray(inputs.prompt_tokens), np.asarray(inputs.prompt_mask) > 0
            ct, cm = np.asarray(inputs.completion_tokens), np.asarray(inputs.completion_mask) > 0
            prompts = [pt[i][pm[i]].tolist() for i in range(b)]
            completions = [ct[i][cm[i]].tolist() for i in range(b)]
            refs = None
        else:
            prompts, completions = texts_of(inputs, self.tokenizer, who="JudgeReward")
            refs = None if self.references is None else [self._reference(p) for p in prompts]
        rows = self.judge.rows(prompts, completions, refs, self.criteria)
        vocab = self.judge.model.config.vocab_size
        invalid = np.asarray([any(not 0 <= t < vocab for t in r) for r in rows])
        safe = [[1] if bad else r for r, bad in zip(rows, invalid)]
        scores = self.judge.score_rows(safe)
        s = scores.score
        if self.reward == "log_odds":
            c = jnp.clip(s, self.eps, 1 - self.eps)
            r = jnp.log(c) - jnp.log1p(-c)
        else:
            r = s
        invalid_j = jnp.asarray(invalid)
        rewards = jnp.where(invalid_j, jnp.float32(self.invalid_reward), r).astype(jnp.float32)
        aux = {
            "judge_score": jnp.where(invalid_j, jnp.nan, s),
            "verdict_mass": jnp.where(invalid_j, jnp.nan, scores.verdict_mass),
            "invalid": invalid_j.astype(jnp.float32),
        }
        return RewardOutput(rewards, None, aux)
