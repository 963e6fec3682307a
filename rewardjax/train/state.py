"""Train state and the optax optimiser built from a config.

The state is a plain pytree (params, optimiser state, step, RNG key) so that `jax.jit`, shardings
and orbax see it directly; the optimiser itself is static metadata. Learning-rate schedules follow
"SGDR: Stochastic Gradient Descent with Warm Restarts" (Loshchilov & Hutter, arXiv:1608.03983) for
the cosine decay after a linear warm-up; gradient accumulation uses `optax.MultiSteps`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

__all__ = ["TrainState", "make_optimizer", "make_schedule"]

_SCHEDULES = ("constant", "cosine", "linear")
_OPTIMIZERS = ("adamw", "adam", "sgd")


class TrainState(struct.PyTreeNode):
    """Everything a step reads and writes.

    Attributes:
      step: int32 scalar, number of optimiser updates applied (micro-steps under accumulation).
      params: model parameters (any pytree).
      opt_state: optimiser state for `tx`.
      rng: uint32 [2] PRNG key; steps fold the step number in, so the key itself never changes.
      tx: the optax transformation (static, not a leaf).
      extra: a task's own state that evolves with training and is checkpointed with it (e.g.
        the RL trainer's adaptive KL coefficient and Lagrange multipliers); `{}` when none.
    """

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    tx: optax.GradientTransformation = struct.field(pytree_node=False)
    extra: Any = struct.field(default_factory=dict)

    @classmethod
    def create(cls, *, params: Any, tx: optax.GradientTransformation, rng: jax.Array) -> TrainState:
        return cls(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng, tx=tx
        )

    def apply_gradients(self, grads: Any) -> TrainState:
        updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
        params = optax.apply_updates(self.params, updates)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state)


def make_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
    """Learning rate per optimiser update: linear warm-up to `learning_rate`, then the decay.

    `config` fields: learning_rate, schedule ('constant' | 'cosine' | 'linear'), warmup_steps,
    decay_steps (updates after warm-up over which to decay; cosine and linear decay to
    `end_learning_rate_factor * learning_rate`).
    """
    if config.schedule not in _SCHEDULES:
        raise ValueError(
            f"config.optimizer.schedule={config.schedule!r}: expected one of {_SCHEDULES}."
        )
    lr = config.learning_rate
    warmup = int(config.warmup_steps)
    if config.schedule == "constant":
        decay = optax.constant_schedule(lr)
    else:
        steps = max(int(config.decay_steps), 1)
        end = lr * config.end_learning_rate_factor
        if config.schedule == "cosine":
            decay = optax.cosine_decay_schedule(lr, steps, alpha=config.end_learning_rate_factor)
        else:
            decay = optax.linear_schedule(lr, end, steps)
    if warmup <= 0:
        return decay
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """The optax chain named by `config` (the `optimizer` section of an experiment config).

    Fields: name ('adamw' | 'adam' | 'sgd'), b1, b2, eps, weight_decay (adamw), momentum (sgd),
    grad_clip_norm (global-norm clipping, 0 disables), grad_accum_steps (k > 1 wraps the chain in
    `optax.MultiSteps`, so parameters change every k-th call with the mean of k gradients), plus
    the schedule fields of `make_schedule` (counted in parameter updates, not micro-steps).
    """
    if config.name not in _OPTIMIZERS:
        raise ValueError(f"config.optimizer.name={config.name!r}: expected one of {_OPTIMIZERS}.")
    if config.grad_accum_steps < 1:
        raise ValueError(
            f"config.optimizer.grad_accum_steps={config.grad_accum_steps}: must be >= 1."
        )
    schedule = make_schedule(config)
    if config.name == "adamw":
        opt = optax.adamw(
            schedule, b1=config.b1, b2=config.b2, eps=config.eps, weight_decay=config.weight_decay
        )
    elif config.name == "adam":
        opt = optax.adam(schedule, b1=config.b1, b2=config.b2, eps=config.eps)
    else:
        opt = optax.sgd(schedule, momentum=config.momentum or None)
    parts = [optax.clip_by_global_norm(config.grad_clip_norm)] if config.grad_clip_norm else []
    tx = optax.chain(*parts, opt)
    if config.grad_accum_steps > 1:
        tx = optax.MultiSteps(tx, every_k_schedule=config.grad_accum_steps)
        tx = tx.gradient_transformation()
    return tx
