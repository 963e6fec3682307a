"""Tests for rewardjax.bon against exact enumeration, float64 NumPy formulas and Monte Carlo."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.special import gammaln

from rewardjax import bon

# --- independent references (NumPy, float64) -------------------------------------------------


def enumerate_bon(p, r, n):
    """Best-of-n law by enumerating all Y^n draws, ties split uniformly among the tied draws."""
    law = np.zeros(len(p))
    for draw in itertools.product(range(len(p)), repeat=n):
        prob = np.prod(p[list(draw)])
        best = max(r[d] for d in draw)
        winners = [d for d in draw if r[d] == best]
        for w in winners:
            law[w] += prob / len(winners)
    return law


def enumerate_soft_bon(p, r, n, temperature):
    law = np.zeros(len(p))
    for draw in itertools.product(range(len(p)), repeat=n):
        prob = np.prod(p[list(draw)])
        w = np.exp(r[list(draw)] / temperature)
        for d, wi in zip(draw, w / w.sum()):
            law[d] += prob * wi
    return law


def formula_bon(p, r, n):
    """π (F^n - F⁻^n)/(F - F⁻) in float64, F and F⁻ by counting with a sorted copy of r."""
    p, r = np.asarray(p, np.float64), np.asarray(r, np.float64)
    order = np.argsort(r)
    cum = np.concatenate([[0.0], np.cumsum(p[order])])
    cdf = cum[np.searchsorted(r[order], r, side="right")]
    below = cum[np.searchsorted(r[order], r, side="left")]
    return p * (cdf**n - below**n) / (cdf - below)


@jax.jit
def stats(p, r, n):
    """All four exact statistics in one compiled call (shared sort), to keep the suite fast."""
    return (
        bon.bon_distribution(p, r, n),
        bon.bon_kl(p, r, n),
        bon.bon_expected_reward(p, r, n),
        bon.bon_win_rate(p, r, n),
    )


def kl(q, p):
    m = q > 0
    return float(np.sum(q[m] * np.log(q[m] / p[m])))


def random_law(rng, size, ties=True):
    p = rng.dirichlet(np.ones(size))
    r = rng.integers(0, 4, size).astype(float) if ties else rng.permutation(size).astype(float)
    return p, r


# --- exact law ---------------------------------------------------------------------------------


def test_bon_distribution_matches_enumeration_for_many_n_and_problems():
    rng = np.random.default_rng(0)
    laws = [random_law(rng, 4) for _ in range(3)]
    probs = np.stack([p for p, _ in laws])
    rewards = np.stack([r for _, r in laws])
    ns = np.arange(1, 5, dtype=np.float32)[:, None]  # [K, 1] against batch [B]
    law, kls, reward, win = stats(probs, rewards, ns)
    assert law.shape == (4, 3, 4) and kls.shape == win.shape == (4, 3)
    for k, n in enumerate(range(1, 5)):
        for b, (p, r) in enumerate(laws):
            want = enumerate_bon(p, r, n)
            np.testing.assert_allclose(law[k, b], want, atol=2e-6)
            np.testing.assert_allclose(kls[k, b], kl(want, p), atol=2e-6)
            np.testing.assert_allclose(reward[k, b], want @ r, atol=1e-5)
            # Win rate against one base sample, ties counted half.
            beats = np.sign(r[:, None] - r[None, :]) / 2 + 0.5
            np.testing.assert_allclose(win[k, b], want @ beats @ p, atol=2e-6)
    np.testing.assert_allclose(win[0], 0.5, atol=1e-6)


def test_real_n_and_large_n_match_float64_formula():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.full(1000, 0.3))  # many tiny atoms, some near the top
    r = rng.integers(0, 400, 1000).astype(float)
    ns = np.array([1.0, 1.5, 7.3, 1e3, 1e5])
    got = np.asarray(bon.bon_distribution(p.astype(np.float32), r, ns))
    for row, n in zip(got, ns):
        want = formula_bon(p, r, n)
        np.testing.assert_allclose(row, want, rtol=2e-4, atol=1e-7)


def test_zero_probability_atoms_equal_removing_them():
    rng = np.random.default_rng(3)
    p, r = random_law(rng, 6)
    padded_p = np.concatenate([p, np.zeros(3)])
    padded_r = np.concatenate([r, [10.0, -5.0, r[0]]])
    ns = np.array([1.0, 3.0, 50.0])
    padded = stats(padded_p, padded_r, ns)
    plain = stats(p, r, ns)
    np.testing.assert_allclose(padded[0][:, :6], plain[0], atol=1e-7)
    np.testing.assert_array_equal(padded[0][:, 6:], 0.0)
    for x, y in zip(padded[1:], plain[1:]):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


def test_kl_tends_to_log_of_top_mass_and_stays_finite_at_extremes():
    p = np.array([0.5, 0.3, 0.2], np.float32)
    r = np.array([-1e4, 0.0, 1e4], np.float32)
    ns = np.array([1.0, 1e3, 1e30, np.inf], np.float32)
    out = stats(p, r, ns)
    assert all(np.isfinite(x).all() for x in out)
    np.testing.assert_allclose(out[1][1:], np.log(1 / 0.2), rtol=1e-6)
    grads = jax.jit(jax.grad(lambda n: bon.bon_kl(p, r, n) + bon.bon_expected_reward(p, r, n)))
    assert np.isfinite(grads(1e3)) and np.isfinite(grads(1.0))


def test_gradients_in_n_and_probs():
    rng = np.random.default_rng(4)
    p, r = random_law(rng, 5)
    p = p.astype(np.float32)
    scalars = lambda q, n: jnp.stack(stats(q, r, n)[1:])  # KL, reward, win rate
    check_grads(scalars, (p, 3.5), order=1, modes=("rev",), eps=1e-3, rtol=2e-2)


ties = st.integers(0, 2**31 - 1)


@settings(max_examples=25, deadline=None)
@given(seed=ties, log_n=st.floats(0.0, 10.0))
def test_law_properties_hold_for_batches_of_problems(seed, log_n):
    rng = np.random.default_rng(seed)
    laws = [random_law(rng, 8, ties=bool(rng.integers(2))) for _ in range(16)]
    probs = np.stack([p for p, _ in laws]).astype(np.float32)
    rewards = np.stack([r for _, r in laws]).astype(np.float32)
    n = np.float32(np.exp(log_n))
    (law, base), (kls, _), _, (win, _) = stats(probs, rewards, np.array([n, 1.0])[:, None])
    np.testing.assert_allclose(law.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(base, probs, atol=1e-6)
    assert np.all(kls <= bon.bon_kl_bound(n) + 1e-5)
    assert np.all(win <= n / (n + 1) + 1e-6)
    want = np.stack([formula_bon(p, r, float(n)) for p, r in laws])
    np.testing.assert_allclose(law, want, atol=2e-5)


def test_kl_and_win_rate_reach_the_bounds_in_the_continuous_limit():
    size = 100_000
    p = np.full(size, 1 / size, np.float32)
    r = np.arange(size, dtype=np.float32)
    ns = np.array([2.0, 16.0, 256.0, 2.56e4])
    _, kls, _, win = stats(p, r, ns)
    np.testing.assert_allclose(kls[:3], bon.bon_kl_bound(ns[:3]), atol=2e-4)
    np.testing.assert_allclose(win[:3], ns[:3] / (ns[:3] + 1), atol=1e-4)
    # A heavy top atom makes the bound loose: KL ≤ log(1/0.3) however large n is.
    q = np.concatenate([p[:-1] * 0.7 / p[:-1].sum(), [0.3]]).astype(np.float32)
    _, kls, _, _ = stats(q, r, ns)
    assert np.all(kls < np.log(1 / 0.3) + 1e-5)
    assert kls[-1] < bon.bon_kl_bound(ns[-1]) - 7.5


def test_bon_kl_estimate_is_exact_for_a_continuum_plus_a_top_atom():
    # Base: 200_000 equal tiny atoms of total mass 1-ε, then one top atom of mass ε.
    size = 200_000
    for eps in (1e-4, 0.05, 0.5):
        p = np.concatenate([np.full(size, (1 - eps) / size), [eps]])
        r = np.arange(size + 1, dtype=np.float64)
        for n in (2, 10, 100):
            want = kl(formula_bon(p, r, n), p)
            np.testing.assert_allclose(bon.bon_kl_estimate(eps, n), want, atol=5e-4)
    ns = np.array([1.0, 4.0, 1e4])
    np.testing.assert_allclose(bon.bon_kl_estimate(1e-9, ns), bon.bon_kl_bound(ns), atol=1e-5)
    np.testing.assert_allclose(bon.bon_kl_estimate(1.0, ns), 0.0)


# --- from samples ------------------------------------------------------------------------------


def test_empirical_curves_equal_the_average_over_all_subsets():
    rng = np.random.default_rng(5)
    samples = rng.integers(0, 5, (2, 7)).astype(np.float32)  # ties inside
    ns = np.arange(1, 8)
    curves = jax.jit(lambda x: bon.empirical_bon_curves(x, ns))(samples)
    assert curves.reward.shape == (2, 7)
    for b in range(2):
        for k, n in enumerate(ns):
            subsets = itertools.combinations(samples[b], int(n))
            want = np.mean([max(s) for s in subsets])
            np.testing.assert_allclose(curves.reward[b, k], want, rtol=1e-5)
    np.testing.assert_allclose(curves.kl, np.log(ns) - (ns - 1) / ns, rtol=1e-6)


def test_empirical_curves_match_float64_weights_for_large_m():
    rng = np.random.default_rng(6)
    size = 50_000
    samples = rng.standard_normal(size).astype(np.float32)
    ns = np.array([1, 2, 3, 17, 1000, 12_345, size])
    got = bon.empirical_bon_curves(samples, ns).reward
    ordered = np.sort(samples.astype(np.float64))
    i = np.arange(1, size + 1)
    for g, n in zip(got, ns):
        log_w = np.full(size, -np.inf)
        ok = i >= n
        log_w[ok] = (
            gammaln(i[ok]) - gammaln(i[ok] - n + 1) - gammaln(n)
            - (gammaln(size + 1) - gammaln(n + 1) - gammaln(size - n + 1))
        )  # fmt: skip
        np.testing.assert_allclose(g, np.exp(log_w) @ ordered, rtol=2e-5, atol=2e-5)


def test_empirical_curves_estimate_the_exact_expected_maximum():
    rng = np.random.default_rng(7)
    p, r = random_law(rng, 6)
    size = 100_000
    samples = rng.choice(r, size=size, p=p).astype(np.float32)
    ns = np.array([1, 4, 32, 256])
    got = bon.empirical_bon_curves(samples, ns).reward
    for g, n in zip(got, ns):
        law = formula_bon(p, r, n)
        mean = law @ r
        # Var of the U-statistic ≤ (n/M) Var(max of n) (Hoeffding); 5 standard errors.
        tol = 5 * math.sqrt(n / size * (law @ r**2 - mean**2)) + 1e-6
        assert abs(g - mean) < tol, (n, g, mean, tol)


def test_empirical_curves_reject_bad_ns():
    with pytest.raises(ValueError, match="ns must lie"):
        bon.empirical_bon_curves(np.zeros(4), [0, 2])
    with pytest.raises(ValueError, match="ns must lie"):
        bon.empirical_bon_curves(np.zeros(4), [5])
    with pytest.raises(TypeError, match="must be concrete"):
        jax.jit(lambda ns: bon.empirical_bon_curves(np.zeros(4), ns))(jnp.array([1]))


def test_bond_reward_is_log_empirical_cdf():
    rng = np.random.default_rng(8)
    rewards = rng.integers(0, 6, (3, 5)).astype(np.float32)
    reference = rng.integers(0, 6, (3, 9)).astype(np.float32)
    got = jax.jit(bon.bond_reward)(rewards, reference)
    with np.errstate(divide="ignore"):
        want = np.log((reference[:, None, :] <= rewards[:, :, None]).mean(-1))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert bon.bond_reward(np.array([-1.0]), np.array([0.0, 1.0]))[0] == -np.inf
    shared = bon.bond_reward(rewards, reference[0])  # one reference set for every row
    np.testing.assert_allclose(shared[0], want[0], rtol=1e-6)


# --- samplers ----------------------------------------------------------------------------------


def test_best_of_n_breaks_ties_uniformly():
    rewards = jnp.array([0.0, 2.0, 2.0, 1.0, 2.0])
    draws = 20_000
    keys = jax.random.split(jax.random.key(0), draws)
    picks = np.asarray(jax.jit(jax.vmap(bon.best_of_n, in_axes=(0, None)))(keys, rewards))
    freq = np.bincount(picks, minlength=5) / draws
    assert freq[0] == freq[3] == 0.0
    se = math.sqrt(1 / 3 * 2 / 3 / draws)
    np.testing.assert_allclose(freq[[1, 2, 4]], 1 / 3, atol=5 * se)


def test_soft_best_of_n_samples_the_softmax():
    rewards = jnp.array([[0.0, 1.0, 2.0], [3.0, 3.0, -1.0]])
    temperature = jnp.array([0.5, 2.0])
    draws = 20_000
    keys = jax.random.split(jax.random.key(1), draws)
    picks = jax.jit(jax.vmap(bon.soft_best_of_n, in_axes=(0, None, None)))(
        keys, rewards, temperature
    )
    for b in range(2):
        want = np.exp(rewards[b] / temperature[b])
        want = want / want.sum()
        freq = np.bincount(np.asarray(picks[:, b]), minlength=3) / draws
        np.testing.assert_allclose(freq, want, atol=5 * math.sqrt(0.25 / draws))


def test_soft_bon_distribution_matches_enumeration():
    rng = np.random.default_rng(9)
    p, r = random_law(rng, 3)
    r = r + rng.standard_normal(3)
    ns = np.array([1.0, 2.0, 3.0, 5.0])[:, None]
    temps = np.array([0.3, 1.0, 5.0])
    got = jax.jit(bon.soft_bon_distribution)(p, r, ns, temps)  # [4, 3, Y]
    for k, n in enumerate((1, 2, 3, 5)):
        for t, temp in enumerate(temps):
            np.testing.assert_allclose(got[k, t], enumerate_soft_bon(p, r, n, temp), atol=2e-6)


@settings(max_examples=20, deadline=None)
@given(seed=ties, n=st.integers(1, 64))
def test_soft_bon_tends_to_bon_as_temperature_vanishes(seed, n):
    rng = np.random.default_rng(seed)
    laws = [random_law(rng, 6) for _ in range(8)]  # integer rewards, ties included
    probs = np.stack([p for p, _ in laws])
    rewards = np.stack([r for _, r in laws])
    soft = bon.soft_bon_distribution(probs, rewards, float(n), 1e-3)
    want = np.stack([formula_bon(p, r, n) for p, r in laws])
    np.testing.assert_allclose(soft, want, atol=5e-5)
    np.testing.assert_allclose(soft.sum(-1), 1.0, atol=5e-5)


def test_soft_bon_tends_to_the_tilt_at_rate_one_over_n():
    rng = np.random.default_rng(10)
    p = rng.dirichlet(np.ones(6))
    r = rng.standard_normal(6)
    temp = 0.7
    tilt = p * np.exp(r / temp)
    tilt = tilt / tilt.sum()
    ns = np.array([1e2, 1e3, 1e4, 1e6])
    laws = bon.soft_bon_distribution(p, r, ns, temp)
    errors = np.abs(np.asarray(laws) - tilt).sum(-1)
    assert errors[-1] < 1e-4
    ratios = errors[:2] / errors[1:3]
    assert np.all((ratios > 5) & (ratios < 20)), errors  # O(1/n) (Verdun et al. 2025)


def test_soft_bon_is_finite_and_hard_at_extreme_rewards():
    p = np.array([0.5, 0.3, 0.2], np.float32)
    r = np.array([-1e4, 0.0, 1e4], np.float32)
    law = bon.soft_bon_distribution(p, r, np.array([1.0, 4.0]), 1.0)
    assert np.isfinite(law).all()
    np.testing.assert_allclose(law, [p, formula_bon(p, r, 4)], atol=1e-6)
