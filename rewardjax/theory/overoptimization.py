"""Functional forms of reward-model overoptimization and their least-squares fit.

Gao et al. measure the gold reward R of policies optimised against a proxy reward model as a
function of d = √KL(π ‖ π_init):
- best-of-n:            R_bon(d) = d (α - β d)
- KL-regularised RL:    R_rl(d)  = d (α - β log d)
with R(0) = 0 (gold reward relative to the initial policy). Both are linear in (α, β), so the
least-squares fit is closed form.

Paper: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
arXiv 2210.10760.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

__all__ = ["OveroptimizationFit", "fit_overoptimization", "gao_bon", "gao_rl"]

_FORMS = ("bon", "rl")


def _d_log_d(d):
    positive = d > 0
    return jnp.where(positive, d * jnp.log(jnp.where(positive, d, 1.0)), 0.0)


@jax.jit
def gao_bon(
    d: Float[ArrayLike, "*batch"],
    alpha: Float[ArrayLike, "*batch"],
    beta: Float[ArrayLike, "*batch"],
) -> Float[Array, "*batch"]:
    """Gold reward of best-of-n versus d = √KL: R_bon(d) = d (α - β d).

    Reference: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
    arXiv 2210.10760, eq. (1).

    Args:
      d: √KL ≥ 0, shape [...].
      alpha: α, broadcastable to d.
      beta: β, broadcastable to d.

    Returns:
      R_bon(d), the broadcast shape.
    """
    d = jnp.asarray(d)
    return d * (alpha - beta * d)


@jax.jit
def gao_rl(
    d: Float[ArrayLike, "*batch"],
    alpha: Float[ArrayLike, "*batch"],
    beta: Float[ArrayLike, "*batch"],
) -> Float[Array, "*batch"]:
    """Gold reward of KL-regularised RL versus d = √KL: R_rl(d) = d (α - β log d), 0 at d = 0.

    Reference: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
    arXiv 2210.10760, eq. (2).

    Args:
      d: √KL ≥ 0, shape [...].
      alpha: α, broadcastable to d.
      beta: β, broadcastable to d.

    Returns:
      R_rl(d), the broadcast shape.
    """
    d = jnp.asarray(d)
    return alpha * d - beta * _d_log_d(d)


class OveroptimizationFit(NamedTuple):
    """Least-squares coefficients of a Gao et al. form and the coefficient of determination."""

    alpha: Float[Array, "*batch"]
    beta: Float[Array, "*batch"]
    r_squared: Float[Array, "*batch"]  # 1 - SS_res / SS_tot (weighted); 1 for a perfect fit


@functools.partial(jax.jit, static_argnames="form")
def _fit(kl, gold_reward, where, *, form):
    d = jnp.sqrt(jnp.maximum(kl, 0.0))
    # R = α d + β g(d) with g = -d² or -d log d: regress on (d, g) without intercept, solving the
    # 2×2 normal equations [[dd, dg], [dg, gg]] (α, β) = (dR, gR) by Cramer's rule.
    g = -(d**2) if form == "bon" else -_d_log_d(d)
    w = jnp.where(where, 1.0, 0.0)
    dot = lambda x, y: jnp.sum(w * x * y, axis=-1)
    dd, dg, gg, dr, gr = dot(d, d), dot(d, g), dot(g, g), dot(d, gold_reward), dot(g, gold_reward)
    det = dd * gg - dg**2
    alpha = (gg * dr - dg * gr) / det
    beta = (dd * gr - dg * dr) / det
    fitted = alpha[..., None] * d + beta[..., None] * g
    mean = jnp.sum(w * gold_reward, axis=-1, keepdims=True) / jnp.sum(w, axis=-1, keepdims=True)
    ss_res = jnp.sum(w * (gold_reward - fitted) ** 2, axis=-1)
    ss_tot = jnp.sum(w * (gold_reward - mean) ** 2, axis=-1)
    return OveroptimizationFit(alpha, beta, 1.0 - ss_res / ss_tot)


def fit_overoptimization(
    kl: Float[ArrayLike, "*batch M"],
    gold_reward: Float[ArrayLike, "*batch M"],
    form: str,
    *,
    where: Bool[ArrayLike, "*batch M"] | None = None,
) -> OveroptimizationFit:
    """Least-squares fit of α, β in a Gao et al. overoptimization form, with R².

    With d = √KL the model R = α d - β f(d), f(d) = d² ('bon') or d log d ('rl'), is linear in
    (α, β): the fit solves the 2×2 normal equations (no intercept, since R(0) = 0: pass gold
    reward minus that of the initial policy). R² = 1 - Σ (R - R̂)² / Σ (R - R̄)².

    Reference: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
    arXiv 2210.10760.

    Args:
      kl: KL(π ‖ π_init) of M policies per curve, shape [..., M].
      gold_reward: their gold reward relative to π_init, shape [..., M].
      form: 'bon' or 'rl'.
      where: optional mask [..., M]; False points are left out (curves of unequal length).

    Returns:
      OveroptimizationFit(alpha, beta, r_squared), each of shape [...].

    Raises:
      ValueError: if `form` is not 'bon' or 'rl'.
    """
    if form not in _FORMS:
        raise ValueError(f"form={form!r}: expected one of {_FORMS}.")
    kl, gold_reward = jnp.broadcast_arrays(jnp.asarray(kl), jnp.asarray(gold_reward))
    where = jnp.ones(kl.shape, bool) if where is None else jnp.broadcast_to(where, kl.shape)
    return _fit(kl, gold_reward, where, form=form)
