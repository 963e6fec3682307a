"""`lab.shaping` (the exact transforms under a reference law and their tilted optima) against
brute-force NumPy, and the `transforms` study's smoke run asserting its finding.

Measured on the smoke setting (quickstart world, 8 prompts, base chain as reference; bigram BT
proxies on 128 pairs with 20 % flipped labels; 2026-12-03), peak gold of the exact optimum of the
raw / log-sigmoid-centred / PAR / calibrated proxy (KL at the peak), and gold at KL = 8:
  seed 100: 2.54 (6.2) / 2.68 (10.6) / 2.67 (10.0) / 2.72 (8.3); at KL 8: 2.45 / 2.63 / 2.64 / 2.68
  seed 101: 3.29 (5.0) / 4.01 (6.7) / 3.98 (6.4) / 4.06 (6.9); at KL 8: 3.12 / 3.51 / 3.50 / 3.68
  seed 102: 0.82 (2.7) / 0.94 (2.3) / 0.93 (2.1) / 0.95 (2.4); at KL 8: 0.05 / 0.47 / 0.46 / 0.57
Over seeds 100-109 the shaped peaks beat the raw one on 7, tie on 2 (no overoptimization: every
curve peaks at the proxy's argmax) and lose on 1 (seed 108: 4.01 raw vs 3.72-3.74). Asserted on
the smoke seeds 100-102: each shaped optimum's peak gold and its gold at KL = 8 exceed the raw's.
"""

import os

import numpy as np
import pytest
from scipy.special import expit

from experiments import transforms as study
from rewardjax import lab, transforms
from rewardjax.lab import shaping


def _law(seed=0, prompts=3, count=7, ties=True):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(count), size=prompts)
    rewards = rng.normal(size=(prompts, count)) * 2.0
    if ties:  # repeated values: quantiles and mid-ranks must treat them as one atom
        rewards[:, 1] = rewards[:, 0]
        rewards[:, 4] = rewards[:, 2]
    gold = rng.normal(size=(prompts, count))
    return probs, rewards, gold


@pytest.mark.parametrize("q", [0.0, 0.3, 0.5, 0.85, 1.0])
def test_exact_reference_quantile_is_the_smallest_value_reaching_mass_q(q):
    probs, rewards, _ = _law()
    got = shaping.exact_reference_quantile(rewards, probs, q)
    for i in range(len(probs)):
        candidates = sorted(set(rewards[i]))
        mass = [probs[i][rewards[i] <= v].sum() for v in candidates]
        expected = next(v for v, m in zip(candidates, mass) if m >= q - 1e-12)
        assert got[i] == expected


def test_exact_par_and_calibration_against_double_loops():
    probs, rewards, _ = _law(count=9)
    rewards[2] *= 60.0  # a range above 150: PAR's direct branch
    par, cal = shaping.exact_par(rewards, probs), shaping.exact_calibration(rewards, probs)
    for i in range(len(probs)):
        for a in range(rewards.shape[1]):
            expect_par = sum(probs[i, b] * expit(rewards[i, a] - rewards[i, b]) for b in range(9))
            below = sum(probs[i, b] for b in range(9) if rewards[i, b] < rewards[i, a])
            tied = sum(probs[i, b] for b in range(9) if rewards[i, b] == rewards[i, a])
            np.testing.assert_allclose(par[i, a], expect_par, atol=2e-6)
            np.testing.assert_allclose(cal[i, a], below + 0.5 * tied, atol=1e-12)


def test_exact_transforms_are_the_limits_of_the_trainers_sample_estimates():
    """The trainer's estimators (`rewardjax.transforms`) from N reference samples, averaged,
    converge to the exact transforms (PAR and calibration are unbiased)."""
    probs, rewards, _ = _law(seed=1, prompts=2, count=6)
    rng = np.random.default_rng(5)
    n = 20000
    samples = np.stack([rewards[i][rng.choice(6, size=n, p=probs[i])] for i in range(2)])
    par = transforms.preference_as_reward(rewards, samples[:, None, :])
    cal = transforms.calibrate(rewards, samples[:, None, :])
    np.testing.assert_allclose(par, shaping.exact_par(rewards, probs), atol=0.015)
    np.testing.assert_allclose(cal, shaping.exact_calibration(rewards, probs), atol=0.015)
    centre = shaping.exact_reference_quantile(rewards, probs, 0.85)
    np.testing.assert_allclose(
        shaping.exact_transform("log_sigmoid_centered", rewards, probs),
        np.log(expit(rewards - centre[:, None])),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="unknown transform 'whiten'"):
        shaping.exact_transform("whiten", rewards, probs)


def test_shaped_optimum_against_the_explicit_tilt():
    probs, rewards, gold = _law(seed=2, ties=False)
    u = np.tanh(rewards)
    betas = np.array([0.05, 0.5, 5.0])
    curve = shaping.shaped_optimum(u, probs, gold, rewards, betas)
    for j, beta in enumerate(betas):
        q = probs * np.exp(u / beta)
        q /= q.sum(-1, keepdims=True)
        kl = np.sum(q * np.log(q / probs), -1).mean()
        np.testing.assert_allclose(curve.kl[j], kl, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(curve.gold[j], np.sum(q * gold, -1).mean(), atol=1e-5)
        np.testing.assert_allclose(curve.proxy[j], np.sum(q * rewards, -1).mean(), atol=1e-5)
        np.testing.assert_allclose(curve.utility[j], np.sum(q * u, -1).mean(), atol=1e-5)
    # Every transform's β grid is scaled to its spread: each curve runs from KL ≈ 0 to near the
    # proxy's argmax, log 1 / π_ref(argmax) (no ties in this law).
    curves = shaping.shaped_optima(rewards, probs, gold)
    top = np.log(1.0 / probs[np.arange(3), rewards.argmax(-1)]).mean()
    for name, c in curves.items():
        assert c.kl.min() < 1e-3 and c.kl.max() > 0.95 * top, (name, c.kl.max(), top)


def test_hacking_onset_reads_the_peak_in_kl_order():
    h = shaping.hacking_onset(np.array([3.0, 0.0, 1.0, 2.0]), np.array([0.5, 0.0, 2.0, 1.0]))
    assert h == shaping.HackingOnset(2.0, 1.0, 0.5, 3.0, 1.5)
    assert shaping.hacking_onset(np.array([3.0, 0.0]), np.array([5.0, 1.0]), max_kl=2).peak_kl == 0
    with pytest.raises(ValueError, match="max_kl"):
        shaping.hacking_onset(np.array([3.0]), np.array([1.0]), max_kl=1.0)


def test_transforms_smoke_shaped_proxies_hack_later_and_less(tmp_path):
    out = study.run(str(tmp_path), smoke=True)
    assert len(out["bigram"]) == 3
    for curves in out["bigram"]:
        raw = curves["raw"]
        raw_peak = shaping.hacking_onset(raw.kl, raw.gold).peak_gold
        raw_at_8 = lab.at_kl(raw.kl, raw.gold, [8.0])[0]
        for name in ("log_sigmoid_centered", "preference_as_reward", "calibrate"):
            c = curves[name]
            assert shaping.hacking_onset(c.kl, c.gold).peak_gold > raw_peak, name
            assert lab.at_kl(c.kl, c.gold, [8.0])[0] > raw_at_8, name
    report = (tmp_path / "report.md").read_text()
    assert "| PAR |" in report and os.path.getsize(tmp_path / "transforms.png") > 10_000
    assert np.all(np.isfinite(out["bigram"][0]["raw"].gold))
