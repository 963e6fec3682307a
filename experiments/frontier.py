"""How close do best-of-n, soft best-of-n, BOND, DPO and RL come to the exact KL-regularised
optimum, at equal KL?

    python -m experiments.frontier --workdir=runs/lab/frontier [--smoke] \
        [--rm_workdir=runs/quickstart]

On the quickstart's synthetic world (every response enumerated, so every policy below is exact),
relative to the SFT reference π_ref (`_world.sft_reference`, the policy DPO and RL start from and
are regularised to): the gold reward's tilted optimum q_β ∝ π_ref e^{gold/β} (the frontier),
best-of-n by the gold reward, and for each proxy (Bradley–Terry on bigram counts fitted to few or
many noisy pairs, and the transformer reward model, a `reward_model` run on the quickstart's pairs
or --rm_workdir's run) best-of-n by the proxy and the proxy's tilted optimum (ideal KL-regularised
RL on it). Against the transformer proxy only, the methods a practitioner runs:
- soft best-of-n (exact law, a grid of n and temperature λ);
- BOND: the exact best-of-n law by the proxy distilled into a policy by the real SFT trainer on
  responses drawn from that law (forward KL, `rewardjax.lab.distill`);
- DPO (and IPO) from π_ref on the proxy's training pairs at several β;
- GRPO against the proxy at several KL coefficients β;
each trained policy an exact point (`lab.response_logprobs`, `lab.policy_point`). All judged by
the gold reward: the tables give the fraction of the optimum's gain each reaches at its KL.

Papers: Beirami et al. 2024, arXiv 2401.01879 (best-of-n's KL, near-optimality); Yang et al. 2024,
arXiv 2404.01730 (best-of-n and the tilted optimum are asymptotically equivalent); Verdun et al.
2025, arXiv 2505.03156 (soft best-of-n); Sessa et al. 2024, arXiv 2407.14622 (BOND); Rafailov et
al. 2023, arXiv 2305.18290 (DPO); Shao et al. 2024, arXiv 2402.03300 (GRPO); Gao et al. 2022,
arXiv 2210.10760 (proxy vs gold).
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from absl import app, flags
from matplotlib.figure import Figure

from experiments import _world
from rewardjax import lab, train
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.report import markdown_table
from rewardjax.lab import distill
from rewardjax.lab import frontier as lab_frontier

GRID = np.array([0.5, 1.0, 2.0, 4.0, 8.0])  # KLs (nats) where families are compared
RM = "transformer RM"  # the proxy the trained families optimise


def settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        max_log2_n=20,
        pair_counts=[128] if smoke else [128, 512, 2048],
        pair_seed=100,
        betas=(1e-3, 1e2, 40 if smoke else 80),
        grid=GRID.tolist(),
        sft_steps=150 if smoke else 300,
        rm_steps=150 if smoke else 400,
        soft_log2_n=list(range(0, 13, 2)) if smoke else list(range(0, 15)),
        soft_temperatures=[0.1, 0.3] if smoke else [0.1, 0.3, 1.0],  # x std of the proxy
        dpo=[["dpo", 0.1]] if smoke else [["dpo", 0.03], ["dpo", 0.1], ["dpo", 0.3], ["ipo", 0.1]],
        dpo_steps=40 if smoke else 200,
        dpo_lr=1e-3,
        rl=[["grpo", 0.03]] if smoke else [["grpo", 0.01], ["grpo", 0.03], ["grpo", 0.1]],
        rl_steps=12 if smoke else 100,
        rl_lr=1e-3,
        bond_n=[] if smoke else [4, 16, 64],  # the smoke test checks `distill` on its own
        bond_prompts=16 if smoke else 64,
        bond_per_prompt=32 if smoke else 64,
        bond_steps=40 if smoke else 200,
    )


def run(workdir: str, smoke: bool, rm_workdir: str | None = None) -> dict:
    """Runs the study, writes its files into `workdir`, returns the gain fractions by name."""
    start = time.time()
    cfg = settings(smoke)
    config, task, base_law = _world.quickstart_world(cfg["prompts"])
    s = config.data.synthetic
    join = lambda name: os.path.join(workdir, name)
    sft_dir, law = _world.sft_reference(join("sft"), base_law, steps=cfg["sft_steps"])
    rm_workdir = rm_workdir or _world.proxy_reward_model(join("rm"), steps=cfg["rm_steps"])
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
    scored = lab.score_reward_model_run(
        rm_workdir, task, jax.random.PRNGKey(config.seed + 1), num_prompts=len(law.prompts),
        field="--rm_workdir",
    )  # fmt: skip
    if not np.array_equal(scored.law.prompts, law.prompts):
        raise ValueError(
            f"--rm_workdir={rm_workdir}: scored on other prompts than the quickstart's; give a "
            "run with the quickstart's seed."
        )
    proxies[RM] = scored.law.proxy
    studies = {k: overopt.exact_bon_study(law, ns, betas, proxy=p) for k, p in proxies.items()}
    base = float(np.mean(np.sum(law.probs * law.gold, -1)))  # the reference's gold reward
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

    # The practitioner's families, all against the transformer proxy.
    rm_curves = lab.frontier_curves(studies[RM])
    rm_opt = rm_curves["optimum of proxy"]
    base_rm = float(np.mean(np.sum(law.probs * proxies[RM], -1)))
    lams = float(np.std(proxies[RM])) * np.asarray(cfg["soft_temperatures"])
    soft = lab_frontier.soft_bon_curves(
        law, proxies[RM], 2.0 ** np.asarray(cfg["soft_log2_n"]), lams
    )
    soft_rows = []
    for (lam, curve), rel in zip(soft.items(), cfg["soft_temperatures"]):
        name = f"soft BoN λ={rel:g}·std"
        fractions[f"{name}, gold"] = lab.gain_fraction(curve, optimum, GRID, base=base)
        fractions[f"{name}, proxy reward"] = lab.gain_fraction(
            curve, rm_opt, GRID, field="proxy", base=base_rm
        )
        soft_rows.append([f"{name}, gold", *map(float, fractions[f"{name}, gold"])])
        frac = lab_frontier.point_gain_fraction(curve.kl, curve.gold, optimum, base=base)
        for n, k, g, p, f in zip(2.0 ** np.asarray(cfg["soft_log2_n"]), *curve, frac):
            points.append(
                dict(proxy=RM, family=name, n=n, temperature=lam, kl=k, gold=g, proxy_reward=p,
                     gain_fraction=f)
            )  # fmt: skip
    trained = _train_policies(workdir, cfg, sft_dir, rm_workdir, task)
    trained_rows = []
    for name, pdir in trained.items():
        model, params, _ = lab.load_policy(pdir)
        pt = lab.policy_point(lab.response_logprobs(model, params, law), law, proxy=proxies[RM])
        f_gold = lab_frontier.point_gain_fraction(pt.kl, pt.gold, optimum, base=base)[0]
        f_proxy = lab_frontier.point_gain_fraction(
            pt.kl, pt.proxy, rm_opt, field="proxy", base=base_rm
        )[0]
        fractions[f"{name}, gold"] = np.array([f_gold])
        fractions[f"{name}, proxy reward"] = np.array([f_proxy])
        f_bon = lab_frontier.point_gain_fraction(
            pt.kl, at_kl_value(rm_curves["BoN by proxy"], pt.kl), optimum, base=base
        )[0]
        trained_rows.append([name, pt.kl, pt.gold, pt.proxy, f_gold, f_proxy, f_bon])
        points.append(
            dict(proxy=RM, family=name.split(" ")[0], run=name, kl=pt.kl, gold=pt.gold,
                 proxy_reward=pt.proxy, gain_fraction=f_gold, proxy_gain_fraction=f_proxy)
        )  # fmt: skip
    os.makedirs(workdir, exist_ok=True)
    _plot(gold_curves, studies, soft, trained_rows, os.path.join(workdir, "frontier.png"))
    sections = [
        "Gold reward against KL(π ‖ π_ref), π_ref the SFT reference, of the gold reward's exact "
        "optimum (the frontier), best-of-n by the gold reward, and for each proxy best-of-n by "
        "the proxy and the proxy's own optimum (ideal KL-regularised RL on it); against the "
        "transformer proxy also soft best-of-n, BOND-distilled, DPO and GRPO policies. Exact on "
        f"every response ({len(law.responses)} per prompt, {cfg['prompts']} prompts).\n",
        "![frontier](frontier.png)\n",
        "## Fraction of the optimum's gain reached at equal KL\n",
        "(v(KL) - v_0) / (v*(KL) - v_0): v the family's reward, v* the optimum's (of the gold "
        "reward, or of the proxy for *proxy reward* rows), v_0 the reference's. 1 = on the "
        "frontier; NaN = the family does not reach that KL.\n",
        markdown_table(["family", *[f"KL={k:g}" for k in GRID]], rows + soft_rows, floatfmt=".3f"),
        "\n## Trained policies (against the transformer proxy)\n",
        "Each run's exact point. *gold frac*: the fraction of the gold optimum's gain at the "
        "point's KL; *proxy frac*: of the proxy's optimum's proxy gain; *BoN frac*: best-of-n "
        "by the same proxy at the same KL, for comparison. BOND n: the SFT trainer on "
        f"{cfg['bond_per_prompt']} responses per prompt drawn from the exact best-of-n law of "
        f"π_ref by the proxy, {cfg['bond_prompts']} training prompts (forward KL).\n",
        markdown_table(
            ["run", "KL", "gold", "proxy", "gold frac", "proxy frac", "BoN frac"],
            trained_rows,
            floatfmt=".3f",
        ),
        f"\nWall time: {time.time() - start:.1f} s.\n",
    ]
    lab.write_study(
        workdir,
        title="Best-of-n, soft best-of-n, BOND, DPO and RL vs the exact optimum (frontier)",
        sections=sections,
        points=points,
        config={**cfg, "smoke": smoke, "rm_workdir": rm_workdir},
    )
    return fractions


def at_kl_value(curve, kl):
    """The curve's gold reward at `kl` (NaN outside its range)."""
    return float(lab.at_kl(curve.kl, curve.gold, np.array([kl]))[0])


def _train_policies(workdir, cfg, sft_dir, rm_workdir, task) -> dict[str, str]:
    """Trains (or finds) the DPO, GRPO and BOND runs, all from the SFT reference; returns
    run name -> work directory."""
    join = lambda name: os.path.join(workdir, name)
    out = {}
    for loss, beta in cfg["dpo"]:
        c = _world.world_config("dpo", f"beta={beta}")
        c.loss.name = loss
        c.init_from = sft_dir
        c.train.batch_size = 64
        c.train.num_steps = c.train.checkpoint_every = cfg["dpo_steps"]
        c.optimizer.learning_rate, c.optimizer.warmup_steps = cfg["dpo_lr"], 10
        name = f"{loss.upper()} β={beta:g}"
        train.run(c, join(f"{loss}_beta{beta:g}"))
        out[name] = join(f"{loss}_beta{beta:g}")
    for algorithm, beta in cfg["rl"]:
        c = _world.world_config("rl", algorithm)
        c.init_from = sft_dir
        c.reward.kind, c.reward.model_workdir = "model", rm_workdir
        c.rl.kl.beta = beta
        c.train.batch_size, c.rl.num_samples = 16, 8
        c.train.num_steps = c.train.checkpoint_every = cfg["rl_steps"]
        c.optimizer.learning_rate, c.optimizer.warmup_steps = cfg["rl_lr"], 0
        train.run(c, join(f"{algorithm}_beta{beta:g}"))
        out[f"{algorithm.upper()} β={beta:g}"] = join(f"{algorithm}_beta{beta:g}")
    if cfg["bond_n"]:
        out.update(_train_bond(workdir, cfg, sft_dir, rm_workdir, task))
    return out


def _train_bond(workdir, cfg, sft_dir, rm_workdir, task) -> dict[str, str]:
    """BOND by forward KL: SFT (the real trainer, from π_ref) on responses drawn from the exact
    best-of-n law of π_ref by the proxy, on training prompts the evaluation does not use."""
    config = _world.quickstart_config()
    key = jax.random.PRNGKey(config.seed + 2)  # not the evaluation's prompts (seed + 1)
    prompts_law = lab.score_reward_model_run(
        rm_workdir, task, key, num_prompts=cfg["bond_prompts"]
    ).law
    proxy = prompts_law.proxy
    model, params, _ = lab.load_policy(sft_dir)
    ref = np.exp(lab.response_logprobs(model, params, prompts_law))
    ref /= ref.sum(-1, keepdims=True)
    tokenizer = distill.write_id_tokenizer(
        os.path.join(workdir, "bond_data", "tokenizer.json"), task.vocab_size
    )
    out = {}
    for n in cfg["bond_n"]:
        records = distill.sample_records(
            prompts_law.prompts,
            prompts_law.responses,
            distill.bon_law(ref, proxy, n),
            per_prompt=cfg["bond_per_prompt"],
            seed=int(n),
        )
        path = distill.write_records(os.path.join(workdir, "bond_data", f"bon{n}.jsonl"), records)
        c = _world.world_config("sft")
        c.init_from = sft_dir
        c.data.source, c.data.layout = "files", "sft"
        c.data.train_path, c.data.tokenizer = path, tokenizer
        c.data.eval_fraction = 0.0
        c.data.max_length = int(prompts_law.prompts.shape[1] + task.length)
        c.train.batch_size = 64
        c.train.num_steps = c.train.checkpoint_every = cfg["bond_steps"]
        c.optimizer.learning_rate, c.optimizer.warmup_steps = 1e-3, 10
        train.run(c, os.path.join(workdir, f"bond_n{n}"))
        out[f"BOND n={n}"] = os.path.join(workdir, f"bond_n{n}")
    return out


def _plot(gold_curves, studies, soft, trained_rows, path):
    fig = Figure(figsize=(8, 5.2))
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
    i = len(studies)
    for j, (lam, curve) in enumerate(soft.items()):
        ax.plot(
            curve.kl, curve.gold, "x-", color=f"C{i + j}", ms=3, lw=0.8,
            label=f"soft BoN ({RM}), λ={lam:.2g}",
        )  # fmt: skip
    markers = {"DPO": "s", "IPO": "P", "GRPO": "*", "PPO": "X", "BOND": "D"}
    for name, kl, gold, *_ in trained_rows:
        family = name.split(" ")[0]
        ax.plot(kl, gold, markers.get(family, "o"), color="k", mfc="none", ms=7)
        ax.annotate(name, (kl, gold), fontsize=6, xytext=(4, -8), textcoords="offset points")
    ax.set(xlabel="KL(π ‖ π_ref) [nats]", ylabel="gold reward (mean over prompts)")
    ax.set_title("BoN, soft BoN, BOND, DPO and GRPO vs the exact optimum (gold reward)")
    ax.legend(fontsize=6)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv):
    del argv
    workdir = _WORKDIR.value
    _world.cache_compilations(workdir)
    fractions = run(workdir, _SMOKE.value, _RM_WORKDIR.value)
    for name, f in fractions.items():
        print(f"{name}: " + " ".join(f"{x:.3f}" for x in f))
    print(f"Report: {os.path.join(workdir, 'report.md')}")


if __name__ == "__main__":
    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    _RM_WORKDIR = flags.DEFINE_string(
        "rm_workdir",
        None,
        "The transformer proxy: a reward-model run on the quickstart's world (e.g. a quickstart "
        "run's work directory); default: trained in <workdir>/rm.",
    )
    app.run(main)
