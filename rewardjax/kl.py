"""KL divergence: per-token estimators, exact categorical KL, and KL-coefficient controllers.

Pure functions on plain arrays. Log-probabilities are computed in float32 (or wider if given).
The controllers are pure state updates (an `init`/`update` pair over a NamedTuple state), so
they live inside a jitted train step.

Papers:
- Schulman 2020, "Approximating KL Divergence", blog post, http://joschu.net/blog/kl-approx.html
  (the k1, k2, k3 estimators).
- Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", arXiv 1909.08593
  (adaptive KL coefficient).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from rewardjax.numerics import as_float

__all__ = [
    "KLController",
    "KLControllerState",
    "adaptive_kl_controller",
    "categorical_kl",
    "fixed_kl_controller",
    "kl_estimate",
]

_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(
    logp: Float[ArrayLike, "*batch"],
    ref_logp: Float[ArrayLike, "*batch"],
    *,
    estimator: str = "k3",
    where: Bool[ArrayLike, "*batch"] | None = None,
    log_ratio_clip: float | None = None,
) -> Float[Array, "*batch"]:
    """Per-token single-sample estimate of KL(π ‖ π_ref) from tokens sampled from π.

    With x = log π(y) - log π_ref(y), y ~ π:
      k1 = x                     (unbiased, high variance, can be negative);
      k2 = x² / 2                (biased, small bias when π ≈ π_ref, low variance);
      k3 = exp(-x) - 1 + x       (unbiased, low variance, always ≥ 0).

    Reference: Schulman 2020, "Approximating KL Divergence",
    http://joschu.net/blog/kl-approx.html.

    Args:
      logp: log π of the sampled tokens, shape [...] (e.g. [B, T]).
      ref_logp: log π_ref of the same tokens, shape [...].
      estimator: 'k1', 'k2' or 'k3'.
      where: optional boolean mask, shape [...]; masked tokens give 0 and do not leak (NaN-safe).
      log_ratio_clip: if set, x is clipped to [-c, c] first. k3 overflows to +inf for x below
        about -88 in float32; clipping (e.g. c = 20) keeps it finite at the cost of bias.

    Returns:
      per-token estimates, shape [...], float32 (or wider).
    """
    if estimator not in _ESTIMATORS:
        raise ValueError(
            f"kl_estimate: unknown `estimator`={estimator!r}; choose from {_ESTIMATORS}."
        )
    x = as_float(logp) - as_float(ref_logp)
    if where is not None:
        x = jnp.where(where, x, 0)
    if log_ratio_clip is not None:
        x = jnp.clip(x, -log_ratio_clip, log_ratio_clip)
    if estimator == "k1":
        kl = x
    elif estimator == "k2":
        kl = 0.5 * jnp.square(x)
    else:
        # expm1 keeps k3 accurate (and ≥ 0) for small x, where exp(-x) - 1 cancels.
        kl = jnp.expm1(-x) + x
    return kl if where is None else jnp.where(where, kl, 0)


def categorical_kl(
    logits_p: Float[ArrayLike, "*batch V"],
    logits_q: Float[ArrayLike, "*batch V"],
    *,
    where: Bool[ArrayLike, "*batch"] | None = None,
) -> Float[Array, "*batch"]:
    """Exact KL(p ‖ q) between categorical distributions given by logits over the last axis.

    KL(p ‖ q) = Σ_v p_v (log p_v - log q_v), with log p = log_softmax(logits_p) and
    log q = log_softmax(logits_q). Entries with p_v = 0 (logit -inf) contribute 0 (0·log 0 = 0);
    an entry with p_v > 0 and q_v = 0 gives +inf, the true value.

    Reference: Kullback & Leibler 1951, "On Information and Sufficiency" (no arXiv id); used per
    token as the exact KL penalty e.g. in Ziegler et al. 2019, arXiv 1909.08593.

    Args:
      logits_p: logits of p, shape [..., V]; -inf marks impossible entries.
      logits_q: logits of q, shape [..., V].
      where: optional boolean mask over positions, shape [...]; masked positions give 0 and do
        not leak (NaN-safe).

    Returns:
      KL(p ‖ q), shape [...], float32 (or wider), ≥ 0.
    """
    logits_p, logits_q = as_float(logits_p), as_float(logits_q)
    if where is not None:
        logits_p = jnp.where(where[..., None], logits_p, 0)
        logits_q = jnp.where(where[..., None], logits_q, 0)
    logp = jax.nn.log_softmax(logits_p, axis=-1)
    logq = jax.nn.log_softmax(logits_q, axis=-1)
    p = jnp.exp(logp)
    support = p > 0
    # Double where: the log-ratio off the support is -inf or NaN; keep it out of values and grads.
    log_ratio = jnp.where(support, logp, 0) - jnp.where(support, logq, 0)
    kl = jnp.sum(jnp.where(support, p * log_ratio, 0), axis=-1)
    return kl if where is None else jnp.where(where, kl, 0)


class KLControllerState(NamedTuple):
    """State of a KL controller: the current KL coefficient β (a float32 scalar)."""

    beta: Float[Array, ""]


class KLController(NamedTuple):
    """A KL controller as pure functions, in the style of an optax transformation.

    init() -> KLControllerState
    update(state, kl, n_steps) -> KLControllerState, where `kl` is the observed KL (a scalar, e.g.
      the batch mean of summed per-sequence KL) and `n_steps` the samples since the last update.
    """

    init: Callable[[], KLControllerState]
    update: Callable[
        [KLControllerState, Float[ArrayLike, ""], Float[ArrayLike, ""]], KLControllerState
    ]


def fixed_kl_controller(beta: float) -> KLController:
    """A constant KL coefficient: β_{t+1} = β_t = beta.

    Reference: Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences",
    arXiv 1909.08593.

    Args:
      beta: the KL coefficient β ≥ 0.

    Returns:
      KLController whose `update` returns the state unchanged.
    """

    def init() -> KLControllerState:
        return KLControllerState(beta=jnp.asarray(beta, jnp.float32))

    def update(state: KLControllerState, kl: ArrayLike, n_steps: ArrayLike) -> KLControllerState:
        del kl, n_steps
        return state

    return KLController(init=init, update=update)


def adaptive_kl_controller(init_beta: float, target: float, horizon: float) -> KLController:
    """Proportional controller that steers the observed KL towards a target.

    e_t = clip(KL_t / target - 1, -0.2, 0.2),   β_{t+1} = β_t · (1 + e_t · n_steps / horizon).

    Reference: Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences",
    arXiv 1909.08593.

    Args:
      init_beta: initial coefficient β_0 > 0.
      target: target KL > 0 (same units as the `kl` passed to `update`).
      horizon: time constant in samples (Ziegler et al. use 10000).

    Returns:
      KLController; `update(state, kl, n_steps)` is jittable.
    """
    if target <= 0 or horizon <= 0:
        raise ValueError(
            f"adaptive_kl_controller: `target`={target} and `horizon`={horizon} must be > 0."
        )

    def init() -> KLControllerState:
        return KLControllerState(beta=jnp.asarray(init_beta, jnp.float32))

    def update(state: KLControllerState, kl: ArrayLike, n_steps: ArrayLike) -> KLControllerState:
        error = jnp.clip(jnp.asarray(kl, jnp.float32) / target - 1.0, -0.2, 0.2)
        return KLControllerState(beta=state.beta * (1.0 + error * n_steps / horizon))

    return KLController(init=init, update=update)
