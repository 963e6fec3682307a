"""Pair metrics against NumPy references written here (groupby, hand-rolled ECE loops)."""

import hypothesis
import hypothesis.strategies as st
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rewardjax import evaluate


def _data(seed, b=64, num_subsets=4):
    rng = np.random.default_rng(seed)
    chosen = np.round(rng.normal(0.5, 1.0, b), 1).astype(np.float32)
    rejected = np.round(rng.normal(0.0, 1.0, b), 1).astype(np.float32)
    rejected[:: b // 8] = chosen[:: b // 8]  # some exact ties
    subset = rng.integers(0, num_subsets, b).astype(np.int32)
    weight = (rng.random(b) < 0.8).astype(np.float32)
    return chosen, rejected, subset, weight


def _np_correct(c, r):
    return np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))


def test_pair_accuracy_matches_numpy_and_masking_equals_slicing():
    c, r, _, w = _data(0)
    assert np.any(c == r)
    keep = w > 0
    expected = np.mean(_np_correct(c[keep], r[keep]))
    np.testing.assert_allclose(evaluate.pair_accuracy(c, r, weight=w), expected, rtol=1e-6)
    np.testing.assert_allclose(evaluate.pair_accuracy(c[keep], r[keep]), expected, rtol=1e-6)
    np.testing.assert_array_equal(evaluate.pair_correct(c, r), _np_correct(c, r))


def test_pair_accuracy_finite_at_extremes():
    c = jnp.array([1e4, -1e4, 1e4])
    r = jnp.array([-1e4, 1e4, 1e4])
    np.testing.assert_allclose(evaluate.pair_accuracy(c, r), 0.5)


def test_subset_accuracy_equals_groupby():
    c, r, s, w = _data(1, num_subsets=5)
    w[s == 3] = 0.0  # subset 3 is all padding -> empty
    out = evaluate.subset_accuracy(c, r, s, num_subsets=6, weight=w)
    correct = _np_correct(c, r)
    for k in range(6):
        rows = (s == k) & (w > 0)
        assert out.count[k] == rows.sum()
        if rows.any():
            np.testing.assert_allclose(out.accuracy[k], correct[rows].mean(), rtol=1e-6)
        else:
            assert np.isnan(out.accuracy[k])


def test_section_scores_rewardbench_style():
    names = ["alpacaeval-easy", "mt-bench-easy", "mt-bench-hard", "donotanswer", "unlisted"]
    acc = np.array([0.9, 0.6, 0.5, 0.8, 0.1])
    count = np.array([10.0, 30.0, 5.0, 0.0, 7.0])
    scores = evaluate.section_scores(acc, count, names)
    chat = (0.9 * 10 + 0.6 * 30) / 40
    assert set(scores) == {"Chat", "Chat Hard", "Score"}  # Safety has no examples
    np.testing.assert_allclose(scores["Chat"], chat)
    np.testing.assert_allclose(scores["Chat Hard"], 0.5)
    np.testing.assert_allclose(scores["Score"], (chat + 0.5) / 2)
    custom = evaluate.section_scores(acc, count, names, {"misc": ["unlisted", "mt-bench-hard"]})
    np.testing.assert_allclose(custom["misc"], (0.1 * 7 + 0.5 * 5) / 12)
    with pytest.raises(ValueError, match="subset_names"):
        evaluate.section_scores(acc, count, names[:2])


def test_margin_stats_matches_numpy():
    c, r, _, w = _data(2)
    m = (c - r)[w > 0].astype(np.float64)
    out = evaluate.margin_stats(c, r, weight=w)
    expected = [m.mean(), m.std(), np.abs(m).mean(), m.min(), *np.quantile(m, [0.1, 0.5, 0.9])]
    expected.append(m.max())
    got = [out.mean, out.std, out.mean_abs, out.min, out.q10, out.median, out.q90, out.max]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    sliced = evaluate.margin_stats(c[w > 0], r[w > 0])
    np.testing.assert_allclose(list(sliced), list(out), rtol=1e-6)
    extreme = evaluate.margin_stats(jnp.array([1e4, -1e4]), jnp.array([-1e4, 1e4]))
    assert all(np.isfinite(x) for x in extreme)


def test_margin_moments_gradients():
    _, r, _, w = _data(3, b=8)
    c = np.linspace(-1.0, 2.0, 8)
    check_grads(lambda x: evaluate.margin_stats(x, r, weight=w).std, (c,), order=1, atol=1e-2)


def _ece_loop(p, y, edges):
    """Reference ECE: bins [e_k, e_k+1), the outer bins open-ended."""
    total, ece, acc, conf, count = len(p), 0.0, [], [], []
    m = len(edges) - 1
    for k in range(m):
        lo = -np.inf if k == 0 else edges[k]
        hi = np.inf if k == m - 1 else edges[k + 1]
        rows = [i for i in range(total) if lo <= p[i] < hi]
        count.append(len(rows))
        if rows:
            acc.append(np.mean(y[rows]))
            conf.append(np.mean(p[rows]))
            ece += len(rows) / total * abs(acc[-1] - conf[-1])
        else:
            acc.append(np.nan)
            conf.append(np.nan)
    return ece, np.array(conf), np.array(acc), np.array(count)


@pytest.mark.parametrize("binning", ["width", "mass"])
def test_calibration_matches_loop_and_masking_equals_slicing(binning):
    rng = np.random.default_rng(4)
    p = rng.random(200).astype(np.float32)
    y = (rng.random(200) < p**2).astype(np.float32)
    w = (rng.random(200) < 0.7).astype(np.float32)
    out = evaluate.calibration(p, y, num_bins=7, binning=binning, weight=w)
    pk, yk = p[w > 0], y[w > 0]
    if binning == "width":
        edges = np.linspace(0.0, 1.0, 8)
    else:
        edges = np.quantile(pk.astype(np.float64), np.linspace(0, 1, 8))
    np.testing.assert_allclose(out.edges, edges, rtol=1e-5, atol=1e-6)
    ece, conf, acc, count = _ece_loop(pk, yk, np.asarray(out.edges))
    np.testing.assert_allclose(out.ece, ece, rtol=1e-5)
    np.testing.assert_allclose(out.confidence, conf, rtol=1e-5)
    np.testing.assert_allclose(out.accuracy, acc, rtol=1e-5)
    np.testing.assert_array_equal(out.weight, count)
    if binning == "mass":
        assert count.min() >= len(pk) // 7 - 1
    sliced = evaluate.calibration(pk, yk, num_bins=7, binning=binning)
    np.testing.assert_allclose(sliced.ece, out.ece, rtol=1e-6)
    with pytest.raises(ValueError, match="binning"):
        evaluate.calibration(p, y, binning="quantile")


def test_pair_calibration_equals_symmetrised_ece():
    """Folded top-label ECE with M bins on [1/2, 1] == ECE of σ(Δ) vs 1 over both orientations
    of every pair with 2M bins on [0, 1]."""
    rng = np.random.default_rng(5)
    c = rng.normal(0.7, 1.5, 300)
    r = rng.normal(0.0, 1.5, 300)
    out = evaluate.pair_calibration(c, r, num_bins=5, scale=0.8)
    p = 1 / (1 + np.exp(-0.8 * (c - r)))
    both_p = np.concatenate([p, 1 - p])
    both_y = np.concatenate([np.ones(300), np.zeros(300)])
    ece, _, _, _ = _ece_loop(both_p, both_y, np.linspace(0, 1, 11))
    np.testing.assert_allclose(out.ece, ece, rtol=1e-4)
    assert np.all((out.confidence >= 0.5) & (out.confidence <= 1))
    extreme = evaluate.pair_calibration(jnp.array([1e4, -1e4, 0.0]), jnp.array([-1e4, 1e4, 0.0]))
    assert np.isfinite(extreme.ece)


def test_perfectly_calibrated_pairs_have_small_ece():
    """Labels drawn from Bradley–Terry on the model's own rewards: ECE → 0 (Monte Carlo, tol 0.02
    ≈ 5 standard errors at 20000 pairs)."""
    rng = np.random.default_rng(6)
    a, b = rng.normal(0.0, 2.0, (2, 20000))
    a_wins = rng.random(20000) < 1 / (1 + np.exp(b - a))
    chosen, rejected = np.where(a_wins, a, b), np.where(a_wins, b, a)
    for binning in ("width", "mass"):
        ece = evaluate.pair_calibration(chosen, rejected, num_bins=10, binning=binning).ece
        assert ece < 0.02


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    shift=st.integers(-100, 100), scale=st.floats(0.1, 10), seed=st.integers(0, 2**16)
)
def test_accuracy_and_ece_invariances(shift, scale, seed):
    """Accuracy is invariant to any common increasing map; σ-calibration to a common shift.

    Rewards are multiples of 1/8 and shifts integers, so the shifted margins are exact in float32
    (no margin moves across a bin edge by rounding)."""
    c, r, _, w = _data(seed, b=32)
    c, r = np.round(8 * c) / 8, np.round(8 * r) / 8
    acc = evaluate.pair_accuracy(c, r, weight=w)
    np.testing.assert_allclose(
        evaluate.pair_accuracy(scale * c + shift, scale * r + shift, weight=w), acc, rtol=1e-6
    )
    e0 = evaluate.pair_calibration(c, r, weight=w).ece
    e1 = evaluate.pair_calibration(c + shift, r + shift, weight=w).ece
    np.testing.assert_allclose(e1, e0, rtol=1e-6)
