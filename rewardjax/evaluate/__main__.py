"""Evaluate a reward source on a reward-model benchmark and write report.md:

    python -m rewardjax.evaluate --benchmark=rewardbench2|rmbench|judgebench --path=FILE \\
        --reward=gold|model [--model_workdir=DIR] --out=DIR

- `--reward=model`: the reward model trained in `--model_workdir` (a `configs/reward_model.py`
  run: its config.json and latest checkpoint), reading the run's tokenizer (`config.data.tokenizer`;
  prompts rendered as a user message with its chat template). A run on the synthetic task reads
  the benchmark's texts as the task's tokens (space-separated integers).
- `--reward=gold`: the synthetic task's gold reward (`rewards.GoldReward`) on a benchmark file
  written in the task's tokens; the task is that of `--model_workdir`'s config when given, else
  the default world of `configs/reward_model.py`.

The report holds the tables of the benchmark's paper (`evaluate.benchmarks.benchmark_tables`).
Errors in the input (a malformed item, a missing run) end with one `error: ...` line, exit 1.
"""

from __future__ import annotations

import json
import os
import sys

import ml_collections
from absl import app, flags

from rewardjax import parallel, rewards, train
from rewardjax.data import RecordError
from rewardjax.data.benchmarks import BENCHMARKS, read_benchmark
from rewardjax.evaluate import benchmarks as bench
from rewardjax.train.data import markov_task, tokenizer_from_config
from rewardjax.train.tasks import reward_model

_BENCHMARK = flags.DEFINE_enum("benchmark", None, BENCHMARKS, "The benchmark's file layout.")
_PATH = flags.DEFINE_string("path", None, "The benchmark file (JSONL, JSON array, Parquet).")
_REWARD = flags.DEFINE_enum("reward", "model", ("gold", "model"), "The reward source.")
_WORKDIR = flags.DEFINE_string(
    "model_workdir",
    None,
    "Work directory of a reward-model run (--reward=model; for gold, the "
    "run whose synthetic task to use).",
)
_OUT = flags.DEFINE_string("out", None, "Output folder for report.md.")
_BATCH = flags.DEFINE_integer("batch_size", 32, "Responses per forward pass.", lower_bound=1)
_MAX_LENGTH = flags.DEFINE_integer(
    "max_length", 0, "Truncate rows to this many tokens (0: keep whole rows).", lower_bound=0
)
_FORMAT = flags.DEFINE_enum(
    "prompt_format",
    "auto",
    ("auto", "chat", "plain"),
    "How a prompt is encoded: a user message with the chat template, or plain text (auto: plain "
    "for synthetic-task text, else chat).",
)
_SINGLE_GAME = flags.DEFINE_bool(
    "single_game", False, "JudgeBench: judge the original order only (default: both orders)."
)
_TRACEBACK = flags.DEFINE_bool("traceback", False, "Raise input errors with their traceback.")
flags.mark_flags_as_required(["benchmark", "path", "out"])


def _saved_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(
            f"--model_workdir={workdir!r} holds no config.json: give the work directory of a "
            "reward-model run (python -m rewardjax.main --config=configs/reward_model.py "
            "--workdir=DIR)"
        )
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))


def _reward_source(reward: str, workdir: str | None):
    """(reward function, tokenizer, prompt format, notes)."""
    if reward == "gold":
        config = _saved_config(workdir) if workdir else train.base_config("reward_model")
        if config.data.source != "synthetic":
            raise ValueError(
                f"--reward=gold is the synthetic task's gold reward, but the run in {workdir!r} "
                "trained on files; use --reward=model"
            )
        task = markov_task(config.data.synthetic)
        notes = {"reward": "gold (synthetic task)", "task seed": config.data.synthetic.seed}
        return (
            rewards.GoldReward(task),
            bench.SyntheticTextTokenizer(task.vocab_size),
            "plain",
            notes,
        )
    if not workdir:
        raise ValueError("--reward=model needs --model_workdir, the work directory of the run")
    config = _saved_config(workdir)
    mesh = parallel.mesh_from_config(config.mesh)
    rules = parallel.logical_rules(config.sharding_rules.to_dict())
    model, params = reward_model.load_trained(workdir, mesh, rules, field="--model_workdir")
    if config.data.source == "synthetic":
        tokenizer, fmt = bench.SyntheticTextTokenizer(config.data.synthetic.vocab_size), "plain"
    else:
        tokenizer, fmt = tokenizer_from_config(config.data), "chat"
    notes = {"reward": f"model ({workdir})", "head": config.head.name}
    return rewards.ModelReward(model, params), tokenizer, fmt, notes


def run(argv_flags=None) -> str:
    """Reads, scores and writes the report; returns its path."""
    del argv_flags
    records = read_benchmark(_BENCHMARK.value, _PATH.value)
    reward_fn, tokenizer, fmt, notes = _reward_source(_REWARD.value, _WORKDIR.value)
    result, run_notes = bench.evaluate_benchmark(
        _BENCHMARK.value,
        records,
        reward_fn,
        tokenizer=tokenizer,
        single_game=_SINGLE_GAME.value,
        prompt_format=fmt if _FORMAT.value == "auto" else _FORMAT.value,
        batch_size=_BATCH.value,
        max_length=_MAX_LENGTH.value or None,
    )
    notes = {"file": _PATH.value, **notes, **run_notes}
    path = bench.write_benchmark_report(_OUT.value, result, notes=notes)
    print(f"{_BENCHMARK.value}: score {100 * result.score:.1f} -> {path}")
    return path


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        run()
    except (RecordError, ValueError, FileNotFoundError) as e:
        if _TRACEBACK.value:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
