"""Reward-model overoptimization under online RL, on the synthetic gold-reward task.

    python -m experiments.rl_overoptimization --workdir=runs/overopt   # full, ~5 min
    python -m experiments.rl_overoptimization --workdir=/tmp/overopt --smoke  # ~2 min

Question: does KL-regularised RL against a weak reward model overoptimise it, as Gao et al. found
(Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization", arXiv 2210.10760),
while RL against the gold reward itself does not?

Runs of the real trainer (`rewardjax.train.run`), each in `<workdir>/<stage>`:
1. `sft`: `configs/sft.py` on the synthetic task with coin-flip labels (`data.synthetic.beta=0`),
   so the "chosen" responses are plain base-chain samples and the policy learns the chain;
2. `proxy_rm<n>_seed<s>`: `configs/reward_model.py` on n pairs with label noise (`flip_rate`),
   its backbone from the SFT run, `config.seed=s`: a weak proxy of the gold reward;
3. `rl_gold`: `configs/rl.py:rloo` from the SFT policy with the gold reward and a small β;
4. `rl_proxy<n>_seed<s>`: the same with that proxy reward model as the reward.
Then `rewardjax.evaluate.overoptimization` reads each RL run's metrics.jsonl and writes, in
`<workdir>`: `points.jsonl` (one line per logged point: run, step, KL, gold, proxy, ...),
`report.md` with the gold-peak table and `overoptimization.png` (gold and proxy reward against
KL), and `frontier.png` (the gold run against the exact KL-reward frontier of
`rewardjax.theory.markov_kl_reward_frontier`, KL to the base chain).

Rerunning with the same --workdir resumes (finished stages are not trained again).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import ml_collections
import numpy as np
from absl import app, flags, logging

from experiments import _world
from rewardjax import evaluate, theory, train
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as oo

# The sizes of each variant. The world is the configs' default synthetic task (V=8, T=8, P=4).
SETTINGS = {
    "smoke": dict(
        sft_pairs=1024, sft_steps=100, sft_lr=1e-2,
        rm_pairs=(64,), rm_seeds=(0,), rm_flip_rate=0.2, rm_steps=300,
        rl_steps=60, rl_log_every=2, rl_beta=0.01, rl_lr=1e-3,
        window=3,
    ),
    "full": dict(
        sft_pairs=4096, sft_steps=400, sft_lr=3e-3,
        rm_pairs=(64, 256, 1024), rm_seeds=(0, 1, 2), rm_flip_rate=0.2, rm_steps=300,
        rl_steps=120, rl_log_every=3, rl_beta=0.01, rl_lr=1e-3,
        window=3,
    ),
}  # fmt: skip


def _small(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The smoke model (1 layer, width 32) and quiet logging, for every stage."""
    train.smoke_overrides(c)
    c.train.progress_bar = False
    c.train.batch_size = 32
    c.eval.enabled = False
    c.model.vocab_size = c.data.synthetic.vocab_size + 1  # the task's ids (0 pads)
    return c


def stage_configs(workdir: str, *, smoke: bool) -> dict[str, ml_collections.ConfigDict]:
    """The configs of the runs, in order (name -> config); see the module docstring."""
    s = SETTINGS["smoke" if smoke else "full"]
    join = lambda name: os.path.join(workdir, name)
    out = {}
    c = _small(_world.load_config("sft"))
    c.data.synthetic.beta = 0.0  # coin-flip labels: the chosen responses are base-chain samples
    c.data.synthetic.num_train_pairs = s["sft_pairs"]
    c.train.num_steps = c.train.checkpoint_every = s["sft_steps"]
    c.train.log_every = 25
    c.optimizer.learning_rate, c.optimizer.warmup_steps = s["sft_lr"], 10
    out["sft"] = c
    proxies = [f"{n}_seed{seed}" for n in s["rm_pairs"] for seed in s["rm_seeds"]]
    for n, seed in ((n, seed) for n in s["rm_pairs"] for seed in s["rm_seeds"]):
        c = _small(_world.load_config("reward_model"))
        c.seed = seed  # initialisation and batch order; the pairs are the task's first n
        c.init_from = join("sft")
        c.data.synthetic.num_train_pairs = n
        c.data.synthetic.flip_rate = s["rm_flip_rate"]
        c.train.num_steps = c.train.checkpoint_every = s["rm_steps"]
        c.train.log_every = 25
        c.optimizer.warmup_steps = 10
        if not smoke:  # held-out pair accuracy and gold agreement, for the report
            c.eval.enabled, c.data.synthetic.num_eval_pairs, c.eval.batch_size = True, 512, 256
        out[f"proxy_rm{n}_seed{seed}"] = c
    for name in ["rl_gold", *(f"rl_proxy{p}" for p in proxies)]:
        c = _small(_world.load_config("rl", "rloo"))
        c.init_from = join("sft")
        c.data.synthetic.num_train_pairs = s["sft_pairs"]  # the prompts
        c.train.batch_size, c.rl.num_samples = 16, 8
        c.rl.kl.beta = s["rl_beta"]
        c.optimizer.learning_rate = s["rl_lr"]
        c.optimizer.warmup_steps = 0
        c.train.num_steps = c.train.checkpoint_every = s["rl_steps"]
        c.train.log_every = s["rl_log_every"]
        if name != "rl_gold":
            c.reward.kind = "model"
            c.reward.model_workdir = join(name.replace("rl_proxy", "proxy_rm"))
        out[name] = c
    return out


def analyse(workdir: str, configs: dict[str, ml_collections.ConfigDict], *, window: int):
    """Reads the RL runs' curves, writes points.jsonl, the plots and report.md; returns a summary:
    run name -> {"curve": RLCurve, "peak": GoldPeak, "spearman_gold_kl", "spearman_proxy_kl"}."""
    summary: dict[str, Any] = {}
    with open(os.path.join(workdir, "points.jsonl"), "w", encoding="utf-8") as f:
        for name in (n for n in configs if n.startswith("rl_")):
            curve = oo.read_rl_curve(os.path.join(workdir, name))
            summary[name] = {
                "curve": curve,
                "peak": oo.gold_peak(curve, window=window),
                "spearman_gold_kl": oo.spearman(curve.gold, curve.kl),
                "spearman_proxy_kl": oo.spearman(curve.proxy, curve.kl),
            }
            for row in curve.to_records():
                f.write(json.dumps({"run": name, **row}) + "\n")
    curves = {name: v["curve"] for name, v in summary.items()}
    oo.plot_rl_curves(curves, os.path.join(workdir, "overoptimization.png"))
    s = configs["sft"].data.synthetic
    task = synthetic.make_markov_task(
        s.seed, vocab_size=s.vocab_size, length=s.length, prompt_length=s.prompt_length,
        concentration=s.concentration, memoryless=s.memoryless, reward=s.reward,
        reward_scale=s.reward_scale,
    )  # fmt: skip
    betas = np.geomspace(0.05, 50.0, 60)
    frontier = theory.markov_kl_reward_frontier(
        task.start_probs, task.transition, task.bigram_reward, betas, length=task.length
    )
    oo.plot_rl_curves(
        {"rl_gold": curves["rl_gold"]},
        os.path.join(workdir, "frontier.png"),
        frontier=tuple(np.asarray(x) for x in frontier),
        kl_key="kl_base_chain",
    )
    _write_report(workdir, configs, summary, window)
    return summary


def _write_report(workdir, configs, summary, window) -> str:
    rows = []
    for name, v in summary.items():
        c, p = v["curve"], v["peak"]
        rows.append(
            [name, f"{c.gold[0]:.3f}", f"{p.gold:.3f}", f"{p.kl:.2f}", f"{c.gold[-1]:.3f}",
             f"{c.kl[-1]:.2f}", f"{p.rise:.3f}", f"{p.drop:.3f}", f"{p.proxy_gain:.3f}",
             f"{c.proxy[0]:.3f}", f"{c.proxy[-1]:.3f}",
             f"{v['spearman_gold_kl']:.3f}", f"{v['spearman_proxy_kl']:.3f}",
             f"{np.nanmax(c.invalid_fraction):.3f}"]
        )  # fmt: skip
    header = [
        "run", "gold first", f"gold peak (MA{window})", "KL at peak", "gold last", "KL last",
        "rise to peak", "drop after peak", "proxy gain after peak", "proxy first", "proxy last",
        "Spearman(gold, KL)", "Spearman(proxy, KL)",
        "max invalid fraction",
    ]  # fmt: skip
    settings = {
        name: {
            "steps": c.train.num_steps,
            "lr": c.optimizer.learning_rate,
            **({"pairs": c.data.synthetic.num_train_pairs} if c.task != "rl" else {}),
            **({"flip_rate": c.data.synthetic.flip_rate} if c.task == "reward_model" else {}),
            **({"beta": c.rl.kl.beta, "reward": c.reward.kind} if c.task == "rl" else {}),
        }
        for name, c in configs.items()
    }
    text = "\n".join(
        [
            "# Reward-model overoptimization under online RL (synthetic task)\n",
            "Gold and proxy reward of the sampled completions against the KL to the reference",
            "(the SFT policy), as logged by the trainer (each point a mean over "
            f"{next(c for c in configs.values() if c.task == 'rl').train.log_every} iterations;",
            f"peaks on a {window}-point moving average). See experiments/rl_overoptimization.py.\n",
            "![gold and proxy reward against KL](overoptimization.png)\n",
            evaluate.markdown_table(header, rows),
            "\nThe gold-reward run against the exact KL-regularised frontier (KL to the base",
            "chain):\n",
            "![frontier](frontier.png)\n",
            "## Runs\n",
            evaluate.markdown_table(
                ["stage", "settings"], [[k, json.dumps(v)] for k, v in settings.items()]
            ),
            "\nPoints: points.jsonl.\n",
        ]
    )
    path = os.path.join(workdir, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def run(workdir: str, *, smoke: bool = False) -> dict[str, Any]:
    """Trains every stage (resuming finished ones) and analyses; returns `analyse`'s summary."""
    configs = stage_configs(workdir, smoke=smoke)
    for name, config in configs.items():
        start = time.time()
        train.run(config, os.path.join(workdir, name))
        logging.info("Stage %s: %.1f s", name, time.time() - start)
    return analyse(workdir, configs, window=SETTINGS["smoke" if smoke else "full"]["window"])


def main(argv):
    del argv
    workdir = _WORKDIR.value
    if not workdir:
        raise app.UsageError("--workdir is required, e.g. --workdir=runs/overopt.")
    _world.cache_compilations(workdir)
    summary = run(workdir, smoke=_SMOKE.value)
    for name, v in summary.items():
        p = v["peak"]
        print(
            f"{name}: gold peak {p.gold:.3f} at KL {p.kl:.2f} (rise {p.rise:.3f}, drop "
            f"{p.drop:.3f}, proxy gain after it {p.proxy_gain:.3f}); Spearman(gold, KL) "
            f"{v['spearman_gold_kl']:.3f}, Spearman(proxy, KL) {v['spearman_proxy_kl']:.3f}"
        )
    print(f"report: {os.path.join(workdir, 'report.md')}")


if __name__ == "__main__":
    # Defined here, not at import: the lab studies import this module's stages.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the runs, points and report.")
    _SMOKE = flags.DEFINE_bool("smoke", False, "The small variant the test suite runs (~1-2 min).")
    app.run(main)
