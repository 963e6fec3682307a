"""Constrained RLHF: does a Lagrangian that stops each proxy at its useful range beat the sum?

    python -m experiments.constrained --workdir=runs/lab/constrained [--smoke]

Moskovitz et al. 2023 ("Confronting Reward Model Overoptimization with Constrained RLHF", arXiv
2310.04373): each component reward model of a composite reward is a useful proxy of the gold
score only up to a point; optimising a fixed-weight sum pushes components past those points and
the gold score falls. Constrained RLHF caps each component at its point with one Lagrange
multiplier per component, learned by dual ascent, as a dynamic weight.

On the quickstart's synthetic world (every response enumerated; the reference π_ref is the SFT
policy of the base chain, `_world.sft_reference`):
1. two proxy components r_a, r_b: Bradley–Terry bigram reward models fitted to two small noisy
   pair sets (`lab.fit_bigram_proxy`), each scaled to unit standard deviation over the
   enumerated responses;
2. each component's useful range θ_k, exactly: its value at the gold peak of its own tilted
   optimum π_ref e^{r_k/β} (`lab.constrained.useful_range`);
3. exact counterparts over a β grid: the fixed-weight sum's optimum π_ref e^{(r_a + r_b)/β} vs
   the constrained optimum max E[r_a + r_b] - β KL s.t. E[r_k] ≤ θ_k
   (`lab.constrained.constrained_optimum`, dual minimised exactly);
4. RL of the real trainer (`configs/rl.py:rloo`, KL β·k1 in the reward) from the SFT policy on
   the combined reward `a=bigram@A.npy,b=bigram@B.npy`: fixed weights vs
   `reward.constraints.thresholds = (θ_a, θ_b)` (projected dual ascent on the batch means); the
   logged curves, and each final policy's exact KL, gold and component means.
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
from rewardjax.lab import constrained as lc

NAMES = ("a", "b")


def settings(smoke: bool) -> dict:
    return dict(
        prompts=16,
        proxy_seeds=[2, 5],  # pair seeds of r_a, r_b: both proxies peak early and then collapse
        proxy_pairs=64,
        proxy_l2=1e-3,
        sft_steps=300,  # the shared reference (_world.sft_reference's default)
        betas=(0.02, 20.0, 80),  # one grid for both variants: the same θ_k
        rl_beta=0.1,
        rl_steps=60 if smoke else 150,
        rl_lr=1e-3,
        rl_batch=16,
        rl_samples=8,
        rl_log_every=2 if smoke else 3,
        dual_lr=0.5,
    )


def _proxies(cfg, task, law, workdir):
    """The components [K, P, Y] (unit std) and their .npy bigram tables (scaled the same)."""
    s = _world.quickstart_config().data.synthetic
    comps, paths = [], []
    for name, seed in zip(NAMES, cfg["proxy_seeds"]):
        pairs = synthetic.sample_preference_pairs(
            task, jax.random.PRNGKey(seed), cfg["proxy_pairs"], beta=s.beta, flip_rate=s.flip_rate
        )
        table = lab.fit_bigram_proxy(pairs, s.vocab_size, l2=cfg["proxy_l2"])
        scores = lab.score_bigram(table, law.prompts[:, -1], law.responses)
        scale = float(np.std(scores))
        paths.append(os.path.join(workdir, f"proxy_{name}.npy"))
        np.save(paths[-1], table / scale)
        comps.append(scores / scale)
    return np.stack(comps), paths


def _rl(cfg, workdir, sft, paths, thresholds):
    """One RL run of the real trainer; returns its work directory."""
    c = _world.world_config("rl", "rloo")
    c.init_from = sft
    if cfg.get("rl_seed") is not None:  # the rollouts' and batches' seed (default: the world's)
        c.seed = cfg["rl_seed"]
    c.train.batch_size, c.rl.num_samples = cfg["rl_batch"], cfg["rl_samples"]
    c.rl.kl.beta, c.rl.log_samples = cfg["rl_beta"], 0
    c.optimizer.learning_rate, c.optimizer.warmup_steps = cfg["rl_lr"], 0
    c.train.num_steps = c.train.checkpoint_every = cfg["rl_steps"]
    c.train.log_every = cfg["rl_log_every"]
    c.reward.kind = "combined"
    c.reward.components = ",".join(f"{n}=bigram@{p}" for n, p in zip(NAMES, paths))
    # The fixed-weight run: thresholds no mean reaches, so λ stays 0 (max(0, 0 + lr (v - θ)) = 0)
    # and the reward is the plain sum, with the component means logged like the Lagrangian's.
    never = (1e6,) * len(NAMES)
    c.reward.constraints.thresholds = tuple(float(t) for t in thresholds) or never
    c.reward.constraints.lr = cfg["dual_lr"]
    train.run(c, workdir)
    return workdir


def _curve(workdir):
    """The logged curve: step, kl, gold, v_k, λ_k (λ only for a constrained run)."""
    with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    get = lambda key: np.array([r.get(key, np.nan) for r in rows], np.float64)
    return dict(
        step=get("step"), kl=get("kl"), gold=get("gold_reward"),
        **{f"v_{n}": get(f"constraint/{n}/mean") for n in NAMES},
        **{f"lambda_{n}": get(f"constraint/{n}/lambda") for n in NAMES},
    )  # fmt: skip


def _final_point(workdir, ref_law, comps):
    model, params, _ = lab.load_policy(workdir)
    logp = lab.response_logprobs(model, params, ref_law)
    return lc.tilted_stats(np.exp(logp), np.log(ref_law.probs), ref_law.gold, comps)


def run(workdir: str, smoke: bool) -> dict:
    """Runs the study, writes its files into `workdir`, returns the summary numbers."""
    start, cpu = time.time(), time.process_time()
    cfg = settings(smoke)
    os.makedirs(workdir, exist_ok=True)
    _, task, law = _world.quickstart_world(cfg["prompts"])
    sft, ref_law = _world.sft_reference(os.path.join(workdir, "sft"), law, steps=cfg["sft_steps"])
    comps, paths = _proxies(cfg, task, law, workdir)
    ref = np.log(ref_law.probs)
    lo, hi, count = cfg["betas"]
    betas = np.geomspace(lo, hi, int(count))
    ranges = [lc.useful_range(ref, c, ref_law.gold, betas) for c in comps]
    theta = np.array([u.theta for u in ranges])
    points, exact = [], {"sum": [], "constrained": []}
    for b in betas:
        kl, g, v = lc.tilted_stats(lc.tilted_policy(ref, comps.sum(0), b), ref, ref_law.gold, comps)
        exact["sum"].append((kl, g, *v))
        o = lc.constrained_optimum(ref, comps, theta, b, gold=ref_law.gold)
        exact["constrained"].append((o.kl, o.gold, *o.values))
        for fam, (k_, g_, va, vb) in ((f, exact[f][-1]) for f in exact):
            points.append(dict(source="exact", family=fam, beta=b, kl=k_, gold=g_, v_a=va, v_b=vb))
    for name, u in zip(NAMES, ranges):
        for b, k_, g_, v in zip(u.betas, u.kls, u.golds, u.values):
            points.append(dict(source="exact", family=f"only {name}", beta=b, kl=k_, gold=g_,
                               **{f"v_{name}": v}))  # fmt: skip
    at_beta = {
        "sum": lc.tilted_stats(
            lc.tilted_policy(ref, comps.sum(0), cfg["rl_beta"]), ref, ref_law.gold, comps
        ),
        "constrained": (lambda o: (o.kl, o.gold, o.values))(
            lc.constrained_optimum(ref, comps, theta, cfg["rl_beta"], gold=ref_law.gold)
        ),
    }
    runs = {
        "fixed": _rl(cfg, os.path.join(workdir, "rl_fixed"), sft, paths, ()),
        "lagrangian": _rl(cfg, os.path.join(workdir, "rl_lagrangian"), sft, paths, theta),
    }
    curves = {k: _curve(w) for k, w in runs.items()}
    finals = {k: _final_point(w, ref_law, comps) for k, w in runs.items()}
    for k, c in curves.items():
        for i in range(len(c["step"])):
            points.append(dict(source="rl", family=k, **{f: float(c[f][i]) for f in c}))
        kl, g, v = finals[k]
        points.append(dict(source="rl final (exact)", family=k, kl=kl, gold=g, v_a=v[0], v_b=v[1]))
    _plot(exact, ranges, curves, finals, theta, os.path.join(workdir, "constrained.png"))
    summary = dict(
        theta=theta.tolist(),
        peaks={n: dict(kl=u.kl, gold=u.gold, beta=u.beta) for n, u in zip(NAMES, ranges)},
        sum_peak=float(max(g for _, g, *_ in exact["sum"])),
        sum_low_beta=float(exact["sum"][0][1]),
        constrained_low_beta=float(exact["constrained"][0][1]),
        exact_at_rl_beta={k: _as_dict(v) for k, v in at_beta.items()},
        rl_final={k: _as_dict(v) for k, v in finals.items()},
        rl_last_logged={k: {f: float(c[f][-1]) for f in c} for k, c in curves.items()},
        # The second half's average of each component's batch mean (dual ascent keeps the
        # time-average of the iterates feasible, not each iterate).
        rl_late_mean={
            k: [float(np.mean(c[f"v_{n}"][len(c["step"]) // 2 :])) for n in NAMES]
            for k, c in curves.items()
        },
        rl_gold_peak={k: float(np.max(c["gold"])) for k, c in curves.items()},
        wall_s=time.time() - start,
        cpu_s=time.process_time() - cpu,
    )
    _report(workdir, cfg, smoke, summary, points)
    with open(os.path.join(workdir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    return summary


def _as_dict(point):
    kl, gold, values = point
    return dict(kl=float(kl), gold=float(gold), values=[float(v) for v in values])


def _report(workdir, cfg, smoke, summary, points):
    rows = [[f"only {n}", f"{summary['theta'][i]:.3f}", f"{p['kl']:.2f}", f"{p['gold']:.3f}"]
            for i, (n, p) in enumerate(summary["peaks"].items())]  # fmt: skip
    results = []
    for k in ("sum", "constrained"):
        e = summary["exact_at_rl_beta"][k]
        results.append([f"exact optimum, {k}", f"{e['kl']:.2f}", f"{e['gold']:.3f}",
                        *(f"{v:.3f}" for v in e["values"])])  # fmt: skip
    for k in ("fixed", "lagrangian"):
        e = summary["rl_final"][k]
        results.append([f"RL {k} (final policy, exact)", f"{e['kl']:.2f}", f"{e['gold']:.3f}",
                        *(f"{v:.3f}" for v in e["values"])])  # fmt: skip
        results.append([f"RL {k}: batch means, second half (avg)", "", "",
                        *(f"{v:.3f}" for v in summary["rl_late_mean"][k])])  # fmt: skip
    theta = ", ".join(f"θ_{n} = {t:.3f}" for n, t in zip(NAMES, summary["theta"]))
    sections = [
        "Two proxy components (Bradley–Terry bigram reward models of 64 noisy pairs, unit std) "
        "of the quickstart world's gold reward, every response enumerated; reference π_ref = the "
        "SFT policy. See `experiments/constrained.py`.\n",
        "![constrained](constrained.png)\n",
        "## Useful range of each component (gold peak along its own exact tilted optimum)\n",
        markdown_table(["component", "θ (value at the peak)", "KL at peak", "gold at peak"], rows),
        f"\nThresholds: {theta}. The fixed-weight sum's exact optimum peaks at gold "
        f"{summary['sum_peak']:.3f} and falls to {summary['sum_low_beta']:.3f} at "
        f"β = {cfg['betas'][0]}; the constrained optimum holds "
        f"{summary['constrained_low_beta']:.3f} there.\n",
        f"## At the RL runs' β = {cfg['rl_beta']}\n",
        markdown_table(["policy", "KL", "gold", "E[r_a]", "E[r_b]"], results),
        f"\nWall time {summary['wall_s']:.0f} s, CPU time {summary['cpu_s']:.0f} s "
        "(this process).\n",
    ]
    lab.write_study(
        workdir,
        title="Constrained RLHF: Lagrange multipliers vs a fixed-weight sum of proxies",
        sections=sections,
        points=points,
        config={**cfg, "smoke": smoke, "theta": summary["theta"]},
    )


def _plot(exact, ranges, curves, finals, theta, path):
    fig = Figure(figsize=(13, 4.2))
    ax, bx, cx = fig.subplots(1, 3)
    for i, (name, u) in enumerate(zip(NAMES, ranges)):
        ax.plot(u.kls, u.golds, ":", color=f"C{i + 2}", label=f"exact optimum of r_{name} alone")
    for fam, color in (("sum", "C0"), ("constrained", "C1")):
        e = np.array(exact[fam])
        ax.plot(e[:, 0], e[:, 1], "-", color=color, lw=2.5, alpha=0.6, label=f"exact, {fam}")
    for k, color in (("fixed", "C0"), ("lagrangian", "C1")):
        c = curves[k]
        ax.plot(c["kl"], c["gold"], "o--", ms=2.5, color=color, alpha=0.8, label=f"RL {k}")
        ax.plot(*finals[k][:2], "*", ms=13, color=color, mec="k", label=f"RL {k}: final, exact")
        for j, n in enumerate(NAMES):
            bx.plot(c["step"], c[f"v_{n}"], ("-", "--")[j], color=color, label=f"{k}: E[r_{n}]")
        if k == "lagrangian":
            for j, n in enumerate(NAMES):
                cx.plot(c["step"], c[f"lambda_{n}"], ("-", "--")[j], color=color, label=f"λ_{n}")
    for j, t in enumerate(theta):
        bx.axhline(t, color="k", ls=("-", "--")[j], lw=0.8, alpha=0.6, label=f"θ_{NAMES[j]}")
    ax.set(xlabel="KL(π ‖ π_ref) [nats]", ylabel="gold reward", title="Gold vs KL")
    bx.set(xlabel="RL iteration", ylabel="component mean (batch)", title="Components vs θ")
    cx.set(xlabel="RL iteration", ylabel="λ", title="Lagrange multipliers")
    for x in (ax, bx, cx):
        x.grid(alpha=0.3)
        x.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    workdir = _WORKDIR.value
    _world.cache_compilations(workdir)
    summary = run(workdir, _SMOKE.value)
    print(json.dumps(summary, indent=1))
    print(f"Report: {os.path.join(workdir, 'report.md')}")


if __name__ == "__main__":
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The small variant the tests run.")
    app.run(main)
