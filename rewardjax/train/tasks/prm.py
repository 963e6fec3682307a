"""Task "prm": a process reward model trained on step labels, or an implicit PRM on outcomes.

`config.loss.name` picks the model (`losses.spec(name).inputs`):

- "step_cross_entropy" (scores): a `models.ProcessRewardModel` (backbone + linear head at every
  position) trained per step, soft or binary targets, on the logits gathered at the step ends:
  loss = Σ_{b,s} w_b m_bs CE(z_bs, y_bs) / Σ_{b,s} w_b m_bs.
- "implicit_prm_outcome_loss" (log-probs): a `models.ImplicitPRM` — a causal LM trained on the
  outcome label of each solution only (its last step's target) against the frozen initial
  weights as the reference (Yuan et al. 2024, "Free Process Rewards without Process Labels",
  arXiv 2412.01981); step scores q_k = β Σ_{t ≤ end of step k} log π/π_ref.

Data (`read_data`, used by `tasks.load_data` in place of the preference readers):

- `config.data.source = "synthetic"`: base-chain responses of the Markov task, cut into steps of
  `config.prm.step_size` tokens, labelled by `config.prm.labels` ("exact" values, "mc"
  Monte-Carlo estimates with `config.prm.num_rollouts` rollouts, or "binary" 1[v̄ ≥ threshold])
  — `data.steps.synthetic_step_data`. The eval set keeps each prefix's exact value.
- `config.data.source = "files"`: step records in `config.data.layout` (one of
  `data.STEP_LAYOUTS`: steps, prm800k, math_shepherd, trl_stepwise), tokenised with
  `data.steps.encode_step_records`.

Batches are the "rating" format carrying the step layout (`data.steps`: step numbers in
`completion_mask`, step targets in `ratings`). The final evaluation (`finish`) writes
`report.md` with step accuracy / AUROC, ProcessBench first-error F1 and Spearman's ρ with the
exact value function (`evaluate.process`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rewardjax import evaluate, losses, parallel
from rewardjax.data import steps as steps_data
from rewardjax.models import (
    CausalLM,
    ImplicitPRM,
    ProcessRewardModel,
    gather_steps,
    step_ids_step_ends,
)
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.data import Data, markov_task, tokenizer_from_config
from rewardjax.train.metrics import MetricWriter, read_jsonl
from rewardjax.train.state import TrainState
from rewardjax.train.steps.common import objective_step
from rewardjax.train.tasks.common import Context, Task, backbone_config

__all__ = ["build", "implicit_prm_loss", "layouts", "load_trained", "prm_loss", "read_data"]

LOSSES = ("step_cross_entropy", "implicit_prm_outcome_loss")


def layouts(config: ml_collections.ConfigDict, train_kind: str, eval_kind: str | None):
    """Step data ride in "rating" batches (`data.steps`); `read_data` builds them directly."""
    del config, train_kind, eval_kind
    return "rating", "rating"


def _check(config: ml_collections.ConfigDict) -> None:
    if config.loss.name not in LOSSES:
        raise ValueError(
            f"config.loss.name={config.loss.name!r}: the prm task trains with one of {LOSSES}."
        )
    labels = config.prm.labels
    if labels not in ("exact", "mc", "binary"):
        raise ValueError(f"config.prm.labels={labels!r}: expected 'exact', 'mc' or 'binary'.")


def _split(d: dict[str, np.ndarray], sl: slice) -> dict[str, np.ndarray]:
    n = len(d["prompt"])
    return {k: (v[sl] if v.ndim and len(v) == n else v) for k, v in d.items()}


def _with_values(dataset, values: np.ndarray):
    """The dataset with each example's exact normalised step values (read by the evaluation;
    collate ignores the key)."""
    examples = [{**e, "values": v} for e, v in zip(dataset.examples, values, strict=True)]
    return dataclasses.replace(dataset, examples=examples)


def read_data(config: ml_collections.ConfigDict) -> Data:
    """The train and eval step datasets `config.data` and `config.prm` describe."""
    _check(config)
    p = config.prm
    if config.data.source == "synthetic":
        s = config.data.synthetic
        task = markov_task(s)
        d = steps_data.synthetic_step_data(
            task,
            jax.random.PRNGKey(s.seed),
            p.num_train + p.num_eval,
            step_size=p.step_size,
            labels=p.labels,
            num_rollouts=p.num_rollouts,
            threshold=p.threshold,
        )
        train = steps_data.synthetic_step_dataset(_split(d, slice(None, p.num_train)))
        held_out = _split(d, slice(p.num_train, None))
        evaluation = None
        if p.num_eval:
            evaluation = steps_data.synthetic_step_dataset(held_out)
            if bool(d["exact_values"]):
                evaluation = _with_values(evaluation, held_out["values"])
        return Data(train, evaluation, task)
    if config.data.source != "files":
        raise ValueError(
            f"config.data.source={config.data.source!r}: expected 'synthetic' or 'files'."
        )
    c = config.data
    if not c.train_path:
        raise ValueError("config.data.train_path is empty; set it to a local step-record file.")
    load = lambda path: steps_data.load_step_records(
        path, layout=c.layout, format=c.format, split=c.split, on_error=c.on_error
    )[0]
    records = load(c.train_path)
    if c.eval_path:
        held = load(c.eval_path)
    else:
        order = np.random.default_rng(config.seed).permutation(len(records))
        n_eval = max(1, round(c.eval_fraction * len(records))) if c.eval_fraction > 0 else 0
        if n_eval >= len(records):
            raise ValueError(
                f"config.data.eval_fraction={c.eval_fraction} leaves no training records out of "
                f"{len(records)}."
            )
        held = [records[i] for i in order[:n_eval]]
        records = [records[i] for i in sorted(order[n_eval:])]
    tokenizer = tokenizer_from_config(c)
    steps_all = max(len(r.steps) for r in records + held)
    slots = min(steps_all, p.max_steps) if p.max_steps else steps_all
    encode = lambda rs: steps_data.encode_step_records(
        rs, tokenizer, max_length=c.max_length, max_steps=slots, neutral=p.neutral
    )
    return Data(encode(records), encode(held) if held else None, tokenizer=tokenizer)


# ----------------------------------------------------------------------------- objectives


def prm_loss(
    params: Any, batch: dict[str, Any], *, model: ProcessRewardModel, num_steps: int
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Step cross-entropy of a discriminative PRM on a step batch.

    loss = Σ_{b,s} w_b m_bs CE(z_bs, y_bs) / Σ_{b,s} w_b m_bs, z_bs the logit at step s's end
    (`losses.step_cross_entropy`; Lightman et al. 2023, arXiv 2305.20050; Wang et al. 2023,
    arXiv 2312.08935).

    Returns the loss and metrics: `step_mae` = mean |σ(z) - y| and `step_accuracy` =
    agreement of σ(z) ≥ ½ with y ≥ ½, over the same steps.
    """
    arrays = steps_data.step_batch_arrays(batch)
    ends, present = step_ids_step_ends(arrays["step_ids"], num_steps=num_steps)
    keep = present & arrays["step_mask"]
    positions = model.apply(params, batch["tokens"], batch["mask"])
    z = gather_steps(positions, ends, keep)
    y = arrays["targets"]
    per_step = losses.step_cross_entropy(z, y, where=keep)
    count = jnp.maximum(jnp.sum(keep), 1)
    mean = lambda x: jnp.sum(jnp.where(keep, x, 0.0)) / count
    p = jax.nn.sigmoid(z)
    metrics = {"step_mae": mean(jnp.abs(p - y)), "step_accuracy": mean((p >= 0.5) == (y >= 0.5))}
    return mean(per_step), metrics


def _outcome(arrays: dict[str, jax.Array]) -> jax.Array:
    """The outcome label of each row: the target of its last step."""
    keep = arrays["step_mask"]
    last = keep.shape[-1] - 1 - jnp.argmax(keep[:, ::-1], axis=-1)
    return jnp.take_along_axis(arrays["targets"], last[:, None], axis=-1)[:, 0]


def implicit_prm_loss(
    params: Any, batch: dict[str, Any], *, model: ImplicitPRM
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Outcome-only cross-entropy of the implicit PRM (`losses.implicit_prm_outcome_loss`).

    loss_b = CE(β Σ_{t in response} log π_θ(y_t)/π_ref(y_t), l_b), l_b the last step's target,
    averaged with the row weights; `batch["ref_logps"]` [B, T] holds the reference's token
    log-probs (`batch_fn`). Yuan et al. 2024, arXiv 2412.01981.
    """
    arrays = steps_data.step_batch_arrays(batch)
    policy = _token_logps(params, batch, model)
    where = (batch["completion_mask"] > 0) & (batch["mask"] > 0)
    outcome = _outcome(arrays)
    loss = losses.implicit_prm_outcome_loss(
        policy, batch["ref_logps"], outcome, beta=model.beta, where=where
    )
    w = batch["weight"] * arrays["step_mask"].any(-1)
    reward = model.beta * jnp.sum(jnp.where(where, policy - batch["ref_logps"], 0.0), axis=-1)
    total = jnp.maximum(jnp.sum(w), 1.0)
    agree = (jax.nn.sigmoid(reward) >= 0.5) == (outcome >= 0.5)
    return jnp.sum(w * loss) / total, {"outcome_accuracy": jnp.sum(w * agree) / total}


def _token_logps(params, batch, model: ImplicitPRM) -> jax.Array:
    lm = CausalLM(model.config)
    logits, _ = lm.apply(params, batch["tokens"], segment_ids=batch["mask"])
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    taken = jnp.take_along_axis(logp, batch["tokens"][:, 1:, None], axis=-1)[..., 0]
    return jnp.pad(taken, ((0, 0), (1, 0)))


def _step(objective, state: TrainState, batch, rng, **kwargs):
    del rng
    return objective_step(objective, state, batch, **kwargs)


# ----------------------------------------------------------------------------- the task


def build(ctx: Context) -> Task:
    config = ctx.config
    _check(config)
    train = ctx.data.train
    num_steps = int(train.examples[0]["ratings"].shape[0])
    example = ctx.example_tokens()
    batch_fn = None
    if losses.spec(config.loss.name).inputs == "logprobs":
        model = ImplicitPRM(ctx.backbone, beta=config.prm.beta)
        lm = CausalLM(ctx.backbone)
        params, shardings = ctx.init(lm, ctx.init_key, example)
        ref_params = jax.tree.map(jnp.copy, params)
        ref_local = parallel.host_local(ref_params)
        ref_fn = jax.jit(lambda p, b: _token_logps(p, b, model))
        batch_fn = lambda batch: {**batch, "ref_logps": ref_fn(ref_params, batch)}
        step_fn = functools.partial(_step, implicit_prm_loss, model=model)
        scoring = lambda params: {"policy": params, "reference": ref_local}
    else:
        model = ProcessRewardModel(ctx.backbone)
        params, shardings = ctx.init(model, ctx.init_key, example, example)
        step_fn = functools.partial(_step, prm_loss, model=model, num_steps=num_steps)
        scoring = lambda params: params
    eval_data = ctx.data.eval if config.eval.enabled else None
    eval_fn = finish = None
    if eval_data is not None:
        evaluate_fn = functools.partial(
            _evaluate, ctx, model, scoring, num_steps, _decision_threshold(config)
        )
        eval_fn = lambda s: evaluate_fn(s.params)[0].as_dict()
        if config.report.enabled:
            finish = functools.partial(_report, ctx, evaluate_fn)
    return Task(
        model, params, shardings, step_fn, train, batch_fn=batch_fn, eval_fn=eval_fn, finish=finish
    )


def _decision_threshold(config: ml_collections.ConfigDict) -> float:
    """σ(z) ≥ this calls a step correct: ½ for binary or file labels, else the value threshold."""
    p = config.prm
    if p.decision_threshold is not None:
        return p.decision_threshold
    binary = config.data.source != "synthetic" or p.labels == "binary"
    return 0.5 if binary else p.threshold


def _evaluate(ctx: Context, model, scoring, num_steps: int, decision: float, params):
    """(metrics, scores) of the PRM on the eval set."""
    eval_data = ctx.data.eval
    scores = evaluate.score_step_batches(
        model, scoring(params), ctx.eval_batches(), num_steps=num_steps
    )
    if "values" in eval_data.examples[0]:
        values = np.stack([e["values"] for e in eval_data.examples]).astype(np.float32)
        scores = scores._replace(values=values)
    threshold = ctx.config.prm.threshold if ctx.config.data.source == "synthetic" else 0.5
    metrics = evaluate.evaluate_process(scores, threshold=threshold, decision_threshold=decision)
    return metrics, scores


def _report(ctx: Context, evaluate_fn, state: TrainState) -> dict[str, Any]:
    """Final evaluation: logged under eval/ and written to report.md with its plots."""
    config, workdir = ctx.config, ctx.workdir
    metrics, scores = evaluate_fn(state.params)
    step, every = int(state.step), config.train.eval_every
    if not (every and step % every == 0):  # else the loop logged it already
        writer = MetricWriter(workdir)
        writer.write(step, {f"eval/{k}": v for k, v in metrics.as_dict().items()})
        writer.close()
    p = config.prm
    notes = {
        "loss": config.loss.name,
        "data": config.data.source
        if config.data.source != "synthetic"
        else f"synthetic Markov task, steps of {p.step_size} tokens, {p.labels} labels"
        + (f" ({p.num_rollouts} rollouts)" if p.labels == "mc" else ""),
        "train steps": step,
        "held-out solutions": len(scores.logits),
    }
    path = evaluate.process_report(
        workdir,
        metrics,
        scores,
        records=read_jsonl(os.path.join(workdir, "metrics.jsonl")),
        notes=notes,
    )
    return {"report": path, "process": metrics.as_dict()}


def _restore(workdir: str, model_init, mesh, rules, key) -> Any:
    """The latest checkpoint of `workdir` in the tree `model_init(key, tokens[, mask])` makes."""
    example = jnp.ones((1, 8), jnp.int32)
    with parallel.mesh_rules(mesh, rules):
        abstract = jax.eval_shape(model_init, key, example, example)
    shardings = parallel.logical_shardings(abstract, mesh, rules)
    target = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nn.meta.unbox(abstract),
        shardings,
    )
    return Checkpointer(os.path.join(workdir, "checkpoints")).restore_params(target)


def load_trained(
    workdir: str, mesh, rules, *, field: str = "the PRM work directory"
) -> tuple[Any, Any]:
    """The PRM trained in `workdir` (a prm run's config.json and latest checkpoint) and the
    parameters to score with: `models.score_prefixes(model, params, ...)`.

    A discriminative PRM's parameters are its checkpoint; an implicit PRM's are
    `{"policy": checkpoint, "reference": its initial weights}` (the run's `init_from` checkpoint,
    or the initialisation from the run's seed, as `run` made them).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(
            f"{field}={workdir!r} holds no config.json: give the work directory of a prm run "
            "(python -m rewardjax.main --config=configs/prm.py --workdir=...)."
        )
    with open(path, encoding="utf-8") as f:
        saved = ml_collections.ConfigDict(json.load(f))
    if saved.task != "prm":
        raise ValueError(f"{field}={workdir!r} is a {saved.task!r} run; give a prm run.")
    backbone = backbone_config(saved)
    init_key = jax.random.split(jax.random.PRNGKey(saved.seed))[0]
    if saved.loss.name != "implicit_prm_outcome_loss":
        model = ProcessRewardModel(backbone)
        return model, _restore(workdir, model.init, mesh, rules, init_key)
    lm_init = lambda key, tokens, mask: CausalLM(backbone).init(key, tokens, segment_ids=mask)
    policy = _restore(workdir, lm_init, mesh, rules, init_key)
    if saved.init_from:
        reference = _restore(saved.init_from, lm_init, mesh, rules, init_key)
    else:
        example = jnp.ones((1, 8), jnp.int32)
        with parallel.mesh_rules(mesh, rules):
            reference = nn.meta.unbox(jax.jit(lm_init)(init_key, example, example))
    return ImplicitPRM(backbone, beta=saved.prm.beta), {"policy": policy, "reference": reference}
