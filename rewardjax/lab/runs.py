"""A trained policy's exact path on the KL-reward plane, from the checkpoints its run saved.

An RL or DPO run of the real trainer saves its parameters every `train.checkpoint_every` steps
(keep them all with `train.max_to_keep`); on the enumerated world each saved policy π_s has an
exact point (`policies.policy_point`):

    KL_s = mean_x Σ_y π_s(y|x) log(π_s(y|x) / π_ref(y|x)),
    gold_s = mean_x Σ_y π_s(y|x) gold(x, y),

so two runs (a single reward model vs an ensemble; DPO vs robust DPO) are compared at equal KL by
reading both paths on one KL grid (`study.at_kl`), with no sampling noise.

Papers: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization", arXiv
2210.10760 (gold reward against KL along an RL run); Coste et al. 2023, arXiv 2310.02743.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import jax
import numpy as np
from jaxtyping import Float

from rewardjax.evaluate.overoptimization import SyntheticResponseLaw
from rewardjax.lab.policies import PolicyPoint, load_policy, policy_point, response_logprobs
from rewardjax.lab.study import at_kl
from rewardjax.train.checkpoint import Checkpointer

__all__ = ["RunPath", "checkpoint_path", "path_at_kl"]


class RunPath(NamedTuple):
    """A run's exact points, one per saved step (step 0: the reference itself), each [S]."""

    step: np.ndarray
    kl: np.ndarray
    gold: np.ndarray
    proxy: np.ndarray  # NaN without a proxy


def checkpoint_path(
    workdir: str,
    reference_law: SyntheticResponseLaw,
    *,
    proxy: Float[np.ndarray, "P Y"] | None = None,
    include_reference: bool = True,
) -> RunPath:
    """The exact (KL, gold, proxy) of every checkpoint an SFT, DPO or RL run in `workdir` kept.

    Args:
      workdir: the run's work directory (its config.json and checkpoints/).
      reference_law: the world with `probs` = the law the run was regularised to (e.g. the SFT
        policy's, `experiments._world.sft_reference`); KLs are to it.
      proxy: a reward per enumerated response [P, Y] to average too (e.g. the ensemble's mean).
      include_reference: prepend step 0 = the reference law itself (KL 0).

    Returns:
      RunPath, steps ascending.
    """
    model, params, config = load_policy(workdir)
    target = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), params
    )
    if config.task == "rl":
        target = {"policy": target}
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    steps = sorted(checkpointer.all_steps())
    if not steps:
        raise ValueError(f"{workdir}/checkpoints holds no checkpoint; train the run first.")
    points: list[tuple[int, PolicyPoint]] = []
    if include_reference:
        logp = np.log(np.maximum(reference_law.probs, 1e-300))
        points.append((0, policy_point(logp, reference_law, proxy=proxy)))
    for step in steps:
        restored = checkpointer.restore_params(target, step=step)
        restored = restored["policy"] if config.task == "rl" else restored
        logp = response_logprobs(model, restored, reference_law)
        points.append((step, policy_point(logp, reference_law, proxy=proxy)))
    checkpointer.close()
    return RunPath(
        step=np.array([s for s, _ in points]),
        kl=np.array([p.kl for _, p in points]),
        gold=np.array([p.gold for _, p in points]),
        proxy=np.array([p.proxy for _, p in points]),
    )


def path_at_kl(path: RunPath, grid: Float[np.ndarray, " G"]) -> Float[np.ndarray, " G"]:
    """A run's gold reward at the KLs of `grid`: linear interpolation between its points taken in
    step order up to its largest KL (the path's KL need not be monotone in the step; the prefix
    up to the first time it reaches its maximum KL is used), NaN beyond that KL.

    Args:
      path: `checkpoint_path`'s points.
      grid: KLs [G].

    Returns:
      gold [G].
    """
    stop = int(np.argmax(path.kl)) + 1
    kl = np.maximum.accumulate(path.kl[:stop])  # non-decreasing in the step
    keep = np.concatenate([[True], np.diff(kl) > 0])
    return at_kl(kl[keep], path.gold[:stop][keep], grid)
