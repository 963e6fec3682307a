"""Pairwise and rating losses for reward models, on scalar scores.

Every loss is per example and unreduced: it returns the broadcast shape of its inputs, and the
caller reduces with explicit weights. Hyper-parameters are keyword-only. The pairwise losses take
`where=` [*B]: masked pairs get loss 0 and no gradient (masking equals slicing).

Papers:
- Bradley & Terry, "Rank Analysis of Incomplete Block Designs: I. The Method of Paired Comparisons",
  Biometrika 1952 (no arXiv id); used for reward models in Ouyang et al., "Training language models
  to follow instructions with human feedback", arXiv 2203.02155; margin from Touvron et al.,
  "Llama 2: Open Foundation and Fine-Tuned Chat Models", arXiv 2307.09288.
- Herbrich, Graepel & Obermayer, "Large Margin Rank Boundaries for Ordinal Regression", 2000 (no
  arXiv id).
- Thurstone, "A Law of Comparative Judgment", Psychological Review 1927 (no arXiv id).
- Eisenstein et al., "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate
  Reward Hacking", arXiv 2312.09244.
- Wang et al., "HelpSteer: Multi-attribute Helpfulness Dataset for SteerLM", arXiv 2311.09528.
- McCullagh, "Regression Models for Ordinal Data", JRSS B 1980 (no arXiv id).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real

from rewardjax.numerics import (
    as_float,
    check_hparam,
    log1mexp,
    masked_inputs,
    masked_loss,
    smoothed_logistic,
)


def bradley_terry(
    chosen: Float[ArrayLike, "*#B"],
    rejected: Float[ArrayLike, "*#B"],
    *,
    margin: float | Float[ArrayLike, "*#B"] = 0.0,
    label_smoothing: float | Float[ArrayLike, ""] = 0.0,
    where: Bool[ArrayLike, "*#B"] | None = None,
) -> Float[Array, "*B"]:
    """Bradley–Terry negative log-likelihood that `chosen` beats `rejected`.

    loss = -(1 - e)·logσ(c - r - m) - e·logσ(-(c - r - m))

    Args:
      chosen: scores of the preferred responses, shape [*B].
      rejected: scores of the dispreferred responses, broadcastable to [*B].
      margin: m, a required score gap, a scalar or per-example [*B] (e.g. Llama 2's preference
        strength).
      label_smoothing: e in [0, 1], the probability that a label is flipped.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Bradley & Terry 1952 (no arXiv id); Ouyang et al., "Training language models to follow
      instructions with human feedback", arXiv 2203.02155; margin: "Llama 2", arXiv 2307.09288.
    """
    check_hparam("label_smoothing", label_smoothing, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
    chosen, rejected, margin = masked_inputs(where, chosen, rejected, margin)
    return masked_loss(smoothed_logistic(chosen - rejected - margin, label_smoothing), where)


def hinge(
    chosen: Float[ArrayLike, "*#B"],
    rejected: Float[ArrayLike, "*#B"],
    *,
    margin: float | Float[ArrayLike, ""] = 1.0,
    where: Bool[ArrayLike, "*#B"] | None = None,
) -> Float[Array, "*B"]:
    """Pairwise hinge (ranking SVM) loss.

    loss = relu(m - (c - r))

    Args:
      chosen: scores of the preferred responses, shape [*B].
      rejected: scores of the dispreferred responses, broadcastable to [*B].
      margin: m, the score gap below which a pair is penalised.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Herbrich, Graepel & Obermayer, "Large Margin Rank Boundaries for Ordinal Regression", 2000
      (no arXiv id).
    """
    chosen, rejected = masked_inputs(where, chosen, rejected)
    return masked_loss(jax.nn.relu(margin - (chosen - rejected)), where)


def thurstone(
    chosen: Float[ArrayLike, "*#B"],
    rejected: Float[ArrayLike, "*#B"],
    *,
    scale: float | Float[ArrayLike, ""] = 1.0,
    where: Bool[ArrayLike, "*#B"] | None = None,
) -> Float[Array, "*B"]:
    """Thurstone (probit) negative log-likelihood that `chosen` beats `rejected`.

    loss = -log Φ((c - r) / s), Φ the standard normal CDF.

    Args:
      chosen: scores of the preferred responses, shape [*B].
      rejected: scores of the dispreferred responses, broadcastable to [*B].
      scale: s > 0, the standard deviation of the score difference noise.
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Thurstone, "A Law of Comparative Judgment", Psychological Review 1927 (no arXiv id).
    """
    check_hparam("scale", scale, lambda v: v > 0.0, "positive")
    chosen, rejected = masked_inputs(where, chosen, rejected)
    return masked_loss(-jax.scipy.special.log_ndtr((chosen - rejected) / scale), where)


def reward_centering(
    chosen: Float[ArrayLike, "*#B"],
    rejected: Float[ArrayLike, "*#B"],
    *,
    where: Bool[ArrayLike, "*#B"] | None = None,
) -> Float[Array, "*B"]:
    """Auxiliary term that pulls the scores of each pair towards zero mean.

    loss = (c + r)²   (add η·loss to a pairwise loss; η = 0.01 in the paper)

    Args:
      chosen: scores of the preferred responses, shape [*B].
      rejected: scores of the dispreferred responses, broadcastable to [*B].
      where: which examples take part, [*B] (default: all); the others get loss 0 and no
        gradient (masking equals slicing them away).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Eisenstein et al., "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate
      Reward Hacking", arXiv 2312.09244.
    """
    chosen, rejected = masked_inputs(where, chosen, rejected)
    return masked_loss(jnp.square(chosen + rejected), where)


def rating_regression(
    predicted: Float[ArrayLike, "*#B"],
    target: Float[ArrayLike, "*#B"],
) -> Float[Array, "*B"]:
    """Squared error between a predicted and a human rating (HelpSteer-style attribute regression).

    loss = (predicted - target)²

    For several attributes pass shape [*B, A]; the loss stays per attribute so that missing ratings
    can be weighted out by the caller.

    Args:
      predicted: predicted ratings, shape [*B].
      target: human ratings, broadcastable to [*B].

    Returns:
      Per-example (and per-attribute) loss, shape [*B], at least float32.

    References:
      Wang et al., "HelpSteer: Multi-attribute Helpfulness Dataset for SteerLM", arXiv 2311.09528.
    """
    return jnp.square(as_float(predicted) - as_float(target))


def categorical_rating(
    log_probs: Float[ArrayLike, "*B K"],
    rating: Real[ArrayLike, "*#B"],
    *,
    bin_values: Float[ArrayLike, " K"],
) -> Float[Array, "*B"]:
    """Negative log-likelihood of a rating under a categorical over K rating bins.

    loss = -log p_k*,  k* = argmin_k |v_k - rating|
    The rating counts for the bin whose value v_k is nearest (the lower one on a tie), so ratings
    on the bins' scale (e.g. 1..9) are matched exactly and others rounded to it. This trains the
    ordinal / distributional head's whole distribution, where `rating_regression` fits only its
    mean.

    Args:
      log_probs: log-probabilities over the K bins, shape [*B, K].
      rating: the observed rating, broadcastable to [*B].
      bin_values: the rating each bin stands for, shape [K] (the head's `bin_values`).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Ordinal Probabilistic Reward Model (OPRM), arXiv 2602.12660: a categorical over the
      nine-level rating scale, trained by its likelihood.
    """
    log_probs = as_float(log_probs)
    distance = jnp.abs(as_float(bin_values) - as_float(rating)[..., None])
    nearest = jnp.argmin(distance, axis=-1)  # first minimum: the lower bin on a tie
    return -jnp.take_along_axis(log_probs, nearest[..., None], axis=-1)[..., 0]


def ordinal(
    score: Float[ArrayLike, "*#B"],
    rating: Int[ArrayLike, "*#B"],
    *,
    cutpoints: Float[ArrayLike, "*#B C"],
) -> Float[Array, "*B"]:
    """Cumulative-link (proportional-odds, logit link) negative log-likelihood of an ordinal rating.

    With K classes 0..K-1 and increasing cutpoints θ_0 < ... < θ_{K-2}:
      P(y ≤ k) = σ(θ_k - s),  θ_{-1} = -∞, θ_{K-1} = +∞,
      loss = -log P(y = k) = -log[σ(θ_k - s) - σ(θ_{k-1} - s)].
    Computed stably as -[logσ(θ_k - s) + logσ(s - θ_{k-1}) + log(1 - exp(θ_{k-1} - θ_k))], where the
    terms that involve an infinite cutpoint are zero.

    Args:
      score: the model's latent score s, shape [*B].
      rating: the observed class in {0, ..., K-1}, integer, broadcastable to [*B].
      cutpoints: θ, strictly increasing along the last axis, shape [K-1] or [*B, K-1]. Learn them
        unconstrained as θ_0 + cumsum(softplus(u)) to keep them ordered.

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      McCullagh, "Regression Models for Ordinal Data", JRSS B 1980 (no arXiv id).
    """
    s = as_float(score)
    cut = as_float(cutpoints)
    num_cuts = cut.shape[-1]
    k = jnp.asarray(rating)
    s, k = jnp.broadcast_arrays(s, k)
    cut = jnp.broadcast_to(cut, (*s.shape, num_cuts))
    # Clipped gathers keep the unused boundary terms finite; `where` then zeroes them.
    upper = jnp.take_along_axis(cut, jnp.clip(k, 0, num_cuts - 1)[..., None], axis=-1)[..., 0]
    lower = jnp.take_along_axis(cut, jnp.clip(k - 1, 0, num_cuts - 1)[..., None], axis=-1)[..., 0]
    has_upper = k < num_cuts
    has_lower = k > 0
    gap = jnp.where(has_upper & has_lower, lower - upper, -1.0)
    log_p = (
        jnp.where(has_upper, jax.nn.log_sigmoid(upper - s), 0.0)
        + jnp.where(has_lower, jax.nn.log_sigmoid(s - lower), 0.0)
        + jnp.where(has_upper & has_lower, log1mexp(gap), 0.0)
    )
    return -log_p
