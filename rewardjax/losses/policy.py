"""Pairwise preference losses on summed completion log-probs, relative to a reference policy.

All take (policy_chosen_logps, policy_rejected_logps, reference_chosen_logps,
reference_rejected_logps), each of shape [*B], and return a per-example loss of shape [*B]. With
the log-ratios
  a = π_c - ref_c,  b = π_r - ref_r,  Δ = a - b,
the forms below are the pairwise ones TRL's DPOTrainer ships under the loss type of the same name.
Length normalisation, if wanted, is the caller's, on the inputs. Each takes `where=` [*B]: masked
examples get loss 0 and no gradient (masking equals slicing; padding may hold any value).

Papers:
- Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward Model",
  arXiv 2305.18290; conservative DPO: Mitchell, "A note on DPO with noisy preferences & relationship
  to IPO", 2023 (no arXiv id).
- Chowdhury et al., "Provably Robust DPO: Aligning Language Models with Noisy Feedback", arXiv
  2403.00409.
- Azar et al., "A General Theoretical Paradigm to Understand Learning from Human Preferences" (IPO),
  arXiv 2310.12036.
- Zhao et al., "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", arXiv 2305.10425.
- Chen et al., "Noise Contrastive Alignment of Language Models with Explicit Rewards", arXiv
  2402.05369.
- Jung et al., "Binary Classifier Optimization for Large Language Model Alignment",
  arXiv 2404.04656.
- Wu et al., "Self-Play Preference Optimization for Language Model Alignment", arXiv 2405.00675.
- D'Oosterlinck et al., "Anchored Preference Optimization and Contrastive Revisions: Addressing
  Underspecification in Alignment", arXiv 2408.06266.
- Ji et al., "Towards Efficient Exact Optimization of Language Model Alignment", arXiv 2402.00856.
- Chris Lu et al., "Discovering Preference Optimization Algorithms with and for Large Language
  Models", arXiv 2406.08414.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from rewardjax.numerics import (
    as_float,
    check_hparam,
    masked_inputs,
    masked_loss,
    smoothed_logistic,
)

LogProbs = Float[ArrayLike, "*#B"]
Loss = Float[Array, "*B"]
Where = Bool[ArrayLike, "*#B"] | None


def _log_ratios(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    where: Where,
) -> tuple[Array, Array]:
    """Returns (a, b) = (π_c - ref_c, π_r - ref_r), at least float32, 0 where masked out."""
    pc, pr, rc, rr = masked_inputs(
        where,
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
    )
    return pc - rc, pr - rr


def _check_beta(beta: float | Float[ArrayLike, ""]) -> None:
    check_hparam("beta", beta, lambda v: v > 0.0, "positive")


def dpo(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    label_smoothing: float | Float[ArrayLike, ""] = 0.0,
    where: Where = None,
) -> Loss:
    """Direct Preference Optimization (conservative DPO when label_smoothing > 0).

    loss = -(1 - e)·logσ(βΔ) - e·logσ(-βΔ)

    This is `bradley_terry` on the implicit rewards β(π - ref).

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0, the inverse strength of the KL regularisation.
      label_smoothing: e in [0, 1/2], the assumed probability that a label is flipped.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
      Model", arXiv 2305.18290; Mitchell 2023, "A note on DPO with noisy preferences" (no arXiv id).
    """
    _check_beta(beta)
    check_hparam("label_smoothing", label_smoothing, lambda v: 0.0 <= v <= 0.5, "in [0, 0.5]")
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    return masked_loss(smoothed_logistic(beta * (a - b), label_smoothing), where)


def robust_dpo(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    label_smoothing: float | Float[ArrayLike, ""] = 0.1,
    where: Where = None,
) -> Loss:
    """Robust DPO: an unbiased estimate of the clean DPO loss under label flips with probability e.

    loss = [-(1 - e)·logσ(βΔ) + e·logσ(-βΔ)] / (1 - 2e)

    Its expectation over flips (swapping chosen and rejected with probability e) is -logσ(βΔ).

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      label_smoothing: e in [0, 1/2), the known label-flip rate.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32 (it can be negative).

    References:
      Chowdhury et al., "Provably Robust DPO: Aligning Language Models with Noisy Feedback", arXiv
      2403.00409.
    """
    _check_beta(beta)
    check_hparam("label_smoothing", label_smoothing, lambda v: 0.0 <= v < 0.5, "in [0, 0.5)")
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    z = beta * (a - b)
    e = label_smoothing
    return masked_loss(
        (-(1.0 - e) * jax.nn.log_sigmoid(z) + e * jax.nn.log_sigmoid(-z)) / (1.0 - 2.0 * e), where
    )


def ipo(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    where: Where = None,
) -> Loss:
    """Identity Preference Optimisation: regress the log-ratio margin onto 1/(2β).

    loss = (Δ - 1/(2β))²

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0 (τ in the paper). TRL length-normalises the log-probs for IPO; do that on the
        inputs if wanted.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Azar et al., "A General Theoretical Paradigm to Understand Learning from Human Preferences",
      arXiv 2310.12036 (eq. 17).
    """
    _check_beta(beta)
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    return masked_loss(jnp.square(a - b - 1.0 / (2.0 * beta)), where)


def slic_hinge(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    where: Where = None,
) -> Loss:
    """SLiC hinge loss on the log-ratio margin (TRL's loss_type="hinge").

    loss = relu(1 - βΔ)   (β is the inverse of the margin)

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Zhao et al., "SLiC-HF: Sequence Likelihood Calibration with Human Feedback", arXiv 2305.10425.
    """
    _check_beta(beta)
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    return masked_loss(jax.nn.relu(1.0 - beta * (a - b)), where)


def nca(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    where: Where = None,
) -> Loss:
    """Noise Contrastive Alignment, pairwise form (TRL's loss_type="nca_pair").

    loss = -logσ(βa) - ½·logσ(-βa) - ½·logσ(-βb)

    Unlike DPO it acts on the absolute implicit rewards, so it does not let both likelihoods fall.

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Chen et al., "Noise Contrastive Alignment of Language Models with Explicit Rewards", arXiv
      2402.05369.
    """
    _check_beta(beta)
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    log_sig = jax.nn.log_sigmoid
    return masked_loss(
        -log_sig(beta * a) - 0.5 * log_sig(-beta * a) - 0.5 * log_sig(-beta * b), where
    )


def bco(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    delta: float | Float[ArrayLike, ""] = 0.0,
    where: Where = None,
) -> Loss:
    """Binary Classifier Optimisation, pairwise form (TRL's loss_type="bco_pair").

    loss = -logσ(βa - δ) - logσ(-(βb - δ))

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      delta: δ, the reward shift: TRL keeps a running mean of the batch-mean implicit reward
        mean(β·a, β·b) across steps; keep it in the train state and pass it here. No gradient flows
        into δ.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Jung et al., "Binary Classifier Optimization for Large Language Model Alignment", arXiv
      2404.04656.
    """
    _check_beta(beta)
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    d = jax.lax.stop_gradient(as_float(delta))
    return masked_loss(
        -jax.nn.log_sigmoid(beta * a - d) - jax.nn.log_sigmoid(-(beta * b - d)), where
    )


def sppo_hard(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    where: Where = None,
) -> Loss:
    """Self-Play Preference Optimisation with hard win probabilities (1 for chosen, 0 for rejected).

    loss = (a - 1/(2β))² + (b + 1/(2β))²

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0 (1/η in the paper).
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Wu et al., "Self-Play Preference Optimization for Language Model Alignment", arXiv 2405.00675
      (eq. 4.7 with P = 1 for the winner and 0 for the loser).
    """
    _check_beta(beta)
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    half = 0.5 / beta
    return masked_loss(jnp.square(a - half) + jnp.square(b + half), where)


def apo_zero(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    where: Where = None,
) -> Loss:
    """Anchored Preference Optimisation, zero variant: raise chosen, lower rejected likelihood.

    loss = (1 - σ(βa)) + σ(βb)

    Use it when the chosen outputs are better than the model's own outputs.

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32, in [0, 2].

    References:
      D'Oosterlinck et al., "Anchored Preference Optimization and Contrastive Revisions", arXiv
      2408.06266 (eq. 7).
    """
    _check_beta(beta)
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    return masked_loss(jax.nn.sigmoid(-beta * a) + jax.nn.sigmoid(beta * b), where)


def apo_down(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    where: Where = None,
) -> Loss:
    """Anchored Preference Optimisation, down variant: lower chosen, lower rejected more.

    loss = σ(βa) + (1 - σ(β(a - b)))

    Use it when the chosen outputs are worse than the model's own outputs.

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32, in [0, 2].

    References:
      D'Oosterlinck et al., "Anchored Preference Optimization and Contrastive Revisions", arXiv
      2408.06266 (eq. 8).
    """
    _check_beta(beta)
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    return masked_loss(jax.nn.sigmoid(beta * a) + jax.nn.sigmoid(-beta * (a - b)), where)


def exo(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    epsilon: float | Float[ArrayLike, ""] = 1e-3,
    where: Where = None,
) -> Loss:
    """Efficient Exact Optimisation, pairwise form (TRL's loss_type="exo_pair").

    The reverse KL from the model's pair distribution p = (σ(βΔ), σ(-βΔ)) to the smoothed label
    distribution q = (1 - ε, ε):
      loss = σ(βΔ)·[logσ(βΔ) - log(1 - ε)] + σ(-βΔ)·[logσ(-βΔ) - log ε]

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      epsilon: ε in (0, 1), the label smoothing that keeps log ε finite (TRL's label_smoothing,
        which it replaces by 1e-3 when 0; here 0 is an error).
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32, ≥ 0 (zero when σ(βΔ) = 1 - ε).

    References:
      Ji et al., "Towards Efficient Exact Optimization of Language Model Alignment", arXiv
      2402.00856 (eq. 16).
    """
    _check_beta(beta)
    check_hparam("epsilon", epsilon, lambda v: 0.0 < v < 1.0, "in (0, 1)")
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    z = beta * (a - b)
    log_p, log_not_p = jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)
    return masked_loss(
        jnp.exp(log_p) * (log_p - jnp.log1p(-epsilon))
        + jnp.exp(log_not_p) * (log_not_p - jnp.log(epsilon)),
        where,
    )


def discopop(
    policy_chosen_logps: LogProbs,
    policy_rejected_logps: LogProbs,
    reference_chosen_logps: LogProbs,
    reference_rejected_logps: LogProbs,
    *,
    beta: float | Float[ArrayLike, ""] = 0.1,
    tau: float | Float[ArrayLike, ""] = 0.05,
    where: Where = None,
) -> Loss:
    """DiscoPOP (log-ratio modulated loss): a blend of the logistic and exponential losses.

    With z = βΔ and the mixing weight m = σ(z/τ):
      loss = (1 - m)·(-logσ(z)) + m·exp(-z)
    The exponential part is computed as exp(logσ(z/τ) - z), finite for τ ≤ 1 at any z.

    Args:
      policy_chosen_logps: summed log-probs of the chosen completions under the policy, [*B].
      policy_rejected_logps: the same for the rejected completions, [*B].
      reference_chosen_logps: summed log-probs of the chosen completions under the reference, [*B].
      reference_rejected_logps: the same for the rejected completions, [*B].
      beta: β > 0.
      tau: τ in (0, 1], the temperature of the mixing weight (TRL's discopop_tau, default 0.05).
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Chris Lu et al., "Discovering Preference Optimization Algorithms with and for Large Language
      Models", arXiv 2406.08414 (eq. 5).
    """
    _check_beta(beta)
    check_hparam("tau", tau, lambda v: 0.0 < v <= 1.0, "in (0, 1]")
    a, b = _log_ratios(
        policy_chosen_logps,
        policy_rejected_logps,
        reference_chosen_logps,
        reference_rejected_logps,
        where,
    )
    z = beta * (a - b)
    logistic = -jax.nn.log_sigmoid(z)
    return masked_loss(
        jax.nn.sigmoid(-z / tau) * logistic + jnp.exp(jax.nn.log_sigmoid(z / tau) - z), where
    )
