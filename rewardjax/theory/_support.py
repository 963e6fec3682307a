"""Shared numerics for the theory package: log-probabilities on a support, bisection."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float


def support_log_probs(probs: Float[Array, "*batch Y"]) -> Float[Array, "*batch Y"]:
    """log p with -inf (and a zero gradient) where p = 0."""
    positive = probs > 0
    return jnp.where(positive, jnp.log(jnp.where(positive, probs, 1.0)), -jnp.inf)


def support_max(
    probs: Float[Array, "*batch Y"], rewards: Float[Array, "*batch Y"]
) -> Float[Array, "*batch"]:
    """max of the rewards over the outcomes with positive probability."""
    return jnp.max(jnp.where(probs > 0, rewards, -jnp.inf), axis=-1)


def support_min(
    probs: Float[Array, "*batch Y"], rewards: Float[Array, "*batch Y"]
) -> Float[Array, "*batch"]:
    """min of the rewards over the outcomes with positive probability."""
    return jnp.min(jnp.where(probs > 0, rewards, jnp.inf), axis=-1)


def bisect_increasing(
    fn: Callable[[Array], Array],
    target: Array,
    lo: Array,
    hi: Array,
    *,
    num_iters: int = 64,
) -> Array:
    """Solves fn(u) = target elementwise for fn increasing on [lo, hi], by fixed-count bisection.

    A fixed iteration count keeps it jittable and vmappable; 64 halvings of any float32 bracket
    reach adjacent floats. Returns the bracket's midpoint (clamped to [lo, hi] if no root).
    """

    def body(_, bounds):
        low, high = bounds
        mid = 0.5 * (low + high)
        below = fn(mid) < target
        return jnp.where(below, mid, low), jnp.where(below, high, mid)

    lo, hi = jnp.broadcast_arrays(lo, hi, target)[:2]
    low, high = jax.lax.fori_loop(0, num_iters, body, (lo, hi))
    return 0.5 * (low + high)


def concrete_or_none(*arrays) -> list[np.ndarray] | None:
    """NumPy copies of the arrays when all are concrete, None under a jax transformation."""
    try:
        return [np.asarray(a) for a in arrays]
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
