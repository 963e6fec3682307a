"""The public names of rewardjax.rewards and the checks on RewardInputs."""

import numpy as np
import pytest

from rewardjax import data, rewards


def test_public_names():
    for name in rewards.__all__:
        assert hasattr(rewards, name), name
    assert {
        "RewardFunction",
        "RewardInputs",
        "RewardOutput",
        "GoldReward",
        "ModelReward",
        "RuleReward",
        "CombinedReward",
        "exact_match",
        "regex_format",
    } <= set(rewards.__all__)


def test_implementations_are_reward_functions():
    task = data.make_markov_task(0, vocab_size=3, length=2)
    rule = rewards.RuleReward(lambda p, c: 1)
    for fn in (rewards.GoldReward(task), rule, rewards.CombinedReward([(rule, 1.0)])):
        assert isinstance(fn, rewards.RewardFunction)
        assert fn.needs_reference is False
    assert not isinstance(lambda inputs: 0, rewards.RewardFunction)


def _ok():
    z = np.zeros((4, 3), np.int32)
    return rewards.RewardInputs(z, z, np.zeros((4, 5), np.int32), np.zeros((4, 5), np.int32))


def test_check_inputs_names_the_field():
    assert rewards.check_inputs(_ok()) == (4, 4)
    assert rewards.check_inputs(_ok()._replace(group_size=2)) == (4, 2)
    with pytest.raises(ValueError, match=r"inputs\.group_size=3 does not divide B=4"):
        rewards.check_inputs(_ok()._replace(group_size=3))
    with pytest.raises(ValueError, match=r"inputs\.completion_mask has shape \(4, 4\)"):
        rewards.check_inputs(_ok()._replace(completion_mask=np.zeros((4, 4))))
    with pytest.raises(ValueError, match=r"inputs\.completion_tokens has 3 rows"):
        rewards.check_inputs(
            _ok()._replace(completion_tokens=np.zeros((3, 5)), completion_mask=np.zeros((3, 5)))
        )
    with pytest.raises(ValueError, match=r"inputs\.prompt_text has 1 strings for B=4"):
        rewards.check_inputs(_ok()._replace(prompt_text=["x"]))
    with pytest.raises(ValueError, match=r"inputs\.prompt_tokens must be 2-D"):
        rewards.check_inputs(_ok()._replace(prompt_tokens=np.zeros(4), prompt_mask=np.zeros(4)))


def test_join_rows_is_the_training_layout():
    prompt = np.asarray([[0, 7, 8], [5, 0, 0]], np.int32)  # left- and right-padded
    pmask = (prompt > 0).astype(np.int32)
    comp = np.asarray([[9, 3, 3], [4, 6, 2]], np.int32)
    cmask = np.asarray([[1, 0, 0], [1, 1, 1]], np.int32)
    tokens, mask, cm = rewards.join_rows(prompt, pmask, comp, cmask)
    np.testing.assert_array_equal(tokens, [[7, 8, 9, 0, 0, 0], [5, 4, 6, 2, 0, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0]])
    np.testing.assert_array_equal(cm, [[0, 0, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0]])
