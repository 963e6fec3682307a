"""Tilted optimum, KL–reward frontier and beta_for_kl against NumPy float64 references."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rewardjax import theory

Y = 6


def _problem(seed, y=Y, zeros=False):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(y))
    if zeros:
        p[rng.integers(y)] = 0.0
        p /= p.sum()
    return p, rng.normal(size=y)


def _ref_tilt(p, r, beta):
    logits = np.where(p > 0, np.log(np.where(p > 0, p, 1)) + r / beta, -np.inf)
    q = np.exp(logits - logits.max())
    q /= q.sum()
    on = q > 0
    kl = np.sum(q[on] * np.log(q[on] / p[on]))
    return q, kl, np.sum(q * r)


def test_tilted_distribution_and_frontier_match_reference_batched():
    problems = [_problem(s, zeros=s % 2 == 0) for s in range(3)]
    p = np.stack([x[0] for x in problems])
    r = np.stack([x[1] for x in problems])
    betas = np.array([0.05, 0.3, 1.0, 7.0])
    q = jax.jit(theory.tilted_distribution)(p, r, betas[:, None])
    kl, reward = theory.kl_reward_frontier(p, r, betas[:, None])
    assert q.shape == (4, 3, Y) and kl.shape == (4, 3)
    for k, beta in enumerate(betas):
        for b in range(3):
            rq, rkl, rr = _ref_tilt(p[b], r[b], beta)
            np.testing.assert_allclose(q[k, b], rq, atol=1e-6)
            np.testing.assert_allclose(kl[k, b], rkl, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(reward[k, b], rr, rtol=1e-5, atol=1e-5)


def test_zero_probability_outcomes_equal_slicing():
    p, r = _problem(0, zeros=True)
    keep = p > 0
    r_masked = np.where(keep, r, 123.0)  # a huge reward off the support must not matter
    for beta in (0.1, 2.0):
        kl_m, rew_m = theory.kl_reward_frontier(p, r_masked, beta)
        kl_s, rew_s = theory.kl_reward_frontier(p[keep], r[keep], beta)
        np.testing.assert_allclose([kl_m, rew_m], [kl_s, rew_s], rtol=1e-6)
        q = theory.tilted_distribution(p, r_masked, beta)
        assert np.all(q[~keep] == 0)
    np.testing.assert_allclose(theory.max_kl(p, r_masked), theory.max_kl(p[keep], r[keep]))


def test_limits_and_extremes_are_finite():
    p, r = _problem(1)
    # β → ∞ is the base law; β → 0 is the argmax with KL = log 1/p(argmax).
    kl, reward = theory.kl_reward_frontier(p, r, jnp.array([jnp.inf, 1e-6]))
    np.testing.assert_allclose(kl, [0.0, -np.log(p[np.argmax(r)])], atol=1e-6)
    np.testing.assert_allclose(reward, [p @ r, r.max()], rtol=1e-6)
    big = 1e4 * np.sign(r)
    for beta in (1e-3, 1.0, 1e6):
        out = theory.kl_reward_frontier(p, big, beta)
        grads = jax.grad(lambda rr, b: sum(theory.kl_reward_frontier(p, rr, b)), (0, 1))(
            jnp.asarray(big), beta
        )
        assert all(np.all(np.isfinite(x)) for x in (*out, *grads))


def test_grads():
    p, r = _problem(2)
    f = lambda rr, beta: theory.kl_reward_frontier(p, rr, beta)
    check_grads(f, (jnp.asarray(r), 0.7), order=1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-3)
    g = lambda rr, beta: theory.tilted_distribution(p, rr, beta)
    check_grads(g, (jnp.asarray(r), 0.7), order=1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-3)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(st.integers(0, 10_000), st.floats(-2.0, 2.0))
def test_frontier_monotone_with_slope_beta(seed, log_beta):
    # float64: near the argmax (small β) neighbouring frontier points differ below float32 precision
    # (the property is about the formula, not rounding).
    p, r = _problem(seed)
    beta = float(np.exp(log_beta))
    with jax.enable_x64(True):
        betas = beta * np.array([0.99, 1.0, 1.01])
        kl, reward = theory.kl_reward_frontier(p, r, betas)
        assert np.all(np.diff(kl) < 0) and np.all(np.diff(reward) < 0)
        # dE/dKL = β, by central differences (error O(1e-4) relative).
        slope = (reward[2] - reward[0]) / (kl[2] - kl[0])
    np.testing.assert_allclose(slope, beta, rtol=2e-3)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(st.integers(0, 10_000), st.floats(0.01, 0.97))
def test_beta_for_kl_achieves_budget(seed, fraction):
    p, r = _problem(seed)
    limit = -np.log(p[np.argmax(r)])
    budget = fraction * limit
    beta = theory.beta_for_kl(p, r, budget)
    _, kl, _ = _ref_tilt(p, r, float(beta))
    np.testing.assert_allclose(kl, budget, atol=1e-5, rtol=1e-5)


def test_beta_for_kl_vectorised_jitted_and_differentiable():
    p, r = _problem(3)
    limit = -np.log(p[np.argmax(r)])
    budgets = np.array([0.0, 0.05, 0.5, 0.9]) * limit
    betas = jax.jit(theory.beta_for_kl)(p, r, budgets)
    assert betas[0] == np.inf
    kl, _ = theory.kl_reward_frontier(p, r, betas[1:])
    np.testing.assert_allclose(kl, budgets[1:], rtol=1e-5)
    # Implicit derivative: dβ/dΔ = 1 / (dKL/dβ) = -β³ / Var_q(r).
    beta = float(betas[2])
    q, _, mean = _ref_tilt(p, r, beta)
    expected = -(beta**3) / np.sum(q * (r - mean) ** 2)
    grad = jax.grad(theory.beta_for_kl, 2)(p, r, budgets[2])
    np.testing.assert_allclose(grad, expected, rtol=1e-3)
    f = lambda rr, d: theory.beta_for_kl(p, rr, d)
    check_grads(
        f, (jnp.asarray(r), budgets[2]), order=1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-3
    )
    # Many problems at once.
    many = [_problem(s) for s in range(4)]
    pm, rm = np.stack([x[0] for x in many]), np.stack([x[1] for x in many])
    bm = theory.beta_for_kl(pm, rm, 0.3)
    np.testing.assert_allclose(theory.kl_reward_frontier(pm, rm, bm)[0], 0.3, rtol=1e-5)


def test_beta_for_kl_infeasible_budget():
    p, r = _problem(4)
    limit = -np.log(p[np.argmax(r)])
    for budget in (limit + 0.1, -0.1):
        with pytest.raises(ValueError, match="kl_budget"):
            theory.beta_for_kl(p, r, budget)
    with pytest.raises(ValueError, match="kl_budget"):
        theory.beta_for_kl(p, r, np.array([0.1, limit + 1.0]))
    assert np.isnan(jax.jit(theory.beta_for_kl)(p, r, limit + 0.1))
    # A constant reward cannot move away from p at all.
    with pytest.raises(ValueError, match="kl_budget"):
        theory.beta_for_kl(p, np.ones(Y), 0.1)


def test_public_names_exist():
    for name in theory.__all__:
        assert hasattr(theory, name), name
