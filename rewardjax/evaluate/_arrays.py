"""Array helpers shared by the evaluators: default weights, weighted means (and float promotion)."""

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from rewardjax.losses._numerics import as_float

__all__ = ["as_float", "weighted_mean", "weights_like"]


def weights_like(weight: ArrayLike | None, like: Array) -> Array:
    """Example weights broadcast to `like` in its dtype; None means all ones."""
    if weight is None:
        return jnp.ones(like.shape, like.dtype)
    return jnp.broadcast_to(jnp.asarray(weight, like.dtype), like.shape)


def weighted_mean(
    x: Float[ArrayLike, " B"], weight: Float[ArrayLike, " B"] | None = None
) -> Float[Array, ""]:
    """Σ_i w_i x_i / Σ_i w_i (NaN when every weight is 0); `weight=None` is the plain mean."""
    x = as_float(x)
    w = weights_like(weight, x)
    return jnp.sum(w * x) / jnp.sum(w)
