"""`experiments/frontier.py --smoke`, in process, asserting the findings it reproduces; and the
pieces it adds to `rewardjax.lab` (`frontier.law_curve`, `soft_bon_curves`,
`point_gain_fraction`, `distill`) against brute-force enumeration.

Measured on the smoke run (8 prompts of the quickstart's world, n up to 2^20, relative to the SFT
reference of 150 steps; 2026-12-03): best-of-n by the gold reward reaches 0.884, 0.908, 0.929,
0.957, 0.995 of the exact optimum's gold gain at KL = 0.5, 1, 2, 4, 8 nats (0.876, 0.927, 0.972,
0.954, 0.992 with another SFT reference of the same steps; Beirami et al. 2024, arXiv
2401.01879; Yang et al. 2024, arXiv 2404.01730; relative to the base chain itself it rises
strictly, 0.88 ... 0.995, but not relative to the SFT policy's law); best-of-n by a proxy reaches
0.90-0.96 of the proxy's optimum on the proxy reward. Asserted: >= 0.85 everywhere, >= 0.95 at
its best, and +0.02 from KL 0.5 to 2, for the gold reward; >= 0.85 for the proxy.

The new families, all against the transformer proxy (150 steps on the quickstart's pairs): soft
best-of-n (Verdun et al. 2025, arXiv 2505.03156) with λ = 0.3 std(proxy) reaches 0.85-0.96 of the
proxy optimum's proxy gain at KL = 0.5-2 where hard best-of-n reaches 0.72-0.80 (it sits between
best-of-n and the tilted optimum it tends to as n → ∞), and no soft best-of-n point passes either
frontier. DPO (β = 0.1, 40 steps) lands at KL 0.58 with 0.65 of the gold optimum's gain; GRPO
(β = 0.03, 12 steps) at KL 0.61 with 0.39 of the gold gain and 0.33 of the proxy optimum's proxy
gain. Asserted: soft BoN at λ = 0.3 std >= hard BoN + 0.05 on the proxy reward wherever both reach
the grid's KL; every soft BoN and trained point under both frontiers (fraction <= 1); DPO and
GRPO each move (KL >= 0.1) and gain gold (fraction >= 0.2); GRPO >= 0.2 of the proxy's gain.
"""

import itertools
import json
import os

import numpy as np
import pytest

from experiments import frontier
from rewardjax.data.tokenizers import HFTokenizer
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.overoptimization import SyntheticResponseLaw
from rewardjax.lab import distill
from rewardjax.lab import frontier as lab_frontier


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("frontier")
    return workdir, frontier.run(str(workdir), smoke=True)


def test_frontier_best_of_n_is_near_the_optimum(frontier_run):
    workdir, fractions = frontier_run
    gold = fractions["BoN by gold (gold)"]
    assert np.all(gold >= 0.85) and np.nanmax(gold) >= 0.95, gold
    assert gold[2] >= gold[0] + 0.02, gold
    proxy = fractions["BoN by proxy (bigram BT, 128 pairs), proxy reward"]
    assert np.all(proxy >= 0.85), proxy
    for name in ("report.md", "frontier.png", "points.jsonl", "points.csv", "command.txt"):
        assert os.path.getsize(workdir / name) > 0, name
    report = (workdir / "report.md").read_text()
    assert "| BoN by gold (gold) |" in report
    assert "| GRPO β=0.03 |" in report and "| DPO β=0.1 |" in report


def test_frontier_soft_bon_and_trained_policies(frontier_run):
    _, fractions = frontier_run
    hard = fractions["BoN by proxy (transformer RM), proxy reward"]
    soft = fractions["soft BoN λ=0.3·std, proxy reward"]
    both = ~np.isnan(soft)
    assert both.sum() >= 2, soft
    assert np.all(soft[both] >= hard[both] + 0.05), (soft, hard)
    for name, f in fractions.items():
        if name.startswith(("soft BoN", "DPO", "GRPO")):
            assert np.all(f[~np.isnan(f)] <= 1 + 1e-6), (name, f)
    for name in ("DPO β=0.1", "GRPO β=0.03"):
        assert fractions[f"{name}, gold"][0] >= 0.2, (name, fractions[f"{name}, gold"])
    assert fractions["GRPO β=0.03, proxy reward"][0] >= 0.2, fractions["GRPO β=0.03, proxy reward"]


def test_frontier_trained_points_moved(frontier_run):
    workdir, _ = frontier_run
    points = [json.loads(line) for line in (workdir / "points.jsonl").read_text().splitlines()]
    trained = {p["run"]: p for p in points if "run" in p}
    assert set(trained) == {"DPO β=0.1", "GRPO β=0.03"}, set(trained)
    for name, p in trained.items():
        assert p["kl"] >= 0.1, (name, p)


# --- the library pieces, against brute-force enumeration ---------------------------------------


def _brute_soft_bon(probs, rewards, n, lam):
    """Soft best-of-n by enumerating every n-tuple: keep y_i with prob w_i / Σ w."""
    w = np.exp(np.asarray(rewards, np.float64) / lam)
    out = np.zeros(len(probs))
    for tup in itertools.product(range(len(probs)), repeat=n):
        p = np.prod([probs[i] for i in tup])
        total = sum(w[i] for i in tup)
        for i in tup:
            out[i] += p * w[i] / total
    return out


def _brute_bon(probs, rewards, n):
    """Best-of-n by enumerating every n-tuple, ties broken uniformly among the tied draws."""
    out = np.zeros(len(probs))
    for tup in itertools.product(range(len(probs)), repeat=n):
        p = np.prod([probs[i] for i in tup])
        best = max(rewards[i] for i in tup)
        winners = [i for i in tup if rewards[i] == best]
        for i in winners:
            out[i] += p / len(winners)
    return out


def _toy_law():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    gold = np.array([[1.0, -0.5, 0.25, 0.0], [0.5, 2.0, -1.0, 0.3]])
    proxy = np.array([[0.3, 1.0, -0.2, 0.6], [1.2, 0.1, 0.4, -0.3]])
    law = SyntheticResponseLaw(
        np.zeros((2, 1), np.int32), np.arange(4)[:, None], probs, gold, proxy
    )
    return law, probs, gold, proxy


def _kl(p, q):
    return float(np.sum(np.where(p > 0, p * np.log(p / q), 0.0)))


def test_soft_bon_curves_match_enumeration():
    law, probs, gold, proxy = _toy_law()
    ns, lams = [1.0, 2.0, 3.0], [0.5, 2.0]
    curves = lab_frontier.soft_bon_curves(law, proxy, np.array(ns), np.array(lams))
    for lam in lams:
        laws = [[_brute_soft_bon(probs[x], proxy[x], int(n), lam) for x in range(2)] for n in ns]
        laws = np.array(laws)  # [K, P, Y]
        kl = [np.mean([_kl(laws[k, x], probs[x]) for x in range(2)]) for k in range(len(ns))]
        np.testing.assert_allclose(curves[lam].kl, kl, atol=2e-5)
        np.testing.assert_allclose(curves[lam].gold, (laws * gold).sum(-1).mean(-1), atol=2e-5)
        np.testing.assert_allclose(curves[lam].proxy, (laws * proxy).sum(-1).mean(-1), atol=2e-5)


def test_law_curve_and_point_gain_fraction():
    _, probs, gold, proxy = _toy_law()
    q = np.array([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    curve = lab_frontier.law_curve(np.stack([probs, q]), probs, gold, proxy)
    kl_q = (np.log(0.5 / 0.1) * 0.5 + np.log(0.5 / 0.2) * 0.5) / 2 + sum(
        0.25 * np.log(0.25 / p) for p in probs[1]
    ) / 2
    np.testing.assert_allclose(curve.kl, [0.0, kl_q], atol=1e-12)
    np.testing.assert_allclose(curve.gold[1], (0.25 + (0.5 + 2.0 - 1.0 + 0.3) / 4) / 2)
    optimum = lab_frontier.Curve(np.array([0.0, 2.0]), np.array([1.0, 3.0]), np.zeros(2))
    # v*(KL) = 1 + KL: at KL 1 the optimum's gain over v_0 = 1 is 1.
    kl, value = np.array([1.0, 3.0]), np.array([1.5, 9.0])
    f = lab_frontier.point_gain_fraction(kl, value, optimum, base=1)
    np.testing.assert_allclose(f[0], 0.5)
    assert np.isnan(f[1])


def test_distill_bon_law_matches_enumeration():
    _, probs, _, _ = _toy_law()
    rewards = np.array([[0.3, 1.0, 0.3, 0.6], [1.2, 1.2, 0.4, -0.3]])  # with ties
    for n in (1, 2, 3):
        want = [_brute_bon(probs[x], rewards[x], n) for x in range(2)]
        np.testing.assert_allclose(distill.bon_law(probs, rewards, n), want, atol=1e-6)


def test_distill_records_and_tokenizer(tmp_path):
    prompts = np.array([[0, 1], [7, 2]])
    responses = np.array([[0, 0, 1], [3, 4, 5], [7, 6, 2]])
    target = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    records = distill.sample_records(prompts, responses, target, per_prompt=400, seed=0)
    assert len(records) == 800
    assert {r["response"] for r in records[:400]} == {"4 5 6"}
    assert records[0]["prompt"] == "1 2" and records[400]["prompt"] == "8 3"
    share = np.mean([r["response"] == "1 1 2" for r in records[400:]])
    assert abs(share - 0.5) < 0.1, share  # 400 draws: the std is 0.025
    assert {r["response"] for r in records[400:]} == {"1 1 2", "8 7 3"}
    path = distill.write_records(str(tmp_path / "r.jsonl"), records[:2])
    assert len(open(path, encoding="utf-8").read().splitlines()) == 2
    tok = HFTokenizer(distill.write_id_tokenizer(str(tmp_path / "tokenizer.json"), 8))
    assert tok.vocab_size == 9
    assert tok.encode("8 3 1 4") == [8, 3, 1, 4]
    assert tok.eos_id is None


def test_frontier_curves_bon_by_gold_at_its_own_kl():
    law, probs, _, _ = _toy_law()
    # Gold ranks the heavy responses first, the proxy the light ones: at large n the two
    # best-of-n laws tend to different atoms, and their KLs to -log π of each.
    gold, proxy = probs.copy(), -probs
    law = law._replace(gold=gold, proxy=proxy)
    ns = np.array([1.0, 2.0, 6.0])
    study = overopt.exact_bon_study(law, ns, np.array([0.5, 1.0]), proxy_optimum=False)
    curves = lab_frontier.frontier_curves(study)
    brute = lambda r: np.array([[_brute_bon(probs[x], r[x], int(n)) for x in range(2)] for n in ns])
    mean_kl = lambda laws: [np.mean([_kl(q, p) for q, p in zip(laws[k], probs)]) for k in range(3)]
    laws = brute(gold)
    np.testing.assert_allclose(curves["BoN by gold"].kl, mean_kl(laws), atol=1e-5)
    np.testing.assert_allclose(
        curves["BoN by gold"].gold, (laws * gold).sum(-1).mean(-1), atol=1e-5
    )
    np.testing.assert_allclose(curves["BoN by proxy"].kl, mean_kl(brute(proxy)), atol=1e-5)
    assert abs(mean_kl(laws)[-1] - mean_kl(brute(proxy))[-1]) > 0.1  # they differ here
