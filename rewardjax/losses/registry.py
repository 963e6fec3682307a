"""Losses by name, for configs: `get("dpo")`, `names()`. A plain dict built at import."""

from collections.abc import Callable

from rewardjax.losses import listwise, policy, reference_free, reward_model, unpaired

_LOSSES: dict[str, Callable] = {
    fn.__name__: fn
    for fn in (
        reward_model.bradley_terry,
        reward_model.hinge,
        reward_model.thurstone,
        reward_model.reward_centering,
        reward_model.rating_regression,
        reward_model.categorical_rating,
        reward_model.ordinal,
        listwise.plackett_luce,
        listwise.listwise_softmax,
        policy.dpo,
        policy.robust_dpo,
        policy.ipo,
        policy.slic_hinge,
        policy.nca,
        policy.bco,
        policy.sppo_hard,
        policy.apo_zero,
        policy.apo_down,
        policy.exo,
        policy.discopop,
        reference_free.simpo,
        reference_free.orpo,
        unpaired.kto,
    )
}


def names() -> tuple[str, ...]:
    """Returns the registered loss names, sorted."""
    return tuple(sorted(_LOSSES))


def get(name: str) -> Callable:
    """Returns the loss registered under `name`; raises KeyError listing the known names."""
    try:
        return _LOSSES[name]
    except KeyError:
        raise KeyError(f"Unknown loss name {name!r}; known losses: {', '.join(names())}.") from None
