"""`run(config, workdir)`: build data, model, optimizer and step from a config, train, evaluate.

Tasks (`config.task`): "reward_model" (a backbone + head trained on preference pairs, ranked
lists or ratings), "dpo" (a policy trained with a DPO-family loss, or KTO on unpaired completions,
against a frozen reference), "sft" (a policy fine-tuned on chosen responses). The task and its loss
choose the batch layout (`layouts.train_kind`). Data comes from the synthetic gold-reward Markov
task (`data.source = "synthetic"`) or from local files (`data.source = "files"`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rewardjax import data as data_lib
from rewardjax import evaluate, parallel
from rewardjax.data import synthetic
from rewardjax.models import CausalLM, DPOReward, RewardModel, RewardModelConfig, get_preset
from rewardjax.train import layouts, steps
from rewardjax.train import report as report_lib
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.defaults import TASKS
from rewardjax.train.loop import fit
from rewardjax.train.metrics import MetricWriter, read_jsonl
from rewardjax.train.state import TrainState, make_optimizer

__all__ = ["REFERENCES", "Data", "load_data", "precompute_reference_logps", "run"]

# Where the DPO family's reference log-probs come from (config.reference).
REFERENCES = ("initial", "precompute", "in_batch")


@dataclasses.dataclass(frozen=True)
class Data:
    """Encoded train and eval sets (pairwise, or SFT for the sft task) and the synthetic world."""

    train: data_lib.EncodedDataset
    eval: data_lib.EncodedDataset | None
    task: synthetic.MarkovTask | None = None


def _synthetic_data(c: ml_collections.ConfigDict) -> Data:
    task = synthetic.make_markov_task(
        c.seed,
        vocab_size=c.vocab_size,
        length=c.length,
        prompt_length=c.prompt_length,
        concentration=c.concentration,
        memoryless=c.memoryless,
        reward=c.reward,
        reward_scale=c.reward_scale,
        pattern=tuple(c.pattern),
        pattern_bonus=c.pattern_bonus,
    )
    # One draw split in two (train, then eval): one compilation of the sampler.
    pairs = synthetic.sample_preference_pairs(
        task,
        jax.random.PRNGKey(c.seed),
        c.num_train_pairs + c.num_eval_pairs,
        beta=c.beta,
        flip_rate=c.flip_rate,
    )
    part = lambda sl: synthetic.pairs_to_dataset({k: np.asarray(v)[sl] for k, v in pairs.items()})
    n = c.num_train_pairs
    return Data(part(slice(None, n)), part(slice(n, None)) if c.num_eval_pairs else None, task)


def _file_data(c: ml_collections.ConfigDict, seed: int) -> Data:
    if not c.train_path:
        raise ValueError("config.data.train_path is empty; set it to a local JSONL/Parquet file.")
    tokenizer = (
        data_lib.ByteTokenizer() if c.tokenizer == "byte" else data_lib.HFTokenizer(c.tokenizer)
    )
    load = lambda path: data_lib.load_records(
        path, layout=c.layout, format=c.format, split=c.split, on_error=c.on_error
    )[0]
    train = load(c.train_path)
    if c.eval_path:
        held_out = load(c.eval_path)
    elif c.eval_fraction > 0:
        order = np.random.default_rng(seed).permutation(len(train))
        n_eval = max(1, round(c.eval_fraction * len(train)))
        if n_eval >= len(train):
            raise ValueError(
                f"config.data.eval_fraction={c.eval_fraction} leaves no training records "
                f"out of {len(train)}."
            )
        held_out = [train[i] for i in order[:n_eval]]
        train = [train[i] for i in sorted(order[n_eval:])]
    else:
        held_out = None
    encode = lambda records: data_lib.encode_records(
        records,
        tokenizer,
        max_length=c.max_length,
        overlength=c.overlength,
        max_prompt_length=c.max_prompt_length,
    )
    return Data(encode(train), encode(held_out) if held_out else None)


def load_data(config: ml_collections.ConfigDict) -> Data:
    """The encoded data `config.data` describes, in the layout its task and loss train on
    (`layouts.train_kind`; pairs are converted where the layout asks for it)."""
    if config.data.source == "synthetic":
        loaded = _synthetic_data(config.data.synthetic)
    elif config.data.source == "files":
        loaded = _file_data(config.data, config.seed)
    else:
        raise ValueError(
            f"config.data.source={config.data.source!r}: expected 'synthetic' or 'files'."
        )
    loss_name = config.loss.name if "loss" in config else None
    kind = layouts.train_kind(config.task, loss_name, loaded.train.kind)
    field = f"task {config.task!r}" + (f" with config.loss.name={loss_name!r}" if loss_name else "")
    # KTO is evaluated by its implicit reward on held-out pairs when there are any.
    eval_kind = (
        "pairwise"
        if kind == "unpaired" and loaded.eval and loaded.eval.kind == "pairwise"
        else kind
    )
    return dataclasses.replace(
        loaded,
        train=layouts.convert(loaded.train, kind, field=field),
        eval=None if loaded.eval is None else layouts.convert(loaded.eval, eval_kind, field=field),
    )


def _backbone(config: ml_collections.ConfigDict):
    m = config.model
    shape = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff")
    overrides = {k: m[k] for k in shape if m[k] is not None}
    return get_preset(
        m.preset, dtype=m.dtype, param_dtype=m.param_dtype, remat=m.remat, **overrides
    )


def _resolved_optimizer(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    opt = ml_collections.ConfigDict(config.optimizer.to_dict())
    if opt.decay_steps is None:
        updates = config.train.num_steps // opt.grad_accum_steps
        opt.decay_steps = max(updates - opt.warmup_steps, 1)
    return opt


def _batches(dataset, batch_size: int, seed: int | None, num_epochs: int | None = None):
    return data_lib.batches(dataset, global_batch_size=batch_size, seed=seed, num_epochs=num_epochs)


def _save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json_best_effort(indent=2, sort_keys=True) + "\n")


def _check_config(config: ml_collections.ConfigDict) -> None:
    if config.task not in TASKS:
        raise ValueError(f"config.task={config.task!r}: expected one of {TASKS}.")
    t = config.train
    for name in ("num_steps", "batch_size", "log_every", "checkpoint_every"):
        if t[name] < 1:
            raise ValueError(f"config.train.{name}={t[name]} must be >= 1.")


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains and evaluates the experiment `config` describes, in `workdir` (resuming there).

    Writes `config.json` (the resolved config), `checkpoints/`, `metrics.jsonl` and
    `tensorboard/` (train metrics, and eval metrics under `eval/`), and with
    `config.report.enabled` (reward models) `report.md` with its plots.

    Returns:
      A summary: final train metrics under "train", evaluation metrics under "eval", and the
      report's path under "report" (when written).
    """
    _check_config(config)
    if jax.process_index() == 0:  # multi-host: the primary writes the files of the run
        _save_config(config, workdir)
    mesh = parallel.mesh_from_config(config.mesh)
    loaded = load_data(config)
    backbone = _backbone(config)
    tx = make_optimizer(_resolved_optimizer(config))
    init_key, state_key = jax.random.split(jax.random.PRNGKey(config.seed))
    length = loaded.train.max_length
    example = jnp.ones((config.train.batch_size, length), jnp.int32)
    eval_data = loaded.eval if config.eval.enabled else None
    # `(params, batch) -> (loss, metrics)` of a non-pairwise layout, for its evaluation.
    layout_loss = None

    if config.task == "reward_model":
        ranked = loaded.train.kind == "ranked"
        if config.head.separator is not None and not ranked:
            raise ValueError(
                "config.head.separator scores the responses of a ranked list in one row; this "
                f"run trains on {loaded.train.kind!r} batches: leave it None."
            )
        model = RewardModel(
            RewardModelConfig(
                backbone=backbone,
                head=config.head.name,
                head_kwargs=config.head.kwargs.to_dict(),
                # Multi-response rows hold the K responses of a list.
                max_responses=len(loaded.train.examples[0]["seqs"]) if ranked else 4,
            )
        )
        init_args = (init_key, example, example)
        if loaded.train.kind == "pairwise":
            step_fn = functools.partial(
                steps.reward_model_step,
                model=model,
                loss_name=config.loss.name,
                loss_kwargs=config.loss.kwargs.to_dict(),
                use_margin=config.loss.use_margin,
                center_coef=config.loss.center_coef,
            )
        else:
            step_fn, layout_loss = _layout_reward_model_step(config, model, loaded.train)
    else:
        model = CausalLM(backbone)
        init_args = (init_key, example)
        logits_fn = lambda params, tokens, mask: model.apply(params, tokens, segment_ids=mask)[0]

    params, param_sh = parallel.sharded_init(model.init, *init_args, mesh=mesh)
    if config.init_from:
        params = _initial_params(config, params, backbone, init_args, mesh)
    opt_state, opt_sh = parallel.sharded_optimizer_init(tx, params, param_sh, mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    state = TrainState(
        step=jax.device_put(jnp.zeros((), jnp.int32), replicated),
        params=params,
        opt_state=opt_state,
        rng=jax.device_put(state_key, replicated),
        tx=tx,
    )
    state_sh = TrainState(step=replicated, params=param_sh, opt_state=opt_sh, rng=replicated, tx=tx)

    batch_fn = None
    eval_fn: Callable[[TrainState], Mapping[str, float]] | None = None
    # Process 0 evaluates alone, on the whole eval set and host copies of the parameters.
    eval_batches = lambda: data_lib.batches(
        eval_data,
        global_batch_size=config.eval.batch_size,
        seed=None,
        num_epochs=1,
        shard_index=0,
        shard_count=1,
    )
    if config.task == "dpo":
        if config.reference not in REFERENCES:
            raise ValueError(
                f"config.reference={config.reference!r}: expected one of {REFERENCES}: 'initial' "
                "(the starting policy, log-probs computed in every step), 'precompute' (the "
                "starting policy's log-probs computed once before training) or 'in_batch' (the "
                "records' ref_chosen_logps / ref_rejected_logps)."
            )
        # A copy: the state's buffers are donated to the step, the reference's must survive.
        ref_params = jax.tree.map(jnp.copy, params)
        kto = config.loss.name == "kto"
        if kto and config.reference != "initial":
            raise ValueError(
                f"config.reference={config.reference!r} is not supported with "
                "config.loss.name='kto'; use 'initial'."
            )
        needs_reference = config.loss.name not in steps.REFERENCE_FREE
        if needs_reference and config.reference != "in_batch":
            # The reference goes in as an argument of the jitted function, not as a constant.
            ref_fn = steps.kto_reference_logps if kto else steps.reference_logps
            ref_logps = jax.jit(functools.partial(ref_fn, logits_fn=logits_fn))
        if needs_reference and config.reference == "precompute":
            ref_local = parallel.host_local(ref_params)
            precompute = lambda d: precompute_reference_logps(
                d, lambda b: ref_logps(ref_local, b), batch_size=config.eval.batch_size
            )
            loaded = dataclasses.replace(loaded, train=precompute(loaded.train))
        elif needs_reference and config.reference == "initial":
            batch_fn = lambda batch: ref_logps(ref_params, batch)
        elif needs_reference and "ref_chosen_logps" not in loaded.train.examples[0]:
            raise ValueError(
                "config.reference='in_batch' needs precomputed reference log-probs on every "
                "training record (fields ref_chosen_logps and ref_rejected_logps); add them to "
                "config.data.train_path, or set config.reference='precompute' or 'initial'."
            )
        if kto:
            step_fn, layout_loss = _kto_step(config, logits_fn)
        else:
            step_fn = functools.partial(
                steps.dpo_step,
                logits_fn=logits_fn,
                loss_name=config.loss.name,
                beta=config.loss.beta,
                loss_kwargs=config.loss.kwargs.to_dict(),
                loss_weight=config.loss.loss_weight,
                nll_weight=config.loss.nll_weight,
            )
        implicit = DPOReward(backbone, beta=config.loss.beta)
        if eval_data is not None:
            ref_local = parallel.host_local(ref_params)
        if eval_data is not None and eval_data.kind == "unpaired":
            layout_loss, eval_data_fn = jax.jit(layout_loss), lambda b: ref_logps(ref_local, b)
            eval_fn = lambda s: layouts.mean_metrics(
                layout_loss, s.params, eval_batches(), batch_fn=eval_data_fn
            )
        elif eval_data is not None:
            eval_fn = lambda s: evaluate.evaluate_reward_model(
                implicit, {"policy": s.params, "reference": ref_local}, eval_batches()
            ).as_dict()
    elif config.task == "sft":
        step_fn = functools.partial(steps.sft_step, logits_fn=logits_fn)
        if eval_data is not None:
            eval_fn = functools.partial(_sft_eval, logits_fn=logits_fn, batches=eval_batches)
    elif eval_data is not None and layout_loss is not None:
        layout_loss = jax.jit(layout_loss)
        eval_fn = lambda s: layouts.mean_metrics(layout_loss, s.params, eval_batches())
    elif eval_data is not None:
        eval_fn = lambda s: evaluate.evaluate_reward_model(
            model, s.params, eval_batches(), subset_names=eval_data.subset_names
        ).as_dict()

    t = config.train
    # The report scores the eval set itself; the loop's final evaluation would repeat it.
    report = config.task == "reward_model" and config.report.enabled and eval_data is not None
    if report and eval_data.kind != "pairwise":
        logging.warning(
            "No report: it reads preference pairs, the eval set has %s.", eval_data.kind
        )
        report = False
    state = fit(
        state,
        step_fn,
        iter(_batches(loaded.train, t.batch_size, config.seed)),
        workdir=workdir,
        num_steps=t.num_steps,
        log_every=t.log_every,
        checkpoint_every=t.checkpoint_every,
        max_to_keep=t.max_to_keep,
        stop_at_step=t.stop_at_step,
        batch_fn=batch_fn,
        eval_fn=eval_fn,
        eval_every=t.eval_every,
        eval_at_end=not report,
        mesh=mesh,
        state_sharding=state_sh,
        progress_bar=t.progress_bar,
    )
    step = int(state.step)
    summary: dict[str, Any] = {"step": step, "workdir": os.path.abspath(workdir)}
    local_params = parallel.host_local(state.params) if report and step == t.num_steps else None
    if local_params is not None and jax.process_index() == 0:
        summary["report"], pairs = report_lib.reward_model_report(
            workdir,
            model=model,
            params=local_params,
            eval_batches=eval_batches(),
            subset_names=eval_data.subset_names,
            task=loaded.task,
            config=config,
        )
        if not (t.eval_every and step % t.eval_every == 0):  # else the loop logged it already
            writer = MetricWriter(workdir)
            writer.write(step, {f"eval/{k}": v for k, v in pairs.as_dict().items()})
            writer.close()
    primary = jax.process_index() == 0  # the others may read while the primary still writes
    records = read_jsonl(os.path.join(workdir, "metrics.jsonl")) if primary else []
    train_records = [r for r in records if "loss" in r]
    eval_records = [r for r in records if any(k.startswith("eval/") for k in r)]
    if train_records:
        summary["train"] = train_records[-1]
    if eval_records:
        summary["eval"] = {k[5:]: v for k, v in eval_records[-1].items() if k.startswith("eval/")}
    logging.info("Finished %s at step %d in %s.", config.task, step, summary["workdir"])
    return summary


def _initial_params(
    config: ml_collections.ConfigDict, params: Any, backbone, init_args: tuple, mesh
) -> Any:
    """The parameters of the run in `config.init_from`, placed like `params`: the whole tree when
    it trained the same kind of model; for a reward model started from a policy run (sft, dpo), the
    policy's transformer as the backbone, the head keeping its fresh initialisation."""
    checkpointer = Checkpointer(os.path.join(config.init_from, "checkpoints"))
    saved_config = os.path.join(config.init_from, "config.json")
    from_policy = False
    if config.task == "reward_model" and os.path.exists(saved_config):
        with open(saved_config, encoding="utf-8") as f:
            from_policy = json.load(f).get("task") != "reward_model"
    if not from_policy:
        return checkpointer.restore_params(params)
    lm_init = CausalLM(backbone).init
    with parallel.mesh_rules(mesh):
        abstract = jax.eval_shape(lm_init, *init_args[:2])
    shardings = parallel.logical_shardings(abstract, mesh)
    target = jax.tree.map(
        lambda x, sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
        nn.meta.unbox(abstract),
        shardings,
    )
    lm = checkpointer.restore_params(target)
    return {"params": {**params["params"], "backbone": lm["params"]["transformer"]}}


def _layout_reward_model_step(
    config: ml_collections.ConfigDict, model: RewardModel, dataset: data_lib.EncodedDataset
) -> tuple[Callable, Callable]:
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


def _kto_step(config: ml_collections.ConfigDict, logits_fn) -> tuple[Callable, Callable]:
    """The KTO step and its `(params, batch) -> (loss, metrics)`."""
    loss = config.loss
    if loss.loss_weight != 1.0 or loss.nll_weight:
        raise ValueError(
            "config.loss.loss_weight and config.loss.nll_weight are not used by KTO; leave them "
            "1 and 0."
        )
    kwargs = dict(logits_fn=logits_fn, beta=loss.beta, **loss.kwargs.to_dict())
    return functools.partial(steps.kto_step, **kwargs), functools.partial(steps.kto_loss, **kwargs)


def precompute_reference_logps(
    dataset: data_lib.EncodedDataset,
    ref_logps: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    *,
    batch_size: int,
) -> data_lib.EncodedDataset:
    """`dataset` with "ref_chosen_logps" and "ref_rejected_logps" on every example.

    `ref_logps` maps a pairwise batch to the batch plus those two [B] arrays (e.g. the jitted
    `steps.reference_logps` with the reference parameters bound); it runs once over the data, in
    order, so that training no longer runs the reference model (TRL's precompute_ref_log_probs).
    """
    chosen, rejected = [], []
    for batch in data_lib.batches(
        dataset, global_batch_size=batch_size, seed=None, num_epochs=1, shard_index=0, shard_count=1
    ):
        out = ref_logps(batch)
        chosen.append(np.asarray(out["ref_chosen_logps"]))
        rejected.append(np.asarray(out["ref_rejected_logps"]))
    n = len(dataset.examples)
    chosen, rejected = np.concatenate(chosen)[:n], np.concatenate(rejected)[:n]
    examples = [
        {**e, "ref_chosen_logps": float(c), "ref_rejected_logps": float(r)}
        for e, c, r in zip(dataset.examples, chosen, rejected, strict=True)
    ]
    return dataclasses.replace(dataset, examples=examples)


def _sft_eval(state: TrainState, *, logits_fn, batches) -> dict[str, float]:
    """Mean negative log-likelihood per completion token on the eval set."""
    logps = jax.jit(
        lambda p, b: steps.completion_logps(
            p, b["tokens"], b["mask"], b["completion_mask"], logits_fn=logits_fn
        )
    )
    total, count = 0.0, 0.0
    for batch in batches():
        lp, n = logps(state.params, batch)
        total += float(np.sum(np.asarray(lp) * batch["weight"]))
        count += float(np.sum(np.asarray(n) * batch["weight"]))
    return {"nll": -total / max(count, 1.0)}
