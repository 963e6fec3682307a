"""The quickstart's story on a run the suite can afford: best-of-n by a proxy trained on few noisy
pairs of the quickstart's world overoptimises — the gold reward peaks at some n and falls while
the proxy reward keeps rising — and the report says so.

The quickstart itself trains a transformer reward model (about 75 s of CPU); here the proxy is the
Bradley–Terry fit on bigram counts (`lab.fit_bigram_proxy`, milliseconds), on 128 pairs at the
quickstart's label flip rate, scored on every response (the same exact best-of-n law, n up to
2^20, 8 prompts). Measured (pairs seeds 100, 101, 102): peak at index 14, 12, 5 of 21 (n = 2^14,
2^12, 2^5), gold drop after the peak 0.74, 2.10, 2.25, proxy gain after the peak 0.45, 1.78,
6.09. Asserted: the peak strictly inside and a drop of at least 0.5 (gold reward units; the
bigram rewards are N(0, 1)) on every seed.
"""

import importlib.util
import os

import jax
import numpy as np
import pytest

from rewardjax import evaluate, lab
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.train import data as train_data

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _quickstart_config():
    path = os.path.join(REPO, "configs", "quickstart.py")
    spec = importlib.util.spec_from_file_location("quickstart_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.fixture(scope="module")
def world():
    config = _quickstart_config()
    task = train_data.markov_task(config.data.synthetic)
    key = jax.random.PRNGKey(config.seed + 1)  # the report's prompts
    law = overopt.synthetic_response_law(task, None, None, key, num_prompts=8)
    return config, task, law


@pytest.mark.parametrize("seed", [100, 101, 102])
def test_best_of_n_gold_peaks_and_falls(world, seed, tmp_path):
    config, task, law = world
    s = config.data.synthetic
    pairs = synthetic.sample_preference_pairs(
        task, jax.random.PRNGKey(seed), 128, beta=s.beta, flip_rate=s.flip_rate
    )
    table = lab.fit_bigram_proxy(pairs, s.vocab_size)
    proxy = lab.score_bigram(table, law.prompts[:, -1], law.responses)
    ns = 2.0 ** np.arange(21)
    study = overopt.exact_bon_study(law, ns, np.geomspace(0.01, 100, 40), proxy=proxy)
    peak = overopt.bon_gold_peak(study.bon)
    assert 0 < peak.index < len(ns) - 1, study.bon.gold_reward
    assert peak.rise > 0.5 and peak.drop > 0.5, peak
    assert peak.proxy_gain > 0 and np.all(np.diff(study.bon.proxy_reward) > -1e-4)
    # The gold reward under best-of-n by gold never falls, and stays above the proxy's choice.
    assert np.all(np.diff(study.bon.gold_best) > -1e-4)
    assert np.all(study.bon.gold_best >= study.bon.gold_reward - 1e-4)
    if seed == 100:
        text = open(evaluate.write_report(tmp_path, exact=study), encoding="utf-8").read()
        assert "**Overoptimization.**" in text and "peaks at n = 16384" in text
        assert "Gao et al. fit" in text
        assert os.path.getsize(tmp_path / "bon.png") > 10_000
        assert len((tmp_path / "bon_points.jsonl").read_text().splitlines()) == len(ns)
