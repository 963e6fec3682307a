"""Exact prefix values on the Markov-chain world vs brute-force enumeration and Monte Carlo.

The reference enumerates, in NumPy float64, every continuation of every prefix of a tiny world
(V = 3, T = 4) and averages the whole-response gold reward under its exact probability — under the
base chain, and under the KL-optimal policy taken as p(y | y_0) e^{r(y)/β} / Z over whole
sequences (no per-step recursion in the reference).
"""

import itertools

import jax
import numpy as np
import pytest

from rewardjax import theory
from rewardjax.data import synthetic
from rewardjax.theory import process

V, T = 3, 4


def _world(seed):
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.ones(V), size=V)
    transition[0, 1] = 0.0  # a forbidden bigram
    transition /= transition.sum(-1, keepdims=True)
    reward = rng.normal(size=(V, V))
    reward[0, 1] = 1e6  # never taken: must not leak into any value
    return transition, reward


def _all_prefixes():
    """Every (y0, prefix) with 0 ≤ t ≤ T, as (y0 [N], padded prefixes [N, T], lengths [N])."""
    y0s, rows, lengths = [], [], []
    for t in range(T + 1):
        for y0 in range(V):
            for prefix in itertools.product(range(V), repeat=t):
                y0s.append(y0)
                rows.append(list(prefix) + [V - 1] * (T - t))  # padding: any id
                lengths.append(t)
    return np.array(y0s), np.array(rows), np.array(lengths)


def _continuations(t):
    """All V^(T-t) continuations of a prefix of length t, shape [V^(T-t), T - t]."""
    conts = list(itertools.product(range(V), repeat=T - t))
    return np.array(conts, int).reshape(V ** (T - t), T - t)


def _brute_force_value(transition, reward, y0, prefix, weight=lambda r: np.ones_like(r)):
    """E[r(y) | y0, prefix] with continuation law ∝ p(cont | prefix) · weight(r(y))."""
    t = len(prefix)
    conts = _continuations(t)
    n = len(conts)
    full = np.concatenate([np.full((n, 1), y0), np.tile(prefix, (n, 1)), conts], 1)
    prev, nxt = full[:, :-1], full[:, 1:]
    total = reward[prev, nxt].sum(-1)
    p = transition[prev[:, t:], nxt[:, t:]].prod(-1)
    w = p * weight(total)
    return np.sum(w * total) / np.sum(w)


def _reference(transition, reward, y0s, rows, lengths, **kw):
    out = []
    for y0, row, t in zip(y0s, rows, lengths):
        prefix = np.asarray(row[:t], int)
        full = np.concatenate([[y0], prefix])
        if t and np.prod(transition[full[:-1], full[1:]]) == 0:
            out.append(np.nan)  # an impossible prefix: no conditional value
        else:
            out.append(_brute_force_value(transition, reward, y0, prefix, **kw))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_prefix_values_match_enumeration_under_base_chain(seed):
    transition, reward = _world(seed)
    y0s, rows, lengths = _all_prefixes()
    w = process.prefix_values(transition, reward, length=T)
    assert w.shape == (T + 1, V)
    np.testing.assert_array_equal(w[T], 0.0)
    got = process.value_of_prefixes(y0s, rows, lengths, values=w, bigram_reward=reward)
    want = _reference(transition, reward, y0s, rows, lengths)
    possible = np.isfinite(want)
    assert possible.sum() > 100
    np.testing.assert_allclose(np.asarray(got)[possible], want[possible], rtol=1e-5, atol=1e-5)


def test_prefix_values_under_tilted_optimal_policy_match_sequence_tilting():
    transition, reward = _world(2)
    reward[0, 1] = 0.3  # the tilted reference below weighs e^{r/β}: keep it finite
    beta = 0.7
    policy = theory.markov_optimal_policy(transition, reward, beta, length=T)
    y0s, rows, lengths = _all_prefixes()
    w = process.prefix_values(transition, reward, length=T, policy=policy)
    got = process.value_of_prefixes(y0s, rows, lengths, values=w, bigram_reward=reward)
    want = _reference(transition, reward, y0s, rows, lengths, weight=lambda r: np.exp(r / beta))
    possible = np.isfinite(want)
    np.testing.assert_allclose(np.asarray(got)[possible], want[possible], rtol=1e-4, atol=1e-4)
    # Tilting towards reward raises the value of every prompt: W_0 under π* beats the base chain.
    base = process.prefix_values(transition, reward, length=T)
    assert np.all(np.asarray(w[0]) > np.asarray(base[0]))


def test_whole_response_value_is_expected_reward_of_markov():
    """W_0 averaged over y_0 equals markov_policy_kl_reward's expected reward (another route)."""
    transition, reward = _world(3)
    start = np.array([0.2, 0.5, 0.3])
    policy = np.broadcast_to(transition, (T, V, V))
    _, expected = theory.markov_policy_kl_reward(start, policy, transition, reward)
    w = process.prefix_values(transition, reward, length=T)
    np.testing.assert_allclose(start @ np.asarray(w[0]), expected, rtol=1e-5)


def test_prefix_values_batched_and_policy_shape_error():
    ts, rs = zip(*(_world(s) for s in range(3)))
    batched = process.prefix_values(np.stack(ts), np.stack(rs), length=T)
    assert batched.shape == (3, T + 1, V)
    for i in range(3):
        np.testing.assert_allclose(batched[i], process.prefix_values(ts[i], rs[i], length=T))
    with pytest.raises(ValueError, match="policy has 2 steps"):
        process.prefix_values(ts[0], rs[0], length=T, policy=np.ones((2, V, V)) / V)


def _task(seed, **kw):
    return synthetic.make_markov_task(
        seed, vocab_size=V, length=T, prompt_length=1, concentration=0.7, **kw
    )


def test_task_prefix_values_and_pattern_bonus_error():
    task = _task(4)
    y0s, rows, lengths = _all_prefixes()
    got = process.task_prefix_values(task, y0s, rows, lengths)
    want = _reference(task.transition, task.bigram_reward, y0s, rows, lengths)
    possible = np.isfinite(want)
    np.testing.assert_allclose(np.asarray(got)[possible], want[possible], rtol=1e-5, atol=1e-5)
    # Full-length prefixes are exactly the gold reward of the data module.
    full = lengths == T
    gold = synthetic.gold_reward(task, y0s[full], rows[full])
    np.testing.assert_allclose(np.asarray(got)[full], gold, rtol=1e-5, atol=1e-5)
    bonus = _task(4, pattern=(0, 1), pattern_bonus=2.0)
    with pytest.raises(ValueError, match=r"pattern bonus.*mc_prefix_values"):
        process.task_prefix_values(bonus, y0s, rows, lengths)
    # A pattern longer than the response never fires: the reward is additive, no error.
    long_pattern = _task(4, pattern=(0,) * (T + 1), pattern_bonus=2.0)
    np.testing.assert_allclose(
        process.task_prefix_values(long_pattern, y0s, rows, lengths), got, rtol=1e-6
    )


def _mc_subset(seed):
    """Five prefixes of every length 0..T (three for t = 0) for the Monte-Carlo tests."""
    y0s, rows, lengths = _all_prefixes()
    rng = np.random.default_rng(seed)
    pick = np.concatenate(
        [
            rng.choice(np.flatnonzero(lengths == t), size=min(5, V**t * V), replace=False)
            for t in range(T + 1)
        ]
    )
    return y0s[pick], rows[pick], lengths[pick]


def _possible(task, y0s, rows, lengths):
    full = np.concatenate([y0s[:, None], rows], 1)
    ok = task.transition[full[:, :-1], full[:, 1:]] > 0
    return np.all(ok | (np.arange(T)[None] >= lengths[:, None]), axis=1)


def _rollout_std(task, y0s, rows, lengths, bonus_weight):
    """Exact conditional standard deviation of the gold reward, by enumeration (for tolerances)."""
    out = []
    for y0, row, t in zip(y0s, rows, lengths):
        conts = _continuations(t)
        resp = np.concatenate([np.tile(row[:t], (len(conts), 1)), conts], 1).astype(int)
        full = np.concatenate([np.full((len(resp), 1), y0), resp], 1)
        p = task.transition[full[:, t:-1], full[:, t + 1 :]].prod(-1)
        r = bonus_weight(resp) + task.bigram_reward[full[:, :-1], full[:, 1:]].sum(-1)
        mean = np.sum(p * r) / p.sum()
        out.append((np.sqrt(np.sum(p * (r - mean) ** 2) / p.sum()), mean))
    return np.array(out).T


def test_mc_prefix_values_converge_to_exact():
    task = _task(5)
    y0s, rows, lengths = _mc_subset(0)
    keep = _possible(task, y0s, rows, lengths)
    y0s, rows, lengths = y0s[keep], rows[keep], lengths[keep]
    exact = np.asarray(process.task_prefix_values(task, y0s, rows, lengths))
    std, mean = _rollout_std(task, y0s, rows, lengths, lambda resp: 0.0)
    np.testing.assert_allclose(exact, mean, rtol=1e-5, atol=1e-5)
    k = 2048
    mc = np.asarray(
        process.mc_prefix_values(jax.random.key(0), task, y0s, rows, lengths, num_rollouts=k)
    )
    assert mc.shape == exact.shape
    # Each label is a mean of k i.i.d. rewards: within 5 standard errors of the truth, and the
    # standardised errors have about unit scale (the labels are neither biased nor over-dispersed).
    z = (mc - exact) / np.maximum(std / np.sqrt(k), 1e-12)
    np.testing.assert_array_less(np.abs(mc - exact), 5 * std / np.sqrt(k) + 1e-5)
    random = std > 0
    assert random.sum() >= 15 and np.sqrt(np.mean(z[random] ** 2)) < 2.0
    # Full-length prefixes have no randomness left: every rollout returns the gold reward.
    full = lengths == T
    gold = synthetic.gold_reward(task, y0s[full], rows[full])
    np.testing.assert_allclose(mc[full], gold, rtol=1e-5, atol=1e-5)


def test_mc_prefix_values_with_pattern_bonus_and_policy():
    """Monte Carlo covers the non-additive pattern bonus (vs enumeration) and any rollout policy."""
    task = _task(6, pattern=(2, 2), pattern_bonus=1.5)

    def bonus(resp):
        return 1.5 * np.any((resp[:, :-1] == 2) & (resp[:, 1:] == 2), axis=1)

    y0s, rows, lengths = _mc_subset(1)
    keep = _possible(task, y0s, rows, lengths)
    y0s, rows, lengths = y0s[keep], rows[keep], lengths[keep]
    std, want = _rollout_std(task, y0s, rows, lengths, bonus)
    k = 2048
    mc = np.asarray(
        process.mc_prefix_values(jax.random.key(1), task, y0s, rows, lengths, num_rollouts=k)
    )
    np.testing.assert_array_less(np.abs(mc - want), 5 * std / np.sqrt(k) + 1e-5)
    # Rollouts under the tilted optimal policy estimate the exact value under that policy.
    additive = _task(6)
    trans, reward = additive.transition, additive.bigram_reward
    policy = theory.markov_optimal_policy(trans, reward, 0.5, length=T)
    exact = process.task_prefix_values(additive, y0s, rows, lengths, policy=policy)
    mc = process.mc_prefix_values(
        jax.random.key(2), additive, y0s, rows, lengths, num_rollouts=k, policy=policy
    )
    np.testing.assert_allclose(mc, exact, atol=0.15)


def test_mc_prefix_values_input_errors():
    task = _task(0)
    with pytest.raises(ValueError, match="num_rollouts"):
        process.mc_prefix_values(jax.random.key(0), task, [0], [[0]], [1], num_rollouts=0)
    with pytest.raises(ValueError, match="L <= T"):
        process.mc_prefix_values(
            jax.random.key(0), task, [0], np.zeros((1, T + 1), int), [1], num_rollouts=2
        )
