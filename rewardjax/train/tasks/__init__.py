"""Tasks by name (`config.task`): each a module with `layouts(config, train_kind, eval_kind)` and
`build(ctx) -> Task` (see `common`). `run` looks the task up here and stays task-agnostic."""

from types import ModuleType

from rewardjax.train.tasks import dpo, reward_model, rl, sft
from rewardjax.train.tasks.common import Context, Task, backbone_config, mean_metrics

__all__ = ["Context", "Task", "backbone_config", "get", "mean_metrics"]

_TASKS: dict[str, ModuleType] = {"reward_model": reward_model, "dpo": dpo, "sft": sft, "rl": rl}


def get(name: str) -> ModuleType:
    """The task module registered under `name`; ValueError listing the tasks otherwise."""
    try:
        return _TASKS[name]
    except KeyError:
        raise ValueError(f"config.task={name!r}: expected one of {tuple(_TASKS)}.") from None
