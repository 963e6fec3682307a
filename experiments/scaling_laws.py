"""Scaling laws of reward-model overoptimization: proxy size and data size against gold reward.

    python -m experiments.scaling_laws --workdir=runs/lab/scaling_laws [--smoke]

On the quickstart's synthetic world (4-token responses over 8 tokens, every one of the 4096
responses enumerated), the real trainer trains proxy reward models (`configs/reward_model.py`
on the quickstart's noisy pairs) of several backbone sizes on several numbers of pairs. For each
proxy: exact best-of-n by it (n = 1 … 2^20, `evaluate.overoptimization.exact_bon_study`), the gold
reward's peak, and both of Gao et al.'s forms fitted to gold against d = √KL. Then an SFT policy
of the quickstart world is optimised by KL-regularised RL (`configs/rl.py:rloo`) against the
proxies of every size trained on the middle number of pairs; each saved checkpoint's KL to the
SFT policy and its gold and proxy reward are EXACT sums over its law on the enumerated responses
(`lab.checkpoint_path`), and both forms are fitted to them too. Reported: α, β, R² of
both forms for every proxy, and the trend of β with the proxy's parameter count.

Runs, each in `<workdir>/<stage>` (a rerun resumes): `rm_L<layers>d<width>_n<pairs>_s<seed>`,
`sft`, `rl_L<layers>d<width>_n<pairs>`.

Paper: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
arXiv 2210.10760 (Figures 1-3: gold vs d under best-of-n and RL, β falling with RM size).
"""

from __future__ import annotations

import os
import time

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from experiments import _world
from rewardjax import lab, theory, train
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.evaluate.report import markdown_table
from rewardjax.lab import scaling

_WORLD = (
    "seed", "vocab_size", "length", "prompt_length", "concentration", "memoryless", "reward",
    "reward_scale", "pattern", "pattern_bonus",
)  # fmt: skip


def settings(smoke: bool) -> dict:
    return dict(
        prompts=8 if smoke else 32,
        max_log2_n=20,
        # The proxies' [layers, d_model] (d_ff = 2 d_model, 2 heads).
        sizes=[[1, 4], [1, 16]] if smoke else [[1, 4], [1, 16], [1, 64]],
        pair_counts=[128, 2048] if smoke else [128, 512, 2048],
        seeds=[0],
        rm_steps=60 if smoke else 100,
        rm_batch=64,
        policy_width=32,
        sft_steps=0 if smoke else 300,
        sft_pairs=4096,
        rl_pairs=512,  # the proxies RL runs against (every size), first seed
        rl_steps=0 if smoke else 100,
        rl_checkpoint_every=10,
        rl_beta=0.01,
        rl_lr=5e-4,
    )


def _policy(c: ml_collections.ConfigDict, quick: ml_collections.ConfigDict, width: int) -> None:
    """An SFT or RL config `c` on the quickstart's world (`quick`), its policy 1 layer wide
    `width`, in place."""
    for k in _WORLD:
        c.data.synthetic[k] = quick.data.synthetic[k]
    c.model.update(dict(preset="tiny", n_layers=1, d_model=width, d_ff=2 * width))
    c.model.vocab_size = quick.model.vocab_size
    c.train.progress_bar = c.eval.enabled = False


def stage_configs(workdir: str, cfg: dict) -> dict[str, ml_collections.ConfigDict]:
    """The runs, in order (name -> config): the proxies, then the SFT policy and RL runs."""
    quick = _world.quickstart_config()
    out = {}
    for seed in cfg["seeds"]:
        for layers, width in cfg["sizes"]:
            for m in cfg["pair_counts"]:
                c = _world.quickstart_config()  # its noisy pairs, learning rate and batch
                c.seed = seed  # initialisation and batch order; the pairs are the task's first m
                c.report.enabled = c.eval.enabled = c.train.progress_bar = False
                c.model.d_model, c.model.d_ff, c.model.n_layers = width, 2 * width, layers
                c.model.n_heads, c.model.n_kv_heads = 2, 1
                c.data.synthetic.num_train_pairs = m
                c.train.batch_size = cfg["rm_batch"]
                c.train.num_steps = c.train.checkpoint_every = c.train.log_every = cfg["rm_steps"]
                out[f"rm_{_size(layers, width)}_n{m}_s{seed}"] = c
    if not cfg["rl_steps"]:
        return out
    c = _world.load_config("sft")
    _policy(c, quick, cfg["policy_width"])
    c.data.synthetic.beta = 0.0  # coin-flip labels: the chosen responses are base-chain samples
    c.data.synthetic.num_train_pairs = cfg["sft_pairs"]
    c.train.batch_size = 64
    c.train.num_steps = c.train.checkpoint_every = c.train.log_every = cfg["sft_steps"]
    c.optimizer.learning_rate, c.optimizer.warmup_steps = 3e-3, 10
    out["sft"] = c
    for layers, width in cfg["sizes"]:
        c = _world.load_config("rl", "rloo")
        _policy(c, quick, cfg["policy_width"])
        c.init_from = os.path.join(workdir, "sft")
        c.data.synthetic.num_train_pairs = cfg["sft_pairs"]  # the prompts
        c.train.batch_size, c.rl.num_samples = 16, 8
        c.rl.kl.beta = cfg["rl_beta"]
        c.optimizer.learning_rate, c.optimizer.warmup_steps = cfg["rl_lr"], 0
        c.train.num_steps = cfg["rl_steps"]
        c.train.checkpoint_every = c.train.log_every = cfg["rl_checkpoint_every"]
        c.train.max_to_keep = cfg["rl_steps"] // cfg["rl_checkpoint_every"] + 1
        c.reward.kind = "model"
        proxy = f"{_size(layers, width)}_n{cfg['rl_pairs']}"
        c.reward.model_workdir = os.path.join(workdir, f"rm_{proxy}_s{cfg['seeds'][0]}")
        out[f"rl_{proxy}"] = c
    return out


_FIT_KEYS = [f"{form}_{k}" for form in ("bon", "rl") for k in ("alpha", "beta", "r_squared")]


def _size(layers: int, width: int) -> str:
    return f"L{layers}d{width}"


def _fit_fields(prefix: str, fits: scaling.GaoFits) -> dict:
    return {
        f"{prefix}_{form}_{k}": float(getattr(getattr(fits, form), k))
        for form in ("bon", "rl")
        for k in ("alpha", "beta", "r_squared")
    }


def run(workdir: str, smoke: bool) -> dict:
    """Trains every stage, analyses, writes the study's files; returns
    {"proxies": one row per proxy, "rl": one row per RL run, "trends": name -> SizeTrend}."""
    start, cpu = time.time(), time.process_time()
    cfg = settings(smoke)
    configs = stage_configs(workdir, cfg)
    for name, c in configs.items():
        train.run(c, os.path.join(workdir, name))
    config, task, law = _world.quickstart_world(cfg["prompts"])
    key = jax.random.PRNGKey(config.seed + 1)  # the law's prompts
    ns = 2.0 ** np.arange(cfg["max_log2_n"] + 1)
    proxies, points, scored = [], [], {}
    for name in (n for n in configs if n.startswith("rm_")):
        c = configs[name]
        s = lab.score_reward_model_run(
            os.path.join(workdir, name), task, key, num_prompts=cfg["prompts"]
        )
        assert np.array_equal(s.law.prompts, law.prompts), name
        scored[name] = s.law.proxy
        bon = overopt.exact_bon_study(s.law, ns, np.array([1.0]), proxy_optimum=False).bon
        peak = overopt.bon_gold_peak(bon)
        fits = scaling.fit_gao_forms(bon.kl, bon.gold_reward)
        proxies.append(
            dict(
                kind="proxy", run=name, size=_size(c.model.n_layers, c.model.d_model),
                layers=c.model.n_layers, width=c.model.d_model, params=s.num_params,
                pairs=c.data.synthetic.num_train_pairs, seed=c.seed, peak_gold=peak.gold,
                peak_kl=peak.kl, peak_n=float(bon.n[peak.index]), drop=peak.drop,
                **_fit_fields("bon", fits),
            )
        )  # fmt: skip
        for n, kl, g, p in zip(bon.n, bon.kl, bon.gold_reward, bon.proxy_reward):
            d = np.sqrt(max(kl, 0.0))  # n = 1: KL 0 up to rounding
            points.append(dict(kind="bon", run=name, n=n, kl=kl, d=d, gold=g, proxy=p))
    rl_rows = []
    if "sft" in configs:
        model, params, _ = lab.load_policy(os.path.join(workdir, "sft"))
        ref_law = law._replace(probs=np.exp(lab.response_logprobs(model, params, law)))
        for name in (n for n in configs if n.startswith("rl_")):
            proxy_dir = configs[name].reward.model_workdir
            proxy = scored[os.path.basename(proxy_dir)]
            path = lab.checkpoint_path(os.path.join(workdir, name), ref_law, proxy=proxy)
            kl, gold = path.kl, path.gold
            fits = scaling.fit_gao_forms(kl, gold, gold_init=gold[0])
            rm = next(r for r in proxies if r["run"] == os.path.basename(proxy_dir))
            i = int(np.argmax(gold))
            rl_rows.append(
                dict(
                    kind="rl_run", run=name, size=rm["size"], params=rm["params"],
                    peak_gold=float(gold[i]), peak_kl=float(kl[i]), final_kl=float(kl[-1]),
                    drop=float(gold[i] - gold[-1]), **_fit_fields("rl", fits),
                )
            )  # fmt: skip
            for step, k, g, p in zip(path.step, kl, gold, path.proxy):
                points.append(
                    dict(
                        kind="rl", run=name, step=int(step), kl=k, d=np.sqrt(max(k, 0.0)),
                        gold=g, proxy=p, gold_gain=g - gold[0], proxy_gain=p - path.proxy[0],
                    )
                )  # fmt: skip
    trends = _trends(proxies, rl_rows, cfg)
    os.makedirs(workdir, exist_ok=True)
    _plot(proxies, rl_rows, points, cfg, os.path.join(workdir, "scaling_laws.png"))
    sections = _sections(proxies, rl_rows, trends, cfg)
    wall, used = time.time() - start, time.process_time() - cpu
    sections.append(f"\nWall time {wall:.0f} s, CPU time {used:.0f} s (this process).\n")
    lab.write_study(
        workdir,
        title="Scaling laws of reward-model overoptimization (Gao et al. 2022)",
        sections=sections,
        points=[*proxies, *rl_rows, *points],
        config={**cfg, "smoke": smoke},
    )
    return {"proxies": proxies, "rl": rl_rows, "trends": trends}


def _mean(rows, key, **where):
    cell = [r[key] for r in rows if all(r[k] == v for k, v in where.items())]
    return float(np.mean(cell))


def _trends(proxies, rl_rows, cfg) -> dict:
    names = [_size(*s) for s in cfg["sizes"]]
    sizes = np.array([_mean(proxies, "params", size=n) for n in names])
    out = {}
    for m in cfg["pair_counts"]:
        for key in ("peak_gold", "bon_bon_beta", "bon_rl_beta"):
            values = [_mean(proxies, key, size=n, pairs=m) for n in names]
            out[f"{key} vs params, {m} pairs"] = scaling.size_trend(sizes, values)
    for n in names:
        values = [_mean(proxies, "peak_gold", size=n, pairs=m) for m in cfg["pair_counts"]]
        out[f"peak_gold vs pairs, {n}"] = scaling.size_trend(cfg["pair_counts"], values)
    if rl_rows:
        for key in ("rl_rl_beta", "rl_bon_beta", "peak_gold"):
            out[f"RL {key} vs params"] = scaling.size_trend(
                [r["params"] for r in rl_rows], [r[key] for r in rl_rows]
            )
    return out


def _sections(proxies, rl_rows, trends, cfg) -> list[str]:
    head = ["proxy", "params", "pairs", "peak gold", "peak KL", "drop by n=2^20"]
    forms = ["α", "β", "R²"]
    rows = []
    for n in (_size(*s) for s in cfg["sizes"]):
        for m in cfg["pair_counts"]:
            get = lambda k: _mean(proxies, k, size=n, pairs=m)  # noqa: B023
            rows.append(
                [n, int(get("params")), m, get("peak_gold"), get("peak_kl"), get("drop")]
                + [get(f"bon_{k}") for k in _FIT_KEYS]
            )
    out = [
        f"Proxy reward models of the real trainer (`configs/reward_model.py` on the quickstart's "
        f"pairs, flip rate 0.2; L<layers>d<d_model>, d_ff = 2 d_model, {cfg['rm_steps']} steps of "
        f"{cfg['rm_batch']} pairs), {len(cfg['seeds'])} seed(s) per cell (means below). Gold "
        f"reward gained over the initial policy against d = √KL: best-of-n by each proxy (exact "
        f"law, n = 1 … 2^{cfg['max_log2_n']}, {cfg['prompts']} prompts)"
        + (
            f"; KL-regularised RL (RLOO, β_KL = {cfg['rl_beta']}, {cfg['rl_steps']} steps) from an "
            f"SFT policy against the {cfg['rl_pairs']}-pair proxies, every "
            f"{cfg['rl_checkpoint_every']}th step's checkpoint measured exactly (KL to the SFT "
            "policy).\n"
            if rl_rows
            else " (no RL runs in this variant).\n"
        ),
        "![scaling laws](scaling_laws.png)\n",
        "## Best-of-n: both forms, R_bon = d(α − βd) and R_rl = d(α − β log d)\n",
        markdown_table(
            head + [f"BoN form {x}" for x in forms] + [f"RL form {x}" for x in forms],
            rows,
            floatfmt=".3f",
        ),
    ]
    if rl_rows:
        out += [
            "\n## RL (exact points at the checkpoints)\n",
            markdown_table(
                ["run", "params", "peak gold", "peak KL", "final KL", "drop"]
                + [f"RL form {x}" for x in forms]
                + [f"BoN form {x}" for x in forms],
                [
                    [r["run"], r["params"], r["peak_gold"], r["peak_kl"], r["final_kl"], r["drop"]]
                    + [r[f"rl_{k}"] for k in _FIT_KEYS[3:] + _FIT_KEYS[:3]]
                    for r in rl_rows
                ],
                floatfmt=".3f",
            ),
        ]
    out += [
        "\n## Trends (slope per doubling of the parameter count or of the pairs; Spearman ρ)\n",
        markdown_table(
            ["value", "slope per doubling", "Spearman ρ"],
            [[k, t.slope, t.spearman] for k, t in trends.items()],
            floatfmt=".3f",
        ),
    ]
    return out


def _plot(proxies, rl_rows, points, cfg, path):
    fig = Figure(figsize=(12, 8.5))
    (a, b), (c, d) = fig.subplots(2, 2)
    m_mid = cfg["pair_counts"][len(cfg["pair_counts"]) // 2]
    names = [_size(*s) for s in cfg["sizes"]]
    for i, size in enumerate(names):
        name = f"rm_{size}_n{m_mid}_s{cfg['seeds'][0]}"
        pts = [p for p in points if p["kind"] == "bon" and p["run"] == name]
        dd = np.array([p["d"] for p in pts])
        gain = np.array([p["gold"] for p in pts]) - pts[0]["gold"]
        a.plot(dd, gain, "o-", color=f"C{i}", ms=3, label=f"gold, {size}")
        proxy_gain = np.array([p["proxy"] for p in pts]) - pts[0]["proxy"]
        a.plot(dd, proxy_gain, "s--", color=f"C{i}", ms=2, alpha=0.5, label=f"proxy, {size}")
        r = next(r for r in proxies if r["run"] == name)
        grid = np.linspace(0, dd.max(), 100)
        fit = theory.gao_bon(grid, r["bon_bon_alpha"], r["bon_bon_beta"])
        a.plot(grid, np.asarray(fit), ":", color=f"C{i}", lw=1)
    a.set(xlabel="d = √KL(π_n ‖ π_0)", ylabel="gain over n = 1",
          title=f"Best-of-n by the proxy ({m_mid} pairs); dotted: d(α−βd)")  # fmt: skip
    for j, m in enumerate(cfg["pair_counts"]):
        params = [_mean(proxies, "params", size=n) for n in names]
        b.plot(params, [_mean(proxies, "bon_bon_beta", size=n, pairs=m) for n in names],
               "o-", color=f"C{j}", label=f"{m} pairs")  # fmt: skip
        c.plot(params, [_mean(proxies, "peak_gold", size=n, pairs=m) for n in names],
               "o-", color=f"C{j}", label=f"{m} pairs")  # fmt: skip
    if rl_rows:
        b.plot([r["params"] for r in rl_rows], [r["rl_rl_beta"] for r in rl_rows], "s--",
               color="k", label=f"RL, β of d(α−β log d), {cfg['rl_pairs']} pairs")  # fmt: skip
    for ax in (b, c):
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_formatter(NullFormatter())
    b.set(xlabel="proxy parameters", ylabel="fitted β",
          title="Overoptimization coefficient β vs proxy size")  # fmt: skip
    c.set(xlabel="proxy parameters", ylabel="peak gold reward",
          title="Best gold reward best-of-n reaches")  # fmt: skip
    for i, r in enumerate(rl_rows):
        pts = [p for p in points if p["kind"] == "rl" and p["run"] == r["run"]]
        dd = np.array([p["d"] for p in pts])
        d.plot(dd, [p["gold_gain"] for p in pts], "o-", color=f"C{i}", ms=3,
               label=f"gold, {r['size']}")  # fmt: skip
        d.plot(dd, [p["proxy_gain"] for p in pts], "s--", color=f"C{i}", ms=3, alpha=0.6,
               label=f"proxy, {r['size']}")  # fmt: skip
        grid = np.linspace(0, dd.max(), 100)
        d.plot(grid, np.asarray(theory.gao_rl(grid, r["rl_rl_alpha"], r["rl_rl_beta"])), ":",
               color=f"C{i}", lw=1)  # fmt: skip
    d.set(xlabel="d = √KL(π ‖ π_SFT)", ylabel="gain over the SFT policy",
          title="RL (RLOO) on the proxy, exact; dotted: d(α−β log d)")  # fmt: skip
    if not rl_rows:
        d.text(0.5, 0.5, "no RL runs in this variant", ha="center", transform=d.transAxes)
    for ax in (a, b, c, d):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv):
    del argv
    workdir = _WORKDIR.value
    _world.cache_compilations(workdir)
    out = run(workdir, _SMOKE.value)
    for k, t in out["trends"].items():
        print(f"{k}: slope {t.slope:+.3f} per doubling, Spearman {t.spearman:+.2f}")
    print(f"Report: {os.path.join(workdir, 'report.md')}")


if __name__ == "__main__":
    from absl import app, flags

    # Flags only when run as a script: the tests import run() beside other studies.
    _WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
    _SMOKE = flags.DEFINE_bool("smoke", False, "The seconds-long variant the tests run.")
    app.run(main)
