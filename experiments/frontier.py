"""How close does best-of-n come to the exact KL-regularised optimum, at equal KL?

    python -m experiments.frontier --workdir=runs/lab/frontier [--smoke] \
        [--rm_workdir=runs/quickstart]

On the quickstart's synthetic world (every response enumerated, so every policy below is exact):
the gold reward's tilted optimum q_β ∝ π_0 e^{gold/β} (the frontier), best-of-n by the gold reward,
and for each proxy (Bradley–Terry on bigram counts fitted to few or many noisy pairs, and, with
--rm_workdir, the transformer reward model a quickstart run trained) best-of-n by the proxy and
the proxy's own tilted optimum (ideal KL-regularised RL on the proxy), all judged by the gold
reward. The table gives the fraction of the optimum's gain each family reaches at equal KL.

Papers: Beirami et al. 2024, arXiv 2401.01879 (best-of-n's KL, near-optimality); Yang et al. 2024,
arXiv 2404.01730 (best-of-n and the tilted optimum are asymptotically equivalent); Gao et al.
2022, arXiv 2210.10760 (proxy vs gold).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags
from matplotlib.figure import Figure

from experiments import _world
from rewardjax import lab, parallel
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.report import markdown_table
from rewardjax.train import data as train_data
from rewardjax.train.tasks import reward_model

GRID = np.array([0.5, 1.0, 2.0, 4.0, 8.0])  # KLs (nats) where families are compared


def settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        max_log2_n=20,
        pair_counts=[128] if smoke else [128, 512, 2048],
        pair_seed=100,
        betas=(1e-3, 1e2, 40 if smoke else 80),
        grid=GRID.tolist(),
    )


def run(workdir: str, smoke: bool, rm_workdir: str | None = None) -> dict:
    """Runs the study, writes its files into `workdir`, returns the gain fractions by name."""
    start = time.time()
    cfg = settings(smoke)
    config, task, law = _world.quickstart_world(cfg["prompts"])
    s = config.data.synthetic
    ns = 2.0 ** np.arange(cfg["max_log2_n"] + 1)
    lo, hi, count = cfg["betas"]
    betas = float(np.std(law.gold)) * np.geomspace(lo, hi, int(count))
    proxies = {}
    for m in cfg["pair_counts"]:
        pairs = synthetic.sample_preference_pairs(
            task, jax.random.PRNGKey(cfg["pair_seed"]), m, beta=s.beta, flip_rate=s.flip_rate
        )
        table = lab.fit_bigram_proxy(pairs, s.vocab_size)
        proxies[f"bigram BT, {m} pairs"] = lab.score_bigram(
            table, law.prompts[:, -1], law.responses
        )
    if rm_workdir:
        proxies["transformer RM"] = _transformer_proxy(rm_workdir, task, law)
    studies = {k: overopt.exact_bon_study(law, ns, betas, proxy=p) for k, p in proxies.items()}
    base = float(np.mean(np.sum(law.probs * law.gold, -1)))  # the base policy's gold reward
    first = next(iter(studies.values()))
    gold_curves = lab.frontier_curves(first)
    optimum, bon_gold = gold_curves["optimum of gold"], gold_curves["BoN by gold"]
    fractions = {"BoN by gold (gold)": lab.gain_fraction(bon_gold, optimum, GRID, base=base)}
    points, rows = [], []
    for name, study in studies.items():
        c = lab.frontier_curves(study)
        base_proxy = float(np.mean(np.sum(law.probs * proxies[name], -1)))
        fractions[f"BoN by proxy ({name}), proxy reward"] = lab.gain_fraction(
            c["BoN by proxy"], c["optimum of proxy"], GRID, field="proxy", base=base_proxy
        )
        fractions[f"BoN by proxy ({name}), gold"] = lab.gain_fraction(
            c["BoN by proxy"], optimum, GRID, base=base
        )
        fractions[f"optimum of proxy ({name}), gold"] = lab.gain_fraction(
            c["optimum of proxy"], optimum, GRID, base=base
        )
        for family in ("BoN by proxy", "optimum of proxy"):
            for k, g, p in zip(*c[family]):
                points.append(dict(proxy=name, family=family, kl=k, gold=g, proxy_reward=p))
    for family in ("optimum of gold", "BoN by gold"):
        for k, g, _ in zip(*gold_curves[family]):
            points.append(dict(proxy="gold", family=family, kl=k, gold=g, proxy_reward=None))
    for name, f in fractions.items():
        rows.append([name, *map(float, f)])
    os.makedirs(workdir, exist_ok=True)
    _plot(gold_curves, studies, os.path.join(workdir, "frontier.png"))
    sections = [
        "Gold reward against KL(π ‖ π_0) of the gold reward's exact optimum (the frontier), "
        "best-of-n by the gold reward, and for each proxy best-of-n by the proxy and the proxy's "
        "own optimum (ideal KL-regularised RL on it), exact on every response "
        f"({len(law.responses)} per prompt, {cfg['prompts']} prompts).\n",
        "![frontier](frontier.png)\n",
        "## Fraction of the optimum's gain reached at equal KL\n",
        "(v(KL) - v_0) / (v*(KL) - v_0): v the family's reward, v* the optimum's (of the gold "
        "reward, or of the proxy for *proxy reward* rows), v_0 the base policy's. 1 = on the "
        "frontier; NaN = the family does not reach that KL.\n",
        markdown_table(["family", *[f"KL={k:g}" for k in GRID]], rows, floatfmt=".3f"),
        f"\nWall time: {time.time() - start:.1f} s.\n",
    ]
    lab.write_study(
        workdir,
        title="Best-of-n vs the exact KL-regularised optimum (frontier)",
        sections=sections,
        points=points,
        config={**cfg, "smoke": smoke, "rm_workdir": rm_workdir},
    )
    return fractions


def _transformer_proxy(rm_workdir, task, law):
    saved = _world.saved_config(rm_workdir)
    mesh = parallel.mesh_from_config(saved.mesh)
    rules = parallel.logical_rules(saved.sharding_rules.to_dict())
    model, params = reward_model.load_trained(rm_workdir, mesh, rules, field="--rm_workdir")
    if train_data.markov_task(saved.data.synthetic).length != task.length:
        raise ValueError(
            f"--rm_workdir={rm_workdir}: trained on another world than the quickstart's."
        )
    full = overopt.synthetic_response_law(
        task, model, params, jax.random.PRNGKey(saved.seed + 1), num_prompts=len(law.prompts)
    )
    proxy = full.proxy if full.proxy.ndim == 2 else full.proxy.mean(0)
    if not np.array_equal(full.prompts, law.prompts):
        raise ValueError("internal: the transformer's prompts differ from the study's")
    return proxy


def _plot(gold_curves, studies, path):
    fig = Figure(figsize=(7, 4.6))
    ax = fig.subplots()
    opt = gold_curves["optimum of gold"]
    top = max(float(np.max(s.bon.kl)) for s in studies.values()) * 1.05
    keep = opt.kl <= top
    ax.plot(opt.kl[keep], opt.gold[keep], color="0.55", lw=3, alpha=0.6, label="optimum of gold")
    b = gold_curves["BoN by gold"]
    ax.plot(b.kl, b.gold, "^--", color="k", ms=3, label="BoN by gold")
    for i, (name, study) in enumerate(studies.items()):
        c = lab.frontier_curves(study)
        o = c["optimum of proxy"]
        keep = o.kl <= top
        ax.plot(
            o.kl[keep],
            o.gold[keep],
            "-",
            color=f"C{i}",
            lw=1.5,
            alpha=0.7,
            label=f"optimum of proxy: {name}",
        )
        ax.plot(
            c["BoN by proxy"].kl,
            c["BoN by proxy"].gold,
            "o:",
            color=f"C{i}",
            ms=3,
            label=f"BoN by proxy: {name}",
        )
    ax.set(xlabel="KL(π ‖ π_0) [nats]", ylabel="gold reward (mean over prompts)")
    ax.set_title("Best-of-n vs the exact optimum, judged by the gold reward")
    ax.legend(fontsize=6.5)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    fractions = run(_WORKDIR.value, _SMOKE.value, _RM_WORKDIR.value)
    for name, f in fractions.items():
        print(f"{name}: " + " ".join(f"{x:.3f}" for x in f))
    print(f"Report: {os.path.join(_WORKDIR.value, 'report.md')}")


if __name__ == "__main__":
    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    _RM_WORKDIR = flags.DEFINE_string(
        "rm_workdir",
        None,
        "Also study this trained reward model (a quickstart run's work directory).",
    )
    app.run(main)
