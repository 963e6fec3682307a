"""Reducing a per-token policy loss [B, T] to the scalar that is differentiated.

One function, `aggregate(loss, mask, mode)`, with the mode named explicitly: how tokens are
weighted against sequences changes the objective (long completions weigh more under a token mean;
a per-sequence length normalisation biases towards long wrong answers, Dr. GRPO's point).

In every mode only real tokens (mask 1) of rows with non-zero weight count, and a row with no real
token (an empty completion or a padding row) contributes neither to a numerator nor to a
denominator, so the result does not depend on padding width: extra masked columns or extra rows
with mask 0 (or weight 0) leave it unchanged, value and gradient. Whatever sits at a masked
position (NaN included) is never read. An all-masked batch gives 0 with a zero gradient.

Papers:
- Shao et al. 2024, "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
  Models", arXiv 2402.03300 (GRPO's `seq_mean_token_mean`).
- Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
  arXiv 2503.14476 (`token_mean`, the token-level policy-gradient loss).
- Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective",
  arXiv 2503.20783 (Dr. GRPO: `seq_mean_token_sum_norm`, a constant length normaliser).
"""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Shaped

from rewardjax.numerics import as_float, weighted_mean

__all__ = ["MODES", "aggregate"]

MODES = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum", "seq_mean_token_sum_norm")


def aggregate(
    loss: Float[ArrayLike, "B T"],
    mask: Shaped[ArrayLike, "B T"],
    mode: str,
    *,
    max_length: int | None = None,
    weights: Float[ArrayLike, " B"] | None = None,
) -> Float[Array, ""]:
    """Reduces a per-token loss to a scalar over the real tokens, in the named mode.

    With m_bt the mask, w_b the row weights (1 by default), n_b = Σ_t m_bt the real tokens of row
    b and R = {b : n_b > 0} the rows with at least one real token:
      token_mean:              Σ_b w_b Σ_t m_bt l_bt / Σ_b w_b n_b
      seq_mean_token_mean:     Σ_{b∈R} w_b (Σ_t m_bt l_bt / n_b) / Σ_{b∈R} w_b
      seq_mean_token_sum:      Σ_{b∈R} w_b (Σ_t m_bt l_bt) / Σ_{b∈R} w_b
      seq_mean_token_sum_norm: Σ_{b∈R} w_b (Σ_t m_bt l_bt / max_length) / Σ_{b∈R} w_b
    A zero denominator gives 0 (with a zero gradient).

    Args:
      loss: per-token loss [B, T], any float dtype (reduced in float32 or wider).
      mask: completion mask [B, T] (bool or int; non-zero = real token).
      mode: one of `MODES` (static under jit).
      max_length: the constant length normaliser of `seq_mean_token_sum_norm` (e.g. the
        generation budget max_new_tokens; static under jit); required by that mode, ignored by
        the others.
      weights: optional non-negative row weights [B]; weight 0 marks a padding row.

    Returns:
      The aggregated loss, a scalar, at least float32.

    Raises:
      ValueError: unknown `mode`, a missing or non-positive `max_length`, or mismatched shapes.

    References:
      Yu et al. 2025, "DAPO", arXiv 2503.14476 (token_mean); Shao et al. 2024, "DeepSeekMath",
      arXiv 2402.03300 (seq_mean_token_mean); Liu et al. 2025, "Understanding R1-Zero-Like
      Training: A Critical Perspective", arXiv 2503.20783 (seq_mean_token_sum_norm).
    """
    if mode not in MODES:
        raise ValueError(f"unknown aggregation mode {mode!r}; known modes: {', '.join(MODES)}.")
    loss = as_float(loss)
    if loss.ndim != 2:
        raise ValueError(f"loss must have shape [B, T]; got shape {loss.shape}.")
    mask = jnp.asarray(mask)
    if mask.shape != loss.shape:
        raise ValueError(f"mask has shape {mask.shape}; expected {loss.shape} like loss.")
    mask = mask.astype(bool)
    if weights is None:
        w = jnp.ones(loss.shape[:1], loss.dtype)
    else:
        w = as_float(weights).astype(loss.dtype)
        if w.shape != loss.shape[:1]:
            raise ValueError(f"weights has shape {w.shape}; expected ({loss.shape[0]},).")
    if mode == "seq_mean_token_sum_norm" and (max_length is None or max_length <= 0):
        raise ValueError(
            f"mode 'seq_mean_token_sum_norm' needs max_length > 0 (Dr. GRPO's constant length, "
            f"e.g. max_new_tokens); got max_length={max_length!r}."
        )

    safe = jnp.where(mask, loss, 0.0)
    if mode == "token_mean":
        return weighted_mean(safe, mask * w[:, None])
    count = jnp.sum(mask, axis=-1)
    row_sum = jnp.sum(safe, axis=-1)
    if mode == "seq_mean_token_mean":
        per_row = row_sum / jnp.maximum(count, 1)
    elif mode == "seq_mean_token_sum":
        per_row = row_sum
    else:
        per_row = row_sum / max_length
    return weighted_mean(per_row, jnp.where(count > 0, w, 0.0))
