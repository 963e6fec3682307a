"""Reference-free pairwise preference losses on policy log-probs.

Papers:
- Meng, Xia & Chen, "SimPO: Simple Preference Optimization with a Reference-Free Reward", arXiv
  2405.14734.
- Hong, Lee & Thorne, "ORPO: Monolithic Preference Optimization without Reference Model", arXiv
  2403.07691.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from rewardjax.numerics import check_hparam, log1mexp, masked_inputs, masked_loss


def simpo(
    policy_chosen_logps: Float[ArrayLike, "*#B"],
    policy_rejected_logps: Float[ArrayLike, "*#B"],
    chosen_lengths: Float[ArrayLike, "*#B"],
    rejected_lengths: Float[ArrayLike, "*#B"],
    *,
    beta: float | Float[ArrayLike, ""] = 2.0,
    gamma: float | Float[ArrayLike, ""] = 0.5,
    where: Bool[ArrayLike, "*#B"] | None = None,
) -> Float[Array, "*B"]:
    """SimPO: Bradley–Terry on length-normalised policy log-probs with a target margin.

    loss = -logσ(β·(π_c/|c| - π_r/|r|) - γ)

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      chosen_lengths: |c|, number of completion tokens of the chosen completions (> 0), [*B].
      rejected_lengths: |r|, the same for the rejected completions (> 0), [*B].
      beta: β > 0, the reward scale.
      gamma: γ, the target reward margin (the paper tunes γ/β; here γ enters as is).
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Meng, Xia & Chen, "SimPO: Simple Preference Optimization with a Reference-Free Reward", arXiv
      2405.14734.
    """
    check_hparam("beta", beta, lambda v: v > 0.0, "positive")
    # Masked lengths become 1 (padding may have length 0).
    (pc, pr), (len_c, len_r) = (
        masked_inputs(where, policy_chosen_logps, policy_rejected_logps),
        masked_inputs(where, chosen_lengths, rejected_lengths, fill=1.0),
    )
    return masked_loss(-jax.nn.log_sigmoid(beta * (pc / len_c - pr / len_r) - gamma), where)


def _log_odds(mean_logps: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """log(p / (1 - p)) from log p ≤ 0; log p is capped just below 0 so that p = 1 stays finite."""
    log_p = jnp.minimum(mean_logps, -jnp.finfo(mean_logps.dtype).tiny)
    return log_p - log1mexp(log_p)


def orpo(
    chosen_mean_logps: Float[ArrayLike, "*#B"],
    rejected_mean_logps: Float[ArrayLike, "*#B"],
    *,
    where: Bool[ArrayLike, "*#B"] | None = None,
) -> Float[Array, "*B"]:
    """ORPO odds-ratio loss on mean token log-probs.

    loss = -logσ(log odds(c) - log odds(r)),  odds(p) = p/(1 - p),  log p = mean token log-prob,
    with log(1 - p) computed stably as log1mexp(log p). The full ORPO objective is
    NLL(chosen) + λ·loss (λ = 0.1 in the paper); the caller adds the NLL and the weight.

    Args:
      chosen_mean_logps: mean per-token log-probs of the chosen completions, ≤ 0, [*B].
      rejected_mean_logps: the same for the rejected completions, ≤ 0, [*B].
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Hong, Lee & Thorne, "ORPO: Monolithic Preference Optimization without Reference Model", arXiv
      2403.07691.
    """
    chosen, rejected = masked_inputs(where, chosen_mean_logps, rejected_mean_logps, fill=-1.0)
    return masked_loss(-jax.nn.log_sigmoid(_log_odds(chosen) - _log_odds(rejected)), where)
