"""Markov-chain world: optimal policy, KL, reward, reward law and best-of-n vs exact enumeration.

The reference enumerates all V^T responses for every prompt token in NumPy float64 and computes
the optimal policy as p(y | y_0) e^{r(y)/β} / Z directly over sequences.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rewardjax import theory

V, T, L = 3, 4, 3


def _world(seed, memoryless=False):
    rng = np.random.default_rng(seed)
    start = rng.dirichlet(np.ones(V))
    if memoryless:
        transition = np.broadcast_to(rng.dirichlet(np.ones(V)), (V, V)).copy()
        levels = np.broadcast_to(rng.integers(0, L, size=V), (V, V)).astype(float)
    else:
        transition = rng.dirichlet(np.ones(V), size=V)
        transition[0, 1] = 0.0  # a forbidden bigram
        transition /= transition.sum(-1, keepdims=True)
        levels = rng.integers(0, L, size=(V, V)).astype(float)
    return start, transition, levels


def _enumerate(transition, reward, y0):
    """All responses after y0: (sequences [V^T, T], log p [V^T], reward [V^T])."""
    seqs = np.array(list(itertools.product(range(V), repeat=T)))
    prev = np.concatenate([np.full((len(seqs), 1), y0), seqs[:, :-1]], axis=1)
    with np.errstate(divide="ignore"):
        log_p = np.log(transition[prev, seqs]).sum(-1)
    return seqs, log_p, reward[prev, seqs].sum(-1)


def _ref_optimum(start, transition, reward, beta):
    kl = expected = 0.0
    laws = []
    for y0 in range(V):
        _, log_p, r = _enumerate(transition, reward, y0)
        logits = log_p + r / beta
        q = np.exp(logits - np.logaddexp.reduce(logits))
        on = q > 0
        kl += start[y0] * np.sum(q[on] * (np.log(q[on]) - log_p[on]))
        expected += start[y0] * np.sum(q * r)
        laws.append(q)
    return kl, expected, laws


def _sequence_probs(policy, y0):
    seqs = np.array(list(itertools.product(range(V), repeat=T)))
    prev = np.concatenate([np.full((len(seqs), 1), y0), seqs[:, :-1]], axis=1)
    return np.prod(policy[np.arange(T), prev, seqs], axis=-1)


@pytest.mark.parametrize("memoryless", [False, True])
def test_optimal_policy_matches_enumeration(memoryless):
    start, transition, reward = _world(0, memoryless)
    reward = reward + np.random.default_rng(1).normal(size=(V, V))  # any real reward
    for beta in (0.3, 2.0):
        policy = np.asarray(theory.markov_optimal_policy(transition, reward, beta, length=T))
        assert policy.shape == (T, V, V)
        np.testing.assert_allclose(policy.sum(-1), 1.0, rtol=1e-6)
        kl, expected, laws = _ref_optimum(start, transition, reward, beta)
        for y0 in range(V):
            np.testing.assert_allclose(_sequence_probs(policy, y0), laws[y0], atol=1e-6)
        got = theory.markov_kl_reward_frontier(start, transition, reward, beta, length=T)
        np.testing.assert_allclose(got, (kl, expected), rtol=1e-5)


def test_memoryless_case_is_the_per_token_tilt():
    start, transition, reward = _world(2, memoryless=True)
    p, r = transition[0], reward[0]
    betas = np.array([0.2, 1.0, 5.0])
    policy = theory.markov_optimal_policy(transition, reward, betas, length=T)
    tilt = theory.tilted_distribution(p, r, betas)
    np.testing.assert_allclose(
        policy, np.broadcast_to(tilt[:, None, None], policy.shape), atol=1e-6
    )
    kl, expected = theory.markov_kl_reward_frontier(start, transition, reward, betas, length=T)
    kl1, expected1 = theory.kl_reward_frontier(p, r, betas)
    np.testing.assert_allclose(kl, T * kl1, rtol=1e-5)
    np.testing.assert_allclose(expected, T * expected1, rtol=1e-5)


def test_policy_kl_reward_of_any_policy_matches_enumeration():
    start, transition, reward = _world(3)
    rng = np.random.default_rng(4)
    policy = rng.dirichlet(np.ones(V), size=(T, V)) * (transition > 0)
    policy /= policy.sum(-1, keepdims=True)
    kl, expected = jax.jit(theory.markov_policy_kl_reward)(start, policy, transition, reward)
    ref_kl = ref_r = 0.0
    for y0 in range(V):
        _, log_p, r = _enumerate(transition, reward, y0)
        q = _sequence_probs(policy, y0)
        on = q > 0
        ref_kl += start[y0] * np.sum(q[on] * (np.log(q[on]) - log_p[on]))
        ref_r += start[y0] * np.sum(q * r)
    np.testing.assert_allclose([kl, expected], [ref_kl, ref_r], rtol=1e-5)
    # Mass on a bigram the base model forbids costs infinite KL.
    bad = policy.copy()
    bad[:, 0] = [0.5, 0.5, 0.0]
    assert theory.markov_policy_kl_reward(start, bad, transition, reward)[0] == np.inf


def test_batched_over_worlds_and_betas_and_grads():
    worlds = [_world(s) for s in range(2)]
    start, transition, reward = (np.stack(x) for x in zip(*worlds))
    betas = np.array([0.5, 3.0])[:, None]
    kl, expected = theory.markov_kl_reward_frontier(start, transition, reward, betas, length=T)
    assert kl.shape == (2, 2)
    for k in range(2):
        for w in range(2):
            ref = _ref_optimum(start[w], transition[w], reward[w], betas[k, 0])[:2]
            np.testing.assert_allclose([kl[k, w], expected[k, w]], ref, rtol=1e-5)
    f = lambda rew, beta: theory.markov_kl_reward_frontier(
        start[0], transition[0], rew, beta, length=T
    )
    check_grads(f, (jnp.asarray(reward[0]), 0.8), 1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-3)


def test_extremes_are_finite():
    start, transition, reward = _world(5)
    big = 1e4 * np.sign(reward - 1.0)
    for beta in (1e-3, 1e6):
        out = theory.markov_kl_reward_frontier(start, transition, big, beta, length=T)
        grad = jax.grad(
            lambda rr, b: theory.markov_kl_reward_frontier(start, transition, rr, b, length=T)[1]
        )(jnp.asarray(big), beta)
        assert np.all(np.isfinite(out)) and np.all(np.isfinite(grad))


def test_reward_law_matches_enumeration_and_convolution():
    worlds = [_world(6), _world(7, memoryless=True)]
    transition, levels = np.stack([w[1] for w in worlds]), np.stack([w[2] for w in worlds])
    law = np.asarray(theory.markov_reward_law(transition, levels, length=T, num_levels=L))
    assert law.shape == (2, V, T * (L - 1) + 1)
    for w in range(2):
        for y0 in range(V):
            _, log_p, r = _enumerate(transition[w], levels[w], y0)
            ref = np.bincount(r.astype(int), weights=np.exp(log_p), minlength=law.shape[-1])
            np.testing.assert_allclose(law[w, y0], ref, atol=1e-6)
    # Memoryless: the T-fold convolution of the per-token reward law, whatever y_0.
    token = np.bincount(levels[1, 0].astype(int), weights=transition[1, 0], minlength=L)
    ref = np.array([1.0])
    for _ in range(T):
        ref = np.convolve(ref, token)
    np.testing.assert_allclose(law[1], np.broadcast_to(ref, law[1].shape), atol=1e-6)


def test_reward_law_rejects_off_lattice_rewards():
    _, transition, levels = _world(7)
    with pytest.raises(ValueError, match="bigram_reward"):
        theory.markov_reward_law(transition, levels + 0.5, length=T, num_levels=L)
    with pytest.raises(ValueError, match="bigram_reward"):
        theory.markov_reward_law(transition, levels + L, length=T, num_levels=L)


def _ref_bon(start, transition, levels, n):
    """Best-of-n over enumerated sequences: P(pick y) = p(y)(F^n - F⁻^n)/(F - F⁻), ties uniform."""
    kl = expected = 0.0
    for y0 in range(V):
        _, log_p, r = _enumerate(transition, levels, y0)
        p = np.exp(log_p)
        upper = np.array([p[r <= x].sum() for x in r])
        lower = np.array([p[r < x].sum() for x in r])
        q = np.where(p > 0, p * (upper**n - lower**n) / np.maximum(upper - lower, 1e-300), 0.0)
        on = q > 0
        kl += start[y0] * np.sum(q[on] * np.log(q[on] / p[on]))
        expected += start[y0] * np.sum(q * r)
    return kl, expected


def test_bon_statistics_match_sequence_enumeration_and_monte_carlo():
    start, transition, levels = _world(8)
    ns = np.array([1.0, 2.0, 5.0, 16.0])
    kl, expected = theory.markov_bon_kl_reward(
        start, transition, levels, ns, length=T, num_levels=L
    )
    for i, n in enumerate(ns):
        np.testing.assert_allclose(
            [kl[i], expected[i]], _ref_bon(start, transition, levels, n), rtol=1e-4, atol=1e-5
        )
    assert abs(kl[0]) < 1e-5
    # Monte Carlo: draw n = 5 responses per prompt, keep the best; 20k draws, 5 standard errors.
    rng = np.random.default_rng(9)
    draws, n = 20_000, 5
    y0 = rng.choice(V, size=draws, p=start)
    best = np.zeros(draws)
    for x in range(V):
        _, log_p, r = _enumerate(transition, levels, x)
        rows = y0 == x
        picks = rng.choice(len(r), size=(rows.sum(), n), p=np.exp(log_p) / np.exp(log_p).sum())
        best[rows] = r[picks].max(-1)
    assert abs(best.mean() - expected[2]) < 5 * best.std() / np.sqrt(draws)
