"""CGF, rate function (vs scipy's Legendre transform), Rényi cross-entropy, best-of-N ≈ KL-RL."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import optimize

from rewardjax import theory

Y = 5


def _problem(seed):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.ones(Y)), rng.normal(size=Y)


def _ref_cgf(p, r, lam):
    return np.log(np.sum(p * np.exp(lam * r)))


def _ref_rate(p, r, x):
    """sup_θ θx - Λ(θ) by scipy's bounded scalar minimiser (float64)."""
    res = optimize.minimize_scalar(
        lambda t: _ref_cgf(p, r, t) - t * x,
        bounds=(-60, 60),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return -res.fun, res.x


def test_cgf_matches_reference_and_grads():
    p, r = _problem(0)
    lams = np.array([-3.0, 0.0, 0.5, 4.0])
    got = jax.jit(theory.cumulant_generating_function)(p, r, lams)
    np.testing.assert_allclose(got, [_ref_cgf(p, r, lam) for lam in lams], rtol=1e-5, atol=1e-6)
    f = lambda rr, lam: theory.cumulant_generating_function(p, rr, lam)
    check_grads(f, (jnp.asarray(r), 0.7), order=1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-3)
    assert np.isfinite(theory.cumulant_generating_function(p, 1e4 * np.sign(r), 1.0))


def test_rate_function_matches_scipy_legendre_transform():
    p, r = _problem(1)
    lo, hi = r.min(), r.max()
    xs = np.concatenate([np.linspace(lo + 0.02, hi - 0.02, 9), [p @ r]])
    got = theory.rate_function(p, r, xs)
    ref = np.array([_ref_rate(p, r, x) for x in xs])
    np.testing.assert_allclose(got, ref[:, 0], rtol=1e-4, atol=1e-5)
    # dI/dx = θ*(x), the maximiser, by the envelope theorem.
    grads = jax.vmap(jax.grad(theory.rate_function, 2), (None, None, 0))(p, r, xs[2:7])
    np.testing.assert_allclose(grads, ref[2:7, 1], rtol=1e-3, atol=1e-3)


def test_rate_function_edges_and_outside():
    p, r = _problem(2)
    lo, hi = r.min(), r.max()
    got = theory.rate_function(p, r, np.array([lo - 1e-3, lo, p @ r, hi, hi + 1e-3]))
    np.testing.assert_allclose(
        got[1:4], [-np.log(p[r.argmin()]), 0.0, -np.log(p[r.argmax()])], rtol=1e-5, atol=1e-6
    )
    assert got[0] == np.inf and got[4] == np.inf
    # I_{cr}(cx) = I_r(x): the rate is unchanged (and finite) on a ±1e4 reward scale.
    xs = np.array([lo + 0.1, p @ r + 0.1, hi - 0.1])
    np.testing.assert_allclose(
        theory.rate_function(p, 1e4 * r, 1e4 * xs), theory.rate_function(p, r, xs), rtol=1e-3
    )
    # Outcomes with zero probability do not extend the support.
    p0 = np.append(p, 0.0)
    assert theory.rate_function(p0, np.append(r, hi + 1.0), hi + 0.5) == np.inf


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(st.integers(0, 10_000))
def test_rate_function_nonnegative_and_convex(seed):
    p, r = _problem(seed)
    xs = np.linspace(r.min(), r.max(), 41)
    rate = np.asarray(theory.rate_function(p, r, xs))
    assert np.all(rate >= 0)
    # Convexity: second differences ≥ 0 up to float32 rounding.
    assert np.all(rate[:-2] + rate[2:] - 2 * rate[1:-1] >= -1e-5)


def test_tilted_rate_function():
    p, r = _problem(3)
    lam = 0.8
    tilted_mean = np.sum(p * np.exp(lam * r) * r) / np.sum(p * np.exp(lam * r))
    xs = np.array([r.min() + 0.1, p @ r, tilted_mean, r.max() - 0.1])
    got = theory.tilted_rate_function(p, r, lam, xs)
    # I_λ(x) = I(x) - λx + Λ(λ)
    ref = [_ref_rate(p, r, x)[0] - lam * x + _ref_cgf(p, r, lam) for x in xs]
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert abs(got[2]) < 1e-5


def _ref_renyi(p, q, alpha):
    return np.log(np.sum(p * q ** (alpha - 1))) / (1 - alpha)


def test_renyi_cross_entropy_reference_and_alpha_one():
    rng = np.random.default_rng(4)
    p, q = rng.dirichlet(np.ones(Y)), rng.dirichlet(np.ones(Y))
    alphas = np.array([0.3, 0.9, 1.5, 3.0])
    got = jax.jit(theory.renyi_cross_entropy)(p, q, alphas)
    np.testing.assert_allclose(got, [_ref_renyi(p, q, a) for a in alphas], rtol=1e-5)
    cross_entropy = -np.sum(p * np.log(q))
    np.testing.assert_allclose(theory.renyi_cross_entropy(p, q, 1.0), cross_entropy, rtol=1e-6)
    check_grads(
        lambda qq, a: theory.renyi_cross_entropy(p, qq, a),
        (jnp.asarray(q), 1.0),
        order=1,
        modes=["rev"],
        atol=1e-2,
        rtol=1e-2,
        eps=1e-4,
    )
    q0 = np.where(np.arange(Y) == 0, 0.0, q)
    assert theory.renyi_cross_entropy(p, q0 / q0.sum(), 0.5) == np.inf


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(st.integers(0, 10_000), st.floats(1e-6, 5e-2), st.sampled_from([-1.0, 1.0]))
@hypothesis.example(85, 1e-3, 1.0)  # float32 cancellation here once cost 7e-5
@hypothesis.example(0, 1e-4, -1.0)  # both sides of the switch to the expansion
@hypothesis.example(0, 1.0001e-4, 1.0)
def test_renyi_cross_entropy_tends_to_cross_entropy(seed, delta, sign):
    rng = np.random.default_rng(seed)
    p, q = rng.dirichlet(np.ones(Y)), rng.dirichlet(np.ones(Y))
    log_q = np.log(q)
    cross_entropy = -np.sum(p * log_q)
    var = np.sum(p * (log_q + cross_entropy) ** 2)
    got = theory.renyi_cross_entropy(p, q, 1.0 + sign * delta)
    # H_α = CE - (α - 1) Var/2 + O((α - 1)²): continuous across the switch at |α - 1| = 1e-4.
    np.testing.assert_allclose(
        got,
        cross_entropy - sign * delta * var / 2,
        atol=2 * delta**2 * (1 + np.abs(log_q).max() ** 3) + 1e-5,
    )


def _ref_bon_vs_rl(p, levels, delta, n, lam):
    """Exact law of S by repeated np.convolve, best-of-N by the tie-aware order-statistic law."""
    token = np.bincount(levels, weights=p, minlength=levels.max() + 1)
    law = np.array([1.0])
    for _ in range(n):
        law = np.convolve(law, token)
    s = np.arange(len(law))
    big_n = np.exp(n * delta)
    upper, lower = np.cumsum(law), np.cumsum(law) - law
    bon = np.where(law > 0, law * (upper**big_n - lower**big_n) / np.maximum(law, 1e-300), 0)
    on = bon > 0
    kl = np.sum(bon[on] * np.log(bon[on] / law[on]))
    cgf = np.log(np.sum(p * np.exp(lam * levels)))
    return bon @ s / n, kl / n, (kl - lam * (bon @ s)) / n + cgf


def test_bon_vs_kl_rl_matches_convolution_reference_and_converges():
    p = np.array([0.5, 0.3, 0.2])
    levels = np.array([0, 1, 2])
    deltas = np.array([0.15, 0.4])  # two problems in one call
    out = theory.bon_vs_kl_rl(p, levels.astype(float), deltas, max_length=12, num_levels=3)
    assert out.bon_reward.shape == (2, 12)
    for i, delta in enumerate(deltas):
        beta = float(theory.beta_for_kl(p, levels.astype(float), delta))
        q = p * np.exp(levels / beta)
        q /= q.sum()
        np.testing.assert_allclose(out.rl_reward[i], q @ levels, rtol=1e-5)
        for n in (1, 4, 12):
            ref = _ref_bon_vs_rl(p, levels, delta, n, 1 / beta)
            got = [out.bon_reward[i, n - 1], out.bon_kl[i, n - 1], out.bon_rl_kl[i, n - 1]]
            np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)
        # The equivalence: the per-token gap and KL(BoN ‖ KL-RL)/n shrink as n grows.
        gap = np.abs(np.asarray(out.bon_reward[i]) - np.asarray(out.rl_reward[i]))
        assert gap[-1] < gap[0] / 2 and out.bon_rl_kl[i, -1] < out.bon_rl_kl[i, 0] / 2


def test_bon_vs_kl_rl_validates_inputs():
    p = np.array([0.5, 0.3, 0.2])
    with pytest.raises(ValueError, match="kl_budget"):
        theory.bon_vs_kl_rl(p, np.array([0.0, 1.0, 2.0]), 5.0, max_length=4, num_levels=3)
    with pytest.raises(ValueError, match="rewards must hold integer"):
        theory.bon_vs_kl_rl(p, np.array([0.0, 1.5, 2.0]), 0.1, max_length=4, num_levels=3)
