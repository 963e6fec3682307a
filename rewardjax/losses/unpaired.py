"""Kahneman–Tversky Optimisation: an unpaired loss on desirable and undesirable completions.

Paper: Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization",
arXiv 2402.01306.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from rewardjax.numerics import as_float, check_hparam, masked_inputs, masked_loss


def kto(
    policy_logps: Float[ArrayLike, "*#B"],
    reference_logps: Float[ArrayLike, "*#B"],
    desirable: Bool[ArrayLike, "*#B"],
    reference_point: Float[ArrayLike, "*#B"],
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    desirable_weight: float | Float[ArrayLike, ""] = 1.0,
    undesirable_weight: float | Float[ArrayLike, ""] = 1.0,
    where: Bool[ArrayLike, "*#B"] | None = None,
) -> Float[Array, "*B"]:
    """KTO loss for single completions labelled desirable or undesirable.

    With ρ = π - ref and the reference point z0:
      desirable:   w_D·(1 - σ(β(ρ - z0)))
      undesirable: w_U·(1 - σ(β(z0 - ρ)))

    Args:
      policy_logps: summed log-probs of the completions under the policy, [*B].
      reference_logps: summed log-probs of the completions under the reference, [*B].
      desirable: True for desirable completions, False for undesirable ones, [*B].
      reference_point: z0, an estimate of KL(π‖ref) (the paper uses max(0, batch mean of π - ref on
        mismatched prompt/completion pairs)); a scalar or [*B]. No gradient flows into it.
      beta: β > 0.
      desirable_weight: w_D ≥ 0.
      undesirable_weight: w_U ≥ 0.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization",
      arXiv 2402.01306.
    """
    check_hparam("beta", beta, lambda v: v > 0.0, "positive")
    check_hparam("desirable_weight", desirable_weight, lambda v: v >= 0.0, "non-negative")
    check_hparam("undesirable_weight", undesirable_weight, lambda v: v >= 0.0, "non-negative")
    pi, ref = masked_inputs(where, policy_logps, reference_logps)
    z = beta * (pi - ref - jax.lax.stop_gradient(as_float(reference_point)))
    # 1 - σ(x) = σ(-x): desirable wants z > 0, undesirable wants z < 0.
    loss = jnp.where(
        jnp.asarray(desirable, bool),
        desirable_weight * jax.nn.sigmoid(-z),
        undesirable_weight * jax.nn.sigmoid(z),
    )
    return masked_loss(loss, where)
