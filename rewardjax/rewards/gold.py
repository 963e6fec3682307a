"""The gold reward of the synthetic Markov task (`data.synthetic`) as a reward function.

Model ids are vocabulary tokens + `data.synthetic.ID_OFFSET`; y_0 is the prompt's last real token
and the completion's real tokens are y_1..y_T:

    r(y_0, y) = Σ_{t=1..T} bigram_reward[y_{t-1}, y_t] + pattern_bonus · 1[pattern in y]

(`data.synthetic.gold_reward`). A row whose completion does not have exactly T real tokens, or
that holds an id outside the task's vocabulary (a special id < ID_OFFSET or an id >=
`task.model_vocab_size`, in the completion or as y_0), gets the fixed `invalid_reward` and
`aux["invalid"] = 1`, never a value read from a clamped index.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from rewardjax.data import MarkovTask, synthetic
from rewardjax.rewards.base import RewardInputs, RewardOutput, check_inputs

__all__ = ["GoldReward", "min_gold_reward"]


def min_gold_reward(task: MarkovTask) -> float:
    """A lower bound on every gold reward of the task, exact without a pattern bonus.

    m_0(v) = 0, m_k(v) = min_w bigram_reward[v, w] + m_{k-1}(w) (min-plus dynamic programme over
    the T response tokens), bound = min_v m_T(v) + min(0, pattern_bonus) (the bonus counted only
    when the pattern fits in T tokens).
    """
    bigram = np.asarray(task.bigram_reward, np.float64)
    m = np.zeros(task.vocab_size)
    for _ in range(task.length):
        m = np.min(bigram + m[None, :], axis=1)
    bonus = task.pattern_bonus if task.pattern and len(task.pattern) <= task.length else 0.0
    return float(m.min() + min(0.0, bonus))


@jax.jit
def _gold(
    task: MarkovTask,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    completion_tokens: Int[Array, "B L"],
    completion_mask: Int[Array, "B L"],
    invalid_reward: Float[Array, ""],
):
    t = task.length
    b, width = completion_tokens.shape
    in_vocab = lambda ids: (ids >= synthetic.ID_OFFSET) & (ids < task.model_vocab_size)

    prompt_real = prompt_mask > 0
    last = prompt_real.shape[1] - 1 - jnp.argmax(prompt_real[:, ::-1], axis=1)
    y0 = jnp.take_along_axis(prompt_tokens, last[:, None], axis=1)[:, 0]
    prompt_ok = prompt_real.any(1) & in_vocab(y0)

    real = completion_mask > 0
    if width < t:  # too short to hold T tokens: every row is invalid; pad so the gathers work
        pad = ((0, 0), (0, t - width))
        completion_tokens, real = jnp.pad(completion_tokens, pad), jnp.pad(real, pad)
    # Positions of the real completion tokens, in order, then the rest.
    order = jnp.argsort(jnp.where(real, 0, 1), axis=1, stable=True)[:, :t]
    ids = jnp.take_along_axis(completion_tokens, order, axis=1)
    valid = prompt_ok & (real.sum(1) == t) & in_vocab(ids).all(1)

    y0_v = jnp.where(valid, synthetic.to_tokens(y0), 0)
    y_v = jnp.where(valid[:, None], synthetic.to_tokens(ids), 0)
    gold = synthetic.gold_reward(task, y0_v, y_v)
    full = jnp.concatenate([y0_v[:, None], y_v], axis=1)
    per_token = jnp.asarray(task.bigram_reward, jnp.float32)[full[:, :-1], full[:, 1:]]  # [B, T]
    per_token = per_token.at[:, -1].add(gold - per_token.sum(1))  # the pattern bonus at y_T
    rows = jnp.arange(b)[:, None]
    dense = jnp.zeros((b, max(width, t)), jnp.float32).at[rows, order].set(per_token)[:, :width]
    last_c = jnp.where(real.any(1), real.shape[1] - 1 - jnp.argmax(real[:, ::-1], axis=1), 0)
    fallback = (
        jnp.zeros((b, max(width, t)), jnp.float32).at[jnp.arange(b), last_c].set(invalid_reward)
    )[:, :width]
    rewards = jnp.where(valid, gold, invalid_reward).astype(jnp.float32)
    token_rewards = jnp.where(valid[:, None], dense, fallback)
    return rewards, token_rewards, (~valid).astype(jnp.float32)


class GoldReward:
    """The synthetic task's gold reward (see the module docstring); one jitted call per batch.

    Args:
      task: the `data.MarkovTask`.
      invalid_reward: the reward of invalid rows; default `min_gold_reward(task)`, a lower bound
        on every valid reward (the task's minimum when it has no pattern bonus), so an invalid
        completion never beats a valid one.

    Returns (on call): `RewardOutput` with rewards [B], `token_rewards` [B, L] (bigram reward at
    each completion token, the pattern bonus at the last one; an invalid row holds its fallback at
    its last real completion token, so rows sum to `rewards`), aux `"invalid"` [B] (1.0 = invalid).
    `reference` is ignored.
    """

    needs_reference = False

    def __init__(self, task: MarkovTask, *, invalid_reward: float | None = None):
        self.task = task
        self.invalid_reward = (
            min_gold_reward(task) if invalid_reward is None else float(invalid_reward)
        )

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        del reference
        check_inputs(inputs)
        rewards, token_rewards, invalid = _gold(
            self.task,
            jnp.asarray(inputs.prompt_tokens, jnp.int32),
            jnp.asarray(inputs.prompt_mask),
            jnp.asarray(inputs.completion_tokens, jnp.int32),
            jnp.asarray(inputs.completion_mask),
            jnp.float32(self.invalid_reward),
        )
        return RewardOutput(rewards, token_rewards, {"invalid": invalid})
