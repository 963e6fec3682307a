"""`run(config, workdir)`: the experiment a config describes, built by its task and trained by
`fit`.

`config.task` names a module of `rewardjax.train.tasks` ("reward_model", "dpo", "sft", ...): it
chooses the batch layouts, builds the model, its parameters, the step and the evaluation. `run`
does what every task shares: the mesh and logical-axis rules, the data, the optimiser and train
state, the loop, and the run's summary.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from rewardjax import data as data_lib
from rewardjax import parallel
from rewardjax.train import tasks
from rewardjax.train.loop import fit
from rewardjax.train.metrics import read_jsonl
from rewardjax.train.state import TrainState, make_optimizer

__all__ = ["run"]


def _resolved_optimizer(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    opt = ml_collections.ConfigDict(config.optimizer.to_dict())
    if opt.decay_steps is None:
        updates = config.train.num_steps // opt.grad_accum_steps
        opt.decay_steps = max(updates - opt.warmup_steps, 1)
    return opt


def _save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def _check_config(config: ml_collections.ConfigDict) -> None:
    t = config.train
    for name in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
        if t[name] < 1:
            raise ValueError(f"config.train.{name}={t[name]} must be >= 1.")


def _summary(workdir: str, step: int) -> dict[str, Any]:
    """The last train and eval metrics of `metrics.jsonl` (read by the primary only: the others
    may read while the primary still writes)."""
    summary: dict[str, Any] = {"step": step, "workdir": os.path.abspath(workdir)}
    if jax.process_index() != 0:
        return summary
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    train_records = [r for r in records if "loss" in r]
    eval_records = [r for r in records if any(k.startswith("eval/") for k in r)]
    if train_records:
        summary["train"] = train_records[-1]
    if eval_records:
        summary["eval"] = {k[5:]: v for k, v in eval_records[-1].items() if k.startswith("eval/")}
    return summary


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains and evaluates the experiment `config` describes, in `workdir` (resuming there).

    Writes `config.json` (the resolved config), `checkpoints/`, `metrics.jsonl` and
    `tensorboard/` (train metrics, and eval metrics under `eval/`), and whatever the task writes
    at the end (e.g. a reward model's `report.md` with its plots).

    Returns:
      A summary: final train metrics under "train", evaluation metrics under "eval", and the
      task's own entries (e.g. the report's path under "report").
    """
    task = tasks.get(config.task)
    _check_config(config)
    if jax.process_index() == 0:  # multi-host: the primary writes the files of the run
        _save_config(config, workdir)
    mesh = parallel.mesh_from_config(config.mesh)
    rules = parallel.logical_rules(config.sharding_rules.to_dict())
    backbone = tasks.backbone_config(config)
    loaded = tasks.load_data(config)
    if loaded.tokenizer is not None:
        data_lib.check_vocab(
            loaded.vocab_size, backbone.vocab_size, tokenizer=config.data.tokenizer
        )
    else:
        vocab = config.data.synthetic.vocab_size
        field = "config.data.synthetic.vocab_size"
        data_lib.check_vocab(
            loaded.vocab_size, backbone.vocab_size, tokenizer=str(vocab), field=field
        )
    init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))
    ctx = tasks.Context(config, workdir, loaded, mesh, rules, backbone, init_key)
    built = task.build(ctx)
    tx = make_optimizer(_resolved_optimizer(config))
    opt_state, opt_sh = parallel.sharded_optimizer_init(tx, built.params, built.shardings, mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = TrainState(
        step=jax.device_put(jnp.zeros((), jnp.int32), replicated),
        params=built.params,
        opt_state=opt_state,
        rng=jax.device_put(state_key, replicated),
        tx=tx,
        extra=jax.device_put(built.extra, replicated),
    )
    state_sh = TrainState(
        step=replicated,
        params=built.shardings,
        opt_state=opt_sh,
        rng=replicated,
        tx=tx,
        extra=jax.tree.map(lambda _: replicated, built.extra),
    )
    t = config.train
    batches = data_lib.batches(built.train, global_batch_size=t.batch_size, seed=config.seed)
    state = fit(
        state,
        built.step_fn,
        iter(batches),
        workdir=workdir,
        num_steps=t.num_steps,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every,
        max_to_keep=t.max_to_keep,
        stop_at_step=t.stop_at_step,
        batch_fn=built.batch_fn,
        eval_fn=built.eval_fn,
        eval_every=t.eval_every,
        eval_at_end=built.finish is None,
        mesh=mesh,
        rules=rules,
        state_sharding=state_sh,
        progress_bar=t.progress_bar,
        jit=built.jit,
    )
    step = int(state.step)
    extra: dict[str, Any] = {}
    if built.finish is not None and step == t.num_steps:
        local = state.replace(params=parallel.host_local(state.params))  # on every process
        if jax.process_index() == 0:
            extra = built.finish(local)
    summary = {**_summary(workdir, step), **extra}
    logging.info("Finished %s at step %d in %s.", config.task, step, summary["workdir"])
    return summary
