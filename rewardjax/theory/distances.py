"""Standardised distances between reward functions on a finite outcome space (STARC).

A STARC metric canonicalises each reward (removing what cannot change any policy ordering: a
constant per context, i.e. potential shaping in a one-step problem), normalises the result to unit
norm (removing positive scaling), and measures the distance between the normalised vectors.
Two rewards are at distance 0 iff they induce the same ordering of policies (positive affine
equivalence), and the distance lies in [0, 2].

Paper: Skalse, Farnik, Motwani, Jenner, Gleave, Abate 2023, "STARC: A General Framework For
Quantifying Differences Between Reward Functions", arXiv 2309.15257.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["standardize_reward", "starc_distance"]


@jax.jit
def standardize_reward(
    rewards: Float[Array, "*batch Y"], probs: Float[Array, "*batch Y"]
) -> Float[Array, "*batch Y"]:
    """STARC standardisation: canonicalise by centring, then scale to unit norm.

    s(r) = c(r) / ‖c(r)‖_p with c(r) = r - E_p[r] and ‖v‖_p = √(Σ_y p(y) v(y)²); s(r) = 0 for a
    reward constant on the support of p (up to rounding). Invariant to r ↦ a r + b for a > 0.

    Reference: Skalse et al. 2023, "STARC: A General Framework For Quantifying Differences Between
    Reward Functions", arXiv 2309.15257.

    Args:
      rewards: r, shape [..., Y].
      probs: reference law p over the outcomes (uniform: `jnp.full(Y, 1/Y)`), shape [..., Y].

    Returns:
      s(r), shape [..., Y] (0 off the support of p).
    """
    on_support = probs > 0
    rewards = jnp.where(on_support, rewards, 0.0)
    centred = jnp.where(on_support, rewards - jnp.sum(probs * rewards, -1, keepdims=True), 0.0)
    norm_sq = jnp.sum(probs * centred**2, axis=-1, keepdims=True)
    # A constant reward centres to rounding noise, not to 0: treat norms at that level as 0.
    scale = jnp.max(jnp.abs(rewards), axis=-1, keepdims=True)
    positive = norm_sq > (64 * jnp.finfo(norm_sq.dtype).eps * scale) ** 2
    return jnp.where(positive, centred / jnp.sqrt(jnp.where(positive, norm_sq, 1.0)), 0.0)


@jax.jit
def starc_distance(
    reward_a: Float[Array, "*batch Y"],
    reward_b: Float[Array, "*batch Y"],
    probs: Float[Array, "*batch Y"],
) -> Float[Array, "*batch"]:
    """STARC distance d(r_a, r_b) = ‖s(r_a) - s(r_b)‖_p between standardised rewards.

    s is `standardize_reward` (centring under p, unit p-weighted L2 norm). d ∈ [0, 2]; d = 0 iff
    r_a and r_b agree up to a positive affine map on the support of p; d(r, -r) = 2 for
    non-constant r. For unit vectors, d² = 2 - 2 ρ_p(r_a, r_b) with ρ_p the p-weighted Pearson
    correlation.

    Reference: Skalse et al. 2023, "STARC: A General Framework For Quantifying Differences Between
    Reward Functions", arXiv 2309.15257.

    Args:
      reward_a: shape [..., Y].
      reward_b: shape [..., Y].
      probs: reference law p, shape [..., Y].

    Returns:
      d, shape [...].
    """
    diff = standardize_reward(reward_a, probs) - standardize_reward(reward_b, probs)
    return jnp.sqrt(jnp.sum(probs * diff**2, axis=-1))
