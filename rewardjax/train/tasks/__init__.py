"""Tasks by name (`config.task`): each a module with `layouts(config, train_kind, eval_kind)` and
`build(ctx) -> Task` (see `common`). `run` looks the task up here and stays task-agnostic."""

import dataclasses
from types import ModuleType

import ml_collections

from rewardjax import data as data_lib
from rewardjax.train.data import Data, read_data
from rewardjax.train.tasks import dpo, prm, reward_model, rl, sft
from rewardjax.train.tasks.common import Context, Task, backbone_config, mean_metrics

__all__ = ["Context", "Task", "backbone_config", "get", "load_data", "mean_metrics"]

_TASKS: dict[str, ModuleType] = {
    "reward_model": reward_model,
    "dpo": dpo,
    "sft": sft,
    "rl": rl,
    "prm": prm,
}


def get(name: str) -> ModuleType:
    """The task module registered under `name`; ValueError listing the tasks otherwise."""
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"config.task={name!r}: expected one of {tuple(_TASKS)}.") from None


def load_data(config: ml_collections.ConfigDict) -> Data:
    """The encoded data `config.data` describes, converted to the layouts its task trains and
    evaluates on (`layouts` of the task module; pairs convert where that makes sense). A task
    module with its own `read_data(config) -> Data` (prm: step records) reads its data itself."""
    if hasattr(get(config.task), "read_data"):
        return get(config.task).read_data(config)
    loaded = read_data(config)
    train_kind, eval_kind = get(config.task).layouts(
        config, loaded.train.kind, loaded.eval and loaded.eval.kind
    )
    field = f"config.task={config.task!r}" + (
        f" with config.loss.name={config.loss.name!r}" if "loss" in config else ""
    )
    convert = lambda dataset, kind: data_lib.convert(dataset, kind, field=field)
    return dataclasses.replace(
        loaded,
        train=convert(loaded.train, train_kind),
        eval=None if loaded.eval is None else convert(loaded.eval, eval_kind),
    )
