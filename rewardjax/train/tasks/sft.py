"""Task "sft": a policy fine-tuned on chosen responses (SFT records, or the chosen side of pairs),
evaluated by its negative log-likelihood per completion token on the eval set; training batches
are packed by default (`config.train.packing`, `rewardjax.data.packing`)."""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np

from rewardjax.models import CausalLM
from rewardjax.train import steps
from rewardjax.train.data import with_packing
from rewardjax.train.tasks.common import Context, Task

__all__ = ["build", "layouts"]


def layouts(config: ml_collections.ConfigDict, train_kind: str, eval_kind: str | None):
    del config, train_kind, eval_kind
    return "sft", "sft"


def build(ctx: Context) -> Task:
    model = CausalLM(ctx.backbone)
    params, shardings = ctx.init(model, ctx.init_key, ctx.example_tokens())
    logits_fn = lambda p, tokens, mask: model.apply(p, tokens, segment_ids=mask)[0]
    step_fn = functools.partial(steps.sft_step, logits_fn=logits_fn)
    eval_fn = None
    if ctx.config.eval.enabled and ctx.data.eval is not None:
        # Jitted once here: every evaluation reuses the compiled function.
        logps = jax.jit(
            lambda p, b: steps.completion_logps(
                p, b["tokens"], b["mask"], b["completion_mask"], logits_fn=logits_fn
            )
        )
        eval_fn = lambda s: _nll(logps, s.params, ctx.eval_batches())
    # Packed training batches (config.train.packing): [prompt | response] back to back in rows.
    train = with_packing(ctx.config, ctx.data.train, ctx.mesh)
    return Task(model, params, shardings, step_fn, train, eval_fn=eval_fn)


def _nll(logps, params, batches) -> dict[str, float]:
    """Mean negative log-likelihood per completion token over `batches`."""
    total, count = 0.0, 0.0
    for batch in batches:
        lp, n = logps(params, batch)
        total += float(np.sum(np.asarray(lp) * batch["weight"]))
        count += float(np.sum(np.asarray(n) * batch["weight"]))
    return {"nll": -total / max(count, 1.0)}
