"""Listwise losses for reward models that score K responses to the same prompt.

Papers:
- Plackett, "The Analysis of Permutations", JRSS C 1975 (no arXiv id); Xia et al., "Listwise
  Approach to Learning to Rank: Theory and Algorithm" (ListMLE), ICML 2008 (no arXiv id); used for
  language models in Rafailov et al., "Direct Preference Optimization", arXiv 2305.18290 (app. A.3).
- Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach" (ListNet), ICML 2007
  (no arXiv id); Song et al., "Preference Ranking Optimization for Human Alignment",
  arXiv 2306.17492.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from rewardjax.numerics import as_float


def plackett_luce(
    scores: Float[ArrayLike, "*B K"],
    *,
    where: Bool[ArrayLike, "*#B K"] | None = None,
) -> Float[Array, "*B"]:
    """Plackett–Luce negative log-likelihood of a full ranking, best first.

    loss = -Σ_k [s_k - logsumexp(s_k, ..., s_K)]

    Masked-out entries are removed from the ranking (the result equals slicing them away); the
    remaining entries keep their order. With K = 2 this is `bradley_terry(s_1, s_2)`.

    Args:
      scores: scores ordered from most to least preferred along the last axis, shape [*B, K].
      where: which entries take part, shape [*B, K] (default: all).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Plackett, "The Analysis of Permutations", 1975 (no arXiv id); ListMLE, Xia et al. 2008 (no
      arXiv id); Rafailov et al., "Direct Preference Optimization", arXiv 2305.18290.
    """
    s = as_float(scores)
    num = s.shape[-1]
    valid = jnp.ones(s.shape, bool) if where is None else jnp.broadcast_to(where, s.shape)
    later = jnp.arange(num)[None, :] >= jnp.arange(num)[:, None]  # [K, K]: j ≥ k
    # Row k sums over the valid j ≥ k; the diagonal is always kept so no row is empty (an empty
    # logsumexp is -inf and would put NaN into the gradient of a masked-out term).
    include = (later & valid[..., None, :]) | jnp.eye(num, dtype=bool)
    tail = jax.nn.logsumexp(
        jnp.broadcast_to(s[..., None, :], include.shape), axis=-1, where=include
    )
    return -jnp.sum(jnp.where(valid, s - tail, 0.0), axis=-1)


def listwise_softmax(
    scores: Float[ArrayLike, "*B K"],
    best_index: Int[ArrayLike, "*B"],
    *,
    where: Bool[ArrayLike, "*#B K"] | None = None,
) -> Float[Array, "*B"]:
    """Cross-entropy of the best response among K (softmax over the valid responses).

    loss = logsumexp_{j valid}(s_j) - s_best

    Args:
      scores: one score per response, shape [*B, K].
      best_index: index of the preferred response, integer, shape [*B]; it must be a valid entry.
      where: which responses take part, shape [*B, K] (default: all).

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Cao et al., "Learning to Rank: From Pairwise Approach to Listwise Approach", ICML 2007
      (no arXiv id); Song et al., "Preference Ranking Optimization for Human Alignment",
      arXiv 2306.17492.
    """
    s = as_float(scores)
    best = jnp.take_along_axis(s, jnp.asarray(best_index)[..., None], axis=-1)[..., 0]
    valid = None if where is None else jnp.broadcast_to(where, s.shape)
    return jax.nn.logsumexp(s, axis=-1, where=valid) - best
