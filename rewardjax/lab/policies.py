"""Trained policies on the enumerated world: their exact law, KL, gold and proxy reward.

On the synthetic task with every response enumerated (`overoptimization.synthetic_response_law`),
a trained policy (SFT, DPO, RL, BOND...) needs no sampling to be judged: its log-probability of
every response is one batched forward pass,

    log π(y | x) = Σ_t log softmax(restrict(logits_{t-1}))[y_t],

over the task's tokens only (`sampling.restrict_logits`, ids 1..V: the law the RL sampler draws
from, and a distribution over the enumerated responses), so its KL to any reference law and its
expected gold and proxy rewards are exact sums. This is what puts DPO and RL points on the same
axes as best-of-n's exact law and the exact KL-regularised optimum.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jaxtyping import Float

from rewardjax import parallel, sampling
from rewardjax.data import synthetic
from rewardjax.evaluate.overoptimization import SyntheticResponseLaw
from rewardjax.models import CausalLM
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.tasks.common import backbone_config

__all__ = ["PolicyPoint", "load_policy", "policy_point", "response_logprobs"]

POLICY_TASKS = ("sft", "dpo", "rl")


def load_policy(workdir: str) -> tuple[CausalLM, Any, ml_collections.ConfigDict]:
    """(model, params, config) of the policy an SFT, DPO or RL run in `workdir` last saved.

    RL checkpoints hold `{"policy": ..., "value": ...}`; the policy's part is returned.
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file; give the work directory of an SFT, DPO or RL run.")
    with open(path, encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f))
    if config.task not in POLICY_TASKS:
        raise ValueError(f"{workdir!r} is a {config.task!r} run; give one of {POLICY_TASKS}.")
    model = CausalLM(backbone_config(config))
    mesh = parallel.mesh_from_config(config.mesh)
    rules = parallel.logical_rules(config.sharding_rules.to_dict())
    example = jnp.ones((1, 8), jnp.int32)
    with parallel.mesh_rules(mesh, rules):
        abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), example)
    target = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nn.meta.unbox(abstract),
        parallel.logical_shardings(abstract, mesh, rules),
    )
    if config.task == "rl":
        target = {"policy": target}
    params = Checkpointer(os.path.join(workdir, "checkpoints")).restore_params(target)
    return model, params["policy"] if config.task == "rl" else params, config


@functools.partial(jax.jit, static_argnames=("model", "high"))
def _logprobs(model, params, rows, *, high):
    logits, _ = model.apply(params, rows, segment_ids=jnp.ones_like(rows))
    logp = jax.nn.log_softmax(sampling.restrict_logits(logits[:, :-1], (1, high)), axis=-1)
    return jnp.take_along_axis(logp, rows[:, 1:, None], axis=-1)[..., 0]


def response_logprobs(
    model: CausalLM, params: Any, law: SyntheticResponseLaw, *, batch_size: int = 4096
) -> Float[np.ndarray, "P Y"]:
    """log π(y | x) of every enumerated response to every prompt of `law`, float64 `[P, Y]`.

    Restricted to the task's V tokens (ids 1..V, `synthetic.to_ids`), so `exp` sums to 1 over
    the Y = V^T responses of a prompt. One jitted forward pass per `batch_size` rows.
    """
    prompts, responses = law.prompts, law.responses
    num_prompts, count = len(prompts), len(responses)
    width = prompts.shape[1]
    rows = np.concatenate(
        [np.repeat(prompts, count, 0), np.tile(responses, (num_prompts, 1))], axis=1
    )
    rows = np.asarray(synthetic.to_ids(rows), np.int32)
    total, pad = len(rows), -len(rows) % batch_size
    rows = np.pad(rows, ((0, pad), (0, 0)), constant_values=1)
    high = int(law.responses.max()) + 1 + synthetic.ID_OFFSET
    high = max(high, int(prompts.max()) + 1 + synthetic.ID_OFFSET)
    out = [
        np.asarray(_logprobs(model, params, rows[i : i + batch_size], high=high), np.float64)
        for i in range(0, len(rows), batch_size)
    ]
    token_logp = np.concatenate(out)[:total, width - 1 :]  # the response tokens' log-probs
    return token_logp.sum(-1).reshape(num_prompts, count)


class PolicyPoint(NamedTuple):
    """A policy's exact place on the KL-reward plane (means over the law's prompts)."""

    kl: float  # mean_x KL(π(·|x) ‖ reference(·|x)), nats
    gold: float  # mean_x E_π[gold]
    proxy: float  # mean_x E_π[proxy] (NaN without a proxy)


def policy_point(
    logprobs: Float[np.ndarray, "P Y"],
    law: SyntheticResponseLaw,
    *,
    reference_logprobs: Float[np.ndarray, "P Y"] | None = None,
    proxy: Float[np.ndarray, "P Y"] | None = None,
) -> PolicyPoint:
    """KL(π ‖ reference), E_π[gold] and E_π[proxy], exact, averaged over prompts.

    Args:
      logprobs: log π over the enumerated responses (`response_logprobs`).
      law: the world (gold rewards, and the base law π_0 = `law.probs`).
      reference_logprobs: the law the KL is to (e.g. the SFT policy's `response_logprobs`, the
        reference a DPO or RL run was regularised to); default log π_0.
      proxy: a proxy reward per response; default `law.proxy` when it is [P, Y].
    """
    logprobs = np.asarray(logprobs, np.float64)
    probs = np.exp(logprobs)
    if reference_logprobs is None:
        with np.errstate(divide="ignore"):
            reference_logprobs = np.log(law.probs)
    ratio = np.where(probs > 0, logprobs - reference_logprobs, 0.0)
    kl = float(np.mean(np.sum(probs * ratio, -1)))
    gold = float(np.mean(np.sum(probs * law.gold, -1)))
    proxy = law.proxy if proxy is None and np.ndim(law.proxy) == 2 else proxy
    value = float(np.mean(np.sum(probs * proxy, -1))) if proxy is not None else float("nan")
    return PolicyPoint(kl, gold, value)
