"""Task "reward_model": a backbone + head trained on preference pairs, ranked lists or ratings.

The loss's registered layout (`losses.spec(name).layout`) picks the batches: a pairwise loss
trains on pairs (or on every ordered pair of ranked lists when the data holds lists), a listwise
loss on ranked lists, a rating loss on ratings. With `config.report.enabled` the final evaluation
writes `report.md` (pair metrics, calibration, best-of-n gold-vs-proxy curves on the synthetic
task, training curves).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
from absl import logging

from rewardjax import evaluate, losses, parallel
from rewardjax.models import CausalLM, RewardModel, RewardModelConfig, prefix
from rewardjax.train import steps
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.data import with_packing
from rewardjax.train.metrics import MetricWriter, read_jsonl
from rewardjax.train.state import TrainState
from rewardjax.train.tasks.common import Context, Task, backbone_config, mean_metrics

__all__ = ["build", "layouts", "load_trained", "pair_prefix_length"]


def pair_prefix_length(ctx: Context, kind: str = "pairwise") -> int | None:
    """The length of the prefix-shared rows `[prompt | y_1 | ... | y_K]` that hold every example
    of the train and eval sets of `kind` ("pairwise": K = 2, or "ranked")
    (`models.prefix.shared_length`), or None when `config.train.prefix_sharing` is off or the
    training data are not of that kind (Wang et al., "Accelerating Direct Preference
    Optimization with Prefix Sharing", arXiv 2410.20305)."""
    if not ctx.config.train.get("prefix_sharing", False) or ctx.data.train.kind != kind:
        return None
    sets = [d for d in (ctx.data.train, ctx.data.eval) if d is not None and d.kind == kind]
    return max(
        prefix.shared_length(
            d.examples, max_length=d.max_length, num_responses=len(d.examples[0]["seqs"])
        )
        for d in sets
    )


def layouts(config: ml_collections.ConfigDict, train_kind: str, eval_kind: str | None):
    """The loss's layout; a pairwise loss trains on the ordered pairs of ranked lists too."""
    spec = losses.spec(config.loss.name)
    if spec.inputs != "scores":
        raise ValueError(
            f"config.loss.name={config.loss.name!r} is a policy loss (it reads log-probs); a "
            "reward model trains with a loss on scores, e.g. bradley_terry, hinge, "
            "plackett_luce or rating_regression."
        )
    kind = "ranked" if spec.layout == "pairwise" and train_kind == "ranked" else spec.layout
    return kind, kind


def build(ctx: Context) -> Task:
    config, dataset = ctx.config, ctx.data.train
    ranked = dataset.kind == "ranked"
    if config.head.separator is not None and not ranked:
        raise ValueError(
            "config.head.separator scores the responses of a ranked list in one row; this run "
            f"trains on {dataset.kind!r} batches: leave it None."
        )
    model = RewardModel(
        RewardModelConfig(
            backbone=ctx.backbone,
            head=config.head.name,
            head_kwargs=config.head.kwargs.to_dict(),
            # Multi-response rows hold the K responses of a list.
            max_responses=len(dataset.examples[0]["seqs"]) if ranked else 4,
            # Pairs scored as one row [prompt | chosen | rejected] in training and evaluation.
            prefix_length=pair_prefix_length(ctx) if dataset.kind == "pairwise" else None,
        )
    )
    example = ctx.example_tokens()
    params, shardings = _init(ctx, model, example)
    eval_data = ctx.data.eval if config.eval.enabled else None
    if dataset.kind == "pairwise":
        step_fn = functools.partial(
            steps.reward_model_step,
            model=model,
            loss_name=config.loss.name,
            loss_kwargs=config.loss.kwargs.to_dict(),
            use_margin=config.loss.use_margin,
            center_coef=config.loss.center_coef,
        )
        eval_fn = lambda s: evaluate.evaluate_reward_model(
            model, s.params, ctx.eval_batches(), subset_names=eval_data.subset_names
        ).as_dict()
    else:
        step_fn, layout_loss = _layout_step(
            config, model, dataset, pair_prefix_length(ctx, "ranked")
        )
        layout_loss = jax.jit(layout_loss)
        eval_fn = lambda s: mean_metrics(layout_loss, s.params, ctx.eval_batches())
    finish = None
    if eval_data is not None and config.report.enabled:
        if eval_data.kind == "pairwise":
            finish = functools.partial(_report, ctx, model)
        else:
            logging.warning(
                "No report: it reads preference pairs, the eval set has %s.", eval_data.kind
            )
    if config.head.separator is None:  # ranked lists with a separator keep their own rows
        dataset = with_packing(config, dataset, ctx.mesh)
    return Task(
        model,
        params,
        shardings,
        step_fn,
        dataset,
        eval_fn=eval_fn if eval_data is not None else None,
        finish=finish,
    )


def _init(ctx: Context, model: RewardModel, example) -> tuple[Any, Any]:
    """Fresh parameters, or those of `config.init_from`: the whole tree when it trained a reward
    model; for a policy run (sft, dpo), the policy's transformer as the backbone, the head keeping
    its fresh initialisation."""
    config = ctx.config
    init_args = (ctx.init_key, example, example)
    saved = os.path.join(config.init_from, "config.json")
    from_policy = False
    if config.init_from and os.path.exists(saved):
        with open(saved, encoding="utf-8") as f:
            from_policy = json.load(f).get("task") != "reward_model"
    if not from_policy:
        return ctx.init(model, *init_args)
    params, shardings = parallel.sharded_init(
        model.init, *init_args, mesh=ctx.mesh, rules=ctx.rules
    )
    lm_init = CausalLM(ctx.backbone).init
    with parallel.mesh_rules(ctx.mesh, ctx.rules):
        abstract = jax.eval_shape(lm_init, *init_args[:2])
    lm_shardings = parallel.logical_shardings(abstract, ctx.mesh, ctx.rules)
    target = jax.tree.map(
        lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        nn.meta.unbox(abstract),
        lm_shardings,
    )
    lm = ctx.checkpointer_from().restore_params(target)
    return {"params": {**params["params"], "backbone": lm["params"]["transformer"]}}, shardings


def _layout_step(
    config: ml_collections.ConfigDict, model: RewardModel, dataset, prefix_length: int | None
):
    """The step and the `(params, batch) -> (loss, metrics)` of a reward model on ranked lists or
    ratings."""
    loss = config.loss
    if loss.use_margin or loss.center_coef:
        raise ValueError(
            "config.loss.use_margin and config.loss.center_coef apply to preference pairs only; "
            f"this run trains on {dataset.kind!r} batches: leave them False and 0."
        )
    if dataset.kind == "ranked":
        kwargs = dict(
            model=model,
            loss_name=loss.name,
            loss_kwargs=loss.kwargs.to_dict(),
            separator=config.head.separator,
            prefix_length=None if config.head.separator is not None else prefix_length,
        )
        return (
            functools.partial(steps.ranked_reward_model_step, **kwargs),
            functools.partial(steps.ranked_loss, **kwargs),
        )
    attribute = loss.attribute
    if attribute is None and config.head.name != "multi_attribute" and len(dataset.attributes) == 1:
        attribute = 0  # the only rating
    if attribute is None and config.head.name != "multi_attribute":
        raise ValueError(
            f"the data has {len(dataset.attributes)} ratings {dataset.attributes}: set "
            "config.loss.attribute to the one the scalar reward fits, or use the "
            "multi_attribute head."
        )
    kwargs = dict(
        model=model, attribute=attribute, attribute_names=dataset.attributes, loss_name=loss.name
    )
    return (
        functools.partial(steps.rating_reward_model_step, **kwargs),
        functools.partial(steps.rating_loss, **kwargs),
    )


def _report(ctx: Context, model: RewardModel, state: TrainState) -> dict[str, Any]:
    """Writes `report.md` from the eval set and logs its pair metrics as the final evaluation."""
    config, workdir = ctx.config, ctx.workdir
    path, pairs = evaluate.reward_model_report(
        workdir,
        model=model,
        params=state.params,
        eval_batches=ctx.eval_batches(),
        subset_names=ctx.data.eval.subset_names,
        task=ctx.data.task,
        config=config,
        records=read_jsonl(os.path.join(workdir, "metrics.jsonl")),
    )
    step, every = int(state.step), config.train.eval_every
    if not (every and step % every == 0):  # else the loop logged it already
        writer = MetricWriter(workdir)
        writer.write(step, {f"eval/{k}": v for k, v in pairs.as_dict().items()})
        writer.close()
    return {"report": path}


def load_trained(
    workdir: str, mesh, rules, *, field: str = "config.reward.model_workdir"
) -> tuple[RewardModel, Any]:
    """The reward model trained in `workdir` (a reward-model run's config.json and latest
    checkpoint) and its parameters, placed on `mesh` by `rules`; `field` names the setting that
    gave `workdir`, for the errors."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(
            f"{field}={workdir!r} holds no config.json: give the work "
            "directory of a reward-model run (python -m rewardjax.main --config=configs/"
            "reward_model.py --workdir=...)."
        )
    with open(path, encoding="utf-8") as f:
        saved = ml_collections.ConfigDict(json.load(f))
    if saved.task != "reward_model":
        raise ValueError(f"{field}={workdir!r} is a {saved.task!r} run; give a reward-model run.")
    model = RewardModel(
        RewardModelConfig(
            backbone=backbone_config(saved),
            head=saved.head.name,
            head_kwargs=saved.head.kwargs.to_dict(),
            max_responses=4,
        )
    )
    example = jnp.ones((1, 8), jnp.int32)
    with parallel.mesh_rules(mesh, rules):
        abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), example, example)
    shardings = parallel.logical_shardings(abstract, mesh, rules)
    target = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nn.meta.unbox(abstract),
        shardings,
    )
    params = Checkpointer(os.path.join(workdir, "checkpoints")).restore_params(target)
    return model, params
