"""GoldReward against a NumPy loop over the task's bigrams, invalid rows included."""

import itertools

import numpy as np
import pytest

from rewardjax import data, rewards

V, T, P = 4, 3, 3


@pytest.fixture(scope="module")
def task():
    return data.make_markov_task(
        3, vocab_size=V, length=T, prompt_length=P, pattern=(1, 2), pattern_bonus=0.7
    )


def numpy_gold(task, prompt_ids, prompt_mask, comp_ids, comp_mask, invalid):
    """Independent reference: a Python loop over rows and bigrams on model ids (token = id - 1)."""
    out, bad = [], []
    for pt, pm, ct, cm in zip(prompt_ids, prompt_mask, comp_ids, comp_mask):
        prompt = [int(i) for i, m in zip(pt, pm) if m]
        comp = [int(i) for i, m in zip(ct, cm) if m]
        ok = bool(prompt) and len(comp) == T and all(1 <= i <= V for i in prompt[-1:] + comp)
        if not ok:
            out.append(invalid)
            bad.append(1.0)
            continue
        seq = [prompt[-1] - 1] + [i - 1 for i in comp]
        r = sum(task.bigram_reward[a, b] for a, b in itertools.pairwise(seq))
        y = seq[1:]
        if any(tuple(y[s : s + 2]) == task.pattern for s in range(T - 1)):
            r += task.pattern_bonus
        out.append(r)
        bad.append(0.0)
    return np.asarray(out), np.asarray(bad)


def _rows():
    """Left-padded prompts [B, P+1], right-padded completions [B, T+2] with a stop-less tail."""
    rng = np.random.default_rng(0)
    b, width = 12, T + 2
    prompts = np.zeros((b, P + 1), np.int32)
    pmask = np.zeros_like(prompts)
    comps = rng.integers(1, V + 1, (b, width)).astype(np.int32)  # garbage after the mask ends
    cmask = np.zeros_like(comps)
    for i in range(b):
        prompts[i, 1:] = rng.integers(1, V + 1, P)
        pmask[i, 1:] = 1
        cmask[i, :T] = 1
    prompts[0, 0] = 0  # pad id under mask 0: still valid
    comps[1, 1] = 0  # special id 0 inside the completion
    comps[2, 2] = V + 1  # id >= model_vocab_size
    cmask[3, T - 1] = 0  # one token short
    cmask[4, T] = 1  # one token too many
    pmask[5] = 0  # no prompt
    prompts[6, -1] = V + 3  # y_0 outside the vocabulary
    comps[7, :2] = [2, 3]  # the pattern (1, 2) as ids: the bonus applies
    # row 8: right-padded completion mask starting later (mask is what counts, not the position)
    cmask[8] = 0
    cmask[8, 1 : T + 1] = 1
    return prompts, pmask, comps, cmask


def test_gold_reward_matches_numpy_loop(task):
    prompts, pmask, comps, cmask = _rows()
    gold = rewards.GoldReward(task)
    out = gold(rewards.RewardInputs(prompts, pmask, comps, cmask))
    expected, bad = numpy_gold(task, prompts, pmask, comps, cmask, gold.invalid_reward)
    assert out.rewards.dtype == np.float32 and out.rewards.shape == (12,)
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out.aux["invalid"], bad)
    np.testing.assert_array_equal(bad[:8], [0, 1, 1, 1, 1, 1, 1, 0])
    assert bad[8] == 0 and bad[9:].sum() == 0
    # Dense rewards: on completion positions only, summing to the sequence reward.
    tok = np.asarray(out.token_rewards)
    assert tok.shape == comps.shape
    assert np.all(tok[bad == 0][cmask[bad == 0] == 0] == 0)
    np.testing.assert_allclose(tok.sum(1), expected, rtol=1e-5, atol=1e-5)
    # Bigram rewards at each valid row's completion positions (the pattern bonus at the last one).
    for i in np.flatnonzero(bad == 0):
        seq = [prompts[i, -1] - 1] + [c - 1 for c in comps[i][cmask[i] > 0]]
        bigrams = [task.bigram_reward[a, b] for a, b in itertools.pairwise(seq)]
        np.testing.assert_allclose(tok[i][cmask[i] > 0][:-1], bigrams[:-1], rtol=1e-5, atol=1e-6)


def test_invalid_reward_is_configurable_and_short_width_is_invalid(task):
    prompts, pmask, comps, cmask = _rows()
    out = rewards.GoldReward(task, invalid_reward=-7.0)(
        rewards.RewardInputs(prompts, pmask, comps[:, : T - 1], cmask[:, : T - 1])
    )
    np.testing.assert_array_equal(out.rewards, np.full(12, -7.0, np.float32))
    np.testing.assert_array_equal(out.aux["invalid"], np.ones(12))


@pytest.mark.parametrize("bonus", [0.0, 0.7, -0.5])
def test_min_gold_reward_against_enumeration(bonus):
    task = data.make_markov_task(1, vocab_size=3, length=3, pattern=(0, 1), pattern_bonus=bonus)
    values = []
    for seq in itertools.product(range(3), repeat=4):
        r = sum(task.bigram_reward[a, b] for a, b in itertools.pairwise(seq))
        y = seq[1:]
        r += bonus * any(y[s : s + 2] == (0, 1) for s in range(2))
        values.append(r)
    bound = rewards.min_gold_reward(task)
    if bonus == 0.0:
        assert bound == pytest.approx(min(values), abs=1e-12)
    else:
        assert bound <= min(values) + 1e-12
