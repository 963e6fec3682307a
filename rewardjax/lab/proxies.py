"""Cheap proxy reward models for the lab: Bradley–Terry on bigram counts, and bootstrap ensembles.

The synthetic task's gold reward is a sum of bigram rewards, r(y_0, y) = Σ_t R[y_{t-1}, y_t], so a
*linear* reward model on bigram counts φ(y)_{ab} = #{t : (y_{t-1}, y_t) = (a, b)} holds the gold
reward in its class: every error of the fitted proxy comes from the data (few pairs, label noise),
none from the architecture. Fitted by penalised maximum likelihood with Newton's method, it costs
milliseconds, so a study's `--smoke` run (and the test suite) can train dozens of them; the full
runs train the transformer reward model with the real trainer instead, scored on every response
by `score_reward_model_run`.

    min_w  (1/B) Σ_i softplus(-w·(φ(y_c^i) - φ(y_r^i))) + (λ/2) |w|²

Papers: Bradley & Terry 1952, "Rank analysis of incomplete block designs"; Gao, Schulman, Hilton
2022, arXiv 2210.10760 (proxy vs gold); Coste et al. 2023, "Reward Model Ensembles Help Mitigate
Overoptimization", arXiv 2310.02743 (ensembles; members here differ by bootstrap resample, the
usual source of diversity for a convex model that every seed fits identically).
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import jax
import ml_collections
import numpy as np
from jaxtyping import Float, Int

from rewardjax import parallel
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.train.tasks import reward_model

__all__ = [
    "ScoredProxy",
    "bigram_counts",
    "bootstrap_bigram_ensemble",
    "fit_bigram_proxy",
    "score_bigram",
    "score_reward_model_run",
]


def bigram_counts(
    y0: Int[np.ndarray, " B"], responses: Int[np.ndarray, "B T"], vocab_size: int
) -> Float[np.ndarray, "B F"]:
    """φ(y)_{a V + b} = #{t : (y_{t-1}, y_t) = (a, b)}, y_0 the prompt's last token; F = V²."""
    full = np.concatenate([np.asarray(y0)[:, None], np.asarray(responses)], axis=1)
    index = full[:, :-1] * vocab_size + full[:, 1:]  # [B, T]
    out = np.zeros((len(full), vocab_size * vocab_size))
    np.add.at(out, (np.arange(len(full))[:, None], index), 1.0)
    return out


def _newton(diff: np.ndarray, l2: float, iterations: int) -> np.ndarray:
    w = np.zeros(diff.shape[1])
    n = len(diff)
    for _ in range(iterations):
        z = diff @ w
        s = 1.0 / (1.0 + np.exp(np.clip(z, -50, 50)))  # σ(-z)
        grad = -(diff * s[:, None]).sum(0) / n + l2 * w
        hess = (diff * (s * (1 - s))[:, None]).T @ diff / n + l2 * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def fit_bigram_proxy(
    pairs: dict[str, np.ndarray],
    vocab_size: int,
    *,
    l2: float = 1e-3,
    iterations: int = 50,
    weight: Float[np.ndarray, " B"] | None = None,
) -> Float[np.ndarray, "V V"]:
    """The penalised Bradley–Terry fit of a bigram reward table to preference pairs.

    Minimises (1/Σw) Σ_i w_i softplus(-Σ_{ab} W_{ab} (φ_c^i - φ_r^i)_{ab}) + (λ/2) Σ W_{ab}²
    (convex; Newton's method to a step below 1e-10).

    Args:
      pairs: `data.synthetic.sample_preference_pairs` output ("prompt" [B, P], "chosen",
        "rejected" [B, T], vocabulary tokens).
      vocab_size: V.
      l2: λ ≥ 0 (> 0 keeps the fit finite when the pairs separate).
      iterations: Newton steps at most.
      weight: per-pair weights [B] (a bootstrap's counts); None weighs all equally.

    Returns:
      W, the proxy's bigram reward table [V, V].
    """
    y0 = pairs["prompt"][:, -1]
    diff = bigram_counts(y0, pairs["chosen"], vocab_size) - bigram_counts(
        y0, pairs["rejected"], vocab_size
    )
    if weight is not None:
        w = np.asarray(weight, np.float64)
        diff = diff[w > 0]
        reps = w[w > 0].astype(int)
        diff = np.repeat(diff, reps, axis=0)
    return _newton(diff, l2, iterations).reshape(vocab_size, vocab_size)


def bootstrap_bigram_ensemble(
    pairs: dict[str, np.ndarray],
    vocab_size: int,
    *,
    members: int,
    seed: int,
    l2: float = 1e-3,
) -> Float[np.ndarray, "E V V"]:
    """E bigram proxies, each fitted on a bootstrap resample (B pairs drawn with replacement).

    Args:
      pairs, vocab_size, l2: as `fit_bigram_proxy`.
      members: E.
      seed: NumPy seed of the resamples.

    Returns:
      [E, V, V] reward tables.
    """
    rng = np.random.default_rng(seed)
    b = len(pairs["prompt"])
    tables = [
        fit_bigram_proxy(
            pairs, vocab_size, l2=l2, weight=np.bincount(rng.integers(0, b, b), minlength=b)
        )
        for _ in range(members)
    ]
    return np.stack(tables)


def score_bigram(
    table: Float[np.ndarray, "*E V V"], y0: Int[np.ndarray, " P"], responses: Int[np.ndarray, "Y T"]
) -> Float[np.ndarray, "*E P Y"]:
    """r(y_0, y) = Σ_t W[y_{t-1}, y_t] of every response [Y, T] to every prompt's y_0 [P]."""
    table = np.asarray(table)
    y0 = np.asarray(y0)
    prev = np.concatenate(
        [
            np.broadcast_to(y0[:, None, None], (len(y0), len(responses), 1)),
            np.broadcast_to(responses[: -0 or None, :-1], (len(y0), *responses[:, :-1].shape)),
        ],
        axis=-1,
    )  # [P, Y, T]
    nxt = np.broadcast_to(responses, (len(y0), *responses.shape))
    return table[..., prev, nxt].sum(-1)


class ScoredProxy(NamedTuple):
    """A trained reward model, its scores of every enumerated response, and its size."""

    law: overopt.SyntheticResponseLaw  # `proxy` [P, Y] (an ensemble's members averaged) or
    # [E, P, Y] (its members, `members=True`)
    num_params: int  # parameters of the reward model (backbone and head)
    model: Any  # the `RewardModel` and its parameters, to score other responses
    params: Any


def score_reward_model_run(
    workdir: str,
    task: synthetic.MarkovTask,
    key: jax.Array,
    *,
    num_prompts: int,
    field: str = "rm_workdir",
    members: bool = False,
) -> ScoredProxy:
    """Loads the reward model a run saved in `workdir` and scores every response to the
    `num_prompts` prompts `key` samples (`overoptimization.synthetic_response_law`).

    Args:
      workdir: a reward-model run of the real trainer (`configs/reward_model.py`) on `task`.
      task: the world it was trained on.
      key: PRNG key of the prompts (the same key gives the same prompts as the study's law).
      num_prompts: P.
      field: the setting that gave `workdir`, for the errors.
      members: keep an ensemble head's E members ([E, P, Y]) instead of their mean.

    Returns:
      ScoredProxy(law with `proxy` [P, Y], parameter count, model, params).
    """
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"{field}={workdir!r}: no config.json; give a reward-model run's workdir.")
    with open(path, encoding="utf-8") as f:
        saved = ml_collections.ConfigDict(json.load(f))
    world = saved.data.synthetic
    if (world.vocab_size, world.length) != (task.vocab_size, task.length):
        raise ValueError(
            f"{field}={workdir!r} was trained on another world (vocab_size, length = "
            f"{world.vocab_size}, {world.length}; the study's: "
            f"{task.vocab_size}, {task.length})."
        )
    mesh = parallel.mesh_from_config(saved.mesh)
    rules = parallel.logical_rules(saved.sharding_rules.to_dict())
    model, params = reward_model.load_trained(workdir, mesh, rules, field=field)
    law = overopt.synthetic_response_law(task, model, params, key, num_prompts=num_prompts)
    if law.proxy.ndim == 3 and not members:
        law = law._replace(proxy=law.proxy.mean(0))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    return ScoredProxy(law, count, model, params)
