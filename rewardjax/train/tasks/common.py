"""What every task shares: the `Context` a task is built from and the `Task` it returns to `run`.

A task module (`reward_model`, `dpo`, `sft`, `rl`) has two functions:

- `layouts(config, train_kind, eval_kind) -> (train layout, eval layout)`: the batch layouts it
  trains and evaluates on, given the kinds of records the data holds;
- `build(ctx) -> Task`: the model, its (sharded) parameters, the pure step, the optional
  per-batch function (e.g. reference log-probs) and the evaluation, for `fit`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import jax
import ml_collections
import numpy as np

from rewardjax import data as data_lib
from rewardjax import parallel
from rewardjax.models import TransformerConfig, get_preset
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.data import Data
from rewardjax.train.state import TrainState

__all__ = ["Context", "Task", "backbone_config", "mean_metrics"]

Batch = Mapping[str, Any]


def backbone_config(config: ml_collections.ConfigDict) -> TransformerConfig:
    """The transformer `config.model` describes: a preset with the fields that are set replaced."""
    m = config.model
    shape = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")
    overrides = {k: m[k] for k in shape if m[k] is not None}
    return get_preset(
        m.preset,
        dtype=m.dtype,
        param_dtype=m.param_dtype,
        remat=m.remat,
        attention=m.attention,
        **overrides,
    )


@dataclasses.dataclass(frozen=True)
class Context:
    """What a task is built from.

    Attributes:
      config: the experiment config.
      workdir: the run's directory (checkpoints, metrics, reports).
      data: the encoded train / eval sets in the task's layouts.
      mesh, rules: where parameters and batches live (`rules`: logical axis -> mesh axes).
      backbone: the transformer of `config.model`.
      init_key: the key parameters are initialised from.
    """

    config: ml_collections.ConfigDict
    workdir: str
    data: Data
    mesh: jax.sharding.Mesh
    rules: parallel.Rules
    backbone: TransformerConfig
    init_key: jax.Array

    def example_tokens(self, length: int | None = None) -> jax.Array:
        """A `[batch_size, length]` int32 batch of ones (for `init`), length the data's longest."""
        length = length or self.data.train.max_length
        return np.ones((self.config.train.batch_size, length), np.int32)

    def init(self, model: Any, *args: Any) -> tuple[Any, Any]:
        """`(params, shardings)` of `model.init(*args)`, created on their shards; replaced by the
        run in `config.init_from` when set (the same kind of model)."""
        params, shardings = parallel.sharded_init(
            model.init, *args, mesh=self.mesh, rules=self.rules
        )
        if self.config.init_from:
            params = self.checkpointer_from().restore_params(params)
        return params, shardings

    def checkpointer_from(self) -> Checkpointer:
        """The checkpoints of the run in `config.init_from`."""
        return Checkpointer(f"{self.config.init_from}/checkpoints")

    def eval_batches(self) -> Iterator[Batch]:
        """One pass over the eval set on this process alone (process 0 evaluates on host copies)."""
        return iter(
            data_lib.batches(
                self.data.eval,
                global_batch_size=self.config.eval.batch_size,
                seed=None,
                num_epochs=1,
                shard_index=0,
                shard_count=1,
            )
        )


@dataclasses.dataclass(frozen=True)
class Task:
    """What `run` trains: `fit(state(params), step_fn, batches of train, ...)`.

    Attributes:
      model: the Flax model (or implicit reward) whose parameters are trained.
      params, shardings: its initial parameters and their shardings.
      step_fn: pure `(state, batch, rng) -> (state, metrics)`.
      train: the dataset the training batches are drawn from.
      batch_fn: applied to each sharded batch before the step (e.g. reference log-probs).
      eval_fn: `state -> metrics` on host copies (None: no evaluation).
      finish: called on process 0 with the final state (host copies of the parameters) once the
        last step is reached; returns extra summary entries (e.g. the report's path). A task
        with `finish` evaluates there: the loop's final evaluation is skipped.
      extra: the initial `TrainState.extra` (replicated; e.g. controller states).
      jit: the loop jits `step_fn`; False for a step that jits its own parts (RL).
    """

    model: Any
    params: Any
    shardings: Any
    step_fn: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, dict]]
    train: data_lib.EncodedDataset
    batch_fn: Callable[[Batch], Batch] | None = None
    eval_fn: Callable[[TrainState], Mapping[str, float]] | None = None
    finish: Callable[[TrainState], dict[str, Any]] | None = None
    extra: Any = dataclasses.field(default_factory=dict)
    jit: bool = True


def mean_metrics(
    loss_fn: Callable[[Any, Batch], tuple[jax.Array, Mapping[str, jax.Array]]],
    params: Any,
    batches: Iterable[Batch],
    *,
    batch_fn: Callable[[Batch], Batch] | None = None,
) -> dict[str, float]:
    """`loss_fn(params, batch) -> (loss, metrics)` averaged over `batches`, each batch weighted by
    the sum of its `weight` (the step's metrics are already means over real examples).

    `loss_fn` and `batch_fn` (e.g. reference log-probs) should be jitted; `batch_fn` runs first.
    """
    totals: dict[str, float] = {}
    count = 0.0
    for batch in batches:
        w = float(np.sum(batch["weight"]))
        batch = batch if batch_fn is None else batch_fn(batch)
        loss, metrics = jax.device_get(loss_fn(params, batch))
        for key, value in {"loss": loss, **metrics}.items():
            totals[key] = totals.get(key, 0.0) + w * float(value)
        count += w
    return {key: total / max(count, 1.0) for key, total in totals.items()}
