"""Gold-reward agreement and best-of-n gold curves against SciPy and exact enumeration."""

import itertools

import hypothesis
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from scipy import stats

from rewardjax import bon, evaluate


def _ranks_data(seed, b=40):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, b).astype(np.float32)  # many ties
    y = (x + rng.integers(-3, 4, b)).astype(np.float32)
    w = (rng.random(b) < 0.75).astype(np.float32)
    return x, y, w


def test_rank_correlations_match_scipy_with_ties_and_masks():
    x, y, w = _ranks_data(0)
    keep = w > 0
    rho = stats.spearmanr(x[keep], y[keep]).statistic
    tau = stats.kendalltau(x[keep], y[keep]).statistic
    np.testing.assert_allclose(evaluate.spearman(x, y, weight=w), rho, rtol=1e-5)
    np.testing.assert_allclose(evaluate.kendall_tau(x, y, weight=w), tau, rtol=1e-5)
    np.testing.assert_allclose(evaluate.spearman(x[keep], y[keep]), rho, rtol=1e-5)
    np.testing.assert_allclose(evaluate.kendall_tau(x[keep], y[keep]), tau, rtol=1e-5)


def test_kendall_blocks_cover_every_row():
    """B not a multiple of the 256-row block."""
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(2, 600))
    np.testing.assert_allclose(
        evaluate.kendall_tau(x, y), stats.kendalltau(x, y).statistic, rtol=1e-4, atol=1e-6
    )


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(seed=st.integers(0, 2**16))
def test_rank_correlations_invariant_to_increasing_maps(seed):
    x, y, w = _ranks_data(seed, b=24)
    hypothesis.assume(np.unique(x[w > 0]).size > 1 and np.unique(y[w > 0]).size > 1)
    for fn in (evaluate.spearman, evaluate.kendall_tau):
        base = fn(x, y, weight=w)
        np.testing.assert_allclose(fn(np.exp(x / 3), 2 * y - 5, weight=w), base, atol=1e-5)
        np.testing.assert_allclose(fn(y, x, weight=w), base, atol=1e-5)  # symmetric
        np.testing.assert_allclose(fn(x, -y, weight=w), -base, atol=1e-5)


def test_gold_pair_accuracy_and_agreement():
    rng = np.random.default_rng(2)
    b = 50
    gc, gr = np.round(rng.normal(size=(2, b)), 1)
    gr[:5] = gc[:5]  # gold ties are left out
    c = gc + rng.normal(0, 0.5, b)
    r = gr + rng.normal(0, 0.5, b)
    r[5:8] = c[5:8]  # proxy ties count one half
    w = (rng.random(b) < 0.8).astype(np.float32)
    agree = [
        0.5 if c[i] == r[i] else float((c[i] > r[i]) == (gc[i] > gr[i]))
        for i in range(b)
        if w[i] > 0 and gc[i] != gr[i]
    ]
    out = evaluate.gold_agreement(c, r, gc, gr, weight=w)
    np.testing.assert_allclose(out.pair_accuracy, np.mean(agree), rtol=1e-6)
    keep = np.concatenate([w, w]) > 0
    proxy, gold = np.concatenate([c, r])[keep], np.concatenate([gc, gr])[keep]
    np.testing.assert_allclose(out.spearman, stats.spearmanr(proxy, gold).statistic, rtol=1e-5)
    np.testing.assert_allclose(out.kendall, stats.kendalltau(proxy, gold).statistic, rtol=1e-5)


def _enumerate_bon(probs, select, value, n):
    """E[value(best-of-n by `select`)] and the law of the selection, over all Y^n tuples."""
    law = np.zeros(len(probs))
    for tup in itertools.product(range(len(probs)), repeat=n):
        p = np.prod(probs[list(tup)])
        scores = select[list(tup)]
        winners = [y for y, s in zip(tup, scores) if s == scores.max()]
        for y in winners:  # uniform tie-breaking among the tied draws
            law[y] += p / len(winners)
    return law @ value, law


def test_exact_bon_gold_curves_match_enumeration_over_tuples():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(5), size=2)
    proxy = np.array([[0.0, 1.0, 1.0, -0.5, 2.0], [0.3, 0.3, 0.1, 0.9, -1.0]])  # proxy ties
    gold = rng.normal(size=(2, 5))
    ns = np.array([1, 2, 3, 4])
    out = jax.jit(evaluate.exact_bon_gold_curves)(probs, proxy, gold, ns)
    assert out.gold_reward.shape == (2, 4) and out.kl.shape == (2, 4)
    for b in range(2):
        for k, n in enumerate(ns):
            g, law = _enumerate_bon(probs[b], proxy[b], gold[b], n)
            best, best_law = _enumerate_bon(probs[b], gold[b], gold[b], n)
            kl_of = lambda q, p=probs[b]: np.sum(q[q > 0] * np.log(q[q > 0] / p[q > 0]))
            kl = kl_of(law)
            np.testing.assert_allclose(out.gold_reward[b, k], g, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(out.proxy_reward[b, k], law @ proxy[b], rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(out.gold_best[b, k], best, rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(out.kl[b, k], kl, rtol=1e-4, atol=1e-6)
            # Best-of-n by gold at its own KL: the proxy's ties make the two KLs differ.
            np.testing.assert_allclose(out.kl_best[b, k], kl_of(best_law), rtol=1e-4, atol=1e-6)
    assert np.abs(out.kl_best - out.kl).max() > 0.01
    # Best-of-n sees only the proxy's order: rescaling it to ±1e4 changes nothing.
    scaled = jax.jit(evaluate.exact_bon_gold_curves)(probs, 1e4 * proxy, 1e4 * gold, ns)
    np.testing.assert_allclose(scaled.gold_reward, 1e4 * out.gold_reward, rtol=1e-4)
    np.testing.assert_allclose(scaled.kl, out.kl, rtol=1e-4, atol=1e-6)


def _enumerate_subsets(proxy, gold, n):
    """Mean over all C(M, n) subsets of the gold reward of the proxy-best (ties averaged)."""
    values = []
    for sub in itertools.combinations(range(len(proxy)), n):
        sub = np.array(sub)
        top = sub[proxy[sub] == proxy[sub].max()]
        values.append(gold[top].mean())
    return np.mean(values)


def test_empirical_bon_gold_curves_match_subset_enumeration():
    rng = np.random.default_rng(4)
    proxy = np.round(rng.normal(size=(3, 8)), 0)  # heavy proxy ties
    gold = rng.normal(size=(3, 8))
    ns = [1, 2, 3, 5, 8]
    fn = jax.jit(lambda p, g: evaluate.empirical_bon_gold_curves(p, g, ns))
    out = fn(proxy, gold)
    assert out.gold_reward.shape == (3, 5) and out.kl.shape == (5,)
    for b in range(3):
        for k, n in enumerate(ns):
            expected = _enumerate_subsets(proxy[b], gold[b], n)
            np.testing.assert_allclose(out.gold_reward[b, k], expected, rtol=1e-5, atol=1e-6)
            best = _enumerate_subsets(gold[b], gold[b], n)
            np.testing.assert_allclose(out.gold_best[b, k], best, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.proxy_reward, bon.empirical_bon_curves(proxy, ns).reward)
    scaled = fn(1e4 * proxy - 3.0, gold)  # same order, extreme values
    np.testing.assert_allclose(scaled.gold_reward, out.gold_reward, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.kl, bon.bon_kl_bound(np.array(ns, np.float32)), rtol=1e-6)
    np.testing.assert_allclose(out.kl_best, out.kl)  # sampled: the tie-free KL for both


def test_empirical_bon_gold_curves_large_m():
    """M = 3·10^4: weights sum to one (a constant gold is returned exactly) and a gold equal to the
    proxy gives the order-statistic estimator of `bon.empirical_bon_curves`."""
    rng = np.random.default_rng(5)
    proxy = rng.normal(size=30_000).astype(np.float32)
    ns = [1, 10, 1000, 30_000]
    out = evaluate.empirical_bon_gold_curves(proxy, np.full_like(proxy, 3.0), ns)
    np.testing.assert_allclose(out.gold_reward, 3.0, rtol=1e-6)
    same = evaluate.empirical_bon_gold_curves(proxy, proxy, ns)
    np.testing.assert_allclose(same.gold_reward, same.gold_best, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(same.gold_reward[-1], proxy.max(), rtol=1e-6)
    with pytest.raises(ValueError, match="ns must lie"):
        evaluate.empirical_bon_gold_curves(proxy[:10], proxy[:10], [0, 3])
