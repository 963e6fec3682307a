"""Training: train state, pure steps, the loop, checkpoints, metric writers and experiments.

`run(config, workdir)` runs the experiment a config describes (`config.task` in `TASKS`): it is
what `python -m rewardjax.main --config=configs/<name>.py --workdir=DIR` calls.
"""

from rewardjax.train.checkpoint import Checkpointer, CheckpointError
from rewardjax.train.data import Data
from rewardjax.train.defaults import TASKS, base_config, smoke_overrides
from rewardjax.train.experiment import run
from rewardjax.train.loop import NonFiniteLossError, Preempted, fit
from rewardjax.train.metrics import MetricWriter, read_jsonl
from rewardjax.train.state import TrainState, make_optimizer, make_schedule
from rewardjax.train.steps import (
    completion_logps,
    dpo_step,
    kto_loss,
    kto_reference_logps,
    kto_step,
    mismatched_rows,
    multi_response_rows,
    ranked_loss,
    ranked_reward_model_step,
    rating_loss,
    rating_reward_model_step,
    reference_logps,
    reward_model_step,
    sft_step,
    weighted_mean,
)
from rewardjax.train.tasks import load_data

__all__ = [
    "TASKS",
    "CheckpointError",
    "Checkpointer",
    "Data",
    "MetricWriter",
    "NonFiniteLossError",
    "Preempted",
    "TrainState",
    "base_config",
    "completion_logps",
    "dpo_step",
    "fit",
    "kto_loss",
    "kto_reference_logps",
    "kto_step",
    "load_data",
    "make_optimizer",
    "make_schedule",
    "mismatched_rows",
    "multi_response_rows",
    "ranked_loss",
    "ranked_reward_model_step",
    "rating_loss",
    "rating_reward_model_step",
    "read_jsonl",
    "reference_logps",
    "reward_model_step",
    "run",
    "sft_step",
    "smoke_overrides",
    "weighted_mean",
]
