"""The run report: evaluation of a trained reward model plus its training curves, in Markdown.

`reward_model_report` scores the eval pairs, adds best-of-n gold-vs-proxy curves on the synthetic
task (Gao et al., "Scaling Laws for Reward Model Overoptimization", arXiv:2210.10760), writes
`report.md` through `rewardjax.write_report`, and appends the training curves and, when
gold rewards are known, a proxy-vs-gold scatter. Later stages of the overoptimization lab (DPO,
RL against the proxy) append their sections the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure

from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.report import write_report
from rewardjax.evaluate.runner import (
    PairReport,
    evaluate_pairs,
    score_pair_batches,
    synthetic_bon_curves,
)
from rewardjax.models import ScoringModel

__all__ = [
    "exact_bon_report_study",
    "plot_proxy_vs_gold",
    "plot_training_curves",
    "reward_model_report",
]


def plot_training_curves(records: Sequence[Mapping[str, Any]], path: str) -> str:
    """Train loss and accuracy (and eval accuracy / gold agreement when logged) against step."""
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_acc = fig.subplots(1, 2)
    series = lambda key: [(r["step"], r[key]) for r in records if r.get(key) is not None]
    for key, ax in (("loss", ax_loss), ("eval/nll", ax_loss)):
        if points := series(key):
            ax.plot(*zip(*points), label=key)
    for key in ("accuracy", "eval/accuracy", "eval/gold_pair_accuracy", "eval/gold_spearman"):
        if points := series(key):
            ax_acc.plot(*zip(*points), marker="." if key.startswith("eval") else None, label=key)
    ax_loss.set(xlabel="step", ylabel="loss", title="loss")
    ax_acc.set(xlabel="step", title="pair accuracy / gold agreement")
    for ax in (ax_loss, ax_acc):
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def plot_proxy_vs_gold(arrays: Mapping[str, np.ndarray], path: str) -> str:
    """Scatter of the proxy reward against the gold reward of every eval response."""
    real = np.asarray(arrays["weight"]) > 0
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    for side, marker in (("chosen", "o"), ("rejected", "x")):
        ax.scatter(
            arrays[f"{side}_gold"][real],
            arrays[side][real],
            s=8,
            alpha=0.5,
            marker=marker,
            label=side,
        )
    ax.set(xlabel="gold reward", ylabel="proxy reward", title="Proxy vs gold (eval responses)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def exact_bon_report_study(
    task: synthetic.MarkovTask, model: ScoringModel, params: Any, config: ml_collections.ConfigDict
) -> overopt.ExactBonStudy:
    """`overoptimization.exact_bon_study` as the report runs it: `config.report.bon_prompts`
    prompts (key seed + 1), n = 1, 2, 4, … up to `config.report.bon_max_n`, and 80 values of β
    from 10⁻³ to 10² times the gold reward's spread (the frontier)."""
    law = overopt.synthetic_response_law(
        task,
        model,
        params,
        jax.random.PRNGKey(config.seed + 1),
        num_prompts=config.report.bon_prompts,
    )
    max_n = int(config.report.get("bon_max_n", 2**20))
    ns = 2.0 ** np.arange(int(np.log2(max_n)) + 1)
    spread = float(np.std(law.gold)) or 1.0
    betas = spread * np.geomspace(1e-3, 1e2, 80)
    if law.proxy.ndim == 3:  # an ensemble head: its members' mean, as the rest of the report
        law = law._replace(proxy=law.proxy.mean(0))
    return overopt.exact_bon_study(law, ns, betas, proxy_optimum=False)


def reward_model_report(
    workdir: str,
    *,
    model: ScoringModel,
    params: Any,
    eval_batches: Iterable[Mapping[str, np.ndarray]],
    subset_names: Sequence[str],
    task: synthetic.MarkovTask | None,
    config: ml_collections.ConfigDict,
    records: Sequence[Mapping[str, Any]],
) -> tuple[str, PairReport]:
    """Evaluates the reward model, writes `<workdir>/report.md` and its PNGs.

    `records` are the run's logged metrics (`metrics.jsonl`), for the training curves.

    Returns:
      The report's path and the pair metrics of the eval set.
    """
    arrays = score_pair_batches(model, params, eval_batches)
    pairs = evaluate_pairs(
        arrays["chosen"],
        arrays["rejected"],
        weight=arrays["weight"],
        subset=arrays["subset"],
        subset_names=subset_names,
        chosen_gold=arrays.get("chosen_gold"),
        rejected_gold=arrays.get("rejected_gold"),
    )
    bon = exact = None
    if task is not None and config.report.get("bon_exact", False):
        exact = exact_bon_report_study(task, model, params, config)
    elif task is not None:
        bon = synthetic_bon_curves(
            task,
            model,
            params,
            jax.random.PRNGKey(config.seed + 1),
            num_prompts=config.report.bon_prompts,
            num_samples=config.report.bon_samples,
        )
    last = next((r for r in reversed(records) if "loss" in r), {})
    notes = {
        "task": f"{config.task} on {config.data.source} data",
        "model": f"{config.model.preset} backbone + {config.head.name} head",
        "loss": config.loss.name,
        "steps x batch": f"{config.train.num_steps} x {config.train.batch_size}",
        "final train loss": last.get("loss", float("nan")),
        "final train accuracy": last.get("accuracy", float("nan")),
    }
    s = config.data.get("synthetic") if config.data.source == "synthetic" else None
    if s is not None:
        notes["preference pairs (train)"] = f"{s.num_train_pairs} (label flip rate {s.flip_rate})"
    path = write_report(
        workdir,
        pairs=pairs,
        bon=bon,
        exact=exact,
        title="Reward model on the synthetic task",
        notes=notes,
    )
    extra = ["## Training curves\n", "![training curves](training_curves.png)\n"]
    plot_training_curves(records, os.path.join(workdir, "training_curves.png"))
    if "chosen_gold" in arrays:
        plot_proxy_vs_gold(arrays, os.path.join(workdir, "proxy_vs_gold.png"))
        extra += ["## Proxy vs gold\n", "![proxy vs gold](proxy_vs_gold.png)\n"]
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n" + "\n".join(extra))
    return path, pairs
