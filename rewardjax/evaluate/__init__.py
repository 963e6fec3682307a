"""Evaluators: pair accuracy by subset, margins, calibration, agreement with a gold reward,
best-of-n gold-vs-proxy curves, and a Markdown + PNG report.

Reward-model benchmarks (RewardBench 2, RM-Bench, JudgeBench): `evaluate.benchmarks`, and from the
command line `python -m rewardjax.evaluate --benchmark=... --path=... --reward=...`.

Usage: `from rewardjax import evaluate; evaluate.pair_accuracy(r_chosen, r_rejected, weight=w)`.
"""

from rewardjax.evaluate import benchmarks
from rewardjax.evaluate.gold import (
    BonGoldCurves,
    GoldAgreement,
    empirical_bon_gold_curves,
    exact_bon_gold_curves,
    gold_agreement,
    gold_pair_accuracy,
    kendall_tau,
    spearman,
)
from rewardjax.evaluate.overoptimization import (
    GoldPeak,
    RLCurve,
    gold_peak,
    plot_rl_curves,
    read_rl_curve,
)
from rewardjax.evaluate.pairs import (
    REWARDBENCH_SECTIONS,
    Calibration,
    MarginStats,
    SubsetAccuracy,
    calibration,
    margin_stats,
    pair_accuracy,
    pair_calibration,
    pair_correct,
    section_scores,
    subset_accuracy,
)
from rewardjax.evaluate.process import (
    FirstErrorF1,
    ProcessMetrics,
    StepScores,
    evaluate_process,
    first_error,
    first_error_f1,
    plot_step_values,
    process_report,
    score_step_batches,
    step_accuracy,
    step_auroc,
)
from rewardjax.evaluate.report import (
    fit_bon_gold,
    markdown_table,
    plot_bon_curves,
    plot_reliability,
    plot_subset_accuracy,
    write_report,
)
from rewardjax.evaluate.run_report import (
    plot_proxy_vs_gold,
    plot_training_curves,
    reward_model_report,
)
from rewardjax.evaluate.runner import (
    PairReport,
    evaluate_pairs,
    evaluate_reward_model,
    score_pair_batches,
    synthetic_bon_curves,
)

__all__ = [
    "REWARDBENCH_SECTIONS",
    "BonGoldCurves",
    "Calibration",
    "FirstErrorF1",
    "GoldAgreement",
    "GoldPeak",
    "MarginStats",
    "PairReport",
    "ProcessMetrics",
    "RLCurve",
    "StepScores",
    "SubsetAccuracy",
    "benchmarks",
    "calibration",
    "empirical_bon_gold_curves",
    "evaluate_pairs",
    "evaluate_process",
    "evaluate_reward_model",
    "exact_bon_gold_curves",
    "first_error",
    "first_error_f1",
    "fit_bon_gold",
    "gold_agreement",
    "gold_pair_accuracy",
    "gold_peak",
    "kendall_tau",
    "margin_stats",
    "markdown_table",
    "pair_accuracy",
    "pair_calibration",
    "pair_correct",
    "plot_bon_curves",
    "plot_proxy_vs_gold",
    "plot_reliability",
    "plot_rl_curves",
    "plot_step_values",
    "plot_subset_accuracy",
    "plot_training_curves",
    "process_report",
    "read_rl_curve",
    "reward_model_report",
    "score_pair_batches",
    "score_step_batches",
    "section_scores",
    "spearman",
    "step_accuracy",
    "step_auroc",
    "subset_accuracy",
    "synthetic_bon_curves",
    "write_report",
]
