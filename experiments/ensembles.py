"""Does best-of-n by an ensemble of reward models overoptimise less than by a single one?

    python -m experiments.ensembles --workdir=runs/lab/ensembles [--smoke]

On the quickstart's synthetic world (every response enumerated; exact best-of-n), for several
seeds: E = 4 Bradley–Terry proxies on bigram counts, each fitted to a bootstrap resample of the
same few noisy pairs; best-of-n by each single member and by the ensemble's mean, worst case
(min) and uncertainty-weighted (mean - λ var) reward, judged by the gold reward at equal KL.

Paper: Coste, Anwar, Kirk, Krueger 2023, "Reward Model Ensembles Help Mitigate
Overoptimization", arXiv 2310.02743 (best-of-n, Figure 3).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags
from matplotlib.figure import Figure

from experiments import _world
from rewardjax import lab
from rewardjax.data import synthetic
from rewardjax.evaluate.report import markdown_table

GRID = np.array([1.0, 2.0, 4.0, 6.0, 8.0])  # KLs (nats) where single and ensemble are compared
NAMES = ("single", "mean", "min", "uwo")


def settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        max_log2_n=20,
        pairs=128,
        members=4,
        uwo_coef=0.5,
        seeds=list(range(100, 103)) if smoke else list(range(100, 110)),
        grid=GRID.tolist(),
    )


def run(workdir: str, smoke: bool) -> dict[str, np.ndarray]:
    """Runs the study, writes its files; returns gold at the grid's KLs, [seeds, G], by name."""
    start = time.time()
    cfg = settings(smoke)
    config, task, law = _world.quickstart_world(cfg["prompts"])
    s = config.data.synthetic
    ns = 2.0 ** np.arange(cfg["max_log2_n"] + 1)
    gold = {name: [] for name in NAMES}
    points, curves = [], {}
    for seed in cfg["seeds"]:
        pairs = synthetic.sample_preference_pairs(
            task, jax.random.PRNGKey(seed), cfg["pairs"], beta=s.beta, flip_rate=s.flip_rate
        )
        tables = lab.bootstrap_bigram_ensemble(
            pairs, s.vocab_size, members=cfg["members"], seed=seed
        )
        members = lab.score_bigram(tables, law.prompts[:, -1], law.responses)
        at_grid, studies = lab.ensemble_bon_gold(law, members, ns, GRID, uwo_coef=cfg["uwo_coef"])
        for name in NAMES:
            gold[name].append(at_grid[name])
        for name, study in studies.items():
            for n, k, g, p in zip(
                study.bon.n, study.bon.kl, study.bon.gold_reward, study.bon.proxy_reward
            ):
                points.append(dict(seed=seed, proxy=name, n=n, kl=k, gold=g, proxy_reward=p))
        if seed == cfg["seeds"][0]:
            curves = studies
    gold = {k: np.stack(v) for k, v in gold.items()}
    os.makedirs(workdir, exist_ok=True)
    _plot(curves, os.path.join(workdir, "ensembles.png"))
    with np.errstate(all="ignore"):
        rows = [[name, *map(float, _nanmean(gold[name]))] for name in NAMES]
        both = lambda a: np.isfinite(gold[a]) & np.isfinite(gold["single"])
        wins = [
            [
                name,
                *map(float, _nanmean(np.where(both(name), gold[name] >= gold["single"], np.nan))),
            ]
            for name in NAMES[1:]
        ]
    reached = [
        int(np.sum(np.isfinite(gold["mean"][:, g]) & np.isfinite(gold["single"][:, g])))
        for g in range(len(GRID))
    ]
    sections = [
        f"Best-of-n (exact law, n up to 2^{cfg['max_log2_n']}) by single proxies and by their "
        f"ensemble ({cfg['members']} bootstrap members, {cfg['pairs']} pairs at flip rate "
        f"{s.flip_rate}), {len(cfg['seeds'])} seeds, {cfg['prompts']} prompts.\n",
        "![ensembles](ensembles.png)\n",
        "## Gold reward at equal KL (mean over the seeds that reach it; single: the members)\n",
        markdown_table(["proxy", *[f"KL={k:g}" for k in GRID]], rows, floatfmt=".3f"),
        "\n## Fraction of seeds where the aggregate's gold ≥ the single members' mean\n",
        "Over the seeds where both reach the KL (mean ensemble: "
        + ", ".join(f"{r} at KL={k:g}" for r, k in zip(reached, GRID))
        + " seeds).\n",
        markdown_table(["aggregate", *[f"KL={k:g}" for k in GRID]], wins, floatfmt=".2f"),
        f"\nWall time: {time.time() - start:.1f} s.\n",
    ]
    lab.write_study(
        workdir,
        title="Reward-model ensembles under best-of-n (Coste et al. 2023)",
        sections=sections,
        points=points,
        config={**cfg, "smoke": smoke},
    )
    return gold


def _nanmean(x):
    """Mean over seeds (axis 0) of the finite values; NaN where none is."""
    x = np.asarray(x, np.float64)
    count = np.sum(np.isfinite(x), 0)
    return np.where(count > 0, np.nansum(x, 0) / np.maximum(count, 1), np.nan)


def _plot(studies, path):
    fig = Figure(figsize=(6.5, 4.4))
    ax = fig.subplots()
    for name, study in studies.items():
        single = name.startswith("single")
        ax.plot(
            study.bon.kl,
            study.bon.gold_reward,
            "-" if single else "o-",
            color="0.6" if single else None,
            lw=1 if single else 2,
            ms=3,
            label=None if single and name != "single 0" else ("single members" if single else name),
        )
    ax.set(xlabel="KL(π ‖ π_0) [nats]", ylabel="gold reward (mean over prompts)")
    ax.set_title("Best-of-n by single proxies vs their ensemble (first seed)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    gold = run(_WORKDIR.value, _SMOKE.value)
    for name, g in gold.items():
        print(f"{name}: " + " ".join(f"{x:.3f}" for x in np.mean(g, 0)))
    print(f"Report: {os.path.join(_WORKDIR.value, 'report.md')}")


if __name__ == "__main__":
    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    app.run(main)
