"""Losses by name, for configs: `get("dpo")`, `names()`, and `spec(name)`: what a trainer needs to
know about a loss besides the function (the batch layout it trains on, whether it reads a reward
model's scores or a policy's log-probs, whether it needs a reference policy, and the implicit
reward a policy trained by it assigns). A plain dict built at import; trainers read the spec
instead of checking names."""

from collections.abc import Callable
from typing import NamedTuple

from jaxtyping import Array, Float

from rewardjax.losses import (
    listwise,
    logprobs,
    policy,
    process,
    reference_free,
    reward_model,
    unpaired,
)

__all__ = ["LossSpec", "get", "names", "spec"]

# How a policy scores a response, from its summed completion log-probs, the reference's (None for
# reference-free losses) and the completion lengths: `(policy, reference, lengths, *, beta) -> [B]`.
ImplicitReward = Callable[..., Float[Array, "*B"]]


def _dpo_reward(policy_logps, reference_logps, lengths, *, beta):
    del lengths
    return logprobs.implicit_reward(policy_logps, reference_logps, beta=beta)


def _simpo_reward(policy_logps, reference_logps, lengths, *, beta):
    """β·log π(y|x)/|y| (SimPO's length-normalised reward, arXiv 2405.14734)."""
    del reference_logps
    return beta * policy_logps / lengths


def _orpo_reward(policy_logps, reference_logps, lengths, *, beta):
    """log odds of the mean token probability (ORPO's odds ratio, arXiv 2403.07691)."""
    del reference_logps, beta
    return reference_free._log_odds(policy_logps / lengths)


class LossSpec(NamedTuple):
    """A registered loss and how a trainer uses it.

    Attributes:
      fn: the per-example loss.
      layout: the batch layout it trains on (`rewardjax.data.BATCH_KEYS`): "pairwise" (also the
        ordered pairs of ranked lists), "ranked", "rating", "unpaired" or "steps"
        (process rewards: one score or label per step).
      inputs: "scores" (a reward model's outputs) or "logprobs" (a policy's completion log-probs).
      reference: policy losses: it reads the reference policy's log-probs.
      implicit_reward: policy losses: `(policy_logps [B], reference_logps [B] | None,
        lengths [B], *, beta) -> [B]`, the reward the trained policy assigns (what evaluation
        ranks pairs by); None for reward-model losses.
    """

    fn: Callable[..., Float[Array, "*B"]]
    layout: str
    inputs: str
    reference: bool = False
    implicit_reward: ImplicitReward | None = None


def _score(fn, layout="pairwise"):
    return LossSpec(fn, layout, "scores")


def _policy(fn, implicit=_dpo_reward, reference=True, layout="pairwise"):
    return LossSpec(fn, layout, "logprobs", reference, implicit)


_LOSSES: dict[str, LossSpec] = {
    s.fn.__name__: s
    for s in (
        _score(reward_model.bradley_terry),
        _score(reward_model.hinge),
        _score(reward_model.thurstone),
        _score(reward_model.reward_centering),
        _score(reward_model.rating_regression, "rating"),
        _score(reward_model.categorical_rating, "rating"),
        _score(reward_model.ordinal, "rating"),
        _score(listwise.plackett_luce, "ranked"),
        _score(listwise.listwise_softmax, "ranked"),
        _policy(policy.dpo),
        _policy(policy.robust_dpo),
        _policy(policy.ipo),
        _policy(policy.slic_hinge),
        _policy(policy.nca),
        _policy(policy.bco),
        _policy(policy.sppo_hard),
        _policy(policy.apo_zero),
        _policy(policy.apo_down),
        _policy(policy.exo),
        _policy(policy.discopop),
        _policy(reference_free.simpo, _simpo_reward, reference=False),
        _policy(reference_free.orpo, _orpo_reward, reference=False),
        _policy(unpaired.kto, layout="unpaired"),
        _score(process.step_cross_entropy, "steps"),
        _score(process.step_bradley_terry, "steps"),
        _policy(process.implicit_prm_outcome_loss, layout="steps"),
    )
}


def names() -> tuple[str, ...]:
    """Returns the registered loss names, sorted."""
    return tuple(sorted(_LOSSES))


def spec(name: str) -> LossSpec:
    """Returns the `LossSpec` of the loss registered under `name`.

    Raises:
      ValueError: `name` is not registered (the message lists the known names).
    """
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(
            f"unknown loss name {name!r}; known losses: {', '.join(names())}."
        ) from None


def get(name: str) -> Callable[..., Float[Array, "*B"]]:
    """Returns the loss registered under `name`; raises ValueError listing the known names."""
    return spec(name).fn
