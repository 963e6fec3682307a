"""The synthetic Markov gold-reward task against exact enumeration and Monte Carlo."""

import itertools

import jax
import numpy as np
import pytest
from scipy import special, stats

from rewardjax import data
from rewardjax.data import synthetic

V, T = 3, 4


@pytest.fixture(scope="module")
def task():
    return data.make_markov_task(
        0, vocab_size=V, length=T, prompt_length=3, pattern=(0, 2), pattern_bonus=0.7
    )


def all_sequences(length):
    return np.array(list(itertools.product(range(V), repeat=length)), np.int32)


def reference_logprob(transition, y0, ys):
    """Independent loop over tokens: log Π_t transition[y_{t-1}, y_t]."""
    out, prev = 0.0, y0
    for y in ys:
        out += np.log(transition[prev, y])
        prev = y
    return out


def reference_reward(task, y0, ys):
    full = [y0, *ys]
    r = sum(task.bigram_reward[a, b] for a, b in itertools.pairwise(full))
    text, pattern = ",".join(map(str, ys)), ",".join(map(str, task.pattern))
    return r + task.pattern_bonus * (f",{pattern}," in f",{text},")


def test_world_arrays(task):
    assert task.transition.shape == task.bigram_reward.shape == (V, V)
    np.testing.assert_allclose(task.transition.sum(1), 1.0)
    # start_probs is the law of the last of 3 prompt tokens: enumerate all prompts.
    prompts = all_sequences(3)
    p = np.array(
        [
            task.prompt_init[x[0]] * np.exp(reference_logprob(task.transition, x[0], x[1:]))
            for x in prompts
        ]
    )
    np.testing.assert_allclose(p.sum(), 1.0, rtol=1e-6)
    law = np.bincount(prompts[:, -1], weights=p, minlength=V)
    np.testing.assert_allclose(task.start_probs, law, rtol=1e-6)
    np.testing.assert_allclose(np.exp(synthetic.prompt_logprob(task, prompts)), p, rtol=1e-5)
    memoryless = data.make_markov_task(1, vocab_size=V, memoryless=True, reward="token")
    assert (memoryless.transition == memoryless.transition[0]).all()
    assert (memoryless.bigram_reward == memoryless.bigram_reward[0]).all()


def test_logprobs_sum_to_one_and_match_reference(task):
    ys = all_sequences(T)
    logprob = jax.jit(lambda y0, y: synthetic.response_logprob(task, y0, y))
    for y0 in range(V):
        lp = np.asarray(logprob(np.full(len(ys), y0), ys))
        np.testing.assert_allclose(special.logsumexp(lp), 0.0, atol=1e-5)
        ref = [reference_logprob(task.transition, y0, y) for y in ys]
        np.testing.assert_allclose(lp, ref, rtol=1e-5, atol=1e-5)


def test_gold_reward_matches_reference(task):
    ys = all_sequences(T)
    y0 = np.arange(len(ys)) % V
    gold = np.asarray(jax.jit(lambda a, b: synthetic.gold_reward(task, a, b))(y0, ys))
    ref = [reference_reward(task, a, y) for a, y in zip(y0, ys)]
    np.testing.assert_allclose(gold, ref, rtol=1e-5, atol=1e-5)
    assert len({round(g - r, 4) for g, r in zip(gold, ref)}) == 1  # bonus both ways
    assert any(",0,2," in f",{','.join(map(str, y))}," for y in ys)


def test_samples_follow_the_exact_law(task):
    n, y0 = 20000, 1
    ys = np.asarray(synthetic.sample_responses(task, jax.random.key(1), np.full(n, y0)))
    codes = ys @ (V ** np.arange(T)[::-1])
    observed = np.bincount(codes, minlength=V**T)
    exact = np.exp([reference_logprob(task.transition, y0, y) for y in all_sequences(T)])
    # Chi-square goodness of fit (fixed seed; fails only if the sampler's law is wrong).
    assert stats.chisquare(observed, n * exact / exact.sum()).pvalue > 1e-3
    prompts = np.asarray(synthetic.sample_prompts(task, jax.random.key(2), n))
    counts = np.bincount(prompts[:, -1], minlength=V)
    assert stats.chisquare(counts, n * task.start_probs).pvalue > 1e-3


@pytest.mark.parametrize(("beta", "flip_rate"), [(1.0, 0.0), (2.5, 0.2)])
def test_pair_labels_follow_bradley_terry(task, beta, flip_rate):
    n = 20000
    pairs = synthetic.sample_preference_pairs(
        task, jax.random.key(3), n, beta=beta, flip_rate=flip_rate
    )
    y0 = pairs["prompt"][:, -1]
    for name in ("chosen", "rejected"):
        ref = [reference_reward(task, a, y) for a, y in zip(y0[:500], pairs[name][:500])]
        np.testing.assert_allclose(pairs[f"{name}_gold"][:500], ref, rtol=1e-5, atol=1e-5)
    diff = pairs["chosen_gold"] - pairs["rejected_gold"]
    gap = np.abs(diff)
    keep = gap > 1e-6
    # Given |Δ|, the better response is chosen with probability (1-f)σ(β|Δ|) + f σ(-β|Δ|).
    p_better = (1 - flip_rate) * special.expit(beta * gap) + flip_rate * special.expit(-beta * gap)
    wins = (diff > 0)[keep]
    for lo, hi in ((0, 0.5), (0.5, 1.5), (1.5, np.inf)):
        sel = (gap[keep] >= lo) & (gap[keep] < hi)
        expected, m = p_better[keep][sel].mean(), sel.sum()
        tolerance = 4 * np.sqrt(expected * (1 - expected) / m)  # 4 standard errors
        assert m > 500 and abs(wins[sel].mean() - expected) < tolerance


def test_batches_use_offset_ids(task):
    # n = 20000 as above, so the sampler is not compiled again for another shape.
    pairs = synthetic.sample_preference_pairs(task, jax.random.key(4), 20000)
    pairs = {k: v[:10] for k, v in pairs.items()}
    batch = synthetic.pairs_to_batch(pairs)
    assert sorted(batch) == sorted((*data.BATCH_KEYS["pairwise"], "chosen_gold", "rejected_gold"))
    assert batch["chosen_tokens"].shape == (10, 3 + T) and batch["chosen_tokens"].min() >= 1
    assert batch["chosen_tokens"].max() <= V == task.model_vocab_size - 1
    np.testing.assert_array_equal(
        synthetic.to_tokens(batch["chosen_tokens"])[:, 3:], pairs["chosen"]
    )
    np.testing.assert_array_equal(batch["chosen_completion_mask"][0], [0, 0, 0] + [1] * T)
    # Gold rewards recomputed from the batch's own ids.
    tokens = synthetic.to_tokens(batch["rejected_tokens"])
    gold = synthetic.gold_reward(task, tokens[:, 2], tokens[:, 3:])
    np.testing.assert_allclose(batch["rejected_gold"], gold, rtol=1e-6)
    # Through the grain pipeline: same keys and values, reordered.
    out = list(
        data.batches(synthetic.pairs_to_dataset(pairs), global_batch_size=5, seed=0, num_epochs=1)
    )
    merged = {k: np.concatenate([b[k] for b in out]) for k in batch}
    rows = lambda b: sorted(zip(*(map(tuple, b[k].reshape(10, -1).tolist()) for k in sorted(b))))
    assert rows(merged) == rows(batch)


def test_theory_applies_to_the_task():
    """rewardjax.theory's exact optimum on the task's arrays agrees with enumeration here."""
    from rewardjax import theory

    additive = data.make_markov_task(5, vocab_size=V, length=T, prompt_length=2)
    ys, beta = all_sequences(T), 0.5
    policy = theory.markov_optimal_policy(
        additive.transition, additive.bigram_reward, beta, length=T
    )
    for y0 in range(V):
        y0s = np.full(len(ys), y0)
        log_p = np.asarray(synthetic.response_logprob(additive, y0s, ys))
        gold = np.asarray(synthetic.gold_reward(additive, y0s, ys))
        tilted = special.softmax(log_p + gold / beta)  # π*(y | y0) ∝ p(y | y0) e^{r(y)/β}
        full = np.concatenate([y0s[:, None], ys], axis=1)
        steps = np.asarray(policy)[np.arange(T), full[:, :-1], full[:, 1:]]
        np.testing.assert_allclose(steps.prod(-1), tilted, rtol=1e-4, atol=1e-7)
    base = np.broadcast_to(additive.transition, (T, V, V))
    kl, reward = theory.markov_policy_kl_reward(
        additive.start_probs, base, additive.transition, additive.bigram_reward
    )
    y0s = np.repeat(np.arange(V), len(ys))
    tiled = np.tile(ys, (V, 1))
    weights = additive.start_probs[y0s] * np.exp(synthetic.response_logprob(additive, y0s, tiled))
    expected = (weights * synthetic.gold_reward(additive, y0s, tiled)).sum()
    np.testing.assert_allclose([kl, reward], [0.0, expected], atol=1e-5)
