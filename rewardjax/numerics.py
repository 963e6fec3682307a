"""Shared numerics of the pure layer: float promotion, weighted means, stable log1mexp, the smoothed
logistic loss and hyper-parameter checks.

Layer 1 (pure math): `losses`, `kl`, `transforms`, `bon`, `theory`, and the layers above (`train`,
`evaluate`) import these; this module imports only jax and jaxtyping.

Papers:
- Mächler, "Accurately computing log(1 - exp(-|a|))", CRAN Rmpfr vignette, 2012 (no arXiv id).
"""

import numbers
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Shaped

__all__ = [
    "as_float",
    "check_hparam",
    "log1mexp",
    "masked_inputs",
    "masked_loss",
    "smoothed_logistic",
    "weighted_mean",
]


def as_float(x: ArrayLike | Sequence[float]) -> Array:
    """Returns `x` with at least float32 precision (bfloat16 is promoted, float64 is kept).

    Integers and booleans become float32 (float64 when x64 is enabled and `x` is 64-bit); a
    sequence of numbers becomes an array.
    """
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def weighted_mean(
    x: Shaped[ArrayLike, "*#B"], weight: Shaped[ArrayLike, "*#B"] | None = None
) -> Float[Array, ""]:
    """The weighted mean of `x`; 0 (with a zero gradient) when every weight is 0.

    mean = Σ_i w_i x_i / Σ_i w_i   if Σ_i w_i ≠ 0,   else 0

    Weight 0 marks an example that does not count (the padding that fills a last batch), so a batch
    of padding only contributes neither loss nor gradient. Fractional weights are exact (no floor
    on the denominator). Reductions run in float32 or wider.

    Args:
      x: values, shape [*B], any real dtype.
      weight: non-negative example weights broadcastable to [*B] (bool, int or float); None weighs
        all equally (the plain mean).

    Returns:
      The weighted mean, a scalar, at least float32.
    """
    x = as_float(x)
    w = jnp.ones(x.shape, x.dtype) if weight is None else jnp.asarray(weight).astype(x.dtype)
    w = jnp.broadcast_to(w, x.shape)
    total = jnp.sum(w)
    nonzero = total != 0
    # The unused branch divides by 1, so neither value nor gradient is ever NaN.
    return jnp.where(nonzero, jnp.sum(w * x) / jnp.where(nonzero, total, 1.0), 0.0)


def masked_inputs(
    where: Bool[ArrayLike, "*#B"] | None, *xs: Float[ArrayLike, "*#B"], fill: float = 0.0
) -> list[Array]:
    """The inputs of a per-example loss, at least float32, with masked-out entries set to `fill`.

    x'_i = x_i where where_i, else fill   (broadcast to where's shape)

    Padding may hold anything (-inf log-probs, zero lengths, NaN); replacing it by a harmless
    constant before the loss keeps the loss and its gradient finite there, so `masked_loss` can
    zero them exactly. `where=None` only promotes the inputs.
    """
    if where is None:
        return [as_float(x) for x in xs]
    keep = jnp.asarray(where, bool)
    return [jnp.where(keep, as_float(x), fill) for x in xs]


def masked_loss(
    loss: Float[Array, "*B"], where: Bool[ArrayLike, "*#B"] | None
) -> Float[Array, "*B"]:
    """`loss` with the masked-out examples set to 0 (the `where=` convention of the losses: a
    masked example contributes 0 loss and 0 gradient, so masking equals slicing it away)."""
    return loss if where is None else jnp.where(jnp.asarray(where, bool), loss, 0.0)


def log1mexp(x: Float[ArrayLike, "*#B"]) -> Float[Array, "*B"]:
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
