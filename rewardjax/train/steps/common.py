"""What every train step shares: batch and metric types, the weighted mean over real examples
(`rewardjax.numerics.weighted_mean`), the optimiser update with its metrics, and the per-example
view of packed batches (`rewardjax.data.packing`: per-example fields `[R, S, ...]`, one entry per
row and example slot, flattened to `[R * S, ...]` so that a loss sees one axis of examples)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from rewardjax.data.packing import is_packed
from rewardjax.numerics import weighted_mean  # re-exported: sum(x w) / sum(w), 0 when sum(w) = 0
from rewardjax.train.state import TrainState

__all__ = ["LogitsFn", "examples", "is_packed", "weighted_mean"]


Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]
# logits_fn(params, tokens [B, T], mask [B, T]) -> logits [B, T, V] (logits[:, t] scores token t+1);
# prefix-shared steps also pass branch_ids=[B, T] (Transformer's branch attention).
LogitsFn = Callable[[Any, Int[Array, "B T"], Int[Array, "B T"]], Float[Array, "B T V"]]


def examples(batch: Batch, x: jax.Array | None = None, *, key: str | None = None) -> jax.Array:
    """A per-example array of `batch` with one axis of examples in front.

    `x` (or `batch[key]`) is `[B, ...]` in a padded batch (returned as is) and `[R, S, ...]` in a
    packed one (rows, example slots), returned as `[R * S, ...]`.
    """
    x = batch[key] if x is None else x
    return x.reshape(-1, *x.shape[2:]) if is_packed(batch) else x


def packing_metrics(batch: Batch) -> Metrics:
    """`padding_fraction` (padding tokens / tokens computed) of a packed batch; {} if padded."""
    if not is_packed(batch):
        return {}
    return {"padding_fraction": jnp.mean((batch["segment_ids"] == 0).astype(jnp.float32))}


def mean_members(x: jax.Array, ndim: int = 1) -> jax.Array:
    """The mean over the leading members axis of an ensemble head's `[E, *batch]` output; `x`
    itself when it has only the `ndim` batch axes."""
    return x.mean(axis=0) if x.ndim > ndim else x


def apply_grads(state: TrainState, grads: Any, metrics: Metrics) -> tuple[TrainState, Metrics]:
    metrics["grad_norm"] = optax.global_norm(grads)
    new_state = state.apply_gradients(grads)
    metrics["param_norm"] = optax.global_norm(new_state.params)
    return new_state, metrics


def pair_metrics(r_c: jax.Array, r_r: jax.Array, weight: jax.Array) -> Metrics:
    return {
        "accuracy": weighted_mean((r_c > r_r).astype(jnp.float32), weight),
        "reward_margin": weighted_mean(r_c - r_r, weight),
        "reward_chosen": weighted_mean(r_c, weight),
        "reward_rejected": weighted_mean(r_r, weight),
    }


def objective_step(
    objective: Callable[..., tuple[jax.Array, Metrics]], state: TrainState, batch: Batch, **kwargs
) -> tuple[TrainState, Metrics]:
    """One optimiser step on `objective(params, batch, **kwargs) -> (loss, metrics)`."""
    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params, batch, **kwargs
    )
    return apply_grads(state, grads, {"loss": loss, **metrics})


def to_front(tokens: Int[Array, "*B T"], selected: Int[Array, "*B T"]) -> Int[Array, "*B T"]:
    """Each row's selected tokens moved to its front, in order (a stable sort on "not selected")."""
    return jnp.take_along_axis(tokens, jnp.argsort(~selected, axis=-1, stable=True), axis=-1)
