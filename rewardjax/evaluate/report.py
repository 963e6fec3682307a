"""An evaluation report: a Markdown file with the key numbers and PNG plots beside it.

Plots use matplotlib's object API (`matplotlib.figure.Figure`, Agg canvas), so nothing touches the
global pyplot state or needs a display.

- reliability diagram of the Bradley–Terry probabilities (Guo et al. 2017, arXiv 1706.04599);
- best-of-n gold and proxy reward against KL, with the fit of Gao et al.'s law
  (Gao et al. 2022, arXiv 2210.10760, Figure 1 and eq. (1)); on an enumerable synthetic task, the
  exact best-of-n law up to large n beside the exact KL-regularised optimum's frontier
  (`evaluate.overoptimization.exact_bon_study`), where the gold reward peaks and falls;
- pair accuracy per subset (Lambert et al. 2024, "RewardBench", arXiv 2403.13787).
"""

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rewardjax import theory
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.gold import BonGoldCurves
from rewardjax.evaluate.pairs import Calibration
from rewardjax.evaluate.runner import PairReport

__all__ = [
    "fit_bon_gold",
    "markdown_table",
    "plot_bon_curves",
    "plot_reliability",
    "plot_subset_accuracy",
    "write_report",
]


def _cell(value: Any, floatfmt: str) -> str:
    if isinstance(value, float | np.floating) or (
        isinstance(value, np.ndarray) and value.ndim == 0
    ):
        value = float(value)
        return "nan" if math.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|")


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], *, floatfmt: str = ".4f"
) -> str:
    """A GitHub-flavoured Markdown table; floats formatted with `floatfmt`, `|` escaped."""
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"markdown_table: row {i} has {len(row)} cells, header {len(header)}.")
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v, floatfmt) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def plot_reliability(cal: Calibration, path: str | os.PathLike) -> str:
    """Reliability diagram: accuracy against mean confidence per bin, bars by bin weight."""
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    edges = np.asarray(cal.edges)
    lo, hi = float(edges[0]), float(edges[-1])
    ax.plot([lo, hi], [lo, hi], "--", color="gray", label="perfect calibration")
    full = np.asarray(cal.weight) > 0
    ax.bar(
        edges[:-1][full],
        np.asarray(cal.accuracy)[full],
        width=np.diff(edges)[full],
        align="edge",
        alpha=0.4,
        edgecolor="black",
        label="accuracy per bin",
    )
    ax.plot(np.asarray(cal.confidence)[full], np.asarray(cal.accuracy)[full], "o-", label="bins")
    ax.set(xlabel="confidence σ(|r_c - r_r|)", ylabel="accuracy", ylim=(0, 1))
    ax.set_title(f"Reliability (ECE = {float(cal.ece):.4f})")
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def fit_bon_gold(curves: BonGoldCurves) -> theory.OveroptimizationFit:
    """Gao et al.'s best-of-n law R(d) = d (α - β d), d = √KL, fitted to the gold reward gained
    over n = 1 by the proxy's best-of-n (least squares, `theory.fit_overoptimization`).

    Reference: Gao, Schulman, Hilton 2022, arXiv 2210.10760, eq. (1).
    """
    gold = np.asarray(curves.gold_reward)
    gain = gold - gold[np.argmin(np.asarray(curves.n))]
    fit = theory.fit_overoptimization(np.asarray(curves.kl), gain, "bon")
    return theory.OveroptimizationFit(*(float(x) for x in fit))


def plot_bon_curves(
    curves: BonGoldCurves,
    path: str | os.PathLike,
    *,
    fit: theory.OveroptimizationFit | None = None,
) -> str:
    """Best-of-n reward against KL: proxy and gold reward of proxy-selected BoN, gold ceiling, and
    optionally the Gao et al. fit of the gold reward (`fit_bon_gold`)."""
    fig = Figure(figsize=(5.5, 4))
    ax = fig.add_subplot()
    kl = np.asarray(curves.kl)
    ax.plot(kl, np.asarray(curves.proxy_reward), "o-", label="proxy reward (BoN by proxy)")
    ax.plot(kl, np.asarray(curves.gold_reward), "s-", label="gold reward (BoN by proxy)")
    ax.plot(
        np.asarray(curves.kl_best),
        np.asarray(curves.gold_best),
        "^--",
        label="gold reward (BoN by gold)",
    )
    if fit is not None:
        grid = np.linspace(0.0, kl.max(), 100)
        start = np.asarray(curves.gold_reward)[np.argmin(np.asarray(curves.n))]
        fitted = start + np.asarray(theory.gao_bon(np.sqrt(grid), fit.alpha, fit.beta))
        ax.plot(grid, fitted, ":", color="black", label=f"Gao et al. fit (R²={fit.r_squared:.2f})")
    for x, y, n in zip(kl, np.asarray(curves.gold_reward), np.asarray(curves.n)):
        ax.annotate(f"n={int(n)}", (x, y), textcoords="offset points", xytext=(0, -12), fontsize=7)
    ax.set(xlabel="KL(π_n ‖ π) [nats]", ylabel="reward")
    ax.set_title("Best-of-n: proxy vs gold")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def plot_subset_accuracy(
    accuracy: Sequence[float],
    count: Sequence[float],
    names: Sequence[str],
    path: str | os.PathLike,
) -> str:
    """Horizontal bars of pair accuracy per subset (empty subsets left out), chance at ½."""
    accuracy, count = np.asarray(accuracy, float), np.asarray(count, float)
    keep = count > 0
    labels = [f"{n or '(none)'} (n={c:g})" for n, c in zip(np.asarray(names)[keep], count[keep])]
    fig = Figure(figsize=(6, 1.2 + 0.35 * len(labels)))
    ax = fig.add_subplot()
    ax.barh(labels, accuracy[keep])
    ax.invert_yaxis()  # first subset on top
    ax.axvline(0.5, color="gray", linestyle="--")
    ax.set(xlim=(0, 1), xlabel="pair accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


def _exact_bon_section(study: overopt.ExactBonStudy, directory: str | os.PathLike) -> list[str]:
    b = study.bon
    # The frontier from β = ∞ (KL = 0, the base policy) to the smallest β; NaN beyond its KL.
    f_kl = np.concatenate([[0.0], study.frontier_kl])
    f_gold = np.concatenate([[float(b.gold_best[0])], study.frontier_gold])
    order = np.argsort(f_kl)
    optimum = np.interp(b.kl, f_kl[order], f_gold[order])
    optimum = np.where(b.kl > f_kl.max() * (1 + 1e-6), np.nan, optimum)
    columns = (b.n, b.kl, b.proxy_reward, b.gold_reward, b.gold_best, optimum)
    rows = [[f"{n:.0f}", *map(float, rest)] for n, *rest in zip(*columns)]
    header = ["n", "KL (nats)", "proxy reward", "gold reward", "gold, BoN by gold", "gold, optimum"]
    fit = fit_bon_gold(b)
    peak = overopt.bon_gold_peak(b)
    i = peak.index
    parts = [
        "## Best-of-n\n",
        "Exact best-of-n law over every response to each prompt (Beirami et al. 2024, "
        "arXiv 2401.01879), means over the prompts; *gold, optimum* is the exact KL-regularised "
        "optimum of the gold reward at the same KL (the frontier no policy can beat; nan past its "
        "largest KL, that of the point mass on each prompt's best response).\n",
        markdown_table(header, rows),
        f"\n**Overoptimization.** The gold reward of best-of-n by the proxy peaks at n = "
        f"{b.n[i]:.0f} (KL = {peak.kl:.2f} nats, gold {peak.gold:.3f}, "
        f"+{peak.rise:.3f} over n = 1) and falls by {peak.drop:.3f} to "
        f"{float(b.gold_reward[-1]):.3f} at n = {b.n[-1]:.0f} "
        f"(KL = {peak.final_kl:.2f}), while the proxy reward keeps rising "
        f"(+{peak.proxy_gain:.3f} after the peak). At the peak's KL the exact optimum reaches "
        f"gold {float(optimum[i]):.3f}.\n",
        f"\nGao et al. fit of the gold reward gained over n = 1, d = √KL: R(d) = d (α - β d) with "
        f"α = {fit.alpha:.4f}, β = {fit.beta:.4f} (R² = {fit.r_squared:.4f}; "
        f"Gao, Schulman, Hilton 2022, arXiv 2210.10760).\n",
    ]
    overopt.plot_exact_bon_study(study, os.path.join(directory, "bon.png"), fit=fit)
    points = [
        dict(zip(["n", "kl", "proxy", "gold", "gold_bon_by_gold", "gold_optimum"], r))
        for r in zip(*(np.asarray(c, np.float64) for c in columns))
    ]
    overopt.write_points(os.path.join(directory, "bon_points.jsonl"), points)
    parts.append("\n![best-of-n gold vs proxy and the exact optimum](bon.png)\n")
    return parts


def write_report(
    directory: str | os.PathLike,
    *,
    pairs: PairReport | None = None,
    bon: BonGoldCurves | None = None,
    title: str = "Reward model evaluation",
    notes: Mapping[str, Any] | None = None,
    filename: str = "report.md",
    exact: overopt.ExactBonStudy | None = None,
) -> str:
    """Writes `filename` and its PNG plots into `directory`; returns the report's path.

    Sections: `notes` (e.g. the config and training numbers, as a key/value table); pair metrics
    (accuracy, margins, ECE, gold agreement) with a reliability diagram; per-subset accuracy and
    RewardBench sections when there is more than one subset; the best-of-n table, the Gao et al.
    fit (with 3 or more values of n) and the plot.

    Args:
      directory: output folder (created if needed).
      pairs: from `runner.evaluate_pairs` / `evaluate_reward_model`.
      bon: from `runner.synthetic_bon_curves` (reward fields of shape [K]).
      title: the report's heading.
      notes: extra key/value rows shown first.
      filename: the Markdown file's name.
      exact: from `overoptimization.exact_bon_study` (replaces `bon`): the exact best-of-n
        table with the optimum's gold reward at each KL, where the gold reward peaks and how far
        it falls, the Gao et al. fit, and one plot of all of it (`bon.png`); the points in
        `bon_points.jsonl`.
    """
    os.makedirs(directory, exist_ok=True)
    join = lambda name: os.path.join(directory, name)
    parts = [f"# {title}\n"]
    if notes:
        parts += ["## Run\n", markdown_table(["", "value"], [[k, v] for k, v in notes.items()])]
    if pairs is not None:
        rows = [["pairs", f"{pairs.count:g}"], ["accuracy", pairs.accuracy]]
        rows.append(["ECE (σ(r_c - r_r), top-label)", float(pairs.calibration.ece)])
        rows += [[f"margin {k}", float(v)] for k, v in pairs.margin._asdict().items()]
        if pairs.gold is not None:
            rows.append(["gold pair accuracy", float(pairs.gold.pair_accuracy)])
            rows.append(["Spearman(proxy, gold)", float(pairs.gold.spearman)])
            rows.append(["Kendall τ_b(proxy, gold)", float(pairs.gold.kendall)])
        parts += ["## Pairs\n", markdown_table(["metric", "value"], rows)]
        plot_reliability(pairs.calibration, join("reliability.png"))
        parts.append("\n![reliability diagram](reliability.png)\n")
        if len(pairs.subset_names) > 1:
            acc, cnt = pairs.subsets
            subset_rows = [
                [name or "(none)", float(a), f"{c:g}"]
                for name, a, c in zip(pairs.subset_names, acc, cnt)
                if c > 0
            ]
            parts += ["## Subsets\n", markdown_table(["subset", "accuracy", "pairs"], subset_rows)]
            if pairs.sections:
                sections = [[k, v] for k, v in pairs.sections.items()]
                parts.append("\n" + markdown_table(["section", "score"], sections))
            plot_subset_accuracy(acc, cnt, pairs.subset_names, join("subset_accuracy.png"))
            parts.append("\n![accuracy per subset](subset_accuracy.png)\n")
    if exact is not None:
        parts += _exact_bon_section(exact, directory)
    elif bon is not None:
        columns = (bon.n, bon.kl, bon.proxy_reward, bon.gold_reward, bon.gold_best)
        rows = [[int(n), *map(float, rest)] for n, *rest in zip(*columns)]
        header = ["n", "KL (nats)", "proxy reward", "gold reward", "gold reward, BoN by gold"]
        parts += ["## Best-of-n\n", markdown_table(header, rows)]
        fit = fit_bon_gold(bon) if len(bon.n) >= 3 else None
        if fit is not None:
            parts.append(
                f"\nGao et al. fit of the gold reward gained over n = 1, d = √KL: "
                f"R(d) = d (α - β d) with α = {fit.alpha:.4f}, β = {fit.beta:.4f} "
                f"(R² = {fit.r_squared:.4f}).\n"
            )
        plot_bon_curves(bon, join("bon.png"), fit=fit)
        parts.append("\n![best-of-n gold vs proxy](bon.png)\n")
    path = join(filename)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
