"""Array helpers shared by the evaluators: default weights; `as_float` and `weighted_mean` (0 when
every weight is 0) come from `rewardjax.numerics`."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from rewardjax.numerics import as_float, weighted_mean

__all__ = ["as_float", "weighted_mean", "weights_like"]


def weights_like(weight: ArrayLike | None, like: Array) -> Array:
    """Example weights broadcast to `like` in its dtype; None means all ones."""
    if weight is None:
        return jnp.ones(like.shape, like.dtype)
    return jnp.broadcast_to(jnp.asarray(weight, like.dtype), like.shape)
