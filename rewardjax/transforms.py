"""Reward transforms, calibration and aggregation of several rewards.

Pure functions on plain arrays: jit, vmap and shard them freely. Rewards have any batch shape
`[...]`; reference samples from the base policy add a trailing axis `N`; ensembles and several
reward models add a leading axis (`E` ensemble members, `K` reward models).

Papers:
- Wang et al. 2024, "Transforming and Combining Rewards for Aligning Large Language Models",
  arXiv 2402.00742 (log-sigmoid centring, sum of transformed rewards = log P(all good)).
- Fu et al. 2025, "Reward Shaping to Mitigate Reward Hacking in RLHF", arXiv 2502.18770 (PAR).
- Balashankar et al. 2024, "InfAlign: Inference-aware language model alignment",
  arXiv 2412.19792 (calibration against the reference policy's reward distribution).
- Coste et al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization", arXiv 2310.02743.
- Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with Constrained RLHF",
  arXiv 2310.04373 (min / soft-min aggregation of several rewards).
- Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO: A Case Study on TL;DR
  Summarization", arXiv 2403.17031 (masked whitening).

A config picks a transform by name: `transforms.get("whiten")`; `transforms.names()` lists them.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

__all__ = [
    "calibrate",
    "center",
    "clip",
    "combine",
    "ensemble",
    "get",
    "log_sigmoid_centered",
    "names",
    "preference_as_reward",
    "reference_quantile",
    "whiten",
]


def log_sigmoid_centered(
    rewards: Float[ArrayLike, "*#batch"], reference_rewards: Float[ArrayLike, "*#batch"]
) -> Float[Array, "*batch"]:
    """Log-sigmoid of the reward centred on a per-prompt reference reward.

    u(x, y) = log σ(r(x, y) - r_ref(x)), the log-probability under Bradley–Terry that y beats a
    reference response. It is concave and saturates above r_ref, so improving already-good
    outputs earns little; a sum of such terms is log P(all good) (see `combine`).

    Reference: Wang et al. 2024, "Transforming and Combining Rewards for Aligning Large Language
    Models", arXiv 2402.00742.

    Args:
      rewards: r(x, y), shape [...].
      reference_rewards: r_ref(x), broadcastable to `rewards` (e.g. `reference_quantile`).

    Returns:
      log σ(r - r_ref), shape [...], values in (-inf, 0].
    """
    return jax.nn.log_sigmoid(rewards - reference_rewards)


def reference_quantile(
    reference_samples: Float[ArrayLike, "*batch N"],
    q: float | Float[ArrayLike, ""] = 0.85,
    axis: int = -1,
) -> Float[Array, "..."]:  # reference_samples without `axis` (not always the last)
    """Per-prompt reference reward: the q-quantile of rewards of base-policy samples.

    r_ref(x) = Quantile_q{r(x, y_n) : y_n ~ π_ref(x), n = 1..N}, linear interpolation between
    order statistics (as `numpy.quantile`). Jittable; `axis` must be static under jit.

    Reference: Wang et al. 2024, "Transforming and Combining Rewards for Aligning Large Language
    Models", arXiv 2402.00742 (they centre on the 85% quantile).

    Args:
      reference_samples: rewards of N reference samples per prompt, shape [..., N].
      q: quantile in [0, 1].
      axis: the sample axis.

    Returns:
      r_ref, shape [...] (`reference_samples` without `axis`).
    """
    return jnp.quantile(reference_samples, q, axis=axis)


def preference_as_reward(
    rewards: Float[ArrayLike, "*#batch"], reference_rewards: Float[ArrayLike, "*#batch N"]
) -> Float[Array, "*batch"]:
    """Preference As Reward (PAR): mean Bradley–Terry win rate against reference samples.

    PAR(x, y) = (1/N) Σ_n σ(r(x, y) - r(x, y_n)), y_n ~ π_ref(x). Bounded in (0, 1), steepest near
    the reference rewards and flat far above them, which blunts reward hacking.

    Reference: Fu et al. 2025, "Reward Shaping to Mitigate Reward Hacking in RLHF",
    arXiv 2502.18770.

    Args:
      rewards: r(x, y), shape [...].
      reference_rewards: r(x, y_n) of N reference samples per prompt, shape [..., N].

    Returns:
      PAR, shape [...], values in (0, 1).
    """
    return jnp.mean(jax.nn.sigmoid(rewards[..., None] - reference_rewards), axis=-1)


def calibrate(
    rewards: Float[ArrayLike, "*#batch"], reference_samples: Float[ArrayLike, "*#batch N"]
) -> Float[Array, "*batch"]:
    """Calibrated reward: the reward's mid-rank among the reference policy's rewards.

    C(x, y) = P_{y'~π_ref}[r(x, y') < r(x, y)] + ½ P_{y'~π_ref}[r(x, y') = r(x, y)], estimated
    with N reference samples per prompt. Uniform on [0, 1] under π_ref when rewards are
    continuous; ties count one half. Piecewise constant in r, so its gradient is zero.

    Reference: Balashankar et al. 2024, "InfAlign: Inference-aware language model alignment",
    arXiv 2412.19792.

    Args:
      rewards: r(x, y), shape [...].
      reference_samples: r(x, y'_n) of N reference samples per prompt, shape [..., N].

    Returns:
      C, shape [...], values in [0, 1].
    """
    r = rewards[..., None]
    below = (reference_samples < r).astype(jnp.float32)
    ties = (reference_samples == r).astype(jnp.float32)
    return jnp.mean(below + 0.5 * ties, axis=-1)


def _masked_mean(
    x: Float[ArrayLike, "*batch"],
    where: Bool[ArrayLike, "*batch"],
    axis: int | tuple[int, ...] | None,
) -> Float[Array, "*#batch"]:  # keepdims: the reduced axes have size 1
    """Mean of x over `axis` where `where` is True, keepdims; 0 for a fully masked slice."""
    count = jnp.sum(where, axis=axis, keepdims=True)
    total = jnp.sum(jnp.where(where, x, 0), axis=axis, keepdims=True)
    return total / jnp.maximum(count, 1)


def center(
    rewards: Float[ArrayLike, "*batch"],
    *,
    where: Bool[ArrayLike, "*batch"] | None = None,
    axis: int | tuple[int, ...] | None = None,
) -> Float[Array, "*batch"]:
    """Subtract the (masked) mean reward.

    c_i = r_i - Σ_j m_j r_j / Σ_j m_j, the mean taken over `axis` (all axes by default; `axis=-1`
    centres the N samples of each prompt, the RLOO/GRPO baseline without the leave-one-out).

    Reference: Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO",
    arXiv 2403.17031.

    Args:
      rewards: shape [...].
      where: optional boolean mask, shape [...]; masked entries neither count in the mean nor
        leak (NaN-safe) and come back as 0.
      axis: axis or axes of the mean; None for all.

    Returns:
      centred rewards, shape [...].
    """
    mask = jnp.ones(rewards.shape, bool) if where is None else where
    safe = jnp.where(mask, rewards, 0)
    return jnp.where(mask, safe - _masked_mean(safe, mask, axis), 0)


def whiten(
    rewards: Float[ArrayLike, "*batch"],
    *,
    where: Bool[ArrayLike, "*batch"] | None = None,
    axis: int | tuple[int, ...] | None = None,
    shift_mean: bool = True,
    eps: float | Float[ArrayLike, ""] = 1e-8,
) -> Float[Array, "*batch"]:
    """Standardise rewards (or advantages) with the masked mean and variance, as in PPO.

    μ = Σ m r / Σ m, σ² = Σ m (r - μ)² / Σ m (population variance), w = (r - μ) / sqrt(σ² + eps);
    with `shift_mean=False` the mean is added back, w = (r - μ) / sqrt(σ² + eps) + μ (PPO
    implementations whiten rewards this way to rescale without moving them).

    Reference: Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO",
    arXiv 2403.17031.

    Args:
      rewards: shape [...].
      where: optional boolean mask, shape [...]; masked entries do not count, do not leak
        (NaN-safe) and come back as 0.
      axis: axis or axes of the statistics; None for all (batch whitening).
      shift_mean: if False, keep the original mean.
      eps: added to the variance.

    Returns:
      whitened rewards, shape [...].
    """
    mask = jnp.ones(rewards.shape, bool) if where is None else where
    safe = jnp.where(mask, rewards, 0)
    mean = _masked_mean(safe, mask, axis)
    var = _masked_mean(jnp.square(safe - mean), mask, axis)
    out = (safe - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return jnp.where(mask, out, 0)


def clip(
    rewards: Float[ArrayLike, "*batch"], *, lower: float | None = None, upper: float | None = None
) -> Float[Array, "*batch"]:
    """Clip rewards to [lower, upper].

    c = min(max(r, lower), upper); gradient 1 inside the interval, 0 outside.

    Reference: Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO",
    arXiv 2403.17031.

    Args:
      rewards: shape [...].
      lower: lower bound, or None for none.
      upper: upper bound, or None for none.

    Returns:
      clipped rewards, shape [...].
    """
    if lower is None and upper is None:
        raise ValueError("clip: give `lower`, `upper` or both; with neither it does nothing.")
    if lower is not None and upper is not None and lower > upper:
        raise ValueError(f"clip: `lower`={lower} must not exceed `upper`={upper}.")
    return jnp.clip(rewards, lower, upper)


_ENSEMBLE_METHODS = ("mean", "min", "uwo")


def ensemble(
    rewards: Float[ArrayLike, " E *batch"],
    *,
    method: str = "mean",
    coef: float | Float[ArrayLike, ""] = 1.0,
) -> Float[Array, "*batch"]:
    """Aggregate an ensemble of reward models over the leading axis E.

    mean: (1/E) Σ_e r_e;  min (worst case): min_e r_e;
    uwo (uncertainty-weighted optimisation): (1/E) Σ_e r_e - coef · (1/E) Σ_e (r_e - r̄)².

    Reference: Coste et al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization",
    arXiv 2310.02743.

    Args:
      rewards: rewards of E members, shape [E, ...].
      method: 'mean', 'min' or 'uwo'.
      coef: weight λ of the intra-ensemble variance penalty ('uwo' only).

    Returns:
      aggregated reward, shape [...].
    """
    if method == "mean":
        return jnp.mean(rewards, axis=0)
    if method == "min":
        return jnp.min(rewards, axis=0)
    if method == "uwo":
        return jnp.mean(rewards, axis=0) - coef * jnp.var(rewards, axis=0)
    raise ValueError(f"ensemble: unknown `method`={method!r}; choose one of {_ENSEMBLE_METHODS}.")


_COMBINE_METHODS = ("sum", "weighted", "min", "softmin")


def combine(
    rewards: Float[ArrayLike, " K *batch"],
    *,
    method: str = "sum",
    weights: Float[ArrayLike, " _"] | None = None,  # [K]; the body checks K and names the fix
    temperature: float | Float[ArrayLike, ""] = 1.0,
) -> Float[Array, "*batch"]:
    """Combine K different rewards (e.g. helpfulness and harmlessness) over the leading axis.

    sum: Σ_k r_k; on log-sigmoid-centred rewards u_k = log σ(r_k - r_ref,k) this is
      log Π_k σ(r_k - r_ref,k) = log P(good on every property) (Wang et al. 2024);
    weighted: Σ_k w_k r_k;
    min: min_k r_k (the worst property);
    softmin: -τ log Σ_k w_k exp(-r_k / τ) with w normalised to sum 1 (uniform by default), a
      smooth minimum between min (τ → 0) and the w-weighted mean (τ → ∞).

    References: Wang et al. 2024, "Transforming and Combining Rewards for Aligning Large
    Language Models", arXiv 2402.00742; Moskovitz et al. 2023, "Confronting Reward Model
    Overoptimization with Constrained RLHF", arXiv 2310.04373.

    Args:
      rewards: K rewards, shape [K, ...].
      method: 'sum', 'weighted', 'min' or 'softmin'.
      weights: shape [K]; required for 'weighted', optional for 'softmin', else not allowed.
      temperature: τ > 0 ('softmin' only).

    Returns:
      combined reward, shape [...].
    """
    if method not in _COMBINE_METHODS:
        raise ValueError(f"combine: unknown `method`={method!r}; choose one of {_COMBINE_METHODS}.")
    if method == "weighted" and weights is None:
        raise ValueError("combine: method='weighted' needs `weights` of shape [K].")
    if method in ("sum", "min") and weights is not None:
        raise ValueError(f"combine: method={method!r} takes no `weights`; use 'weighted'.")
    if weights is not None:
        weights = jnp.asarray(weights)
        if weights.shape != rewards.shape[:1]:
            raise ValueError(
                f"combine: `weights` has shape {weights.shape}, expected ({rewards.shape[0]},) "
                "to match the leading axis of `rewards`."
            )
        weights = weights.reshape(weights.shape + (1,) * (rewards.ndim - 1))
    if method == "sum":
        return jnp.sum(rewards, axis=0)
    if method == "weighted":
        return jnp.sum(weights * rewards, axis=0)
    if method == "min":
        return jnp.min(rewards, axis=0)
    if weights is None:
        weights = jnp.ones_like(rewards)
    probs = weights / jnp.sum(weights, axis=0)
    return -temperature * jax.nn.logsumexp(-rewards / temperature, axis=0, b=probs)


# Name registry for configs: a plain dict built at import (no global mutable state is needed).
_REGISTRY: dict[str, Callable[..., Array]] = {
    "calibrate": calibrate,
    "center": center,
    "clip": clip,
    "combine": combine,
    "ensemble": ensemble,
    "log_sigmoid_centered": log_sigmoid_centered,
    "preference_as_reward": preference_as_reward,
    "reference_quantile": reference_quantile,
    "whiten": whiten,
}


def get(name: str) -> Callable[..., Array]:
    """Return the transform registered under `name` (see `names()`).

    Args:
      name: e.g. 'whiten', 'log_sigmoid_centered'.

    Returns:
      the transform function.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"transforms.get: unknown transform {name!r}; known: {', '.join(names())}."
        ) from None


def names() -> tuple[str, ...]:
    """Names of the registered transforms, sorted."""
    return tuple(sorted(_REGISTRY))
