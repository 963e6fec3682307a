"""CombinedReward against NumPy: weighted sums, log-sigmoid centring and PAR on reference samples
from the same rollout, whitening, and the errors without (or with misaligned) references."""

import numpy as np
import pytest

from rewardjax import data, rewards

BYTE = data.ByteTokenizer()
P, N, M = 2, 3, 4
PROMPTS = ["ab", "xyz"]
COMPLETIONS = ["a", "bbb", "ab", "aaaa", "", "ba"]  # N = 3 per prompt
REFERENCES = ["b", "aa", "bab", "a", "aaa", "b", "bb", "abab"]  # M = 4 per prompt


def _inputs(prompts, completions, group_size):
    def pad(texts):
        width = max(1, *map(len, texts))
        ids = np.zeros((len(texts), width), np.int32)
        mask = np.zeros_like(ids)
        for i, t in enumerate(texts):
            ids[i, : len(t)], mask[i, : len(t)] = BYTE.encode(t), 1
        return ids, mask

    return rewards.RewardInputs(*pad(prompts), *pad(completions), group_size=group_size)


INPUTS = _inputs([p for p in PROMPTS for _ in range(N)], COMPLETIONS, N)
REFERENCE = _inputs([p for p in PROMPTS for _ in range(M)], REFERENCES, M)


def count_a(prompt, completion):
    return completion.count("a")  # an int


def longer_than_prompt(prompt, completion):
    return len(completion) > len(prompt)  # a bool


def _numpy_components(prompts, completions):
    return np.asarray(
        [
            [count_a(p, c) for p, c in zip(prompts, completions)],
            [longer_than_prompt(p, c) for p, c in zip(prompts, completions)],
        ],
        np.float64,
    )


def _components():
    return [
        (rewards.RuleReward(count_a, tokenizer=BYTE), 0.5),
        ("long", rewards.RuleReward(longer_than_prompt, tokenizer=BYTE), -2.0),
    ]


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


R = _numpy_components([p for p in PROMPTS for _ in range(N)], COMPLETIONS)  # [2, B]
R_REF = _numpy_components([p for p in PROMPTS for _ in range(M)], REFERENCES)  # [2, P*M]
W = np.asarray([0.5, -2.0])


def test_weighted_sum_against_numpy():
    combined = rewards.CombinedReward(_components())
    assert not combined.needs_reference
    out = combined(INPUTS)
    assert out.rewards.dtype == np.float32
    np.testing.assert_allclose(out.rewards, W @ R, rtol=1e-6)
    np.testing.assert_array_equal(out.aux["0/reward"], R[0])
    np.testing.assert_array_equal(out.aux["long/reward"], R[1])
    np.testing.assert_array_equal(out.aux["invalid"], np.zeros(P * N))


@pytest.mark.parametrize("q", [0.85, 0.5])
def test_log_sigmoid_centering_on_reference_samples(q):
    combined = rewards.CombinedReward(
        _components(), transform="log_sigmoid_centered", reference_quantile=q
    )
    assert combined.needs_reference
    out = combined(INPUTS, REFERENCE)
    expected = np.zeros(P * N)
    for k in range(2):
        for g in range(P):
            r_ref = np.quantile(R_REF[k, g * M : (g + 1) * M], q)
            rows = slice(g * N, (g + 1) * N)
            expected[rows] += W[k] * _log_sigmoid(R[k, rows] - r_ref)
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-6)


def test_preference_as_reward_on_reference_samples():
    out = rewards.CombinedReward(_components(), transform="preference_as_reward")(INPUTS, REFERENCE)
    expected = np.zeros(P * N)
    for k in range(2):
        for i in range(P * N):
            g = i // N
            ref = R_REF[k, g * M : (g + 1) * M]
            expected[i] += W[k] * np.mean(1.0 / (1.0 + np.exp(-(R[k, i] - ref))))
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-6)


def test_whiten_over_the_batch():
    out = rewards.CombinedReward(_components(), transform="whiten")(INPUTS)
    white = (R - R.mean(1, keepdims=True)) / np.sqrt(R.var(1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(out.rewards, W @ white, rtol=1e-5, atol=1e-5)


def test_reference_errors():
    combined = rewards.CombinedReward(_components(), transform="log_sigmoid_centered")
    with pytest.raises(ValueError, match=r"log_sigmoid_centered.*needs per-prompt reference"):
        combined(INPUTS)
    swapped = _inputs([p for p in reversed(PROMPTS) for _ in range(M)], REFERENCES, M)
    with pytest.raises(ValueError, match="prompt group 0 of reference"):
        combined(INPUTS, swapped)
    short = _inputs(["ab"] * 3, REFERENCES[:3], 3)
    with pytest.raises(ValueError, match="not M per prompt"):
        combined(INPUTS, short)
    with pytest.raises(ValueError, match="transform='log_sigmoid'"):
        rewards.CombinedReward(_components(), transform="log_sigmoid")


def test_gold_and_rule_combined():
    """Components of different kinds (a jitted gold reward, a Python rule) combine per row."""
    task = data.make_markov_task(0, vocab_size=3, length=2, prompt_length=1)
    prompts = np.asarray([[1], [2], [3]], np.int32)
    comps = np.asarray([[1, 2], [3, 3], [0, 1]], np.int32)  # the last row is invalid (id 0)
    inputs = rewards.RewardInputs(prompts, np.ones_like(prompts), comps, np.ones_like(comps))
    gold = rewards.GoldReward(task, invalid_reward=-5.0)
    rule = rewards.RuleReward(lambda p, c: 1, tokenizer=BYTE)
    out = rewards.CombinedReward([("gold", gold, 2.0), ("one", rule, 1.0)])(inputs)
    b = task.bigram_reward
    expected = 2.0 * np.asarray([b[0, 0] + b[0, 1], b[1, 2] + b[2, 2], -5.0]) + 1.0
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5)
    np.testing.assert_array_equal(out.aux["invalid"], [0, 0, 1])
    np.testing.assert_array_equal(out.aux["gold/invalid"], [0, 0, 1])


def test_calibrate_and_center_against_numpy():
    cal = rewards.CombinedReward(_components(), transform="calibrate")(INPUTS, REFERENCE)
    expected = np.zeros(P * N)
    for k in range(2):
        for i in range(P * N):
            ref = R_REF[k, (i // N) * M : (i // N + 1) * M]
            expected[i] += W[k] * (np.mean(ref < R[k, i]) + 0.5 * np.mean(ref == R[k, i]))
    np.testing.assert_allclose(cal.rewards, expected, rtol=1e-6, atol=1e-6)
    centered = rewards.CombinedReward(_components(), transform="center")(INPUTS)
    np.testing.assert_allclose(centered.rewards, W @ (R - R.mean(1, keepdims=True)), atol=1e-6)
