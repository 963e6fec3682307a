"""Process-reward metrics against independent references: AUROC by brute force over all
(correct, erroneous) pairs and by scipy's Mann–Whitney U; first errors and ProcessBench's F1 by
NumPy loops; Spearman by scipy.stats.spearmanr; the report's files."""

import os

import numpy as np
import pytest
import scipy.stats

from rewardjax import evaluate
from rewardjax.evaluate import StepScores


def _brute_auroc(z, pos):
    wins = [(zi > zj) + 0.5 * (zi == zj) for zi in z[pos] for zj in z[~pos]]
    return float(np.mean(wins))


def test_step_auroc_equals_pairwise_counting_with_ties_and_mann_whitney():
    rng = np.random.default_rng(0)
    z = rng.integers(0, 6, size=40).astype(np.float32)  # many ties
    pos = rng.random(40) < 0.4
    keep = rng.random(40) < 0.8
    got = float(evaluate.step_auroc(z, pos, where=keep))
    np.testing.assert_allclose(got, _brute_auroc(z[keep], pos[keep]), rtol=1e-6)
    u = scipy.stats.mannwhitneyu(z[keep & pos], z[keep & ~pos]).statistic
    np.testing.assert_allclose(got, u / ((keep & pos).sum() * (keep & ~pos).sum()), rtol=1e-6)
    assert np.isnan(float(evaluate.step_auroc(z, np.ones(40, bool))))  # one class only


def test_step_accuracy_counts_agreement_on_kept_steps():
    rng = np.random.default_rng(1)
    pred, truth, keep = (rng.random((6, 5)) < p for p in (0.5, 0.5, 0.7))
    expected = np.sum((pred == truth) & keep) / np.sum(keep)
    np.testing.assert_allclose(float(evaluate.step_accuracy(pred, truth, where=keep)), expected)


def _np_first_error(correct, mask):
    out = []
    for c, m in zip(correct, mask):
        bad = [s for s in range(len(c)) if m[s] and not c[s]]
        out.append(bad[0] if bad else -1)
    return np.array(out)


def test_first_error_and_processbench_f1_match_numpy_loops():
    rng = np.random.default_rng(2)
    correct = rng.random((200, 5)) < 0.8
    mask = rng.random((200, 5)) < 0.9
    truth = _np_first_error(correct, mask)
    np.testing.assert_array_equal(np.asarray(evaluate.first_error(correct, mask)), truth)
    predicted = np.where(rng.random(200) < 0.6, truth, rng.integers(-1, 5, size=200))
    err, cor = truth >= 0, truth < 0
    acc_err = np.mean(predicted[err] == truth[err])
    acc_cor = np.mean(predicted[cor] == -1)
    out = evaluate.first_error_f1(predicted, truth)
    np.testing.assert_allclose(float(out.error_accuracy), acc_err, rtol=1e-6)
    np.testing.assert_allclose(float(out.correct_accuracy), acc_cor, rtol=1e-6)
    f1 = 2 * acc_err * acc_cor / (acc_err + acc_cor)
    np.testing.assert_allclose(float(out.f1), f1, rtol=1e-6)
    assert int(out.num_erroneous) == err.sum() and int(out.num_correct) == cor.sum()
    perfect = evaluate.first_error_f1(truth, truth)
    assert float(perfect.f1) == 1.0


@pytest.fixture(scope="module")
def scores():
    rng = np.random.default_rng(3)
    values = rng.uniform(0.1, 0.9, size=(60, 4)).astype(np.float32)
    targets = np.clip(values + rng.normal(0, 0.05, values.shape), 0, 1).astype(np.float32)
    logits = (np.log(values / (1 - values)) + rng.normal(0, 0.4, values.shape)).astype(np.float32)
    mask = np.ones((60, 4), bool)
    mask[:10, 3] = False
    return StepScores(logits, targets, mask, values)


def test_evaluate_process_matches_scipy_and_numpy(scores):
    m = evaluate.evaluate_process(scores, threshold=0.5, decision_threshold=0.5)
    mask, prob = scores.step_mask, 1 / (1 + np.exp(-scores.logits.astype(np.float64)))
    rho = scipy.stats.spearmanr(prob[mask], scores.values[mask]).statistic
    np.testing.assert_allclose(m.value_spearman, rho, rtol=1e-5)
    rho_t = scipy.stats.spearmanr(prob[mask], scores.targets[mask]).statistic
    np.testing.assert_allclose(m.target_spearman, rho_t, rtol=1e-5)
    for s in range(4):
        k = mask[:, s]
        ref = scipy.stats.spearmanr(prob[k, s], scores.values[k, s]).statistic
        np.testing.assert_allclose(m.value_spearman_per_step[s], ref, rtol=1e-5)
    correct = scores.values >= 0.5
    np.testing.assert_allclose(m.step_auroc, _brute_auroc(scores.logits[mask], correct[mask]))
    acc = np.mean((prob >= 0.5)[mask] == correct[mask])
    np.testing.assert_allclose(m.step_accuracy, acc, rtol=1e-6)
    truth, pred = _np_first_error(correct, mask), _np_first_error(prob >= 0.5, mask)
    a, b = np.mean(pred[truth >= 0] == truth[truth >= 0]), np.mean(pred[truth < 0] == -1)
    np.testing.assert_allclose(m.first_error_f1, 2 * a * b / (a + b), rtol=1e-5)
    assert m.steps == mask.sum()
    # Without exact values the value correlations are NaN and the truth is the target.
    no_values = evaluate.evaluate_process(scores._replace(values=None))
    assert np.isnan(no_values.value_spearman) and no_values.value_spearman_per_step == ()


def test_process_report_writes_markdown_and_plots(scores, tmp_path):
    m = evaluate.evaluate_process(scores)
    records = [{"step": s, "loss": 1.0 / s} for s in range(1, 4)]
    records.append({"step": 3, "eval/value_spearman": 0.5})
    path = evaluate.process_report(str(tmp_path), m, scores, records=records, notes={"a": 1})
    text = open(path, encoding="utf-8").read()
    assert "Spearman(PRM, exact value)" in text and f"{m.value_spearman:.4f}" in text
    assert "first-error F1" in text and "step AUROC" in text
    for png in ("step_values.png", "training.png"):
        assert os.path.getsize(tmp_path / png) > 1000 and f"]({png})" in text
