"""Sequence log-probabilities from logits, and the DPO implicit reward.

Paper: Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model", arXiv 2305.18290 (the implicit reward β·log π/ref).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from rewardjax.numerics import as_float


def sequence_logprobs(
    logits: Float[ArrayLike, "*B T V"],
    tokens: Int[ArrayLike, "*B T"],
    where: Bool[ArrayLike, "*B T"] | None = None,
    *,
    average: bool = False,
) -> Float[Array, "*B"]:
    """Summed (or averaged) log-probs of `tokens` under `logits`, over the positions in `where`.

    log p_t = logits[t, tokens_t] - logsumexp_v logits[t, v]   (in float32 or wider)
    result = Σ_t where_t·log p_t   (divided by Σ_t where_t when `average`)

    `logits[..., t, :]` must be the scores for `tokens[..., t]`: for a causal model pass
    `logits[:, :-1]` and `tokens[:, 1:]`. Masked positions may hold any token id (e.g. -100).

    Args:
      logits: unnormalised next-token scores, shape [*B, T, V], any float dtype.
      tokens: token ids, shape [*B, T].
      where: completion mask, shape [*B, T] (default: every position).
      average: divide by the number of positions in `where` (0 when there are none).

    Returns:
      Per-sequence log-probs, shape [*B], at least float32.

    References:
      Rafailov et al., "Direct Preference Optimization", arXiv 2305.18290 (summed log-probs);
      Hong et al., "ORPO", arXiv 2403.07691 and Meng et al., "SimPO", arXiv 2405.14734 (averaged).
    """
    logits = as_float(logits)
    tokens = jnp.asarray(tokens)
    mask = jnp.ones(tokens.shape, bool) if where is None else jnp.broadcast_to(where, tokens.shape)
    safe_tokens = jnp.where(mask, tokens, 0)
    picked = jnp.take_along_axis(logits, safe_tokens[..., None], axis=-1)[..., 0]
    token_logps = picked - jax.nn.logsumexp(logits, axis=-1)
    total = jnp.sum(jnp.where(mask, token_logps, 0.0), axis=-1)
    if not average:
        return total
    count = jnp.sum(mask, axis=-1)
    return total / jnp.maximum(count, 1)


def implicit_reward(
    policy_logps: Float[ArrayLike, "*B"],
    reference_logps: Float[ArrayLike, "*B"],
    *,
    beta: float | Float[ArrayLike, ""],
) -> Float[Array, "*B"]:
    """The DPO implicit reward of a completion.

    r = β·(π - ref)

    Args:
      policy_logps: summed log-probs of the completions under the policy, [*B].
      reference_logps: summed log-probs of the completions under the reference, [*B].
      beta: β > 0.

    Returns:
      Per-example reward, shape [*B], at least float32.

    References:
      Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward
      Model", arXiv 2305.18290 (section 5).
    """
    return beta * (as_float(policy_logps) - as_float(reference_logps))
