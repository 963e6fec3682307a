"""`experiments/frontier.py --smoke`, in process, asserting the finding it reproduces.

Measured on the smoke run (8 prompts of the quickstart's world, n up to 2^20; 2026-12-03): best-of-n
by the gold reward reaches 0.89-0.99 of the exact optimum's gold gain at KL = 0.5 ... 8 nats, rising
with KL (Beirami et al. 2024, arXiv 2401.01879; Yang et al. 2024, arXiv 2404.01730); best-of-n by a
proxy reaches 0.90-0.97 of the proxy's optimum on the proxy reward. Asserted: >= 0.85 everywhere,
>= 0.95 at KL = 8 for the gold reward.
"""

import os

import numpy as np
import pytest

from experiments import frontier


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("frontier")
    return workdir, frontier.run(str(workdir), smoke=True)


def test_frontier_best_of_n_is_near_the_optimum(frontier_run):
    workdir, fractions = frontier_run
    gold = fractions["BoN by gold (gold)"]
    assert np.all(gold >= 0.85) and gold[-1] >= 0.95, gold
    assert np.all(np.diff(gold) > 0), gold
    proxy = fractions["BoN by proxy (bigram BT, 128 pairs), proxy reward"]
    assert np.all(proxy >= 0.85), proxy
    for name in ("report.md", "frontier.png", "points.jsonl", "points.csv", "command.txt"):
        assert os.path.getsize(workdir / name) > 0, name
    assert "| BoN by gold (gold) |" in (workdir / "report.md").read_text()
