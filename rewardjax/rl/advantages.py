"""Advantage estimators for online KL-constrained RL, and a registry of them by name.

Every estimator has one signature, so a trainer calls them uniformly and reads `spec(name)` for
what it must provide:

    fn(token_rewards [B, T] (or [K, B, T] for multi-reward), mask [B, T], *, group_size,
       values=None, baseline_rewards=None, **hyperparameters) -> Advantages(advantages, returns)

Rows are grouped: B = P·N rows, the N completions of prompt p consecutive (row p·N + j).
`token_rewards` holds the final score at each row's last real token plus any per-token terms
(e.g. -β·KL when the KL penalty is placed in the reward); sequence-level estimators use the row
sum over real tokens, s_i = Σ_t m_it r_it, so whatever sits at a padding position never matters.
A row with no real tokens (an empty completion) has s_i = 0 and stays a member of its group (it
is a sample like any other); its own advantages are 0 because it has no tokens. Outputs are
float32 (also for integer rewards) and exactly 0 at masked positions. Static arguments under
`jax.jit`: `group_size` and the string/integer hyper-parameters (`scale`, `ddof`).

Papers:
- Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
  Estimation", arXiv 1506.02438 (`gae`).
- Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
  Models", arXiv 2402.03300 (`grpo`, scale='group').
- Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
  arXiv 2503.20783 (Dr. GRPO: `grpo`, scale='none').
- Liu et al. 2025, "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning",
  arXiv 2508.08221 (group mean with batch std: `grpo`, scale='batch').
- Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning
  from Human Feedback in LLMs", arXiv 2402.14740 (`rloo`).
- Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language Models",
  arXiv 2501.03262 (`reinforce_pp`, `reinforce_pp_baseline`).
- Li et al. 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method for
  Aligning Large Language Models", arXiv 2310.10505 (`remax`).
- Liu et al. 2026, "GDPO: Group reward-Decoupled Normalization Policy Optimization for
  Multi-reward RL Optimization", arXiv 2601.05242 (`gdpo`).
- Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO: A Case Study on TL;DR
  Summarization", arXiv 2403.17031 (masked whitening over real tokens).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Real, Shaped

from rewardjax import transforms
from rewardjax.numerics import as_float

__all__ = [
    "AdvantageSpec",
    "Advantages",
    "gae",
    "gdpo",
    "get",
    "grpo",
    "names",
    "reinforce_pp",
    "reinforce_pp_baseline",
    "remax",
    "rloo",
    "sequence_rewards",
    "spec",
]

SCALES = ("group", "batch", "none")


class Advantages(NamedTuple):
    """What every estimator returns.

    Attributes:
      advantages: per-token advantages, Float[B, T], 0 at masked positions.
      returns: per-token return targets, Float[B, T], 0 at masked positions: the value targets
        A_t + V_t for `gae`; the discounted return G_t (before whitening) for `reinforce_pp`; the
        sequence reward s_i at every real token for the sequence-level estimators (`grpo`,
        `rloo`, `reinforce_pp_baseline`, `remax`; the weighted sum Σ_k w_k s_ki for `gdpo`),
        i.e. the un-normalised quantity the advantage is a baseline-corrected version of.
    """

    advantages: Float[Array, "B T"]
    returns: Float[Array, "B T"]


# ---------------------------------------------------------------------------------------------
# Helpers.


def _mask(mask: ArrayLike, shape: tuple[int, ...]) -> Array:
    mask = jnp.asarray(mask)
    if mask.shape != shape:
        raise ValueError(
            f"mask has shape {mask.shape} but token_rewards has shape {shape}; pass the "
            "completion mask [B, T] of the same rows and tokens."
        )
    return mask.astype(bool)


def _check_2d(token_rewards: Array, name: str = "token_rewards") -> None:
    if token_rewards.ndim != 2:
        raise ValueError(
            f"{name} must have shape [B, T] (rows, tokens); got shape {token_rewards.shape}."
        )


def _check_groups(batch: int, group_size: int, *, min_size: int = 1) -> int:
    """Returns the number of prompts P = B / N after checking the grouping (static)."""
    if not isinstance(group_size, int) or group_size < min_size:
        raise ValueError(
            f"group_size must be an int >= {min_size} (the N completions per prompt); got "
            f"{group_size!r}. Under jax.jit mark it static (static_argnames='group_size')."
        )
    if batch % group_size:
        raise ValueError(
            f"batch size {batch} is not a multiple of group_size={group_size}: rows must be P "
            "prompts x N completions, the N of each prompt consecutive."
        )
    return batch // group_size


def sequence_rewards(
    token_rewards: Real[ArrayLike, "*K B T"], mask: Shaped[ArrayLike, "B T"]
) -> Float[Array, "*K B"]:
    """The per-row reward: the sum of the token rewards over real tokens.

    s_i = Σ_t m_it r_it   (0 for a row with no real tokens; pads never read)

    Args:
      token_rewards: rewards at each token, [B, T] or [K, B, T]; the final score sits at each
        row's last real token.
      mask: completion mask [B, T] (bool or int).

    Returns:
      Sequence rewards [B] (or [K, B]), float32 (or wider).
    """
    token_rewards = as_float(token_rewards)
    mask = _mask(mask, token_rewards.shape[-2:])
    return jnp.sum(jnp.where(mask, token_rewards, 0.0), axis=-1)


def _broadcast(per_row: Array, mask: Array) -> Array:
    """Spreads a per-row value over the row's real tokens; 0 elsewhere."""
    return jnp.where(mask, per_row[:, None], 0.0)


def _centre(grouped: Array) -> Array:
    """x − mean(x) over the last axis, computed around the first element so that identical values
    give exactly 0 (a naive float32 mean of seven 0.1s, or of 1e7 + 1, is off by an ulp or more,
    which the std division would blow up)."""
    shifted = grouped - grouped[..., :1]
    return shifted - jnp.mean(shifted, axis=-1, keepdims=True)


def _group_std(grouped: Array, ddof: int) -> Array:
    """Standard deviation over the last axis with `ddof`; exactly 0 for identical values."""
    n = grouped.shape[-1]
    var = jnp.sum(jnp.square(_centre(grouped)), axis=-1, keepdims=True) / (n - ddof)
    return jnp.sqrt(var)


def _reverse_discount(
    rewards: Array,
    values: Array,
    mask: Array,
    gamma: float | Float[ArrayLike, ""],
    lam: float | Float[ArrayLike, ""],
) -> tuple[Array, Array]:
    """GAE over the real tokens of each row, skipping masked positions (reverse scan).

    At a real token t with next real token t' (none: V = 0, A = 0):
      δ_t = r_t + γ V_t' - V_t,   A_t = δ_t + γ λ A_t'
    Returns (A, A + V), both 0 at masked positions.
    """

    def step(carry, inputs):
        next_value, next_adv = carry
        r, v, m = inputs
        delta = r + gamma * next_value - v
        adv = delta + gamma * lam * next_adv
        carry = (jnp.where(m, v, next_value), jnp.where(m, adv, next_adv))
        return carry, jnp.where(m, adv, 0.0)

    zeros = jnp.zeros(rewards.shape[:1], rewards.dtype)
    inputs = (rewards.T, values.T, mask.T)
    _, adv = jax.lax.scan(step, (zeros, zeros), inputs, reverse=True)
    adv = adv.T
    return adv, jnp.where(mask, adv + values, 0.0)


def _whiten_tokens(x: Array, mask: Array, eps: float | Float[ArrayLike, ""]) -> Array:
    """(x - μ) / sqrt(σ² + eps), μ and σ² over the batch's real tokens only; 0 at masked ones."""
    return transforms.whiten(x, where=mask, eps=eps)


# ---------------------------------------------------------------------------------------------
# Estimators.


def gae(
    token_rewards: Real[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    group_size: int = 1,
    values: Float[ArrayLike, "B T"] | None = None,
    baseline_rewards: Float[ArrayLike, " B"] | None = None,
    gamma: float | Float[ArrayLike, ""] = 1.0,
    lam: float | Float[ArrayLike, ""] = 0.95,
) -> Advantages:
    """Generalized advantage estimation with a learned value function (PPO).

    Over the real tokens of a row, t' the next real token after t (none: bootstrap V_t' = 0,
    A_t' = 0, so the value after the last real token is 0):
      δ_t = r_t + γ·V_t' − V_t,   A_t = δ_t + γ·λ·A_t',   returns_t = A_t + V_t.
    Masked positions are skipped (rewards and values there are never read) and give 0.

    Args:
      token_rewards: [B, T] per-token rewards (final score at the last real token, plus e.g.
        −β·KL per token).
      mask: [B, T] completion mask.
      group_size: unused (GAE is per row); accepted for the uniform signature.
      values: [B, T] value estimates V_t at each token (required).
      baseline_rewards: unused.
      gamma: discount γ.
      lam: GAE λ (1: Monte-Carlo return minus V; 0: one-step TD error).

    Returns:
      `Advantages(advantages [B, T], returns [B, T])`, returns the value-function targets.

    References:
      Schulman et al. 2016, "High-Dimensional Continuous Control Using Generalized Advantage
      Estimation", arXiv 1506.02438.
    """
    del group_size, baseline_rewards
    if values is None:
        raise ValueError("gae needs values=[B, T] (the critic's value at each token).")
    r = as_float(token_rewards)
    _check_2d(r)
    m = _mask(mask, r.shape)
    v = as_float(values)
    if v.shape != r.shape:
        raise ValueError(f"values has shape {v.shape}; expected {r.shape} like token_rewards.")
    r = jnp.where(m, r, 0.0)
    v = jnp.where(m, v, 0.0).astype(r.dtype)
    return Advantages(*_reverse_discount(r, v, m, gamma, lam))


def grpo(
    token_rewards: Real[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    group_size: int,
    values: Float[ArrayLike, "B T"] | None = None,
    baseline_rewards: Float[ArrayLike, " B"] | None = None,
    scale: str = "group",
    eps: float | Float[ArrayLike, ""] = 1e-6,
    ddof: int = 1,
) -> Advantages:
    """Group-relative advantages (GRPO), with the scale of Dr. GRPO or a batch std as options.

    With s_i the sequence reward (sum over real tokens) and g(i) the group of row i:
      A_i = (s_i − mean_{j∈g(i)} s_j) / (σ + eps), the same at every real token of row i,
    where σ = std_{j∈g(i)} s_j (scale='group', GRPO), σ = std over all B sequence rewards
    (scale='batch'), or no division at all (scale='none', Dr. GRPO: A_i = s_i − mean_g s).
    Standard deviations use `ddof` (1: unbiased, as common implementations; 0: population).

    Args:
      token_rewards: [B, T] per-token rewards; rows grouped as P prompts × N = group_size.
      mask: [B, T] completion mask.
      group_size: N, the completions per prompt (>= 2).
      values, baseline_rewards: unused.
      scale: 'group' | 'batch' | 'none'.
      eps: added to the standard deviation.
      ddof: delta degrees of freedom of the standard deviations.

    Returns:
      `Advantages(advantages [B, T], returns [B, T] = s_i at every real token)`.

    References:
      Shao et al. 2024, "DeepSeekMath", arXiv 2402.03300 (GRPO);
      Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
      arXiv 2503.20783 (Dr. GRPO: no std division);
      Liu et al. 2025, "Part I: Tricks or Traps? A Deep Dive into RL for LLM Reasoning",
      arXiv 2508.08221 (group mean, batch std).
    """
    del values, baseline_rewards
    if scale not in SCALES:
        raise ValueError(f"grpo scale must be one of {SCALES}; got {scale!r}.")
    r = as_float(token_rewards)
    _check_2d(r)
    m = _mask(mask, r.shape)
    prompts = _check_groups(r.shape[0], group_size, min_size=2)
    if scale == "group" and group_size - ddof <= 0:
        raise ValueError(f"grpo: ddof={ddof} needs group_size > ddof; got {group_size}.")
    s = sequence_rewards(r, m)
    grouped = s.reshape(prompts, group_size)
    centred = _centre(grouped)
    if scale == "group":
        centred = centred / (_group_std(grouped, ddof) + eps)
    elif scale == "batch":
        centred = centred / (_group_std(s[None, :], ddof)[0] + eps)
    return Advantages(_broadcast(centred.reshape(-1), m), _broadcast(s, m))


def rloo(
    token_rewards: Real[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    group_size: int,
    values: Float[ArrayLike, "B T"] | None = None,
    baseline_rewards: Float[ArrayLike, " B"] | None = None,
) -> Advantages:
    """REINFORCE leave-one-out (RLOO): each sample's baseline is the mean of the other N − 1.

      A_i = s_i − (1/(N−1)) Σ_{j∈g(i), j≠i} s_j = N/(N−1) · (s_i − mean_{j∈g(i)} s_j),
    the same at every real token of row i; the advantages of a group sum to 0.

    Args:
      token_rewards: [B, T] per-token rewards; rows grouped as P prompts × N = group_size.
      mask: [B, T] completion mask.
      group_size: N >= 2.
      values, baseline_rewards: unused.

    Returns:
      `Advantages(advantages [B, T], returns [B, T] = s_i at every real token)`.

    References:
      Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style Optimization for
      Learning from Human Feedback in LLMs", arXiv 2402.14740.
    """
    del values, baseline_rewards
    r = as_float(token_rewards)
    _check_2d(r)
    m = _mask(mask, r.shape)
    prompts = _check_groups(r.shape[0], group_size, min_size=2)
    s = sequence_rewards(r, m)
    # s_i − mean of the others = N/(N−1)·(s_i − mean): the same number, without the cancellation.
    loo = _centre(s.reshape(prompts, group_size)) * (group_size / (group_size - 1))
    return Advantages(_broadcast(loo.reshape(-1), m), _broadcast(s, m))


def reinforce_pp(
    token_rewards: Real[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    group_size: int = 1,
    values: Float[ArrayLike, "B T"] | None = None,
    baseline_rewards: Float[ArrayLike, " B"] | None = None,
    gamma: float | Float[ArrayLike, ""] = 1.0,
    whiten_eps: float | Float[ArrayLike, ""] = 1e-8,
) -> Advantages:
    """REINFORCE++: the discounted return of the token rewards, whitened over the batch.

      G_t = r_t + γ·G_t'   (t' the next real token of the row; 0 after the last),
      A_t = (G_t − μ) / sqrt(σ² + whiten_eps),
    μ and σ² (population) over all real tokens of the batch; the token rewards are the final
    score at the last real token plus the per-token −β·KL.

    Args:
      token_rewards: [B, T] per-token rewards.
      mask: [B, T] completion mask.
      group_size: unused (no group baseline); accepted for the uniform signature.
      values, baseline_rewards: unused.
      gamma: discount γ.
      whiten_eps: added to the variance in the whitening.

    Returns:
      `Advantages(advantages [B, T], returns [B, T] = G_t before whitening)`.

    References:
      Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
      Models", arXiv 2501.03262.
    """
    del group_size, values, baseline_rewards
    r = as_float(token_rewards)
    _check_2d(r)
    m = _mask(mask, r.shape)
    r = jnp.where(m, r, 0.0)
    returns, _ = _reverse_discount(r, jnp.zeros_like(r), m, gamma, 1.0)
    return Advantages(_whiten_tokens(returns, m, whiten_eps), returns)


def reinforce_pp_baseline(
    token_rewards: Real[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    group_size: int,
    values: Float[ArrayLike, "B T"] | None = None,
    baseline_rewards: Float[ArrayLike, " B"] | None = None,
    whiten_eps: float | Float[ArrayLike, ""] = 1e-8,
) -> Advantages:
    """REINFORCE++-baseline: the group mean subtracted from the sequence reward, then whitened
    over the batch's real tokens.

      a_i = s_i − mean_{j∈g(i)} s_j, put at every real token of row i,
      A_it = (a_i − μ) / sqrt(σ² + whiten_eps),
    μ and σ² (population) over all real tokens of the batch (a longer row weighs more).

    Args:
      token_rewards: [B, T] per-token rewards; rows grouped as P prompts × N = group_size.
      mask: [B, T] completion mask.
      group_size: N >= 2.
      values, baseline_rewards: unused.
      whiten_eps: added to the variance in the whitening.

    Returns:
      `Advantages(advantages [B, T], returns [B, T] = s_i at every real token)`.

    References:
      Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning Large Language
      Models", arXiv 2501.03262.
    """
    del values, baseline_rewards
    r = as_float(token_rewards)
    _check_2d(r)
    m = _mask(mask, r.shape)
    prompts = _check_groups(r.shape[0], group_size, min_size=2)
    s = sequence_rewards(r, m)
    centred = _centre(s.reshape(prompts, group_size)).reshape(-1)
    return Advantages(_whiten_tokens(_broadcast(centred, m), m, whiten_eps), _broadcast(s, m))


def remax(
    token_rewards: Real[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    group_size: int = 1,
    values: Float[ArrayLike, "B T"] | None = None,
    baseline_rewards: Float[ArrayLike, " B"] | None = None,
) -> Advantages:
    """ReMax: the reward minus the reward of the greedy completion of the same prompt.

      A_i = s_i − b_i, the same at every real token of row i,
    b_i = `baseline_rewards[i]`, the reward of the greedy (argmax-decoded) completion of row i's
    prompt, scored like the samples (repeat it over the N rows of a prompt).

    Args:
      token_rewards: [B, T] per-token rewards.
      mask: [B, T] completion mask.
      group_size: unused (N may be 1); accepted for the uniform signature.
      values: unused.
      baseline_rewards: [B] the greedy completion's reward for each row's prompt (required).

    Returns:
      `Advantages(advantages [B, T], returns [B, T] = s_i at every real token)`.

    References:
      Li et al. 2023, "ReMax: A Simple, Effective, and Efficient Reinforcement Learning Method
      for Aligning Large Language Models", arXiv 2310.10505.
    """
    del group_size, values
    if baseline_rewards is None:
        raise ValueError(
            "remax needs baseline_rewards=[B]: the reward of the greedy completion of each "
            "row's prompt."
        )
    r = as_float(token_rewards)
    _check_2d(r)
    m = _mask(mask, r.shape)
    b = as_float(baseline_rewards)
    if b.shape != r.shape[:1]:
        raise ValueError(f"baseline_rewards has shape {b.shape}; expected ({r.shape[0]},).")
    s = sequence_rewards(r, m)
    return Advantages(_broadcast(s - b, m), _broadcast(s, m))


def gdpo(
    token_rewards: Real[ArrayLike, "K B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    group_size: int,
    values: Float[ArrayLike, "B T"] | None = None,
    baseline_rewards: Float[ArrayLike, " B"] | None = None,
    weights: Float[ArrayLike, " K"] | None = None,
    eps: float | Float[ArrayLike, ""] = 1e-6,
    ddof: int = 1,
    whiten_eps: float | Float[ArrayLike, ""] = 1e-8,
) -> Advantages:
    """GDPO multi-reward advantages: normalise each reward within its group, sum with weights,
    then whiten over the batch.

    With s_ki the sequence reward of reward k for row i:
      a_ki = (s_ki − mean_{j∈g(i)} s_kj) / (std_{j∈g(i)} s_kj + eps)   (per reward, per group),
      a_i = Σ_k w_k a_ki,
      A_i = (a_i − μ) / sqrt(σ² + whiten_eps), μ and σ² (population) over the B rows,
    the same at every real token of row i. Normalising each reward before the sum keeps
    combinations that GRPO on the summed reward would collapse to one advantage apart.

    Args:
      token_rewards: [K, B, T] per-token rewards of K reward functions.
      mask: [B, T] completion mask (shared by the K rewards).
      group_size: N >= 2.
      values, baseline_rewards: unused.
      weights: [K] reward weights w_k (default: all 1).
      eps: added to each group standard deviation.
      ddof: delta degrees of freedom of the group standard deviations.
      whiten_eps: added to the variance of the batch whitening.

    Returns:
      `Advantages(advantages [B, T], returns [B, T] = Σ_k w_k s_ki at every real token)`.

    References:
      Liu et al. 2026, "GDPO: Group reward-Decoupled Normalization Policy Optimization for
      Multi-reward RL Optimization", arXiv 2601.05242.
    """
    del values, baseline_rewards
    r = as_float(token_rewards)
    if r.ndim != 3:
        raise ValueError(
            f"gdpo token_rewards must have shape [K, B, T] (K rewards); got shape {r.shape}."
        )
    m = _mask(mask, r.shape[1:])
    k, batch, _ = r.shape
    prompts = _check_groups(batch, group_size, min_size=2)
    if group_size - ddof <= 0:
        raise ValueError(f"gdpo: ddof={ddof} needs group_size > ddof; got {group_size}.")
    w = jnp.ones((k,), r.dtype) if weights is None else as_float(weights)
    if w.shape != (k,):
        raise ValueError(f"gdpo weights has shape {w.shape}; expected ({k},), one per reward.")
    s = sequence_rewards(r, m)  # [K, B]
    grouped = s.reshape(k, prompts, group_size)
    normed = _centre(grouped) / (_group_std(grouped, ddof) + eps)
    combined = jnp.einsum("k,kb->b", w, normed.reshape(k, batch))
    whitened = transforms.whiten(combined, eps=whiten_eps)
    return Advantages(_broadcast(whitened, m), _broadcast(jnp.einsum("k,kb->b", w, s), m))


# ---------------------------------------------------------------------------------------------
# Registry.


class AdvantageSpec(NamedTuple):
    """A registered estimator and what a trainer must provide for it.

    Attributes:
      fn: the estimator (the uniform signature of this module).
      needs_values: it reads `values` [B, T] (a critic).
      needs_baseline: it reads `baseline_rewards` [B] (a greedy rollout per prompt).
      group_level: it compares the N completions of a prompt (needs group_size N >= 2).
      multi_reward: its `token_rewards` carry a leading K axis [K, B, T] (and `weights` [K]).
    """

    fn: Callable[..., Advantages]
    needs_values: bool = False
    needs_baseline: bool = False
    group_level: bool = False
    multi_reward: bool = False


_ESTIMATORS: dict[str, AdvantageSpec] = {
    s.fn.__name__: s
    for s in (
        AdvantageSpec(gae, needs_values=True),
        AdvantageSpec(grpo, group_level=True),
        AdvantageSpec(rloo, group_level=True),
        AdvantageSpec(reinforce_pp),
        AdvantageSpec(reinforce_pp_baseline, group_level=True),
        AdvantageSpec(remax, needs_baseline=True),
        AdvantageSpec(gdpo, group_level=True, multi_reward=True),
    )
}


def names() -> tuple[str, ...]:
    """Returns the registered estimator names, sorted."""
    return tuple(sorted(_ESTIMATORS))


def spec(name: str) -> AdvantageSpec:
    """Returns the `AdvantageSpec` of the estimator registered under `name`.

    Raises:
      ValueError: `name` is not registered (the message lists the known names).
    """
    try:
        return _ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown advantage estimator {name!r}; known estimators: {', '.join(names())}."
        ) from None


def get(name: str) -> Callable[..., Advantages]:
    """Returns the estimator registered under `name`; raises ValueError listing the known names."""
    return spec(name).fn
