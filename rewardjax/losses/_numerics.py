"""Shared numerics for the losses: dtype promotion, stable log1mexp, smoothed logistic loss."""

import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


def as_float(x: ArrayLike) -> Array:
    """Returns `x` with at least float32 precision (bfloat16 is promoted, float64 is kept)."""
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def log1mexp(x: Float[ArrayLike, "*B"]) -> Float[Array, "*B"]:
    """Computes log(1 - exp(x)) for x < 0 without cancellation.

    Uses log(-expm1(x)) for x > -log 2 and log1p(-exp(x)) otherwise (Mächler, "Accurately computing
    log(1 - exp(-|a|))", CRAN Rmpfr vignette, 2012; no arXiv id). Each branch sees only inputs where
    it is finite, so the unselected branch never puts a NaN into the gradient.
    """
    x = as_float(x)
    near_zero = x > -jnp.log(2.0)
    # -1.0 is a harmless stand-in on the side of the branch that is not used.
    return jnp.where(
        near_zero,
        jnp.log(-jnp.expm1(jnp.where(near_zero, x, -1.0))),
        jnp.log1p(-jnp.exp(jnp.where(near_zero, -1.0, x))),
    )


def smoothed_logistic(z: Float[Array, "*B"], label_smoothing: float | Array) -> Float[Array, "*B"]:
    """Returns -(1 - e)·logσ(z) - e·logσ(-z): the logistic loss against the soft label 1 - e."""
    e = label_smoothing
    return -(1.0 - e) * jax.nn.log_sigmoid(z) - e * jax.nn.log_sigmoid(-z)


def check_hparam(
    name: str, value: object, valid: Callable[[float], bool], requirement: str
) -> None:
    """Raises ValueError naming `name` when a Python-number hyper-parameter fails `valid`.

    Traced or array values are not checked (they cannot be inspected under `jit`).
    """
    if isinstance(value, numbers.Real) and not valid(float(value)):
        raise ValueError(f"{name}={value!r} is invalid: it must be {requirement}.")
