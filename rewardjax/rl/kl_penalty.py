"""Where the KL penalty of KL-regularised RL goes, with which estimator, and how β is controlled.

Two placements of the penalty toward the reference policy π_ref:
- 'in_reward' (the classic RLHF form): the per-token KL estimate, usually k1 = log π - log π_ref,
  is subtracted from the reward, r_t = -β k_t (+ the score at the last real token), and the
  policy gradient carries it through the advantages (`reward_with_kl`);
- 'in_loss' (GRPO's form): β·k_t is added to the per-token loss and differentiated directly; the
  estimator must then have the right gradient: k2, k3, or 'k3+' (k3's value, k2's gradient).
  k1 is refused there (`check_placement`): E_π[∇ log π] = 0, so its expected gradient on-policy
  is zero and it does not regularise.

β is fixed or adaptive (`rewardjax.kl.fixed_kl_controller`, `adaptive_kl_controller`, Ziegler et
al.), or set by a target-KL Lagrangian (`lagrangian_init` / `lagrangian_update`: projected dual
ascent on β ≥ 0), all pure state updates over `rewardjax.kl.KLControllerState`.

Papers:
- Schulman 2020, "Approximating KL Divergence", http://joschu.net/blog/kl-approx.html (k1, k2, k3).
- Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", arXiv 1909.08593
  (the KL penalty in the reward, adaptive β).
- Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
  Models", arXiv 2402.03300 (k3 in the loss).
- Liu et al. 2025, "Rethinking KL Regularization in RLHF: From Value Estimation to Gradient
  Optimization", arXiv 2510.01555 (k1 as a loss has zero expected gradient; k2 as a loss is
  gradient-equivalent to k1 in the reward; k3 as a loss is a biased approximation of it, hence
  'k3+': k3's value, k2's gradient).
- Boyd & Vandenberghe 2004, "Convex Optimization", ch. 5 (Lagrangian duality, dual ascent);
  used for a KL target e.g. by Moskovitz et al. 2023, arXiv 2310.04373.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Real, Shaped

from rewardjax import kl
from rewardjax.kl import KLController, KLControllerState
from rewardjax.numerics import as_float, check_hparam

__all__ = [
    "ESTIMATORS",
    "PLACEMENTS",
    "KLControllerState",
    "check_placement",
    "lagrangian_init",
    "lagrangian_kl_controller",
    "lagrangian_update",
    "reward_with_kl",
    "token_kl",
]

ESTIMATORS = ("k1", "k2", "k3", "k3+")
PLACEMENTS = ("in_reward", "in_loss")


def token_kl(
    logp: Float[ArrayLike, "B T"],
    ref_logp: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"] | None = None,
    *,
    estimator: str = "k3",
    log_ratio_clip: float | None = None,
) -> Float[Array, "B T"]:
    """Per-token estimate of KL(π ‖ π_ref) from tokens sampled from π, 0 at masked tokens.

    With x = log π(y_t) - log π_ref(y_t):
      k1 = x,   k2 = x²/2,   k3 = e^{-x} - 1 + x            (`rewardjax.kl.kl_estimate`)
      k3+ = sg(k3) + k2 - sg(k2):  the value of k3 (unbiased, ≥ 0) with the gradient of k2,
            ∂k3+/∂logp = x, and E_π[x ∇log π] = ∇ KL(π ‖ π_ref) on-policy (k3's own gradient,
            1 - e^{-x}, gives a biased gradient when k3 is differentiated in a loss).
    k2, k3 and k3+ are ≥ 0 at every token; k1 can be negative. The gradient flows into `logp`
    only when the caller differentiates; `ref_logp` is treated as a constant by the caller.

    References: Schulman 2020, "Approximating KL Divergence",
    http://joschu.net/blog/kl-approx.html; Liu et al. 2025, "Rethinking KL Regularization in
    RLHF: From Value Estimation to Gradient Optimization", arXiv 2510.01555 (why k2's gradient).

    Args:
      logp: log π of the sampled tokens, [B, T].
      ref_logp: log π_ref of the same tokens, [B, T].
      mask: optional completion mask [B, T]; masked tokens give 0 with no gradient (NaN-safe).
      estimator: 'k1', 'k2', 'k3' or 'k3+'.
      log_ratio_clip: if set, x is clipped to [-c, c] first (k3 overflows for x below ~-88).

    Returns:
      Per-token estimates [B, T], float32 (or wider).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"token_kl: unknown estimator={estimator!r}; choose from {ESTIMATORS}.")
    where = None if mask is None else jnp.asarray(mask).astype(bool)
    if estimator != "k3+":
        return kl.kl_estimate(
            logp, ref_logp, estimator=estimator, where=where, log_ratio_clip=log_ratio_clip
        )
    k3 = kl.kl_estimate(logp, ref_logp, estimator="k3", where=where, log_ratio_clip=log_ratio_clip)
    k2 = kl.kl_estimate(logp, ref_logp, estimator="k2", where=where, log_ratio_clip=log_ratio_clip)
    return jax.lax.stop_gradient(k3) + (k2 - jax.lax.stop_gradient(k2))


def check_placement(placement: str, estimator: str) -> None:
    """Validates a KL placement and estimator pair (call it where a config is read).

    'in_reward' accepts k1, k2, k3 (k1 is the classic, unbiased per-token penalty; the reward
    carries no gradient, so only the estimate's value matters). 'in_loss' accepts k2, k3, k3+.

    Raises:
      ValueError: an unknown placement or estimator; k1 in the loss (E_π[∇ log π] = 0, so its
        expected gradient on-policy is zero and it does not regularise: use k2/k3/k3+ in the
        loss, or k1 in the reward); k3+ in the reward (it differs from k3 only in its gradient,
        which a reward does not carry: use k3).
    """
    if placement not in PLACEMENTS:
        raise ValueError(
            f"unknown KL placement {placement!r}; choose from {PLACEMENTS} ('in_reward': "
            "subtract β·KL from the token rewards; 'in_loss': add β·KL to the policy loss)."
        )
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; choose from {ESTIMATORS}.")
    if placement == "in_loss" and estimator == "k1":
        raise ValueError(
            "KL estimator 'k1' cannot be placed 'in_loss': on-policy its expected gradient is "
            "zero (∇k1 = ∇log π and E_π[∇log π] = 0), so it does not regularise the policy. "
            "Use estimator 'k2', 'k3' or 'k3+' in the loss, or placement 'in_reward' with 'k1'."
        )
    if placement == "in_reward" and estimator == "k3+":
        raise ValueError(
            "KL estimator 'k3+' differs from 'k3' only in its gradient, and a penalty placed "
            "'in_reward' carries no gradient: use estimator 'k3' (or the classic 'k1')."
        )


def reward_with_kl(
    scores: Real[ArrayLike, " B"] | Bool[ArrayLike, " B"],
    kl_tokens: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    beta: Float[ArrayLike, ""],
) -> Float[Array, "B T"]:
    """Per-token rewards with the KL penalty in the reward and the score at the last real token.

    r_it = -β · m_it · k_it + 1[t = last real token of row i] · score_i

    The result is float32 (or wider) even for integer or boolean scores; a row with no real
    token gets no score and no penalty (all zeros, no NaN); pads are 0. The inputs are data,
    not differentiated: the result carries no gradient into `kl_tokens` (stop-gradient), as the
    policy gradient treats rewards as constants. Non-contiguous masks read the score at the
    last real position.

    Reference: Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences",
    arXiv 1909.08593; Stiennon et al. 2020, "Learning to summarize from human feedback",
    arXiv 2009.01325.

    Args:
      scores: sequence-level rewards [B] (any real, integer or boolean dtype).
      kl_tokens: per-token KL estimates [B, T] (e.g. `token_kl(..., estimator='k1')`).
      mask: completion mask [B, T].
      beta: KL coefficient β ≥ 0 (a scalar; e.g. `KLControllerState.beta`).

    Returns:
      Token rewards [B, T], float32 (or wider), 0 at masked positions.
    """
    check_hparam("reward_with_kl: beta", beta, lambda b: b >= 0, ">= 0")
    scores = as_float(scores)
    kl_tokens = jax.lax.stop_gradient(as_float(kl_tokens))
    mask = jnp.asarray(mask)
    if kl_tokens.ndim != 2 or mask.shape != kl_tokens.shape or scores.shape != mask.shape[:1]:
        raise ValueError(
            f"reward_with_kl: scores must be [B] and kl_tokens, mask [B, T]; got scores "
            f"{scores.shape}, kl_tokens {kl_tokens.shape}, mask {mask.shape}."
        )
    mask = mask.astype(bool)
    t = mask.shape[-1]
    last = t - 1 - jnp.argmax(mask[:, ::-1], axis=-1)
    at_last = (jnp.arange(t)[None, :] == last[:, None]) & mask
    beta = jax.lax.stop_gradient(as_float(beta))
    rewards = jnp.where(mask, -beta * kl_tokens, 0.0)
    return rewards + jnp.where(at_last, jax.lax.stop_gradient(scores)[:, None], 0.0)


def lagrangian_init(beta0: float) -> KLControllerState:
    """The initial state of the target-KL Lagrangian controller: β = beta0 (float32 scalar).

    Args:
      beta0: initial coefficient β_0 ≥ 0.

    Returns:
      `rewardjax.kl.KLControllerState(beta)`, the state the fixed and adaptive controllers use.
    """
    check_hparam("lagrangian_init: beta0", beta0, lambda b: b >= 0, ">= 0")
    return KLControllerState(beta=jnp.asarray(beta0, jnp.float32))


def lagrangian_update(
    state: KLControllerState,
    observed_kl: Float[ArrayLike, ""],
    *,
    target_kl: float,
    lr: float,
) -> KLControllerState:
    """One step of projected dual ascent on β for the constraint KL(π ‖ π_ref) ≤ target.

    The constrained problem max_π E_π[r] s.t. KL ≤ δ has the Lagrangian
    L(π, β) = E_π[r] - β (KL - δ) with β ≥ 0; the policy ascends L for the current β (a
    KL-penalised reward with coefficient β) and β descends the dual by a (sub)gradient step:
      β ← max(0, β + lr · (KL_observed - δ))
    β grows while the KL is above the target and shrinks (to 0 at the least) while it is below.
    Pure and jittable; β stays float32.

    Reference: Boyd & Vandenberghe 2004, "Convex Optimization", ch. 5 (dual ascent); applied to
    RLHF constraints by Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with
    Constrained RLHF", arXiv 2310.04373.

    Args:
      state: the current `KLControllerState`.
      observed_kl: the observed KL, a scalar (e.g. the batch mean of per-sequence summed KL; the
        same units as `target_kl`).
      target_kl: the KL budget δ > 0.
      lr: dual step size > 0.

    Returns:
      The next `KLControllerState`.
    """
    check_hparam("lagrangian_update: target_kl", target_kl, lambda d: d > 0, "> 0")
    check_hparam("lagrangian_update: lr", lr, lambda e: e > 0, "> 0")
    violation = jnp.asarray(observed_kl, jnp.float32) - target_kl
    beta = jnp.maximum(0.0, state.beta + lr * violation).astype(state.beta.dtype)
    return KLControllerState(beta=beta)


def lagrangian_kl_controller(init_beta: float, target: float, lr: float) -> KLController:
    """The target-KL Lagrangian as a `rewardjax.kl.KLController` (the fixed/adaptive interface).

    `update(state, kl, n_steps)` is `lagrangian_update(state, kl, target_kl=target, lr=lr)`;
    `n_steps` is ignored (one dual step per call).

    Args:
      init_beta: β_0 ≥ 0.
      target: the KL budget δ > 0.
      lr: dual step size > 0.

    Returns:
      KLController; its `update` is jittable.
    """
    check_hparam("lagrangian_kl_controller: target", target, lambda d: d > 0, "> 0")
    check_hparam("lagrangian_kl_controller: lr", lr, lambda e: e > 0, "> 0")

    def init() -> KLControllerState:
        return lagrangian_init(init_beta)

    def update(state: KLControllerState, kl_value: ArrayLike, n_steps: ArrayLike):
        del n_steps
        return lagrangian_update(state, kl_value, target_kl=target, lr=lr)

    return KLController(init=init, update=update)
