"""Does optimising an ensemble of reward models overoptimise less than optimising a single one?

    python -m experiments.ensembles --workdir=runs/lab/ensembles [--smoke]

On the quickstart's synthetic world (every response enumerated), two parts:

1. Best-of-n (`run`, exact law), for several seeds: E = 4 Bradley–Terry proxies on bigram counts,
   each fitted to a bootstrap resample of the same few noisy pairs; best-of-n by each single member
   and by the ensemble's mean, worst case (min) and uncertainty-weighted (mean - λ var) reward,
   judged by the gold reward at equal KL.
2. RL (`run_rl`, `<workdir>/rl`), runs of the real trainer: an ensemble reward model
   (`configs/reward_model.py:ensemble`, 4 linear heads on one backbone) and, as the single
   baseline, a scalar reward model (`configs/reward_model.py`: the RL reward cannot select one
   member of an ensemble head) trained on the same noisy pairs with the same seed and steps, both
   from the SFT backbone; GRPO (`configs/rl.py:grpo`) from the SFT policy against the single RM and
   against the ensemble's mean / worst case / uncertainty-weighted reward (`config.reward.ensemble`)
   at the same β, learning rate and steps, per seed. Every kept checkpoint's exact KL to the SFT
   law and exact gold reward (`lab.checkpoint_path`) give each run's path; gold at equal KL.

Paper: Coste, Anwar, Kirk, Krueger 2023, "Reward Model Ensembles Help Mitigate
Overoptimization", arXiv 2310.02743 (best-of-n, Figure 3; PPO, Figure 5).
"""

from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import app, flags
from matplotlib.figure import Figure

from experiments import _world
from rewardjax import lab, train
from rewardjax.data import synthetic
from rewardjax.evaluate.report import markdown_table
from rewardjax.lab import runs

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


# RL runs: name -> config.reward.ensemble (None: the single scalar reward model).
RL_RUNS = {"single": None, "mean": "mean", "worst_case": "worst_case", "uwo": "uwo"}


def rl_settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        sft_steps=60 if smoke else 300,
        rm_steps=100 if smoke else 300,
        rl_steps=20 if smoke else 60,
        checkpoint_every=5 if smoke else 10,
        rl_lr=1e-3,
        rl_beta=0.04,  # GRPO's k3 KL in the loss
        batch_size=16,
        num_samples=8,
        runs=["single", "mean"] if smoke else list(RL_RUNS),
        uwo_coef=0.5,
        seeds=[0],
    )


def rl_stage_configs(workdir: str, cfg: dict, sft_workdir: str) -> dict:
    """The reward models and RL runs (name -> config), in order."""
    out = {}
    for head in ("ensemble", "scalar"):  # same pairs (the quickstart's), seed, steps
        c = _world.world_config("reward_model", head)
        c.init_from = sft_workdir
        c.train.batch_size = 64
        c.train.num_steps = c.train.checkpoint_every = cfg["rm_steps"]
        c.optimizer.warmup_steps = 10
        out[f"rm_{head}"] = c
    for seed in cfg["seeds"]:
        for name in cfg["runs"]:
            c = _world.world_config("rl", "grpo")
            c.seed = seed
            c.init_from = sft_workdir
            c.reward.kind = "model"
            rm = "rm_scalar" if RL_RUNS[name] is None else "rm_ensemble"
            c.reward.model_workdir = os.path.join(workdir, rm)
            c.reward.ensemble = RL_RUNS[name] or "mean"
            c.reward.uncertainty_coef = cfg["uwo_coef"]
            c.rl.kl.beta = cfg["rl_beta"]
            c.train.batch_size, c.rl.num_samples = cfg["batch_size"], cfg["num_samples"]
            c.optimizer.learning_rate = cfg["rl_lr"]
            c.train.num_steps = cfg["rl_steps"]
            c.train.checkpoint_every = cfg["checkpoint_every"]
            c.train.max_to_keep = cfg["rl_steps"] // cfg["checkpoint_every"] + 1
            out[f"rl_{name}_seed{seed}"] = c
    return out


def _score(workdir, task, law):
    """Every enumerated response scored by the reward model in `workdir`: [P, Y] or [E, P, Y]."""
    key = jax.random.PRNGKey(_world.quickstart_config().seed + 1)  # the world's prompts
    scored = lab.score_reward_model_run(
        workdir, task, key, num_prompts=len(law.prompts), members=True
    )
    assert np.array_equal(scored.law.prompts, law.prompts)
    return scored.law.proxy


def run_rl(workdir: str, smoke: bool, *, sft_workdir: str | None = None) -> dict:
    """Trains the reward models and RL runs (resuming finished ones), writes `<workdir>`'s report;
    returns {"grid": KLs [G], "gold": {run: gold at those KLs, [seeds, G]}, "paths": {stage:
    lab.runs.RunPath}}."""
    start, cpu = time.time(), time.process_time()
    cfg = rl_settings(smoke)
    _, task, law = _world.quickstart_world(cfg["prompts"])
    sft_workdir = sft_workdir or os.path.join(workdir, "sft")
    _, ref = _world.sft_reference(sft_workdir, law, steps=cfg["sft_steps"])
    configs = rl_stage_configs(workdir, cfg, sft_workdir)
    for name, c in configs.items():
        train.run(c, os.path.join(workdir, name))
    members = _score(os.path.join(workdir, "rm_ensemble"), task, ref)
    single = _score(os.path.join(workdir, "rm_scalar"), task, ref)
    aggregates = lab.aggregate_members(members, uwo_coef=cfg["uwo_coef"])
    own = {"single": single, "mean": aggregates["mean"], "worst_case": aggregates["min"]}
    own["uwo"] = aggregates["uwo"]
    paths = {
        name: runs.checkpoint_path(os.path.join(workdir, name), ref, proxy=own[_run_kind(name)])
        for name in configs
        if name.startswith("rl_")
    }
    top = min(float(p.kl.max()) for p in paths.values())  # the KL every run reaches
    grid = np.floor(np.linspace(0, top, 5)[1:] * 1000) / 1000  # inside every path
    gold = {
        name: np.stack([runs.path_at_kl(paths[f"rl_{name}_seed{s}"], grid) for s in cfg["seeds"]])
        for name in cfg["runs"]
    }
    os.makedirs(workdir, exist_ok=True)
    _plot_rl(paths, ref, os.path.join(workdir, "ensembles_rl.png"))
    points = [
        dict(run=name, step=int(st), kl=float(k), gold=float(g), proxy=float(p))
        for name, path in paths.items()
        for st, k, g, p in zip(*path)
    ]
    sft_gold = float(np.mean(np.sum(ref.probs * ref.gold, -1)))
    finals = [
        [name, float(p.kl[-1]), float(p.gold[-1]), float(p.gold[-1]) - sft_gold, float(p.proxy[-1])]
        for name, p in paths.items()
    ]
    rows = [[name, *map(float, np.mean(gold[name], 0))] for name in cfg["runs"]]
    wins = [
        [name, *map(float, np.mean(gold[name] >= gold["single"], 0))] for name in cfg["runs"][1:]
    ]
    corr = np.corrcoef(members.reshape(len(members), -1))[np.triu_indices(len(members), 1)]
    fit = [
        [name, _gold_corr(r, ref.gold), *_last_metrics(os.path.join(workdir, f"rm_{rm}"))]
        for name, rm, r in [("scalar", "scalar", single), *(
            (f"member {e}", "ensemble", members[e]) for e in range(len(members))
        ), ("ensemble mean", "ensemble", aggregates["mean"])]
    ]  # fmt: skip
    sections = [
        f"GRPO (β = {cfg['rl_beta']}, lr {cfg['rl_lr']}, {cfg['rl_steps']} steps of "
        f"{cfg['batch_size']} prompts × {cfg['num_samples']} samples, from the SFT policy) against "
        f"a scalar reward model (single) and a {len(members)}-member ensemble head (mean, "
        f"worst_case, uwo = mean - {cfg['uwo_coef']} var), both trained {cfg['rm_steps']} steps on "
        "the quickstart's 512 pairs at flip rate 0.2 with the same seed. Every kept checkpoint "
        f"judged exactly on {cfg['prompts']} prompts (KL to the SFT law). Seeds {cfg['seeds']}. "
        f"The ensemble members' scores correlate at {corr.min():.3f}-{corr.max():.3f} over the "
        "enumerated responses (one shared backbone).\n",
        "![RL](ensembles_rl.png)\n",
        "## Reward models (train accuracy / loss at their last logged step; correlation with the "
        "gold reward over the enumerated responses, mean over prompts)\n",
        markdown_table(
            ["reward model", "gold corr.", "train acc.", "train loss"], fit, floatfmt=".3f"
        ),
        "## Gold reward at equal KL (mean over seeds; grid up to the KL every run reaches)\n",
        markdown_table(["reward", *[f"KL={k:g}" for k in grid]], rows, floatfmt=".3f"),
        "\n## Fraction of seeds where the run's gold ≥ the single RM run's at that KL\n",
        markdown_table(["reward", *[f"KL={k:g}" for k in grid]], wins, floatfmt=".2f"),
        f"\n## Final policies (SFT gold {sft_gold:.3f})\n",
        markdown_table(["run", "KL", "gold", "gold gain", "own proxy"], finals, floatfmt=".3f"),
        f"\nWall time {time.time() - start:.0f} s, CPU time {time.process_time() - cpu:.0f} s.\n",
    ]
    lab.write_study(
        workdir,
        title="Reward-model ensembles under RL (Coste et al. 2023)",
        sections=sections,
        points=points,
        config={**cfg, "smoke": smoke, "sft_workdir": sft_workdir},
    )
    return dict(grid=grid, gold=gold, paths=paths)


def _gold_corr(scores, gold) -> float:
    """Mean over prompts of the Pearson correlation of a reward with the gold reward, [P, Y]."""
    return float(np.mean([np.corrcoef(s, g)[0, 1] for s, g in zip(scores, gold)]))


def _last_metrics(workdir) -> list[float]:
    """The last logged training accuracy and loss of the run in `workdir`."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        last = [json.loads(line) for line in f if '"accuracy"' in line][-1]
    return [float(last["accuracy"]), float(last["loss"])]


def _run_kind(stage: str) -> str:
    """The RL run kind of a stage name, e.g. rl_worst_case_seed0 -> worst_case."""
    return stage[len("rl_") :].rsplit("_seed", 1)[0]


def _plot_rl(paths, ref, path):
    fig = Figure(figsize=(6.5, 4.4))
    ax = fig.subplots()
    names = sorted({name.rsplit("_seed", 1)[0] for name in paths})
    for i, name in enumerate(names):
        mine = [p for r, p in paths.items() if r.startswith(name + "_seed")]
        for j, p in enumerate(mine):
            ax.plot(p.kl, p.gold, "o-", color=f"C{i}", ms=3, alpha=1.0 if j == 0 else 0.5,
                    label=name[3:] if j == 0 else None)  # fmt: skip
    ax.set(xlabel="KL(π ‖ π_SFT) [nats]", ylabel="gold reward (exact, mean over prompts)")
    ax.set_title("GRPO against a single RM vs an ensemble (checkpoints along each run)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


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
    workdir = _WORKDIR.value
    _world.cache_compilations(workdir)
    gold = run(workdir, _SMOKE.value)
    for name, g in gold.items():
        print(f"best-of-n {name}: " + " ".join(f"{x:.3f}" for x in np.mean(g, 0)))
    rl = run_rl(os.path.join(workdir, "rl"), _SMOKE.value, sft_workdir=_SFT.value)
    for name, g in rl["gold"].items():
        print(f"RL {name} at KL {rl['grid']}: " + " ".join(f"{x:.3f}" for x in np.mean(g, 0)))
    print(f"Reports: {workdir}/report.md, {workdir}/rl/report.md")


if __name__ == "__main__":
    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    _SFT = flags.DEFINE_string("sft_workdir", None, "SFT reference to share (default rl/sft).")
    app.run(main)
