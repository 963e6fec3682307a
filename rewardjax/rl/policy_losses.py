"""Per-token policy-gradient losses for online RL, the clipped value loss, and entropy from logits.

Every policy loss has one signature, so a trainer calls them uniformly and reads `spec(name)`:

    fn(logp [B, T], old_logp [B, T], advantages [B, T], mask [B, T], **hyperparameters)
      -> (loss [B, T], PolicyLossAux)

`logp` are the log-probabilities of the sampled tokens under the policy being trained, `old_logp`
under the policy that sampled them (constants: no gradient flows into them). The loss is per
token, unreduced, float32 (or wider), exactly 0 at masked tokens, and its gradient there is 0;
the caller reduces it (see `rewardjax.rl.aggregation`). Minimising the loss ascends the clipped
surrogate objective. Hyper-parameters are keyword-only Python floats (or None).

Papers:
- Schulman et al. 2017, "Proximal Policy Optimization Algorithms", arXiv 1707.06347 (`ppo_clip`,
  `value_loss`, the entropy bonus).
- Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
  arXiv 2503.14476 (clip-higher: separate `epsilon_low` / `epsilon_high`).
- Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep Reinforcement Learning",
  arXiv 1912.09729 (dual clip, `dual_clip_c`).
- Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv 2507.18071 (`gspo`).
- MiniMax 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning Attention",
  arXiv 2506.13585 (`cispo`).
- Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO: A Case Study on TL;DR
  Summarization", arXiv 2403.17031 (clipped value loss as used for language models).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Shaped

from rewardjax.numerics import as_float, check_hparam

__all__ = [
    "PolicyLossAux",
    "PolicyLossSpec",
    "ValueLossAux",
    "cispo",
    "entropy_from_logits",
    "get",
    "gspo",
    "names",
    "ppo_clip",
    "spec",
    "value_loss",
]

# exp(±20) ≈ 5e8 / 2e-9: far outside any clip range, and exp never overflows in float32.
LOG_RATIO_CLIP = 20.0


class PolicyLossAux(NamedTuple):
    """Per-token parts of a policy loss, each [B, T], float32; at masked tokens the ratio is 1
    and everything else is 0 (so a masked mean over real tokens gives the batch statistic).

    Attributes:
      ratio: the importance ratio the loss uses: π/π_old per token (`ppo_clip`, `cispo`); the
        sequence ratio s_i at every token of row i (`gspo`).
      log_ratio: log π - log π_old per token (for the KL to the sampling policy, e.g. k3 of it).
      clipped: 1.0 where the clip is active (the ratio's gradient is cut or truncated), else 0;
        its masked mean is the clip fraction.
      dual_clipped: 1.0 where the dual clip bound -c·A is active (`ppo_clip` with
        `dual_clip_c`), else 0.
    """

    ratio: Float[Array, "B T"]
    log_ratio: Float[Array, "B T"]
    clipped: Float[Array, "B T"]
    dual_clipped: Float[Array, "B T"]


class ValueLossAux(NamedTuple):
    """Per-token parts of `value_loss`, each [B, T], float32, 0 at masked tokens.

    Attributes:
      clipped: 1.0 where the clipped error is the larger one (the value update is cut), else 0.
    """

    clipped: Float[Array, "B T"]


def _prepare(logp, old_logp, advantages, mask):
    """Float32 inputs, a boolean mask, and the token log-ratio (0 at masked tokens)."""
    logp, old_logp, advantages = as_float(logp), as_float(old_logp), as_float(advantages)
    if not (logp.shape == old_logp.shape == advantages.shape) or logp.ndim != 2:
        raise ValueError(
            f"logp {logp.shape}, old_logp {old_logp.shape} and advantages {advantages.shape} "
            "must share one shape [B, T] (rows, completion tokens)."
        )
    mask = jnp.asarray(mask)
    if mask.shape != logp.shape:
        raise ValueError(
            f"mask has shape {mask.shape} but logp has shape {logp.shape}; pass the completion "
            "mask [B, T] of the same rows and tokens."
        )
    mask = mask.astype(bool)
    old_logp = jax.lax.stop_gradient(old_logp)
    log_ratio = jnp.where(mask, logp - old_logp, 0.0)
    advantages = jnp.where(mask, advantages, 0.0)
    return log_ratio, advantages, mask


def _check_epsilons(fn_name, epsilon_low, epsilon_high):
    check_hparam(f"{fn_name}: epsilon_low", epsilon_low, lambda e: e >= 0, ">= 0")
    check_hparam(f"{fn_name}: epsilon_high", epsilon_high, lambda e: e >= 0, ">= 0")


def _clipped_surrogate(ratio, advantages, epsilon_low, epsilon_high):
    """(-min(ρA, clip(ρ, 1-ε_lo, 1+ε_hi)A), indicator that the clipped term is the active one)."""
    unclipped = -ratio * advantages
    clipped = -jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high) * advantages
    loss = jnp.maximum(unclipped, clipped)
    return loss, (clipped > unclipped).astype(loss.dtype)


def ppo_clip(
    logp: Float[ArrayLike, "B T"],
    old_logp: Float[ArrayLike, "B T"],
    advantages: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    epsilon_low: float | Float[ArrayLike, ""] = 0.2,
    epsilon_high: float | Float[ArrayLike, ""] | None = None,
    dual_clip_c: float | Float[ArrayLike, ""] | None = None,
) -> tuple[Float[Array, "B T"], PolicyLossAux]:
    """PPO's clipped surrogate per token, with clip-higher and an optional dual clip.

    With ρ = π(y_t)/π_old(y_t) = exp(logp - old_logp) and advantage A:
      ℓ = -min(ρ A, clip(ρ, 1 - ε_low, 1 + ε_high) A)
      dual clip (A < 0 only, c > 1):  ℓ = min(ℓ, -c A)
    The clip cuts the gradient where the ratio has moved past the trust region in the direction
    the advantage favours: A > 0 and ρ > 1 + ε_high, or A < 0 and ρ < 1 - ε_low (gradient 0);
    elsewhere ∂ℓ/∂logp = -ρ A. The dual clip bounds the loss of a negative-advantage token whose
    ratio has grown large (ρ > c), where it too has zero gradient. The log-ratio is clipped to
    ±20 before exp, so the loss and gradient stay finite at any logits.

    References: Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
    arXiv 1707.06347; Yu et al. 2025, "DAPO", arXiv 2503.14476 (ε_high > ε_low, clip-higher);
    Ye et al. 2020, "Mastering Complex Control in MOBA Games with Deep Reinforcement Learning",
    arXiv 1912.09729 (dual clip).

    Args:
      logp: log π of the sampled tokens under the policy being trained, [B, T].
      old_logp: log π_old of the same tokens under the sampling policy, [B, T] (no gradient).
      advantages: per-token advantages A, [B, T].
      mask: completion mask [B, T] (bool or 0/1); masked tokens give loss 0 and no gradient.
      epsilon_low: ε_low ≥ 0, the lower clip 1 - ε_low.
      epsilon_high: ε_high ≥ 0, the upper clip 1 + ε_high; None means ε_low (symmetric PPO).
      dual_clip_c: c > 1 for the dual clip on negative advantages; None turns it off.

    Returns:
      (loss [B, T], PolicyLossAux); loss is 0 at masked tokens.
    """
    epsilon_high = epsilon_low if epsilon_high is None else epsilon_high
    _check_epsilons("ppo_clip", epsilon_low, epsilon_high)
    if dual_clip_c is not None:
        check_hparam("ppo_clip: dual_clip_c", dual_clip_c, lambda c: c > 1, "> 1 (or None)")
    log_ratio, advantages, mask = _prepare(logp, old_logp, advantages, mask)
    ratio = jnp.exp(jnp.clip(log_ratio, -LOG_RATIO_CLIP, LOG_RATIO_CLIP))
    loss, clipped = _clipped_surrogate(ratio, advantages, epsilon_low, epsilon_high)
    dual = jnp.zeros_like(loss)
    if dual_clip_c is not None:
        bound = -dual_clip_c * advantages
        dual = ((advantages < 0) & (loss > bound)).astype(loss.dtype)
        loss = jnp.where(advantages < 0, jnp.minimum(loss, bound), loss)
    zero = jnp.zeros_like(loss)
    aux = PolicyLossAux(
        ratio=jnp.where(mask, ratio, 1.0),
        log_ratio=log_ratio,
        clipped=jnp.where(mask, clipped, zero),
        dual_clipped=jnp.where(mask, dual, zero),
    )
    return jnp.where(mask, loss, zero), aux


def gspo(
    logp: Float[ArrayLike, "B T"],
    old_logp: Float[ArrayLike, "B T"],
    advantages: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    epsilon_low: float | Float[ArrayLike, ""] = 3e-4,
    epsilon_high: float | Float[ArrayLike, ""] = 4e-4,
) -> tuple[Float[Array, "B T"], PolicyLossAux]:
    """GSPO: the clipped surrogate with a sequence-level, length-normalised importance ratio.

    s_i = exp( (1/|y_i|) Σ_t m_it (log π(y_it) - log π_old(y_it)) )        (|y_i| real tokens)
    s_it = sg(s_i) · π(y_it) / sg(π(y_it))      (value s_i; ∂s_it/∂log π(y_it) = s_i)
    ℓ_it = -min(s_it A_it, clip(s_it, 1 - ε_low, 1 + ε_high) A_it)

    This is GSPO-token; with the same advantage at every token of a row and a per-row mean over
    tokens it equals sequence-level GSPO exactly (value and gradient). The clip decision is made
    per sequence (its ratio is shared by all tokens), so `clipped` is constant along a row for a
    constant advantage. An empty row (|y_i| = 0) has s_i = 1 and loss 0. GSPO's ranges are much
    narrower than PPO's because s_i is a geometric mean (the paper uses 3e-4 and 4e-4).

    Reference: Zheng et al. 2025, "Group Sequence Policy Optimization", arXiv 2507.18071.

    Args:
      logp: log π of the sampled tokens, [B, T].
      old_logp: log π_old of the same tokens, [B, T] (no gradient).
      advantages: per-token advantages A, [B, T] (usually the row's sequence advantage).
      mask: completion mask [B, T]; masked tokens give loss 0 and no gradient.
      epsilon_low: ε_low ≥ 0.
      epsilon_high: ε_high ≥ 0.

    Returns:
      (loss [B, T], PolicyLossAux with `ratio` = s_i broadcast over row i's real tokens).
    """
    _check_epsilons("gspo", epsilon_low, epsilon_high)
    log_ratio, advantages, mask = _prepare(logp, old_logp, advantages, mask)
    lengths = jnp.sum(mask, axis=-1, dtype=log_ratio.dtype)
    mean_log_ratio = jnp.sum(log_ratio, axis=-1) / jnp.maximum(lengths, 1.0)
    seq_ratio = jnp.exp(jnp.clip(mean_log_ratio, -LOG_RATIO_CLIP, LOG_RATIO_CLIP))
    logp_masked = jnp.where(mask, as_float(logp), 0.0)
    token_ratio = jax.lax.stop_gradient(seq_ratio)[:, None] * jnp.exp(
        logp_masked - jax.lax.stop_gradient(logp_masked)
    )
    loss, clipped = _clipped_surrogate(token_ratio, advantages, epsilon_low, epsilon_high)
    zero = jnp.zeros_like(loss)
    aux = PolicyLossAux(
        ratio=jnp.where(mask, jax.lax.stop_gradient(seq_ratio)[:, None], 1.0),
        log_ratio=log_ratio,
        clipped=jnp.where(mask, clipped, zero),
        dual_clipped=zero,
    )
    return jnp.where(mask, loss, zero), aux


def cispo(
    logp: Float[ArrayLike, "B T"],
    old_logp: Float[ArrayLike, "B T"],
    advantages: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    epsilon_low: float | Float[ArrayLike, ""] = 1.0,
    epsilon_high: float | Float[ArrayLike, ""] = 0.2,
) -> tuple[Float[Array, "B T"], PolicyLossAux]:
    """CISPO: REINFORCE weighted by a clipped, stop-gradient importance ratio.

    ℓ_t = -sg(clip(ρ_t, 1 - ε_low, 1 + ε_high)) · A_t · log π(y_t),   ρ_t = π(y_t)/π_old(y_t)

    Unlike PPO's clip, no token loses its gradient: the weight is truncated, never the update,
    so ∂ℓ/∂logp = -clip(ρ, ·)·A at every real token. The value of ℓ is a surrogate (only its
    gradient is meaningful). The paper sets no lower bound (ε_low large) and tunes ε_high only;
    the default ε_low = 1 (lower bound 0) has no effect, and ε_high = 0.2 is this library's
    default, not a value from the paper.

    Reference: MiniMax 2025, "MiniMax-M1: Scaling Test-Time Compute Efficiently with Lightning
    Attention", arXiv 2506.13585.

    Args:
      logp: log π of the sampled tokens, [B, T].
      old_logp: log π_old of the same tokens, [B, T] (no gradient).
      advantages: per-token advantages A, [B, T].
      mask: completion mask [B, T]; masked tokens give loss 0 and no gradient.
      epsilon_low: ε_low ≥ 0 (the weight's lower bound is 1 - ε_low).
      epsilon_high: ε_high ≥ 0 (the weight's upper bound is 1 + ε_high).

    Returns:
      (loss [B, T], PolicyLossAux with `clipped` = 1 where the weight was truncated).
    """
    _check_epsilons("cispo", epsilon_low, epsilon_high)
    log_ratio, advantages, mask = _prepare(logp, old_logp, advantages, mask)
    ratio = jax.lax.stop_gradient(jnp.exp(jnp.clip(log_ratio, -LOG_RATIO_CLIP, LOG_RATIO_CLIP)))
    weight = jnp.clip(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    logp_masked = jnp.where(mask, as_float(logp), 0.0)
    loss = -weight * advantages * logp_masked
    truncated = (ratio > 1.0 + epsilon_high) | (ratio < 1.0 - epsilon_low)
    zero = jnp.zeros_like(loss)
    aux = PolicyLossAux(
        ratio=jnp.where(mask, ratio, 1.0),
        log_ratio=log_ratio,
        clipped=jnp.where(mask, truncated.astype(loss.dtype), zero),
        dual_clipped=zero,
    )
    return jnp.where(mask, loss, zero), aux


def value_loss(
    values: Float[ArrayLike, "B T"],
    old_values: Float[ArrayLike, "B T"],
    returns: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    *,
    clip_range: float | Float[ArrayLike, ""] | None = 0.2,
) -> tuple[Float[Array, "B T"], ValueLossAux]:
    """PPO's clipped value loss per token.

    v_clip = V_old + clip(V - V_old, -c, c)
    ℓ = ½ max((V - R)², (v_clip - R)²)          (c = None: ℓ = ½ (V - R)²)

    The max makes the loss pessimistic: once V has moved more than c from V_old towards or past
    the target, the clipped error dominates and the gradient is 0.

    References: Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
    arXiv 1707.06347 (the OpenAI baselines implementation); Huang et al. 2024, "The N+
    Implementation Details of RLHF with PPO", arXiv 2403.17031.

    Args:
      values: the critic's current predictions V, [B, T].
      old_values: the predictions V_old at sampling time, [B, T] (no gradient).
      returns: value targets R, [B, T] (e.g. `Advantages.returns`; no gradient).
      mask: completion mask [B, T]; masked tokens give 0 and no gradient.
      clip_range: c > 0, or None for the unclipped squared error.

    Returns:
      (loss [B, T], ValueLossAux); loss is 0 at masked tokens.
    """
    if clip_range is not None:
        check_hparam("value_loss: clip_range", clip_range, lambda c: c > 0, "> 0 (or None)")
    values = as_float(values)
    old_values = jax.lax.stop_gradient(as_float(old_values))
    returns = jax.lax.stop_gradient(as_float(returns))
    mask = jnp.asarray(mask)
    if not (values.shape == old_values.shape == returns.shape == mask.shape):
        raise ValueError(
            f"values {values.shape}, old_values {old_values.shape}, returns {returns.shape} and "
            f"mask {mask.shape} must share one shape [B, T]."
        )
    mask = mask.astype(bool)
    values = jnp.where(mask, values, 0.0)
    old_values = jnp.where(mask, old_values, 0.0)
    returns = jnp.where(mask, returns, 0.0)
    error = jnp.square(values - returns)
    if clip_range is None:
        loss, clipped = 0.5 * error, jnp.zeros_like(error)
    else:
        v_clip = old_values + jnp.clip(values - old_values, -clip_range, clip_range)
        error_clip = jnp.square(v_clip - returns)
        loss = 0.5 * jnp.maximum(error, error_clip)
        clipped = (error_clip > error).astype(error.dtype)
    zero = jnp.zeros_like(loss)
    return jnp.where(mask, loss, zero), ValueLossAux(clipped=jnp.where(mask, clipped, zero))


def entropy_from_logits(
    logits: Float[ArrayLike, "B T V"], mask: Shaped[ArrayLike, "B T"]
) -> Float[Array, "B T"]:
    """Entropy of the next-token distribution at each position, in nats.

    H_t = -Σ_v p_v log p_v,   log p = log_softmax(logits) (computed in float32 or wider)

    Entries with logit -inf (p_v = 0) contribute 0, so a truncated (top-k / top-p) support is
    fine; masked positions give 0 with no gradient and never produce NaN.

    Reference: Schulman et al. 2017, "Proximal Policy Optimization Algorithms",
    arXiv 1707.06347 (the entropy bonus).

    Args:
      logits: the policy's logits, [B, T, V] (any float dtype, e.g. bfloat16).
      mask: completion mask [B, T].

    Returns:
      Entropies [B, T], float32 (or wider), 0 at masked positions.
    """
    logits = as_float(logits)
    mask = jnp.asarray(mask)
    if logits.ndim != 3 or mask.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be [B, T, V] and mask [B, T] of the same rows and tokens; got logits "
            f"{logits.shape} and mask {mask.shape}."
        )
    mask = mask.astype(bool)
    logits = jnp.where(mask[..., None], logits, 0.0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    support = p > 0
    entropy = -jnp.sum(jnp.where(support, p * jnp.where(support, logp, 0.0), 0.0), axis=-1)
    return jnp.where(mask, entropy, 0.0)


# ---------------------------------------------------------------------------------------------
# Registry.


class PolicyLossSpec(NamedTuple):
    """A registered policy loss and what a trainer must know about it.

    Attributes:
      fn: the loss, `fn(logp, old_logp, advantages, mask, **hp) -> (loss [B, T], PolicyLossAux)`.
      sequence_level: its importance ratio is per sequence (GSPO): a row is clipped as a whole,
        so it must not be split across minibatches, and aggregation per sequence is natural.
    """

    fn: Callable[..., tuple[Float[Array, "B T"], PolicyLossAux]]
    sequence_level: bool = False


_LOSSES: dict[str, PolicyLossSpec] = {
    s.fn.__name__: s
    for s in (
        PolicyLossSpec(ppo_clip),
        PolicyLossSpec(gspo, sequence_level=True),
        PolicyLossSpec(cispo),
    )
}


def names() -> tuple[str, ...]:
    """Returns the registered policy-loss names, sorted."""
    return tuple(sorted(_LOSSES))


def spec(name: str) -> PolicyLossSpec:
    """Returns the `PolicyLossSpec` registered under `name`.

    Raises:
      ValueError: `name` is not registered (the message lists the known names).
    """
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown policy loss {name!r}; known policy losses: {', '.join(names())}."
        ) from None


def get(name: str) -> Callable[..., tuple[Float[Array, "B T"], PolicyLossAux]]:
    """Returns the policy loss registered under `name`; raises ValueError listing the names."""
    return spec(name).fn
