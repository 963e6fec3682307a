"""Task "dpo": a policy trained with a DPO-family loss against a frozen reference, or with KTO on
unpaired completions.

The loss's spec (`losses.spec`) says whether it reads a reference (`config.reference`: its
log-probs computed in every step, precomputed once over the training set, or read from the
records) and which implicit reward the trained policy assigns; evaluation ranks the held-out pairs
by that reward (KTO on an unpaired eval set: its loss and metrics).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rewardjax import data as data_lib
from rewardjax import evaluate, losses, parallel
from rewardjax.models import CausalLM, ImplicitReward
from rewardjax.train import steps
from rewardjax.train.data import with_packing
from rewardjax.train.tasks.common import Context, Task, mean_metrics
from rewardjax.train.tasks.reward_model import pair_prefix_length

__all__ = ["REFERENCES", "build", "layouts", "precompute_reference_logps"]

# Where the reference log-probs come from (config.reference).
REFERENCES = ("initial", "precompute", "in_batch")


def layouts(config: ml_collections.ConfigDict, train_kind: str, eval_kind: str | None):
    """Pairs, or unpaired completions for KTO (evaluated on held-out pairs when there are some)."""
    del train_kind
    spec = losses.spec(config.loss.name)
    if spec.inputs != "logprobs":
        raise ValueError(
            f"config.loss.name={config.loss.name!r} is a reward-model loss (it reads scores); "
            "the dpo task trains a policy with a loss on log-probs, e.g. dpo, ipo, simpo or kto."
        )
    evaluated = "pairwise" if eval_kind == "pairwise" else spec.layout
    return spec.layout, evaluated


def _check_reference(config: ml_collections.ConfigDict, spec: losses.LossSpec) -> None:
    if config.reference not in REFERENCES:
        raise ValueError(
            f"config.reference={config.reference!r}: expected one of {REFERENCES}: 'initial' "
            "(the starting policy, log-probs computed in every step), 'precompute' (the "
            "starting policy's log-probs computed once before training) or 'in_batch' (the "
            "records' ref_chosen_logps / ref_rejected_logps)."
        )
    if spec.layout == "unpaired" and config.reference != "initial":
        raise ValueError(
            f"config.reference={config.reference!r} is not supported with "
            f"config.loss.name={config.loss.name!r} (unpaired completions); use 'initial'."
        )


def build(ctx: Context) -> Task:
    config = ctx.config
    spec = losses.spec(config.loss.name)
    _check_reference(config, spec)
    model = CausalLM(ctx.backbone)
    params, shardings = ctx.init(model, ctx.init_key, ctx.example_tokens())
    logits_fn = lambda p, tokens, mask, branch_ids=None: model.apply(
        p, tokens, segment_ids=mask, branch_ids=branch_ids
    )[0]
    unpaired = spec.layout == "unpaired"
    # Pairs as one row [prompt | chosen | rejected] (arXiv 2410.20305); None when off or unpaired.
    prefix_length = pair_prefix_length(ctx)
    train = ctx.data.train
    batch_fn = ref_fn = None
    ref_local = None
    if spec.reference:
        # A copy: the state's buffers are donated to the step, the reference's must survive.
        ref_params = jax.tree.map(jnp.copy, params)
        ref_local = parallel.host_local(ref_params)
        # The reference goes in as an argument of the jitted function, not as a constant.
        if unpaired:
            ref_logps = steps.kto_reference_logps
        else:
            ref_logps = functools.partial(steps.reference_logps, prefix_length=prefix_length)
        ref_fn = jax.jit(functools.partial(ref_logps, logits_fn=logits_fn))
        if config.reference == "precompute":
            train = precompute_reference_logps(
                train, lambda b: ref_fn(ref_local, b), batch_size=config.eval.batch_size
            )
        elif config.reference == "initial":
            batch_fn = lambda batch: ref_fn(ref_params, batch)
        elif "ref_chosen_logps" not in train.examples[0]:
            raise ValueError(
                "config.reference='in_batch' needs precomputed reference log-probs on every "
                "training record (fields ref_chosen_logps and ref_rejected_logps); add them to "
                "config.data.train_path, or set config.reference='precompute' or 'initial'."
            )
    if unpaired:
        step_fn, unpaired_loss = _kto_step(config, logits_fn)
    else:
        step_fn = functools.partial(
            steps.dpo_step,
            logits_fn=logits_fn,
            loss_name=config.loss.name,
            beta=config.loss.beta,
            loss_kwargs=config.loss.kwargs.to_dict(),
            loss_weight=config.loss.loss_weight,
            nll_weight=config.loss.nll_weight,
            prefix_length=prefix_length,
        )
    eval_data = ctx.data.eval if config.eval.enabled else None
    eval_fn = None
    if eval_data is not None and eval_data.kind == "unpaired":
        unpaired_loss = jax.jit(unpaired_loss)
        eval_fn = lambda s: mean_metrics(
            unpaired_loss, s.params, ctx.eval_batches(), batch_fn=lambda b: ref_fn(ref_local, b)
        )
    elif eval_data is not None:
        implicit = ImplicitReward(ctx.backbone, beta=config.loss.beta, loss=config.loss.name)
        reference = {"reference": ref_local} if spec.reference else {}
        eval_fn = lambda s: evaluate.evaluate_reward_model(
            implicit, {"policy": s.params, **reference}, ctx.eval_batches()
        ).as_dict()
    # Packed training batches (pairs; KTO's unpaired completions stay padded).
    train = with_packing(config, train, ctx.mesh)
    return Task(model, params, shardings, step_fn, train, batch_fn=batch_fn, eval_fn=eval_fn)


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
