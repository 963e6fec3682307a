"""Entry point: `python -m rewardjax.main --config=configs/<name>.py[:arg] --workdir=DIR`.

Overrides: `--config.optimizer.learning_rate=3e-4` (the config is locked: a misspelt field fails).
The work directory holds checkpoints, metrics (JSONL + TensorBoard) and the resolved config;
rerunning with the same `--workdir` resumes from the latest checkpoint.
"""

from __future__ import annotations

import logging as std_logging
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from rewardjax import train

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/<name>.py[:arg]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and reports.")
flags.mark_flags_as_required(["config", "workdir"])

# Libraries whose INFO records (one per checkpoint file written) would drown the run's own log.
_QUIET = ("/orbax/", "/grain/")


class _QuietLibraries(std_logging.Filter):
    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.WARNING or not any(
            part in record.pathname for part in _QUIET
        )


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.get_absl_handler().addFilter(_QuietLibraries())
    config = _CONFIG.value
    logging.info("Config:\n%s", config)
    try:
        summary = train.run(config, _WORKDIR.value)
    except train.NonFiniteLossError as e:
        sys.exit(f"error: {e}")
    except train.Preempted as e:
        logging.warning("%s", e)
        sys.exit(143)
    print(f"Finished {config.task}: step {summary['step']}, work directory {summary['workdir']}")
    if "eval" in summary:
        keys = ("accuracy", "gold_pair_accuracy", "gold_spearman", "nll")
        print(
            "Eval: "
            + ", ".join(f"{k} {summary['eval'][k]:.4f}" for k in keys if k in summary["eval"])
        )
    if "report" in summary:
        print(f"Report: {summary['report']}")


if __name__ == "__main__":
    app.run(main)
