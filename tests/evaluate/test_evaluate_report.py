"""The Markdown report and its PNG plots."""

import os

import numpy as np
import pytest

from rewardjax import evaluate

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    with open(path, "rb") as f:
        return os.path.getsize(path) > 1000 and f.read(8) == PNG_MAGIC


def test_markdown_table_formats_and_validates():
    table = evaluate.markdown_table(["a", "b"], [["x|y", 0.123456], [3, np.float32(np.nan)]])
    lines = table.strip().split("\n")
    assert lines[0] == "| a | b |" and lines[1] == "|---|---|"
    assert lines[2] == "| x\\|y | 0.1235 |" and lines[3] == "| 3 | nan |"
    assert "0.12" in evaluate.markdown_table(["v"], [[0.123456]], floatfmt=".2f")
    with pytest.raises(ValueError, match="row 0"):
        evaluate.markdown_table(["a", "b"], [[1]])


def test_write_report_contains_numbers_and_plots(tmp_path):
    rng = np.random.default_rng(0)
    gc, gr = rng.normal(size=(2, 90))
    c, r = gc + rng.normal(0, 0.5, 90), gr + rng.normal(0, 0.5, 90)
    names = ("alpacaeval-easy", "mt-bench-hard", "math-prm")
    pairs = evaluate.evaluate_pairs(
        c, r, subset=np.arange(90) % 3, subset_names=names, chosen_gold=gc, rejected_gold=gr
    )
    bon = evaluate.empirical_bon_gold_curves(
        rng.normal(size=(3, 16)), rng.normal(size=(3, 16)), [1, 4, 16]
    )
    rewards = ("proxy_reward", "gold_reward", "gold_best")  # [3, K]: means over the prompts
    bon = bon._replace(**{k: np.asarray(getattr(bon, k)).mean(0) for k in rewards})
    path = evaluate.write_report(
        tmp_path / "out", pairs=pairs, bon=bon, title="Quick", notes={"steps": 100}
    )
    text = open(path, encoding="utf-8").read()
    assert path == str(tmp_path / "out" / "report.md")
    assert text.startswith("# Quick")
    assert "| steps | 100 |" in text
    assert f"| accuracy | {pairs.accuracy:.4f} |" in text
    assert f"{float(pairs.calibration.ece):.4f}" in text
    assert f"| Spearman(proxy, gold) | {float(pairs.gold.spearman):.4f} |" in text
    for name, acc in zip(names, pairs.subsets.accuracy):
        assert f"| {name} | {acc:.4f} | 30 |" in text
    assert f"| Score | {pairs.sections['Score']:.4f} |" in text
    for n, kl, gold in zip(bon.n, bon.kl, bon.gold_reward):
        assert f"| {int(n)} | {kl:.4f} |" in text and f"{gold:.4f}" in text
    # Gao et al. fit: least squares of the gold gain on (d, -d²), d = √KL, by numpy.
    d = np.sqrt(np.asarray(bon.kl, np.float64))
    gain = np.asarray(bon.gold_reward, np.float64) - bon.gold_reward[0]
    (alpha, beta), *_ = np.linalg.lstsq(np.stack([d, -(d**2)], 1), gain, rcond=None)
    fit = evaluate.fit_bon_gold(bon)
    np.testing.assert_allclose([fit.alpha, fit.beta], [alpha, beta], rtol=1e-4, atol=1e-6)
    assert f"α = {fit.alpha:.4f}, β = {fit.beta:.4f}" in text
    for png in ("reliability.png", "subset_accuracy.png", "bon.png"):
        assert f"]({png})" in text
        assert _is_png(tmp_path / "out" / png)


def test_write_report_without_subsets_or_bon(tmp_path):
    pairs = evaluate.evaluate_pairs(np.array([1.0, 2.0, 0.0]), np.array([0.0, 1.0, 1.0]))
    text = open(evaluate.write_report(tmp_path, pairs=pairs), encoding="utf-8").read()
    assert "## Subsets" not in text and "## Best-of-n" not in text and "gold" not in text
    assert f"| accuracy | {2 / 3:.4f} |" in text
    assert sorted(os.listdir(tmp_path)) == ["reliability.png", "report.md"]
