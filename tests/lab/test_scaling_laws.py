"""`lab.scaling` against NumPy references, and `experiments.scaling_laws --smoke`'s finding.

SMOKE_FINDING
"""

import numpy as np
import pytest

from rewardjax.lab import scaling


def test_fit_gao_forms_matches_numpy_least_squares():
    rng = np.random.default_rng(0)
    kl = np.sort(rng.uniform(0.0, 9.0, 12))
    kl[0] = 0.0
    d = np.sqrt(kl)
    gold = 0.3 + d * (1.4 - 0.2 * d) + 0.05 * rng.standard_normal(12)
    fits = scaling.fit_gao_forms(kl, gold)
    gain = gold - gold[0]  # the initial policy: the smallest KL
    dlogd = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    for fit, g in ((fits.bon, d**2), (fits.rl, dlogd)):
        design = np.stack([d, -g], axis=1)
        (alpha, beta), *_ = np.linalg.lstsq(design, gain, rcond=None)
        r2 = 1 - np.sum((gain - design @ [alpha, beta]) ** 2) / np.sum((gain - gain.mean()) ** 2)
        got = [fit.alpha, fit.beta, fit.r_squared]
        np.testing.assert_allclose(got, [alpha, beta, r2], rtol=2e-4)
    assert abs(fits.bon.beta - 0.2) < 0.05 and fits.bon.r_squared > fits.rl.r_squared
    # An explicit initial reward shifts the gain: a pure RL-form curve is fitted exactly.
    rl = d * (1.0 - 0.5 * dlogd / np.where(d > 0, d, 1.0))
    exact = scaling.fit_gao_forms(kl, rl + 2.0, gold_init=2.0).rl
    got = [exact.alpha, exact.beta, exact.r_squared]
    np.testing.assert_allclose(got, [1.0, 0.5, 1.0], atol=1e-4)
    with pytest.raises(ValueError, match="M >= 3"):
        scaling.fit_gao_forms(kl[:2], gold[:2])


def test_size_trend_is_the_log2_slope_and_rank_correlation():
    sizes = np.array([700.0, 2300.0, 8500.0, 33000.0])
    values = np.array([0.5, 0.41, 0.37, 0.2])
    t = scaling.size_trend(sizes, values)
    slope = np.polyfit(np.log2(sizes), values, 1)[0]
    np.testing.assert_allclose(t.slope, slope, rtol=1e-9)
    assert t.spearman == pytest.approx(-1.0, abs=1e-6)
    assert scaling.size_trend(sizes, values[[1, 0, 2, 3]]).spearman == pytest.approx(-0.8, abs=1e-6)
    with pytest.raises(ValueError, match="K >= 2"):
        scaling.size_trend(sizes[:1], values[:1])
