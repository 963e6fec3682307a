"""Each lab study's `--smoke` run, in process, asserting the finding it reproduces.

Measured on the smoke runs (8 prompts of the quickstart's world, n up to 2^20; 2026-12-03):
- ensembles: on each of the 3 smoke seeds the ensemble mean's gold reward at KL = 1, 2, 4, 6 is
  at least the single members' mean (Coste et al. 2023, arXiv 2310.02743).
- label_noise: gold pair accuracy 0.775 / 0.945 (clean, 128 / 2048 pairs) and 0.609 / 0.842
  (flip rate 0.3); the gold peak under best-of-n 4.36 / 5.93 and 1.63 / 5.02 (means of 2 seeds).
  Asserted: accuracy and peak rise with data and fall with noise.
"""

import os

import numpy as np

from experiments import ensembles, label_noise


def test_ensemble_beats_a_single_reward_model_at_equal_kl(tmp_path):
    gold = ensembles.run(str(tmp_path), smoke=True)
    early = slice(0, 4)  # KL = 1, 2, 4, 6
    assert gold["mean"].shape == (3, 5)
    assert np.all(gold["mean"][:, early] >= gold["single"][:, early]), (
        gold["mean"],
        gold["single"],
    )
    assert os.path.getsize(tmp_path / "ensembles.png") > 10_000
    assert "(Coste et al. 2023)" in (tmp_path / "report.md").read_text()


def test_label_noise_and_data_size_order_accuracy_and_gold(tmp_path):
    rows = label_noise.run(str(tmp_path), smoke=True)
    mean = lambda key, flip, m: np.mean(
        [r[key] for r in rows if r["flip_rate"] == flip and r["pairs"] == m]
    )
    for key in ("gold_pair_accuracy", "peak_gold"):
        for flip in (0.0, 0.3):
            assert mean(key, flip, 2048) > mean(key, flip, 128), (key, flip)
        for m in (128, 2048):
            assert mean(key, 0.0, m) > mean(key, 0.3, m), (key, m)
    assert len(rows) == 8 and os.path.getsize(tmp_path / "label_noise.png") > 10_000
