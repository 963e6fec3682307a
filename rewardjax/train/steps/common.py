"""What every train step shares: batch and metric types, the weighted mean over real examples
(`rewardjax.numerics.weighted_mean`), the optimiser update with its metrics."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from rewardjax.numerics import weighted_mean  # re-exported: sum(x w) / sum(w), 0 when sum(w) = 0
from rewardjax.train.state import TrainState

__all__ = ["LogitsFn", "weighted_mean"]


Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]
# logits_fn(params, tokens [B, T], mask [B, T]) -> logits [B, T, V] (logits[:, t] scores token t+1);
# prefix-shared steps also pass branch_ids=[B, T] (Transformer's branch attention).
LogitsFn = Callable[[Any, Int[Array, "B T"], Int[Array, "B T"]], Float[Array, "B T V"]]


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
