"""Overoptimization on the RL trainer's own metrics (issue 11, section 4).

The runs: `experiments/rl_overoptimization.py --smoke` in a subprocess (its own compilation
cache, shared by its stages), i.e. the real trainer (`rewardjax.train.run`) four times:
SFT on base-chain samples (coin-flip labels) so the policy starts near the Markov chain, a weak
proxy reward model (64 noisy pairs, flip_rate 0.2, 300 steps), and 60 iterations of RLOO from
the SFT policy with β = 0.01 against (a) the gold reward and (b) the proxy. Fixed seeds; CPU.

Assertions on the runs' metrics.jsonl (read by `rewardjax.evaluate.overoptimization`), each
logged point a mean over 2 iterations x 16 prompts x 8 samples (the standard error of a point's
gold reward is about 0.2 here):
- the SFT start is near the base chain: KL(π ‖ chain) of the first logged point < 0.3 nats per
  sequence (against several nats reached later);
- gold reward as the reward: gold rises with KL: Spearman(gold, KL) > 0.9 over the logged points,
  the 3-point moving average of gold never falls more than 0.5 below its running maximum, and
  gold rises by > 3 from the first to the last moving-average point;
- weak proxy as the reward: the moving-average gold reward peaks strictly inside the run, rising
  by > 1 before the peak and falling by > 1 after it, while the proxy keeps rising: Spearman(
  proxy, KL) > 0.9 and the proxy's moving average gains > 0.5 after the gold peak; and the gold
  run reaches more gold than the proxy run's peak.

Caveat, measured: the peak is a property of the particular weak proxy. With these sizes about
half of the proxies trained on 64-128 noisy pairs (RM seeds 0-2, two SFT starts) show it; the
others keep raising or plateau the gold reward. The seeds here are fixed and the CPU runs are
deterministic (the same numbers in repeated runs), so this checks the trainer's metrics on one
configuration that does overoptimise, not the frequency of the phenomenon.

The functions of `rewardjax.evaluate.overoptimization` are first checked on hand-written curves
against NumPy / SciPy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from rewardjax.evaluate import overoptimization as oo

REPO = Path(__file__).resolve().parents[2]
PROXY = "rl_proxy64_seed0"  # the smoke variant's proxy run (experiments/rl_overoptimization.py)


def _write_metrics(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


# --- rewardjax.evaluate.overoptimization on hand-written curves ----------------------------------


def test_read_rl_curve_keeps_rl_records_in_step_order(tmp_path):
    rows = [
        {"step": 4, "kl": 0.5, "gold_reward": 2.0, "reward": 3.0, "kl_base_chain": 0.6},
        {"step": 2, "kl": 0.1, "gold_reward": 1.0, "reward": 1.5, "invalid_fraction": 0.25},
        {"step": 4, "eval/accuracy": 0.7},  # an eval record: skipped
    ]
    _write_metrics(tmp_path / "metrics.jsonl", rows)
    curve = oo.read_rl_curve(tmp_path)
    np.testing.assert_array_equal(curve.step, [2, 4])
    np.testing.assert_array_equal(curve.kl, [0.1, 0.5])
    np.testing.assert_array_equal(curve.gold, [1.0, 2.0])
    np.testing.assert_array_equal(curve.proxy, [1.5, 3.0])
    np.testing.assert_array_equal(curve.kl_base_chain, [np.nan, 0.6])
    np.testing.assert_array_equal(curve.invalid_fraction, [0.25, np.nan])
    assert curve.to_records()[0] == {
        "step": 2,
        "kl": 0.1,
        "gold": 1.0,
        "proxy": 1.5,
        "kl_base_chain": None,
        "invalid_fraction": 0.25,
    }


def test_read_rl_curve_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(ValueError, match=r"no such file.*configs/rl\.py"):
        oo.read_rl_curve(tmp_path / "nowhere")
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "kl": 0, "gold_reward": 0, "reward": 0}\n{"step": 2,\n')
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2: not a JSON record"):
        oo.read_rl_curve(path)
    _write_metrics(path, [{"step": 1, "loss": 0.3}])
    with pytest.raises(ValueError, match=r"no record holds.*gold_reward"):
        oo.read_rl_curve(path)


def test_moving_average_and_spearman_match_numpy_and_scipy():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    want = np.array([np.mean(x[i : i + 3]) for i in range(len(x) - 2)])
    np.testing.assert_allclose(oo.moving_average(x, 3), want)
    np.testing.assert_array_equal(oo.moving_average(x, 1), x)
    with pytest.raises(ValueError, match="window=8"):
        oo.moving_average(x, 8)
    y = np.array([2.0, 7.0, 1.0, 8.0, 2.0, 8.0, 1.0])  # ties in both
    np.testing.assert_allclose(oo.spearman(x, y), scipy.stats.spearmanr(x, y)[0], atol=1e-6)


def test_gold_peak_of_a_hump_against_brute_force():
    kl = np.linspace(0.0, 10.0, 21)
    gold = 2.0 * np.sqrt(kl) - 0.5 * kl + np.array([0.1, -0.1] * 10 + [0.1])  # peak at KL 4
    proxy = np.sqrt(kl)
    curve = oo.RLCurve(np.arange(21), kl, gold, proxy, kl * np.nan, kl * np.nan)
    for window in (1, 3):
        peak = oo.gold_peak(curve, window=window)
        g, p, k = (
            np.array([v[i : i + window].mean() for i in range(21 - window + 1)])
            for v in (gold, proxy, kl)
        )
        i = max(range(len(g)), key=lambda j: g[j])
        assert peak.index == i and 0 < i < len(g) - 1
        np.testing.assert_allclose(
            [peak.kl, peak.gold, peak.rise, peak.drop, peak.proxy_gain, peak.final_kl],
            [k[i], g[i], g[i] - g[0], g[i] - g[-1], p[-1] - p[i], k[-1]],
        )
    # A monotone curve peaks at its end: nothing is dropped after it.
    rising = curve._replace(gold=np.sqrt(kl))
    peak = oo.gold_peak(rising, window=3)
    assert peak.index == 18 and peak.drop == 0.0 and peak.proxy_gain == 0.0


# --- the real trainer ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke experiment's work directory (all four runs trained)."""
    workdir = tmp_path_factory.mktemp("overoptimization")
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    command = ["-m", "experiments.rl_overoptimization", f"--workdir={workdir}", "--smoke"]
    result = subprocess.run(
        [sys.executable, *command],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def _smoothed(curve, window=3):
    return oo.moving_average(curve.gold, window), oo.moving_average(curve.proxy, window)


def test_the_experiment_writes_its_report_and_points(runs):
    report = (runs / "report.md").read_text()
    assert "overoptimization.png" in report and "frontier.png" in report
    assert (runs / "overoptimization.png").stat().st_size > 0
    points = [json.loads(line) for line in (runs / "points.jsonl").read_text().splitlines()]
    assert {p["run"] for p in points} == {"rl_gold", PROXY}
    gold_run = oo.read_rl_curve(runs / "rl_gold")
    logged = [p for p in points if p["run"] == "rl_gold"]
    np.testing.assert_allclose([p["gold"] for p in logged], gold_run.gold)


def test_the_policy_starts_near_the_base_chain(runs):
    for name in ("rl_gold", PROXY):
        curve = oo.read_rl_curve(runs / name)
        assert curve.kl_base_chain[0] < 0.3, (name, curve.kl_base_chain[:3])
        assert np.nanmax(curve.kl_base_chain) > 3.0  # and then moves far from it


def test_gold_reward_rises_with_kl_when_optimised_directly(runs):
    curve = oo.read_rl_curve(runs / "rl_gold")
    np.testing.assert_array_equal(curve.gold, curve.proxy)  # the reward is the gold reward
    assert oo.spearman(curve.gold, curve.kl) > 0.9
    gold, _ = _smoothed(curve)
    assert np.all(gold >= np.maximum.accumulate(gold) - 0.5), gold
    assert gold[-1] - gold[0] > 3.0, gold


def test_a_weak_proxy_is_overoptimised_gold_peaks_and_falls_while_the_proxy_rises(runs):
    curve = oo.read_rl_curve(runs / PROXY)
    peak = oo.gold_peak(curve, window=3)
    summary = (peak, np.round(curve.gold, 2), np.round(curve.proxy, 2), np.round(curve.kl, 2))
    assert 0 < peak.index < len(curve.gold) - 3, summary
    assert peak.rise > 1.0, summary
    assert peak.drop > 1.0, summary
    assert oo.spearman(curve.proxy, curve.kl) > 0.9, summary
    assert peak.proxy_gain > 0.5, summary
    gold_run = oo.read_rl_curve(runs / "rl_gold")
    assert _smoothed(gold_run)[0].max() > peak.gold + 1.0
