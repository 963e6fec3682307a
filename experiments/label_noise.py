"""Preference label noise and data size -> reward-model accuracy -> gold reward under best-of-n.

    python -m experiments.label_noise --workdir=runs/lab/label_noise [--smoke]

On the quickstart's synthetic world, a Bradley–Terry proxy on bigram counts is fitted to m pairs
whose labels are flipped with probability ε, for a grid of (ε, m) and several seeds. For each:
its accuracy against the gold reward on 2048 fresh pairs, and exact best-of-n by it (n up to
2^20): the gold reward's peak, the n and KL where it peaks, how far it falls by n = 2^20, and
Gao et al.'s fit R(d) = d (α - β d). Not yet here: robust DPO / cDPO vs DPO under flipped
labels (the issue's second half; it needs policy training).

Papers: Gao, Schulman, Hilton 2022, arXiv 2210.10760 (data size and overoptimization);
Chowdhury et al. 2024, "Provably Robust DPO", arXiv 2403.00409; Mitchell 2023, "A note on DPO
with noisy preferences (cDPO)".
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from matplotlib.figure import Figure

from experiments import _world
from rewardjax import evaluate, lab
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.report import markdown_table


def settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        max_log2_n=20,
        flip_rates=[0.0, 0.3] if smoke else [0.0, 0.1, 0.2, 0.3],
        pair_counts=[128, 2048] if smoke else [128, 512, 2048],
        seeds=[100, 101] if smoke else [100, 101, 102, 103, 104],
        eval_pairs=2048,  # the size of a training set too: one compiled sampler
    )


def _pair_accuracy(table, pairs, vocab_size):
    y0 = pairs["prompt"][:, -1]
    score = lambda r: lab.bigram_counts(y0, r, vocab_size) @ table.reshape(-1)
    return float(
        evaluate.gold_pair_accuracy(
            score(pairs["chosen"]),
            score(pairs["rejected"]),
            pairs["chosen_gold"],
            pairs["rejected_gold"],
        )
    )


def run(workdir: str, smoke: bool) -> list[dict]:
    """Runs the grid, writes the study's files; returns one row per (flip rate, pairs, seed)."""
    start = time.time()
    cfg = settings(smoke)
    config, task, law = _world.quickstart_world(cfg["prompts"])
    s = config.data.synthetic
    ns = 2.0 ** np.arange(cfg["max_log2_n"] + 1)
    eval_pairs = synthetic.sample_preference_pairs(task, jax.random.PRNGKey(7), cfg["eval_pairs"])
    rows, curves = [], {}
    for flip in cfg["flip_rates"]:
        for m in cfg["pair_counts"]:
            for seed in cfg["seeds"]:
                pairs = synthetic.sample_preference_pairs(
                    task, jax.random.PRNGKey(seed), m, beta=s.beta, flip_rate=flip
                )
                table = lab.fit_bigram_proxy(pairs, s.vocab_size)
                proxy = lab.score_bigram(table, law.prompts[:, -1], law.responses)
                study = overopt.exact_bon_study(
                    law, ns, np.array([1.0]), proxy=proxy, proxy_optimum=False
                )
                peak = overopt.bon_gold_peak(study.bon)
                fit = evaluate.fit_bon_gold(study.bon)
                rows.append(
                    dict(
                        flip_rate=flip,
                        pairs=m,
                        seed=seed,
                        gold_pair_accuracy=_pair_accuracy(table, eval_pairs, s.vocab_size),
                        peak_gold=peak.gold,
                        peak_n=float(study.bon.n[peak.index]),
                        peak_kl=peak.kl,
                        final_gold=float(study.bon.gold_reward[-1]),
                        drop=peak.drop,
                        gao_alpha=fit.alpha,
                        gao_beta=fit.beta,
                        gao_r2=fit.r_squared,
                    )
                )
                if seed == cfg["seeds"][0]:
                    curves[(flip, m)] = study.bon
    os.makedirs(workdir, exist_ok=True)
    _plot(rows, curves, os.path.join(workdir, "label_noise.png"))
    keys = ("gold_pair_accuracy", "peak_gold", "peak_kl", "drop", "gao_alpha", "gao_beta", "gao_r2")
    table_rows = []
    for flip in cfg["flip_rates"]:
        for m in cfg["pair_counts"]:
            cell = [r for r in rows if r["flip_rate"] == flip and r["pairs"] == m]
            table_rows.append([flip, m, *(float(np.mean([r[k] for r in cell])) for k in keys)])
    sections = [
        f"Bigram Bradley–Terry proxies, {len(cfg['seeds'])} seeds per cell, exact best-of-n on "
        f"{cfg['prompts']} prompts (n = 1 … 2^{cfg['max_log2_n']}); accuracy on "
        f"{cfg['eval_pairs']} fresh pairs against the gold reward. Means over seeds.\n",
        "![label noise](label_noise.png)\n",
        markdown_table(
            [
                "flip rate",
                "pairs",
                "gold pair acc.",
                "peak gold",
                "peak KL",
                "drop by n=2^20",
                "Gao α",
                "Gao β",
                "R²",
            ],
            table_rows,
            floatfmt=".3f",
        ),
        f"\nWall time: {time.time() - start:.1f} s.\n",
    ]
    lab.write_study(
        workdir,
        title="Label noise, data size and overoptimization",
        sections=sections,
        points=rows,
        config={**cfg, "smoke": smoke},
    )
    return rows


def _plot(rows, curves, path):
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    for i, flip in enumerate(sorted({r["flip_rate"] for r in rows})):
        cell = [r for r in rows if r["flip_rate"] == flip]
        left.scatter(
            [r["gold_pair_accuracy"] for r in cell],
            [r["peak_gold"] for r in cell],
            s=[8 * np.sqrt(r["pairs"]) / 4 for r in cell],
            color=f"C{i}",
            alpha=0.7,
            label=f"flip rate {flip}",
        )
    left.set(
        xlabel="proxy's gold pair accuracy",
        ylabel="peak gold reward under best-of-n",
        title="Accuracy vs the best gold reward best-of-n reaches (size: pairs)",
    )
    left.legend(fontsize=7)
    for (flip, m), b in curves.items():
        right.plot(b.kl, b.gold_reward, "-", lw=1.2, label=f"flip {flip}, {m} pairs")
    right.set(
        xlabel="KL(π ‖ π_0) [nats]",
        ylabel="gold reward",
        title="Best-of-n by the proxy (first seed)",
    )
    right.legend(fontsize=6)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    rows = run(_WORKDIR.value, _SMOKE.value)
    print(f"{len(rows)} proxies. Report: {os.path.join(_WORKDIR.value, 'report.md')}")


if __name__ == "__main__":
    from absl import app, flags

    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    app.run(main)
