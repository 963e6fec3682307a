"""Constrained multi-reward RL: one Lagrange multiplier per reward, by projected dual ascent.

K proxy rewards r_1..r_K (reward models, rules) each come with a threshold θ_k. Moskovitz et al.
(2023) observe that a proxy reward model helps only up to a "proxy point": past it, a higher
proxy reward goes with a lower gold (human) evaluation, so a fixed weighted sum of rewards
overoptimises some of them. They recast RLHF as a constrained problem whose Lagrange
multipliers act as learned, dynamic weights of the component rewards, and keep each reward in
the range where it is a useful proxy.

The general problem solved here (the KL toward the reference is handled separately, as the
usual penalty β·KL: `rewardjax.rl.kl_penalty`):

    max_π  Σ_k w_k v_k(π)   s.t.   v_k(π) ≤ θ_k   ('at_most'),
                                   v_k(π) ≥ θ_k   ('at_least'),
                                   v_k(π) = θ_k   ('equal'),        v_k(π) = E_π[r_k]

with objective weights w_k. Its Lagrangian is L(π, λ) = Σ_k w_k v_k - Σ_k λ_k g_k(π) with the
constraint functions g_k = v_k - θ_k ('at_most', 'equal') or θ_k - v_k ('at_least'), λ_k ≥ 0
for inequalities and λ_k ∈ ℝ for equalities. The policy ascends L for the current λ, which is RL
on the combined reward `combine_rewards`; λ descends the dual by projected (sub)gradient steps
`constraints_update` (λ_k grows while constraint k is violated).

The sign convention, stated precisely: the default sense 'at_most' keeps each component reward's
expected value AT OR BELOW its threshold, v_k ≤ θ_k. This is the constraint that prevents
overoptimisation in the paper's sense — θ_k is reward k's proxy point, the value past which more of
that reward stops helping ("preventing the agent from exceeding each RM's threshold of usefulness")
— with the objective Σ_k v_k (w_k = 1), so each reward is pushed up to its proxy point and no
further: its weight in the combined reward is 1 - λ_k, and λ_k grows (the weight falls, below 0 if
needed) for as long as v_k stays above θ_k. 'at_least' (default w_k = 0) is the paper's other
reading: stay as close to the reference as the KL penalty asks while each reward reaches at least
θ_k (weight +λ_k); 'equal' (default w_k = 0) pins each reward at its proxy point (weight -λ_k with
λ_k of either sign). The authors' released PPO code (one constraint reward, a multiplier that falls
while that reward's return exceeds θ and rises while it is below) is this 'equal' case.

Papers:
- Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with Constrained RLHF",
  arXiv 2310.04373 (proxy points; constrained RLHF with one multiplier per component reward).
- Altman 1999, "Constrained Markov Decision Processes" (no arXiv id; the Lagrangian of a CMDP).
- Boyd & Vandenberghe 2004, "Convex Optimization", ch. 5 (dual ascent).
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, Real

from rewardjax.numerics import as_float, check_hparam

__all__ = [
    "SENSES",
    "ConstraintState",
    "combine_rewards",
    "constraints_init",
    "constraints_update",
    "reward_weights",
]

SENSES = ("at_most", "at_least", "equal")
_SENSE_CODE = {"at_most": 1, "at_least": -1, "equal": 0}


class ConstraintState(NamedTuple):
    """State of the constrained-reward Lagrangian (a pytree of arrays, jittable).

    Attributes:
      multipliers: λ_k, Float[K] (float32); ≥ 0 for inequality constraints.
      sense: Int[K], +1 for 'at_most' (v_k ≤ θ_k), -1 for 'at_least' (v_k ≥ θ_k), 0 for
        'equal' (v_k = θ_k); fixed by `constraints_init`.
      objective_weights: w_k, Float[K], the weight of reward k in the objective Σ_k w_k v_k.
    """

    multipliers: Float[Array, " K"]
    sense: Int[Array, " K"]
    objective_weights: Float[Array, " K"]


def constraints_init(
    num_rewards: int,
    *,
    init: float | Sequence[float] = 0.0,
    sense: str | Sequence[str] = "at_most",
    objective_weights: Sequence[float] | None = None,
) -> ConstraintState:
    """The initial state: one Lagrange multiplier per reward.

    Args:
      num_rewards: K ≥ 1, the number of component rewards.
      init: initial multipliers λ_k, a scalar or K values (≥ 0 for inequality constraints).
      sense: 'at_most' (v_k ≤ θ_k; the default, see the module docstring), 'at_least'
        (v_k ≥ θ_k) or 'equal' (v_k = θ_k), one for all rewards or K of them.
      objective_weights: w_k (K values); None gives w_k = 1 for 'at_most' rewards and 0 for the
        others (maximise the capped rewards; for lower bounds and equalities the objective is the
        KL term alone).

    Returns:
      ConstraintState with multipliers [K] float32, sense [K] int32, objective_weights [K].

    Raises:
      ValueError: K < 1, an unknown sense, a wrong number of values, or a negative initial
        multiplier of an inequality constraint.
    """
    if not isinstance(num_rewards, int) or num_rewards < 1:
        raise ValueError(f"constraints_init: num_rewards must be an int >= 1; got {num_rewards!r}.")
    senses = [sense] * num_rewards if isinstance(sense, str) else list(sense)
    if len(senses) != num_rewards:
        raise ValueError(
            f"constraints_init: sense has {len(senses)} entries for num_rewards={num_rewards}; "
            "pass one string or one per reward."
        )
    for s in senses:
        if s not in SENSES:
            raise ValueError(f"constraints_init: unknown sense {s!r}; choose from {SENSES}.")
    code = jnp.asarray([_SENSE_CODE[s] for s in senses], jnp.int32)
    multipliers = jnp.broadcast_to(jnp.asarray(init, jnp.float32), (num_rewards,))
    if objective_weights is None:
        weights = (code == 1).astype(jnp.float32)
    else:
        weights = jnp.asarray(objective_weights, jnp.float32)
        if weights.shape != (num_rewards,):
            raise ValueError(
                f"constraints_init: objective_weights has shape {weights.shape}; expected "
                f"({num_rewards},), one weight per reward."
            )
    if bool(jnp.any((multipliers < 0) & (code != 0))):
        raise ValueError(
            f"constraints_init: init={init!r} has a negative multiplier for an inequality "
            "constraint; Lagrange multipliers of inequalities must be >= 0."
        )
    return ConstraintState(multipliers=multipliers, sense=code, objective_weights=weights)


def constraints_update(
    state: ConstraintState,
    reward_means: Float[ArrayLike, " K"],
    *,
    thresholds: Float[ArrayLike, ""] | Float[ArrayLike, " K"],
    lr: float | Real[ArrayLike, ""],
) -> ConstraintState:
    """One projected dual-ascent step on the multipliers.

    With the observed mean rewards v_k (e.g. batch means of each component's sequence reward):
      g_k = v_k - θ_k  ('at_most', 'equal'),     g_k = θ_k - v_k  ('at_least')
      λ_k ← max(0, λ_k + lr · g_k)   (inequalities),     λ_k ← λ_k + lr · g_k   (equalities)
    A violated constraint (g_k > 0) raises λ_k, which moves the combined reward against the
    violation; a slack one (g_k < 0) lowers λ_k towards 0. Pure and jittable.

    Reference: Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with
    Constrained RLHF", arXiv 2310.04373; Boyd & Vandenberghe 2004, "Convex Optimization", ch. 5.

    Args:
      state: the current ConstraintState.
      reward_means: observed expected rewards v_k, Float[K].
      thresholds: θ_k, Float[K] (or a scalar for all).
      lr: dual step size > 0.

    Returns:
      The next ConstraintState (sense and objective weights unchanged).
    """
    check_hparam("constraints_update: lr", lr, lambda e: e > 0, "> 0")
    v = as_float(reward_means)
    k = state.multipliers.shape[0]
    if v.shape != (k,):
        raise ValueError(
            f"constraints_update: reward_means has shape {v.shape}; expected ({k},), one mean "
            "per component reward."
        )
    theta = jnp.broadcast_to(as_float(thresholds), (k,))
    violation = jnp.where(state.sense == -1, theta - v, v - theta)
    stepped = state.multipliers + lr * violation
    multipliers = jnp.where(state.sense == 0, stepped, jnp.maximum(stepped, 0.0))
    return state._replace(multipliers=multipliers.astype(state.multipliers.dtype))


def reward_weights(state: ConstraintState) -> Float[Array, " K"]:
    """The weight of each component reward in the Lagrangian's reward.

    c_k = w_k - λ_k ('at_most', 'equal'),   c_k = w_k + λ_k ('at_least').
    """
    sign = jnp.where(state.sense == -1, -1.0, 1.0)
    return state.objective_weights - sign * state.multipliers


def combine_rewards(
    rewards: Real[ArrayLike, " K *B"], state: ConstraintState
) -> Float[Array, "*B"]:
    """The Lagrangian's reward: the component rewards weighted by the current multipliers.

    r_i = Σ_k c_k r_ki,   c_k = w_k - λ_k ('at_most', 'equal'),   c_k = w_k + λ_k ('at_least')

    so that E_π[r] = L(π, λ) up to the constant Σ_k ±λ_k θ_k, which does not change the policy
    gradient and is dropped. Subtract the KL penalty as usual (`kl_penalty.reward_with_kl`).
    Any trailing shape after K works (e.g. [K, B, T] for per-token rewards).

    Reference: Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with
    Constrained RLHF", arXiv 2310.04373 (the multipliers as dynamic reward weights).

    Args:
      rewards: component rewards r_ki, Float[K, B] (any real or integer dtype).
      state: the current ConstraintState.

    Returns:
      Combined rewards Float[B], float32 (or wider).
    """
    rewards = as_float(rewards)
    k = state.multipliers.shape[0]
    if rewards.ndim < 1 or rewards.shape[0] != k:
        raise ValueError(
            f"combine_rewards: rewards has shape {rewards.shape}; expected [K={k}, B], the "
            "component rewards stacked on the leading axis."
        )
    weights = reward_weights(state).astype(rewards.dtype)
    return jnp.tensordot(weights, rewards, axes=1)
