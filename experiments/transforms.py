"""Reward transforms against overoptimization: RL on a raw vs shaped proxy, gold at equal KL.

    python -m experiments.transforms --workdir=runs/lab/transforms [--smoke]

Question (issue 12): does RL on a transformed proxy — log-sigmoid centring at the reference's
85 % quantile (Wang et al. 2024), PAR, the mean Bradley–Terry win rate against reference
completions (Fu et al. 2025), or the calibrated reward (its rank under the reference) — reach more
gold reward than RL on the raw proxy at equal KL, and how late does hacking (gold falling while KL
grows) start?

On the quickstart's world (every response enumerated):
1. the exact counterpart: for each transform u, the tilted optimum q_β ∝ π_ref e^{u(r)/β} with the
   transform computed exactly under the whole reference law (`rewardjax.lab.shaping`), over a β
   grid, judged by gold: for the transformer proxy below and for bigram Bradley–Terry proxies on
   128 noisy pairs (several seeds; the smoke variant runs only these);
2. (full variant) runs of the real trainer: the SFT reference (`_world.sft_reference`), one weak
   transformer proxy (`configs/reward_model.py` on the quickstart's 512 pairs with 20 % flipped
   labels), then GRPO from the SFT policy against `reward.kind=combined`, `components="model:1"`,
   `transform=<each>` (same seed, steps, β): the trainer samples the reference completions the
   transform needs in the same rollout. Every run is stopped at checkpoints
   (`train.stop_at_step`, resumed exactly) and each checkpoint's policy is evaluated exactly
   (`lab.response_logprobs`, `lab.policy_point`: KL to the SFT reference, gold, proxy).

Papers: Wang et al. 2024, "Transforming and Combining Rewards for Aligning Large Language Models",
arXiv 2402.00742; Fu et al. 2025, "Reward Shaping to Mitigate Reward Hacking in RLHF",
arXiv 2502.18770; Balashankar et al. 2024, "InfAlign", arXiv 2412.19792; Gao et al. 2022,
arXiv 2210.10760.
"""

from __future__ import annotations

import os
import time
import warnings

import jax
import numpy as np
from absl import app, flags
from matplotlib.figure import Figure

from experiments import _world
from rewardjax import lab, train
from rewardjax.data import synthetic
from rewardjax.evaluate.report import markdown_table
from rewardjax.lab import shaping

GRID = np.array([1.0, 2.0, 4.0, 6.0, 8.0])  # KLs (nats) of the equal-KL tables
LABELS = {
    "raw": "raw proxy",
    "log_sigmoid_centered": "log-sigmoid centred (q=0.85)",
    "preference_as_reward": "PAR",
    "calibrate": "calibrated",
}


def settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        bigram_pairs=128,
        bigram_seeds=[100, 101, 102] if smoke else [100, 101, 102, 103, 104],
        betas=(1e-6, 1e2, 50),  # relative to each transform's std under the reference
        quantile=0.85,  # the trainer's CombinedReward default
        rl=None
        if smoke
        else dict(
            algorithm="grpo",
            beta=0.01,
            lr=1e-3,
            steps=160,
            # checkpoints evaluated exactly: dense early, where the gold peaks
            stops=[5, 10, 15, 20, 30, 40, 60, 80, 100, 120, 140, 160],
            prompts_per_step=16,
            samples=8,
            rm_steps=400,
            sft_steps=300,
        ),
    )


def run(workdir: str, smoke: bool) -> dict:
    """Runs the study and writes its files; returns {"bigram": [seed -> name -> ShapedCurve],
    "transformer": name -> ShapedCurve, "rl": name -> [PolicyPoint, ...]} (the last two full only).
    """
    start = time.time()
    cfg = settings(smoke)
    config, task, law = _world.quickstart_world(cfg["prompts"])
    s = config.data.synthetic
    lo, hi, count = cfg["betas"]
    betas = np.geomspace(lo, hi, int(count))
    rl_cfg, points, out = cfg["rl"], [], {}
    if rl_cfg:  # the SFT policy is the reference of RL and of every exact optimum
        _, law = _world.sft_reference(os.path.join(workdir, "sft"), law, steps=rl_cfg["sft_steps"])
    out["bigram"] = []
    for seed in cfg["bigram_seeds"]:
        pairs = synthetic.sample_preference_pairs(
            task, jax.random.PRNGKey(seed), cfg["bigram_pairs"], beta=s.beta, flip_rate=s.flip_rate
        )
        table = lab.fit_bigram_proxy(pairs, s.vocab_size)
        proxy = lab.score_bigram(table, law.prompts[:, -1], law.responses)
        curves = shaping.shaped_optima(
            proxy, law.probs, law.gold, betas=betas, quantile=cfg["quantile"]
        )
        out["bigram"].append(curves)
        points += _curve_points(curves, proxy=f"bigram BT seed {seed}", family="exact optimum")
    gold_curve = shaping.shaped_optima(
        law.gold, law.probs, law.gold, shapings=("raw",), betas=betas
    )["raw"]  # the gold reward's own optimum: the most gold any policy reaches at its KL
    if rl_cfg:
        rm_workdir = _world.proxy_reward_model(
            os.path.join(workdir, "rm"), steps=rl_cfg["rm_steps"]
        )
        key = jax.random.PRNGKey(config.seed + 1)  # the world's prompts
        scored = lab.score_reward_model_run(rm_workdir, task, key, num_prompts=len(law.prompts))
        if not np.array_equal(scored.law.prompts, law.prompts):
            raise ValueError("internal: the reward model's prompts differ from the study's")
        proxy = scored.law.proxy
        out["transformer"] = shaping.shaped_optima(
            proxy, law.probs, law.gold, betas=betas, quantile=cfg["quantile"]
        )
        points += _curve_points(out["transformer"], proxy="transformer", family="exact optimum")
        out["rl"] = _rl_runs(workdir, law, proxy, rl_cfg)
        for name, run_points in out["rl"].items():
            for step, p in run_points:
                points.append(
                    dict(proxy="transformer", family="RL", transform=name, step=step,
                         kl=p.kl, gold=p.gold, proxy_reward=p.proxy)
                )  # fmt: skip
    os.makedirs(workdir, exist_ok=True)
    _plot(out, gold_curve, os.path.join(workdir, "transforms.png"))
    sections = _sections(out, cfg, law, time.time() - start)
    lab.write_study(
        workdir,
        title="Reward transforms vs overoptimization (raw / centred / PAR / calibrated proxy)",
        sections=sections,
        points=points,
        config={**cfg, "smoke": smoke},
    )
    return out


def _curve_points(curves, *, proxy, family):
    return [
        dict(proxy=proxy, family=family, transform=name, beta=b, kl=k, gold=g, proxy_reward=p)
        for name, c in curves.items()
        for b, k, g, p in zip(c.beta, c.kl, c.gold, c.proxy)
    ]


def _rl_runs(workdir, law, proxy, r):
    """GRPO against each transformed proxy; the policy's exact point at each of `stops`."""
    reference = np.log(law.probs)
    out = {}
    for name in shaping.SHAPINGS:
        c = _world.world_config("rl", r["algorithm"])
        c.init_from = os.path.join(workdir, "sft")
        c.reward.kind, c.reward.components = "combined", "model:1"
        c.reward.model_workdir = os.path.join(workdir, "rm")
        c.reward.transform = "" if name == "raw" else name
        c.rl.kl.beta, c.optimizer.learning_rate = r["beta"], r["lr"]
        c.train.batch_size, c.rl.num_samples = r["prompts_per_step"], r["samples"]
        c.train.num_steps, c.train.checkpoint_every = r["steps"], 5
        c.train.log_every = 5
        rl_workdir = os.path.join(workdir, f"rl_{name}")
        out[name] = [(0, lab.policy_point(reference, law, proxy=proxy))]  # the SFT policy
        for stop in r["stops"]:
            c.train.stop_at_step = stop
            train.run(c, rl_workdir)
            model, params, _ = lab.load_policy(rl_workdir)
            logprobs = lab.response_logprobs(model, params, law)
            out[name].append((stop, lab.policy_point(logprobs, law, proxy=proxy)))
    return out


def _sections(out, cfg, law, seconds):
    names = shaping.SHAPINGS
    text = [
        "Gold reward against KL to the reference of (lines) the exact KL-regularised optimum "
        "q_β ∝ π_ref e^{u(r)/β} of each transformed proxy u(r), the transform computed exactly "
        "under the whole reference law, and (markers, full variant) GRPO runs of the real trainer "
        f"against the same transformed proxy, each checkpoint evaluated exactly. {cfg['prompts']} "
        f"prompts, {len(law.responses)} responses each; the reference is "
        + ("the SFT policy." if cfg["rl"] else "the base chain.")
        + "\n",
        "![gold vs KL per transform](transforms.png)\n",
    ]
    header = ["transform", "peak gold", "KL at peak", "gold at max KL", "max KL"]
    header += [f"gold KL={k:g}" for k in GRID]

    def rows(curves_list):
        result = []
        for name in names:
            per_seed = []
            for curves in curves_list:
                kl, gold = curves[name]
                h = shaping.hacking_onset(kl, gold)
                per_seed.append([*h[:4], *lab.at_kl(kl, gold, GRID)])
            result.append([LABELS[name], *np.mean(per_seed, 0)])
        return result

    if cfg["rl"]:
        rl_curves = {
            n: (np.array([p.kl for _, p in v]), np.array([p.gold for _, p in v]))
            for n, v in out["rl"].items()
        }
        exact = {n: (c.kl, c.gold) for n, c in out["transformer"].items()}
        r = cfg["rl"]
        text += [
            "## Transformer proxy: RL runs and exact optima\n",
            f"GRPO, β = {r['beta']}, lr {r['lr']}, {r['steps']} steps of {r['prompts_per_step']} "
            f"prompts × {r['samples']} completions, checkpoints at steps {r['stops']} (exact "
            "KL, gold, proxy: `points.csv`, family RL). Peak gold and the KL where it is reached "
            "(where hacking starts: gold falls beyond it). An RL run's KL is not monotone in its "
            "steps: its gold at a KL is interpolated between its checkpoints sorted by KL; NaN: "
            "the run did not reach that KL. One seed per run.\n",
            "### RL (checkpoints, exact)\n",
            markdown_table(header, rows([rl_curves]), floatfmt=".3f"),
            "\n### Exact optima of the same proxy\n",
            markdown_table(header, rows([exact]), floatfmt=".3f"),
        ]
    bigram = [{n: (c.kl, c.gold) for n, c in curves.items()} for curves in out["bigram"]]
    text += [
        f"\n## Bigram Bradley–Terry proxies ({cfg['bigram_pairs']} noisy pairs, "
        f"{len(bigram)} seeds): exact optima, means over seeds\n",
        markdown_table(header, rows(bigram), floatfmt=".3f"),
        f"\nWall time: {seconds:.0f} s.\n",
    ]
    return text


def _plot(out, gold_curve, path):
    panels = ["transformer"] if "transformer" in out else []
    fig = Figure(figsize=(6.5 * (len(panels) + 1), 4.6))
    axes = fig.subplots(1, len(panels) + 1, squeeze=False)[0]
    top = 12.0
    for ax, panel in zip(axes, [*panels, "bigram"]):
        keep = gold_curve.kl <= top
        ax.plot(gold_curve.kl[keep], gold_curve.gold[keep], color="0.6", lw=3, alpha=0.5,
                label="optimum of gold")  # fmt: skip
        for i, name in enumerate(shaping.SHAPINGS):
            if panel == "bigram":  # mean over seeds on a common KL grid
                grid = np.linspace(0.0, top, 121)
                at = [lab.at_kl(c[name].kl, c[name].gold, grid) for c in out[panel]]
                with warnings.catch_warnings():  # NaN where no seed's curve reaches the KL
                    warnings.simplefilter("ignore", RuntimeWarning)
                    gold = np.nanmean(at, 0)
                ax.plot(grid, gold, color=f"C{i}", label=f"optimum: {LABELS[name]}")
                continue
            c = out[panel][name]
            keep = c.kl <= top
            ax.plot(c.kl[keep], c.gold[keep], color=f"C{i}", label=f"optimum: {LABELS[name]}")
            kl = [p.kl for _, p in out["rl"][name]]
            gold = [p.gold for _, p in out["rl"][name]]
            ax.plot(kl, gold, "o--", color=f"C{i}", ms=4, label=f"GRPO: {LABELS[name]}")
        title = "transformer proxy" if panel == "transformer" else "bigram BT proxies (mean)"
        ax.set(xlabel="KL(π ‖ π_ref) [nats]", ylabel="gold reward", title=title, xlim=(0, top))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    workdir = _WORKDIR.value
    _world.cache_compilations(workdir)
    run(workdir, _SMOKE.value)
    print(f"Report: {os.path.join(workdir, 'report.md')}")


if __name__ == "__main__":
    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    app.run(main)
