"""Preference label noise and data size -> reward-model accuracy -> gold reward under best-of-n.

    python -m experiments.label_noise --workdir=runs/lab/label_noise [--smoke]

On the quickstart's synthetic world, a Bradley–Terry proxy on bigram counts is fitted to m pairs
whose labels are flipped with probability ε, for a grid of (ε, m) and several seeds. For each:
its accuracy against the gold reward on 2048 fresh pairs, and exact best-of-n by it (n up to
2^20): the gold reward's peak, the n and KL where it peaks, how far it falls by n = 2^20, and
Gao et al.'s fit R(d) = d (α - β d).

Second part (`run_dpo`, `<workdir>/dpo`): DPO, cDPO (DPO with `label_smoothing` = the flip rate)
and robust DPO (`robust_dpo`, label_smoothing = the flip rate) trained by the real trainer
(`configs/dpo.py`, from the SFT policy, which is also the reference) on the quickstart's pairs with
their labels flipped at rate ε; every kept checkpoint judged exactly (KL to the SFT law, gold
reward; `lab.checkpoint_path`): gold at the final policy and at equal KL per loss and ε, and, in
the full variant, exact best-of-n by a transformer reward model trained on the same pairs, at
each DPO policy's KL. At ε = 0 the three losses are the same loss: one run, "dpo".

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
from rewardjax import evaluate, lab, train
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.report import markdown_table
from rewardjax.lab import runs

LOSSES = ("dpo", "cdpo", "robust_dpo")


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


def dpo_settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        sft_steps=60 if smoke else 300,
        flip_rates=[0.4] if smoke else [0.0, 0.2, 0.4],
        losses=["dpo", "robust_dpo"] if smoke else list(LOSSES),
        dpo_beta=0.1,
        dpo_lr=1e-3,
        steps=40 if smoke else 100,
        checkpoint_every=10 if smoke else 20,
        batch_size=64,
        seeds=[0],
        bon_rm_steps=0 if smoke else 300,  # 0: no best-of-n comparison
        max_log2_n=20,
    )


def dpo_stage_configs(cfg: dict, sft_workdir: str) -> dict:
    """The DPO runs (name -> config) and, with `bon_rm_steps`, the reward models, in order."""
    out = {}
    for flip in cfg["flip_rates"]:
        for seed in cfg["seeds"]:
            for loss in cfg["losses"] if flip > 0 else ["dpo"]:
                c = _world.world_config("dpo")
                c.seed = seed
                c.init_from = sft_workdir
                c.data.synthetic.flip_rate = flip
                c.loss.name = "dpo" if loss == "cdpo" else loss
                c.loss.beta = cfg["dpo_beta"]
                if loss != "dpo":
                    c.loss.kwargs.label_smoothing = flip
                c.optimizer.learning_rate = cfg["dpo_lr"]
                c.optimizer.warmup_steps = 0
                c.train.batch_size = cfg["batch_size"]
                c.train.num_steps = cfg["steps"]
                c.train.checkpoint_every = cfg["checkpoint_every"]
                c.train.max_to_keep = cfg["steps"] // cfg["checkpoint_every"] + 1
                out[f"{loss}_flip{flip:g}_seed{seed}"] = c
        if cfg["bon_rm_steps"]:
            c = _world.world_config("reward_model")
            c.init_from = sft_workdir
            c.data.synthetic.flip_rate = flip
            c.train.batch_size = cfg["batch_size"]
            c.train.num_steps = c.train.checkpoint_every = cfg["bon_rm_steps"]
            c.optimizer.warmup_steps = 10
            out[f"rm_flip{flip:g}"] = c
    return out


def _bon_curve(workdir, task, ref, max_log2_n):
    """Exact best-of-n by the reward model in `workdir` on the law `ref`: (KL [K], gold [K])."""
    key = jax.random.PRNGKey(_world.quickstart_config().seed + 1)  # the world's prompts
    proxy = lab.score_reward_model_run(workdir, task, key, num_prompts=len(ref.prompts)).law.proxy
    ns = 2.0 ** np.arange(max_log2_n + 1)
    study = overopt.exact_bon_study(ref, ns, np.array([1.0]), proxy=proxy, proxy_optimum=False)
    return study.bon.kl, study.bon.gold_reward


def run_dpo(workdir: str, smoke: bool, *, sft_workdir: str | None = None) -> list[dict]:
    """Trains the DPO-family runs (resuming finished ones), writes `<workdir>`'s report; returns
    one row per run: loss, flip_rate, seed, final kl / gold, the SFT policy's gold, gold at the
    KLs `kl_grid` common to the runs at its flip rate, and
    (full variant) best-of-n's gold at the run's final KL."""
    start, cpu = time.time(), time.process_time()
    cfg = dpo_settings(smoke)
    _, task, law = _world.quickstart_world(cfg["prompts"])
    sft_workdir = sft_workdir or os.path.join(workdir, "sft")
    _, ref = _world.sft_reference(sft_workdir, law, steps=cfg["sft_steps"])
    configs = dpo_stage_configs(cfg, sft_workdir)
    for name, c in configs.items():
        train.run(c, os.path.join(workdir, name))
    names = [n for n in configs if not n.startswith("rm_")]
    paths = {n: runs.checkpoint_path(os.path.join(workdir, n), ref) for n in names}
    flip_of = {n: float(configs[n].data.synthetic.flip_rate) for n in names}
    grids = {}  # per flip rate: thirds of the KL every run at that rate reaches
    for flip in cfg["flip_rates"]:
        top = min(float(paths[n].kl.max()) for n in names if flip_of[n] == flip)
        grids[flip] = np.floor(np.linspace(0, top, 4)[1:] * 1000) / 1000  # inside every path
    sft_gold = float(np.mean(np.sum(ref.probs * ref.gold, -1)))
    rows, bon_curves = [], {}  # reward model -> its best-of-n (KL, gold) curve
    for name in names:
        c, p = configs[name], paths[name]
        flip = float(c.data.synthetic.flip_rate)
        row = dict(
            run=name,
            loss=name.split("_flip")[0],
            flip_rate=flip,
            seed=int(c.seed),
            kl=float(p.kl[-1]),
            gold=float(p.gold[-1]),
            sft_gold=sft_gold,
            gold_at_grid=runs.path_at_kl(p, grids[flip]).tolist(),
            kl_grid=grids[flip].tolist(),
        )
        if cfg["bon_rm_steps"]:
            rm = f"rm_flip{flip:g}"
            if rm not in bon_curves:
                bon_curves[rm] = _bon_curve(os.path.join(workdir, rm), task, ref, cfg["max_log2_n"])
            row["bon_gold_at_kl"] = float(lab.at_kl(*bon_curves[rm], np.array([p.kl[-1]]))[0])
        rows.append(row)
    os.makedirs(workdir, exist_ok=True)
    _plot_dpo(paths, configs, sft_gold, os.path.join(workdir, "label_noise_dpo.png"))
    table = []
    for flip in cfg["flip_rates"]:
        for loss in cfg["losses"] if flip > 0 else ["dpo"]:
            cell = [r for r in rows if r["flip_rate"] == flip and r["loss"] == loss]
            mean = {
                k: np.mean([r[k] for r in cell], 0) for k in cell[0] if k not in ("run", "loss")
            }
            bon = [float(mean["bon_gold_at_kl"])] if cfg["bon_rm_steps"] else []
            at = map(float, mean["gold_at_grid"])
            row = [flip, loss, float(mean["kl"]), float(mean["gold"]), *bon]
            table.append([*row, ", ".join(f"{k:.3f}" for k in grids[flip]), *at])
    header = ["flip rate", "loss", "final KL", "final gold"]
    header += ["BoN gold at that KL"] if cfg["bon_rm_steps"] else []
    header += ["equal KLs K1, K2, K3", "gold at K1", "gold at K2", "gold at K3"]
    points = [
        dict(run=n, step=int(st), kl=float(k), gold=float(g))
        for n, p in paths.items()
        for st, k, g, _ in zip(*p)
    ]
    sections = [
        f"DPO-family runs of the real trainer (β = {cfg['dpo_beta']}, lr {cfg['dpo_lr']}, "
        f"{cfg['steps']} steps of {cfg['batch_size']} pairs, from the SFT policy = the "
        "reference) on the quickstart's 512 pairs with labels flipped at the rate shown; cDPO and "
        "robust DPO are told that rate (label_smoothing). Every kept checkpoint judged exactly on "
        f"{cfg['prompts']} prompts; KL to the SFT law (SFT gold {sft_gold:.3f}); equal KLs: "
        "thirds of the largest KL every run at that flip rate reaches. Means over "
        f"seeds {cfg['seeds']}."
        + (
            f" BoN: exact best-of-n by a scalar reward model trained {cfg['bon_rm_steps']} "
            "steps on the same pairs, read at the DPO policy's final KL."
            if cfg["bon_rm_steps"]
            else ""
        )
        + "\n",
        "![DPO under label noise](label_noise_dpo.png)\n",
        markdown_table(header, table, floatfmt=".3f"),
        f"\nWall time {time.time() - start:.0f} s, CPU time {time.process_time() - cpu:.0f} s.\n",
    ]
    lab.write_study(
        workdir,
        title="DPO, cDPO and robust DPO under flipped preference labels",
        sections=sections,
        points=points,
        config={**cfg, "smoke": smoke, "sft_workdir": sft_workdir},
    )
    return rows


def _plot_dpo(paths, configs, sft_gold, path):
    flips = sorted({float(configs[n].data.synthetic.flip_rate) for n in paths})
    fig = Figure(figsize=(4.2 * len(flips), 4.0))
    axes = np.atleast_1d(fig.subplots(1, len(flips), sharey=True))
    for ax, flip in zip(axes, flips):
        for name, p in paths.items():
            if float(configs[name].data.synthetic.flip_rate) != flip:
                continue
            loss = name.split("_flip")[0]
            ax.plot(p.kl, p.gold, "o-", ms=3, color=f"C{LOSSES.index(loss)}", label=loss)
        ax.axhline(sft_gold, color="0.6", lw=0.8)
        ax.set(xlabel="KL(π ‖ π_SFT) [nats]", title=f"flip rate {flip:g}")
        handles, labels = ax.get_legend_handles_labels()
        unique = dict(zip(labels, handles))
        ax.legend(unique.values(), unique.keys(), fontsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("gold reward (exact, along each run)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    workdir = _WORKDIR.value
    _world.cache_compilations(workdir)
    rows = run(workdir, _SMOKE.value)
    print(f"{len(rows)} proxies. Report: {os.path.join(workdir, 'report.md')}")
    for r in run_dpo(os.path.join(workdir, "dpo"), _SMOKE.value, sft_workdir=_SFT.value):
        print(f"{r['run']}: KL {r['kl']:.3f}, gold {r['gold']:.3f}")
    print(f"Report: {os.path.join(workdir, 'dpo', 'report.md')}")


if __name__ == "__main__":
    from absl import app, flags

    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    _SFT = flags.DEFINE_string("sft_workdir", None, "SFT reference to share (default dpo/sft).")
    app.run(main)
