"""The KL-regularised optimum on a finite space: tilting, the KL–reward frontier, β for a KL.

The maximiser of E_q[r] - β KL(q ‖ p) over distributions q is the exponentially tilted law
q_β(y) = p(y) e^{r(y)/β} / Z(β). As β falls from ∞ to 0, KL(q_β ‖ p) rises from 0 to
log 1/P_p[r = max r] and E_{q_β}[r] from E_p[r] to max r, tracing the KL–reward frontier.

Papers:
- Korbak, Perez, Buckley 2022, "RL with KL penalties is better viewed as Bayesian inference",
  arXiv 2205.11275.
- Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
  Model", arXiv 2305.18290 (the closed form of the KL-regularised optimum).

Shapes: `probs` and `rewards` are [..., Y] (Y outcomes, independent problems in the leading
axes); per-problem parameters (β, a KL budget) broadcast against the batch shape `probs.shape[:-1]`
by NumPy rules, e.g. `betas[:, None]` with `probs` [B, Y] gives results [K, B].
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from rewardjax.theory._support import (
    bisect_increasing,
    concrete_or_none,
    support_log_probs,
    support_max,
    support_min,
)

__all__ = ["beta_for_kl", "kl_reward_frontier", "max_kl", "tilted_distribution"]

# Bisection bracket for log β around log(reward range): β from range·e^-25 to range·e^25 covers
# every KL budget representable in float32 (KL ~ Var/2β² at the top, e^{-gap/β} from KL_max below).
_LOG_BRACKET = 25.0


def _tilt(probs, rewards, beta):
    """(q_β, log q_β/p) with rewards shifted by their max over the support, for stability."""
    beta = jnp.asarray(beta)[..., None]
    shift = jax.lax.stop_gradient(support_max(probs, rewards))[..., None]
    logits = support_log_probs(probs) + (rewards - shift) / beta
    log_z = jax.nn.logsumexp(logits, axis=-1, keepdims=True)
    q = jnp.exp(logits - log_z)
    log_ratio = (rewards - shift) / beta - log_z
    return q, log_ratio


def _kl_and_reward(probs, rewards, beta):
    q, log_ratio = _tilt(probs, rewards, beta)
    positive = q > 0
    kl = jnp.sum(q * jnp.where(positive, log_ratio, 0.0), axis=-1)
    reward = jnp.sum(q * jnp.where(positive, rewards, 0.0), axis=-1)
    return kl, reward


@jax.jit
def tilted_distribution(
    probs: Float[Array, "*batch Y"], rewards: Float[Array, "*batch Y"], beta: Float[ArrayLike, "*b"]
) -> Float[Array, "*batch Y"]:
    """The KL-regularised optimum q_β(y) = p(y) e^{r(y)/β} / Z(β).

    q_β = argmax_q E_q[r] - β KL(q ‖ p), computed in log space with rewards shifted by their
    maximum over the support, so it is stable for β down to ~1e-30 · reward range.

    Reference: Korbak, Perez, Buckley 2022, "RL with KL penalties is better viewed as Bayesian
    inference", arXiv 2205.11275.

    Args:
      probs: base law p, shape [..., Y], summing to 1 (zeros allowed).
      rewards: r, shape [..., Y].
      beta: β > 0 (∞ gives p), broadcastable to the batch shape [...].

    Returns:
      q_β, shape: the broadcast batch shape + [Y].
    """
    return _tilt(probs, rewards, beta)[0]


@jax.jit
def kl_reward_frontier(
    probs: Float[Array, "*batch Y"],
    rewards: Float[Array, "*batch Y"],
    betas: Float[ArrayLike, "*b"],
) -> tuple[Float[Array, "*b"], Float[Array, "*b"]]:
    """The exact KL–reward frontier (KL(q_β ‖ p), E_{q_β}[r]) of the tilted optimum.

    KL(q_β ‖ p) = E_{q_β}[r]/β - log Z(β) and E_{q_β}[r] = Σ q_β r. Along the frontier
    dE/dβ = -Var_{q_β}(r)/β² and dKL/dβ = -Var_{q_β}(r)/β³, so dE/dKL = β: both are monotone in β
    and the frontier is concave.

    Reference: Korbak, Perez, Buckley 2022, arXiv 2205.11275; Gao, Schulman, Hilton 2022,
    "Scaling Laws for Reward Model Overoptimization", arXiv 2210.10760 (KL as the x-axis).

    Args:
      probs: base law p, shape [..., Y].
      rewards: r, shape [..., Y].
      betas: β > 0, broadcastable to the batch shape (e.g. [K] for one problem).

    Returns:
      (kl, expected_reward), each with the broadcast batch shape.
    """
    return _kl_and_reward(probs, rewards, betas)


@jax.jit
def max_kl(
    probs: Float[Array, "*batch Y"], rewards: Float[Array, "*batch Y"]
) -> Float[Array, "*batch"]:
    """The supremum of KL(q_β ‖ p) over β: log 1/P_p[r = max r], reached only as β → 0.

    Args:
      probs: base law p, shape [..., Y].
      rewards: r, shape [..., Y].

    Returns:
      -log P_p[r = max r] (ties at the maximum pooled), shape [...].
    """
    at_max = (rewards == support_max(probs, rewards)[..., None]) & (probs > 0)
    return -jnp.log(jnp.sum(jnp.where(at_max, probs, 0.0), axis=-1))


@jax.jit
def _solve_beta(probs, rewards, kl_budget):
    kl_budget = jnp.asarray(kl_budget, dtype=jnp.result_type(probs, float))
    spread = support_max(probs, rewards) - support_min(probs, rewards)
    log_scale = jnp.log(jnp.where(spread > 0, spread, 1.0))
    # KL(β) decreases in u = log β, so bisect the increasing -KL(e^u) = -Δ.
    neg_kl = lambda u: -_kl_and_reward(probs, rewards, jnp.exp(u))[0]
    u = bisect_increasing(neg_kl, -kl_budget, log_scale - _LOG_BRACKET, log_scale + _LOG_BRACKET)
    u = jax.lax.stop_gradient(u)
    # One Newton step from the stopped root: same value, and its derivative is the implicit one,
    # du/dθ = -(∂KL/∂θ)/(∂KL/∂u) with ∂KL/∂u = -Var_q(r)/β².
    beta = jnp.exp(u)
    q, _ = _tilt(probs, rewards, beta)
    kl, mean = _kl_and_reward(probs, rewards, beta)
    var = jnp.sum(q * jnp.where(q > 0, (rewards - mean[..., None]) ** 2, 0.0), axis=-1)
    slope = -var / beta**2
    safe_slope = jnp.where(slope < 0, slope, -1.0)
    u = u - jnp.where(slope < 0, (kl - kl_budget) / safe_slope, 0.0)
    feasible = (kl_budget > 0) & (kl_budget < max_kl(probs, rewards))
    return jnp.where(feasible, jnp.exp(u), jnp.where(kl_budget == 0, jnp.inf, jnp.nan))


def beta_for_kl(
    probs: Float[Array, "*batch Y"],
    rewards: Float[Array, "*batch Y"],
    kl_budget: Float[ArrayLike, "*b"],
) -> Float[Array, "*b"]:
    """The β whose tilted optimum q_β spends exactly the KL budget: KL(q_β ‖ p) = Δ.

    KL(q_β ‖ p) decreases strictly in β (dKL/dβ = -Var_{q_β}(r)/β³) from log 1/P[r = max r] to 0,
    so a root exists iff 0 ≤ Δ < log 1/P[r = max r]. It is found by 64 bisection steps in log β
    (jittable, vmappable) followed by one Newton step that makes β differentiable in
    (probs, rewards, Δ) by the implicit function theorem.

    Infeasible budgets: called eagerly on concrete arrays, Δ < 0 or Δ ≥ log 1/P[r = max r] raises
    ValueError; under jit/vmap/grad the same entries return NaN (no error can be raised there).
    Δ = 0 returns β = ∞.

    Reference: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
    arXiv 2210.10760 (comparing policies at equal KL).

    Args:
      probs: base law p, shape [..., Y].
      rewards: r, shape [..., Y].
      kl_budget: Δ ≥ 0 in nats, broadcastable to the batch shape.

    Returns:
      β, the broadcast batch shape.

    Raises:
      ValueError: eagerly, if some Δ is outside [0, log 1/P[r = max r]).
    """
    concrete = concrete_or_none(probs, rewards, kl_budget)
    if concrete is not None:
        budget = concrete[2]
        limit = max_kl(probs, rewards)
        bad = (budget < 0) | ((budget > 0) & (budget >= limit))
        if bad.any():
            raise ValueError(
                f"kl_budget={budget[bad] if budget.ndim else budget} is infeasible: tilting "
                f"reaches at most KL = log 1/P[r = max r] = {limit} nats (as β → 0) and "
                "KL ≥ 0; pass a kl_budget in [0, that limit)."
            )
    return _solve_beta(probs, rewards, kl_budget)
