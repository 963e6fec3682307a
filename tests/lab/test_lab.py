"""rewardjax.lab and the exact best-of-n study of evaluate.overoptimization, against brute force.

References here are written independently: best-of-n by enumerating every n-tuple of responses,
the tilted optimum by NumPy, the Bradley–Terry fit by scipy.optimize.
"""

import itertools

import jax
import numpy as np
import pytest
from scipy import optimize

from rewardjax import evaluate, lab
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt


@pytest.fixture(scope="module")
def small():
    """A 3-token world with 3-token responses (27 of them) and 2 prompts."""
    task = synthetic.make_markov_task(3, vocab_size=3, length=3, prompt_length=2)
    law = overopt.synthetic_response_law(task, None, None, jax.random.PRNGKey(0), num_prompts=2)
    return task, law


def test_response_law_matches_the_task(small):
    task, law = small
    assert law.responses.shape == (27, 3) and law.proxy is None
    y0 = np.repeat(law.prompts[:, -1], 27)
    tiled = np.tile(law.responses, (2, 1))
    logp = np.asarray(synthetic.response_logprob(task, y0, tiled)).reshape(2, 27)
    np.testing.assert_allclose(law.probs, np.exp(logp), rtol=1e-5)
    gold = np.asarray(synthetic.gold_reward(task, y0, tiled)).reshape(2, 27)
    np.testing.assert_allclose(law.gold, gold, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"config\.data\.synthetic\.length"):
        overopt.enumerate_responses(8, 8)


def _brute_bon(probs, proxy, gold, n):
    """E[gold of the proxy's best of n iid draws] (ties uniform) and its law, by enumeration."""
    law = np.zeros(len(probs))
    for tup in itertools.product(range(len(probs)), repeat=n):
        p = np.prod(probs[list(tup)])
        top = max(proxy[i] for i in tup)
        winners = [i for i in tup if proxy[i] == top]
        for i in winners:
            law[i] += p / len(winners)
    return law @ gold, law


def test_exact_study_against_enumeration(small):
    _, law = small
    rng = np.random.default_rng(0)
    proxy = np.round(law.gold + rng.normal(size=law.gold.shape), 1)  # ties included
    betas = np.array([0.3, 2.0])
    study = overopt.exact_bon_study(law, np.array([1.0, 2.0, 3.0]), betas, proxy=proxy)
    for k, n in enumerate((1, 2, 3)):
        gold, kl, best = [], [], []
        for p in range(2):
            g, q = _brute_bon(law.probs[p], proxy[p], law.gold[p], n)
            gold.append(g)
            kl.append(np.sum(np.where(q > 0, q * np.log(q / law.probs[p]), 0)))
            best.append(_brute_bon(law.probs[p], law.gold[p], law.gold[p], n)[0])
        np.testing.assert_allclose(study.bon.gold_reward[k], np.mean(gold), rtol=2e-4, atol=2e-4)
        np.testing.assert_allclose(study.bon.kl[k], np.mean(kl), rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(study.bon.gold_best[k], np.mean(best), rtol=2e-4, atol=2e-4)
    for j, beta in enumerate(betas):
        for r, kl_field, gold_field in (
            (law.gold, study.frontier_kl, study.frontier_gold),
            (proxy, study.proxy_opt_kl, study.proxy_opt_gold),
        ):
            q = law.probs * np.exp(r / beta)
            q /= q.sum(-1, keepdims=True)
            kl = np.sum(q * np.log(q / law.probs), -1).mean()
            np.testing.assert_allclose(kl_field[j], kl, rtol=1e-3, atol=1e-4)
            np.testing.assert_allclose(gold_field[j], np.sum(q * law.gold, -1).mean(), rtol=1e-3)


def test_bon_gold_peak_and_at_kl():
    curves = evaluate.BonGoldCurves(
        *map(
            np.array,
            (
                [1, 2, 4, 8],
                [0, 1, 2, 3],
                [0, 1, 2, 3],
                [0.0, 2.0, 1.5, 0.5],
                [0, 2, 3, 4],
                [0, 1, 2, 3],
            ),
        )
    )
    peak = overopt.bon_gold_peak(curves)
    assert (peak.index, peak.rise, peak.drop, peak.proxy_gain) == (1, 2.0, 1.5, 2.0)
    got = lab.at_kl(np.array([3.0, 1.0, 2.0]), np.array([30.0, 10.0, 20.0]), np.array([1.5, 4.0]))
    np.testing.assert_allclose(got, [15.0, np.nan])
    c = lab.Curve(np.array([0.0, 1.0]), np.array([0.0, 2.0]), np.array([np.nan, np.nan]))
    half = lab.Curve(np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([np.nan, np.nan]))
    np.testing.assert_allclose(lab.gain_fraction(half, c, np.array([0.5]), base=0.0), [0.5])


def test_bigram_proxy_is_the_bradley_terry_optimum():
    task = synthetic.make_markov_task(1, vocab_size=3, length=3, prompt_length=2)
    pairs = synthetic.sample_preference_pairs(task, jax.random.PRNGKey(2), 200, flip_rate=0.1)
    l2 = 0.01
    table = lab.fit_bigram_proxy(pairs, 3, l2=l2)
    y0 = pairs["prompt"][:, -1]

    def counts(resp):  # independent of lab.bigram_counts: loops over positions
        out = np.zeros((len(resp), 9))
        prev = y0
        for t in range(resp.shape[1]):
            out[np.arange(len(resp)), prev * 3 + resp[:, t]] += 1
            prev = resp[:, t]
        return out

    diff = counts(pairs["chosen"]) - counts(pairs["rejected"])
    objective = lambda w: np.mean(np.logaddexp(0, -diff @ w)) + l2 / 2 * w @ w
    ref = optimize.minimize(objective, np.zeros(9), method="BFGS", options={"gtol": 1e-9}).x
    np.testing.assert_allclose(table.reshape(-1), ref, atol=1e-4)
    # scoring every response to the sampled prompts: the table summed along the chain
    responses = overopt.enumerate_responses(3, 3)
    scores = lab.score_bigram(table, y0[:2], responses)
    want = [
        [table[a, r[0]] + table[r[0], r[1]] + table[r[1], r[2]] for r in responses] for a in y0[:2]
    ]
    np.testing.assert_allclose(scores, want, rtol=1e-12)
    ensemble = lab.bootstrap_bigram_ensemble(pairs, 3, members=3, seed=0, l2=l2)
    assert ensemble.shape == (3, 3, 3) and not np.allclose(ensemble[0], ensemble[1])


def test_aggregate_members_against_numpy():
    r = np.random.default_rng(0).normal(size=(4, 2, 5))
    agg = lab.aggregate_members(r, uwo_coef=0.5)
    np.testing.assert_allclose(agg["mean"], r.mean(0), rtol=1e-5, atol=1e-6)  # float32
    np.testing.assert_allclose(agg["min"], r.min(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(agg["uwo"], r.mean(0) - 0.5 * r.var(0), rtol=1e-5, atol=1e-5)
