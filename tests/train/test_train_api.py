"""The public names of rewardjax.train."""

from rewardjax import train


def test_all_names_resolve_and_are_sorted():
    assert train.__all__ == sorted(train.__all__, key=lambda n: (not n.isupper(), n))
    for name in train.__all__:
        assert getattr(train, name) is not None, name
    assert set(train.TASKS) == {"reward_model", "dpo", "sft", "rl", "prm"}
