"""Entry point: `python -m rewardjax.main --config=configs/<name>.py[:arg] --workdir=DIR`.

Overrides: `--config.optimizer.learning_rate=3e-4` (the config is locked: a misspelt field fails).
The work directory holds checkpoints, metrics (JSONL + TensorBoard) and the resolved config;
rerunning with the same `--workdir` resumes from the latest checkpoint.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rewardjax import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/<name>.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    logging.info("Config:\n%s", config)
    try:
        train.run(config, _WORKDIR.value)
    except train.NonFiniteLossError as e:
        sys.exit(f"error: {e}")
    except train.Preempted as e:
        logging.warning("%s", e)
        sys.exit(143)


if __name__ == "__main__":
    app.run(main)
