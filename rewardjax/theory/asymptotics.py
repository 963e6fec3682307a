"""Large deviations of the reward and the asymptotic equivalence of best-of-N and KL-RL.

For a base law p over outcomes with reward r (one token of a memoryless model):
- Λ(λ) = log E_p e^{λ r}, the cumulant generating function;
- I(x) = sup_θ [θ x - Λ(θ)], its Legendre transform, the rate function of Cramér's theorem:
  P[(1/n) Σ_t r(y_t) ≥ x] = e^{-n I(x) + o(n)} for x above the mean;
- the tilted law p_λ ∝ p e^{λ r} (the per-token KL-RL optimum at β = 1/λ) has the rate function
  I_λ(x) = I(x) - λ x + Λ(λ).
Yang et al. show that for n tokens the KL-regularised optimum with KL budget nΔ and best-of-N with
N = e^{nΔ} reach the same per-token reward as n → ∞, with KL(BoN ‖ KL-RL)/n → 0.

Papers:
- Yang, Salamatian, Sun, Suresh, Beirami 2024, "Asymptotics of Language Model Alignment",
  arXiv 2404.01730.
- Dembo & Zeitouni, "Large Deviations Techniques and Applications" (Cramér's theorem).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from rewardjax import bon
from rewardjax.theory._lattice import check_levels, level_sum_laws
from rewardjax.theory._support import (
    bisect_increasing,
    support_log_probs,
    support_max,
    support_min,
)
from rewardjax.theory.optimum import beta_for_kl, kl_reward_frontier

__all__ = [
    "BonVsKlRl",
    "bon_vs_kl_rl",
    "cumulant_generating_function",
    "rate_function",
    "renyi_cross_entropy",
    "tilted_rate_function",
]

# θ = sinh(u)/range with u in ±40 covers tilts up to 1e17/range: beyond that, every tilted mean
# is within float precision of the support's edge.
_SINH_BRACKET = 40.0
# Below this |α - 1| the Rényi cross-entropy uses its second-order expansion around α = 1.
_ALPHA_EPS = 1e-4


@jax.jit
def cumulant_generating_function(
    probs: Float[Array, "*batch Y"], rewards: Float[Array, "*batch Y"], lam: Float[ArrayLike, "*b"]
) -> Float[Array, "*b"]:
    """The cumulant generating function Λ(λ) = log E_p[e^{λ r}] = log Σ_y p(y) e^{λ r(y)}.

    Reference: Yang et al. 2024, "Asymptotics of Language Model Alignment", arXiv 2404.01730.

    Args:
      probs: p, shape [..., Y].
      rewards: r, shape [..., Y].
      lam: λ, broadcastable to the batch shape [...].

    Returns:
      Λ(λ), the broadcast batch shape.
    """
    lam = jnp.asarray(lam)[..., None]
    return jax.nn.logsumexp(support_log_probs(probs) + lam * rewards, axis=-1)


def _tilted_mean(probs, rewards, theta):
    logits = support_log_probs(probs) + theta[..., None] * rewards
    return jnp.sum(jax.nn.softmax(logits, axis=-1) * jnp.where(probs > 0, rewards, 0.0), axis=-1)


@jax.jit
def rate_function(
    probs: Float[Array, "*batch Y"], rewards: Float[Array, "*batch Y"], x: Float[ArrayLike, "*b"]
) -> Float[Array, "*b"]:
    """The Cramér rate function I(x) = sup_θ [θ x - Λ(θ)], the Legendre transform of Λ.

    For x strictly inside (min r, max r) the supremum is attained where Λ'(θ) = E_{p_θ}[r] = x;
    θ* is found by 64 bisection steps in u with θ = sinh(u)/(max r - min r) (the tilted mean is
    increasing in θ), then I(x) = -log E_p[e^{θ*(r - x)}] = KL(p_{θ*} ‖ p). At the edges
    I(max r) = -log P[r = max r] (and likewise at the minimum), outside [min r, max r] I = +∞, and
    I(E_p r) = 0. I is convex and ≥ 0; its gradient in x is θ*(x) (θ* enters with a stopped
    gradient, which the envelope theorem makes exact).

    Reference: Yang et al. 2024, "Asymptotics of Language Model Alignment", arXiv 2404.01730;
    Dembo & Zeitouni, "Large Deviations Techniques and Applications", Thm 2.2.3.

    Args:
      probs: p, shape [..., Y].
      rewards: r, shape [..., Y].
      x: the per-token reward level, broadcastable to the batch shape.

    Returns:
      I(x), the broadcast batch shape (+∞ outside the support's range).
    """
    dtype = jnp.result_type(probs, rewards, float)
    x = jnp.asarray(x, dtype)
    lo, hi = support_min(probs, rewards), support_max(probs, rewards)
    spread = hi - lo
    spread = jnp.where(spread > 0, spread, 1.0)
    theta_of = lambda u: jnp.sinh(u) / spread
    u = bisect_increasing(
        lambda u: _tilted_mean(probs, rewards, theta_of(u)),
        x,
        jnp.full_like(x, -_SINH_BRACKET),
        jnp.full_like(x, _SINH_BRACKET),
    )
    theta = jax.lax.stop_gradient(theta_of(u))
    logits = support_log_probs(probs) + theta[..., None] * (rewards - x[..., None])
    rate = -jax.nn.logsumexp(logits, axis=-1)
    inside = (x >= lo) & (x <= hi)
    return jnp.where(inside, jnp.maximum(rate, 0.0), jnp.inf)


@jax.jit
def tilted_rate_function(
    probs: Float[Array, "*batch Y"],
    rewards: Float[Array, "*batch Y"],
    lam: Float[ArrayLike, "*b"],
    x: Float[ArrayLike, "*b"],
) -> Float[Array, "*b"]:
    """The rate function of the reward under the tilted law p_λ ∝ p e^{λ r}.

    I_λ(x) = sup_θ [θ x - (Λ(θ + λ) - Λ(λ))] = I(x) - λ x + Λ(λ); it vanishes at x = E_{p_λ}[r],
    the per-token reward of the KL-RL optimum with β = 1/λ. Computed as the rate function of p_λ
    (no cancellation between I(x) and λ x).

    Reference: Yang et al. 2024, "Asymptotics of Language Model Alignment", arXiv 2404.01730.

    Args:
      probs: p, shape [..., Y].
      rewards: r, shape [..., Y].
      lam: λ = 1/β, broadcastable to the batch shape.
      x: reward level, broadcastable to the batch shape.

    Returns:
      I_λ(x), the broadcast batch shape.
    """
    lam = jnp.asarray(lam)[..., None]
    logits = support_log_probs(probs) + lam * rewards
    tilted = jax.nn.softmax(logits, axis=-1)
    return rate_function(tilted, jnp.broadcast_to(rewards, tilted.shape), x)


@jax.jit
def renyi_cross_entropy(
    p: Float[Array, "*batch Y"], q: Float[Array, "*batch Y"], alpha: Float[ArrayLike, "*b"]
) -> Float[Array, "*b"]:
    """Rényi cross-entropy H_α(p, q) = (1/(1-α)) log Σ_y p(y) q(y)^{α-1}.

    Tends to the cross-entropy -Σ p log q as α → 1. For |α - 1| < 1/2 the log-moment is computed as
    log1p(E_p[expm1((α - 1) log q)]), which keeps full precision as α → 1, and for |α - 1| < 1e-4
    the expansion -E_p[log q] - (α - 1) Var_p(log q)/2 (exact to O((α - 1)²)) is used. +∞ when
    α < 1 and q = 0 somewhere p > 0.

    Reference: Yang et al. 2024, "Asymptotics of Language Model Alignment", arXiv 2404.01730.

    Args:
      p: shape [..., Y].
      q: shape [..., Y].
      alpha: α > 0, broadcastable to the batch shape.

    Returns:
      H_α(p, q), the broadcast batch shape.
    """
    t = jnp.asarray(alpha, jnp.result_type(p, q, float))[..., None] - 1.0
    on_p = p > 0
    log_p, log_q = support_log_probs(p), support_log_probs(q)
    near_one = jnp.abs(t) < _ALPHA_EPS
    safe_t = jnp.where(near_one, 1.0, t)
    exponent = jnp.where(on_p, safe_t * log_q, 0.0)
    # K = log E_p[q^t]. For small |t| as log1p(E_p[expm1(t log q)]), which keeps full relative
    # precision (log Σ p q^t would lose eps/|t| to cancellation); else by logsumexp.
    mass = jnp.sum(p, axis=-1)
    moderate = jnp.abs(t[..., 0]) < 0.5
    mean_expm1 = jnp.sum(jnp.where(on_p, p * jnp.expm1(exponent), 0.0), axis=-1) / mass
    log1p_form = jnp.log1p(jnp.where(moderate, mean_expm1, 0.0))
    lse_form = jax.nn.logsumexp(log_p + exponent, axis=-1) - jnp.log(mass)
    general = jnp.where(moderate, log1p_form, lse_form) / -safe_t[..., 0]
    safe_log_q = jnp.where(on_p, log_q, 0.0)
    mean = jnp.sum(jnp.where(on_p, p * safe_log_q, 0.0), axis=-1) / mass
    var = jnp.sum(jnp.where(on_p, p * (safe_log_q - mean[..., None]) ** 2, 0.0), axis=-1) / mass
    limit = -mean - t[..., 0] * var / 2
    return jnp.where(near_one[..., 0], limit, general)


class BonVsKlRl(NamedTuple):
    """Per-token statistics of BoN (N = e^{nΔ}) and KL-RL (KL = nΔ), shape [..., n]."""

    bon_reward: Float[Array, "*batch n"]  # E_{BoN}[Σ_t r]/n
    rl_reward: Float[Array, "*batch n"]  # E_{p_λ}[r], the same for every n
    bon_kl: Float[Array, "*batch n"]  # KL(BoN ‖ φ^n)/n, → Δ
    bon_rl_kl: Float[Array, "*batch n"]  # KL(BoN ‖ p_λ^n)/n, → 0


def _bon_vs_kl_rl_one(probs, rewards, kl_per_token, *, max_length, num_levels):
    dtype = jnp.result_type(probs, float)
    beta = beta_for_kl(probs, rewards, kl_per_token)
    _, rl_reward = kl_reward_frontier(probs, rewards, beta)
    lam = 1.0 / beta
    log_norm = cumulant_generating_function(probs, rewards, lam)
    # Memoryless tokens: a chain over reward levels with p(b | a) = P[r = b] and reward b.
    levels = jnp.round(rewards).astype(jnp.int32)
    level_probs = jnp.zeros(num_levels, dtype).at[levels].add(probs)
    chain = jnp.broadcast_to(level_probs, (num_levels, num_levels))
    level_grid = jnp.broadcast_to(jnp.arange(num_levels), (num_levels, num_levels))
    laws = level_sum_laws(chain, level_grid, length=max_length, num_levels=num_levels)[:, 0]
    lengths = jnp.arange(1, max_length + 1, dtype=dtype)
    values = jnp.arange(laws.shape[-1], dtype=dtype)

    def one_length(law, n):
        big_n = jnp.exp(n * kl_per_token)
        kl = bon.bon_kl(law, values, big_n)
        total = bon.bon_expected_reward(law, values, big_n)
        # log(BoN/p_λ^n) = log(BoN/p^n) - λ S + n Λ(λ), and E_BoN[S] = total.
        return total / n, kl / n, (kl - lam * total) / n + log_norm

    bon_reward, bon_kl, bon_rl_kl = jax.vmap(one_length)(laws, lengths)
    return bon_reward, jnp.full_like(bon_reward, rl_reward), bon_kl, bon_rl_kl


@functools.partial(jax.jit, static_argnames=("max_length", "num_levels"))
def _bon_vs_kl_rl(probs, rewards, kl_per_token, *, max_length, num_levels):
    fn = functools.partial(_bon_vs_kl_rl_one, max_length=max_length, num_levels=num_levels)
    return BonVsKlRl(
        *jnp.vectorize(fn, signature="(y),(y),()->(n),(n),(n),(n)")(probs, rewards, kl_per_token)
    )


def bon_vs_kl_rl(
    probs: Float[Array, "*batch Y"],
    rewards: Float[ArrayLike, "*batch Y"],
    kl_per_token: Float[ArrayLike, "*batch"],
    *,
    max_length: int,
    num_levels: int,
) -> BonVsKlRl:
    """Best-of-N with N = e^{nΔ} versus the KL-RL optimum with KL = nΔ, for n = 1..max_length.

    Memoryless base model φ^n with per-token law p and additive reward Σ_t r(y_t). The KL-RL
    optimum with KL budget nΔ is the per-token tilt p_λ with KL(p_λ ‖ p) = Δ (λ from
    `beta_for_kl`), with per-token reward E_{p_λ}[r] for every n. Best-of-N acts on the exact law
    of S = Σ_t r(y_t) (n-fold convolution, `rewardjax.bon`), so E_BoN[S]/n and KL(BoN ‖ φ^n)/n
    are exact, and KL(BoN ‖ p_λ^n)/n = (KL(BoN ‖ φ^n) - λ E_BoN[S])/n + Λ(λ). Yang et al. show
    that the two rewards agree and KL(BoN ‖ p_λ^n)/n → 0 as n → ∞.

    Discretisation: rewards must be integer levels in {0, ..., num_levels - 1} (see
    `markov_reward_law`). N = e^{nΔ} is formed in the arrays' float type: keep nΔ < 88 in float32
    (or enable float64).

    Reference: Yang, Salamatian, Sun, Suresh, Beirami 2024, "Asymptotics of Language Model
    Alignment", arXiv 2404.01730.

    Args:
      probs: per-token law p, shape [..., Y] (independent problems in the leading axes).
      rewards: integer reward levels, shape [..., Y].
      kl_per_token: Δ in (0, log 1/P[r = max r]), broadcastable with the batch shape.
      max_length: largest n (static); results cover n = 1..max_length.
      num_levels: L (static).

    Returns:
      BonVsKlRl with fields of shape [..., max_length] (index n - 1).

    Raises:
      ValueError: eagerly, for non-integer levels or an infeasible Δ.
    """
    check_levels(rewards, num_levels, name="rewards")
    beta_for_kl(probs, rewards, kl_per_token)  # validates the budget (raises when infeasible)
    return _bon_vs_kl_rl(probs, rewards, kl_per_token, max_length=max_length, num_levels=num_levels)
