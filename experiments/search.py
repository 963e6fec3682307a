"""Test-time search on the synthetic task: gold reward vs compute and vs KL, against the optimum.

    python -m experiments.search --workdir=runs/search           # full
    python -m experiments.search --workdir=/tmp/search --smoke   # seconds, run by the tests

Question: at an equal budget of generated tokens, how much gold reward do best-of-n, weighted
majority voting, PRM-guided beam search (exact and noisy oracle PRMs) and reward-guided decoding
(ARGS) buy, and how close do they come to the exact KL-regularised optimum?

The policy is the task's Markov chain itself (`rewardjax.search.markov_chain_lm`), the PRM the
exact value E[gold | prefix] (`markov_value_scorer`) or that plus a fixed N(0, σ²) error per
prefix (`noisy_scorer`); the outcome scorer of best-of-n and voting is the same (noisy) scorer on
whole responses (at t = T the exact value is the gold reward). Methods (all `rewardjax.search`):
- best-of-n for n = 1, 2, 4, ... (nested subsets of one draw of N_max samples per prompt);
  its exact KL and gold reward follow from the exact law of best-of-n over the enumerated responses
  (`rewardjax.bon.bon_kl`, `bon_expected_reward`), averaged over the prompt's last token;
- weighted majority voting (answer = the last token, weight = σ(score));
- beam search, M expansions of k tokens per beam, for several beam counts: tokens = beams·M·T;
- ARGS (top-k = V) greedy and sampled, for several weights w: tokens = T (scorer calls k·T);
  sampled ARGS with the exact PRM is a Markov policy whose exact KL and gold are computed
  (`markov_args_policy`, `theory.markov_policy_kl_reward`); greedy outputs are deterministic per
  prompt, so their KL is E_x[-log p(y(x) | x)];
- the exact KL-regularised optimum (`theory.markov_kl_reward_frontier`) for a grid of β.
Beam search's output law has no closed form, so it is placed on the compute axis only.

Writes in --workdir: points.jsonl (one line per method and setting), report.md (tables, the
finding), compute.png (gold vs tokens generated per prompt), kl.png (gold vs KL with the frontier).
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags

from rewardjax import bon, search, theory
from rewardjax.data import synthetic

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for points.jsonl, report.md, plots.")
_SMOKE = flags.DEFINE_bool("smoke", False, "The small variant the test suite runs (seconds).")

SETTINGS = {
    "smoke": dict(
        vocab=4, length=6, prompt_length=3, step_tokens=2, expand=4, beams=(2,), prompts=64,
        n_max=8, noise=0.5, args_weights=(1.0,), betas=(0.1, 0.3, 1.0, 3.0),
    ),
    "full": dict(
        vocab=5, length=8, prompt_length=4, step_tokens=2, expand=4, beams=(1, 2, 4, 8),
        prompts=512, n_max=64, noise=0.5, args_weights=(0.25, 0.5, 1.0, 2.0, 4.0),
        betas=(0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 4.0),
    ),
}  # fmt: skip


def exact_bon(task, ns):
    """Exact (KL, gold) of best-of-n on the gold reward, averaged over y_0 ~ start_probs, by
    enumerating the V^T responses of each y_0 (`bon.bon_kl` / `bon_expected_reward`)."""
    v, t = task.vocab_size, task.length
    seqs = np.array(list(itertools.product(range(v), repeat=t)))  # [V^T, T]
    kls, golds = np.zeros(len(ns)), np.zeros(len(ns))
    for y0 in range(v):
        full = np.concatenate([np.full((len(seqs), 1), y0), seqs], axis=1)
        probs = np.prod(task.transition[full[:, :-1], full[:, 1:]], axis=1)
        rewards = task.bigram_reward[full[:, :-1], full[:, 1:]].sum(1)
        n = jnp.asarray(ns, jnp.float32)  # [K] against the batch shape [1]
        p, r = jnp.asarray(probs, jnp.float32)[None], jnp.asarray(rewards, jnp.float32)[None]
        kls += task.start_probs[y0] * np.asarray(bon.bon_kl(p, r, n))
        golds += task.start_probs[y0] * np.asarray(bon.bon_expected_reward(p, r, n))
    return kls, golds


def run(workdir: Path, smoke: bool) -> list[dict]:
    s = SETTINGS["smoke" if smoke else "full"]
    workdir.mkdir(parents=True, exist_ok=True)
    task = synthetic.make_markov_task(
        0, vocab_size=s["vocab"], length=s["length"], prompt_length=s["prompt_length"]
    )
    t_len, k = task.length, s["step_tokens"]
    model, params = search.markov_chain_lm(task)
    exact_fn, exact_params = search.markov_value_scorer(task)
    # One scorer function for the exact (σ = 0) and the noisy PRM: σ is traced, one program each.
    scorer, exact = search.noisy_scorer(exact_fn, exact_params, jax.random.key(7), std=0.0)
    noisy = search.noisy_scorer(exact_fn, exact_params, jax.random.key(7), std=s["noise"])[1]
    prms = {"exact": exact, f"noisy σ={s['noise']}": noisy}
    prompts = synthetic.to_ids(synthetic.sample_prompts(task, jax.random.key(0), s["prompts"]))
    pmask = jnp.ones_like(prompts)
    y0 = np.asarray(prompts[:, -1]) - synthetic.ID_OFFSET

    def gold(tokens):
        y = np.concatenate([y0[:, None], np.asarray(tokens) - synthetic.ID_OFFSET], axis=1)
        return task.bigram_reward[y[:, :-1], y[:, 1:]].sum(1)

    def neg_logp(tokens):
        y = np.concatenate([y0[:, None], np.asarray(tokens) - synthetic.ID_OFFSET], axis=1)
        return -np.log(task.transition[y[:, :-1], y[:, 1:]]).sum(1)

    points = []

    def add(**point):
        point = {
            k: (float(v) if isinstance(v, np.floating | float) else v) for k, v in point.items()
        }
        points.append(point)

    ns = [2**i for i in range(int(np.log2(s["n_max"])) + 1)]
    bon_kl, bon_gold = exact_bon(task, ns)
    for name, sparams in prms.items():
        out = search.best_of_n_search(
            model, params, prompts, pmask, jax.random.key(1), scorer=scorer,
            scorer_params=sparams, num_samples=s["n_max"], max_new_tokens=t_len,
        )  # fmt: skip
        cands, scores = np.asarray(out.candidates), np.asarray(out.candidate_scores)
        cand_gold = np.stack([gold(cands[:, j]) for j in range(cands.shape[1])], axis=1)
        rows = np.arange(len(cands))
        for i, n in enumerate(ns):
            g = cand_gold[rows, np.argmax(scores[:, :n], axis=1)]
            add(method="best-of-n", prm=name, n=n, tokens=n * t_len, scorer_calls=n,
                gold=g.mean(), gold_se=g.std() / np.sqrt(len(g)),
                kl=bon_kl[i] if name == "exact" else None,
                exact_gold=bon_gold[i] if name == "exact" else None)  # fmt: skip
            vote = search.weighted_vote(cands[:, :n, -1], jax.nn.sigmoid(scores[:, :n]))
            g = cand_gold[rows, np.asarray(vote.index)]
            add(method="weighted vote", prm=name, n=n, tokens=n * t_len, scorer_calls=n,
                gold=g.mean(), gold_se=g.std() / np.sqrt(len(g)), kl=None)  # fmt: skip

    for name, sparams in prms.items():
        for beams in s["beams"]:
            start = time.perf_counter()
            out = search.beam_search(
                model, params, prompts, pmask, jax.random.key(2), scorer=scorer,
                scorer_params=sparams, num_beams=beams, expand=s["expand"], step_tokens=k,
                num_steps=t_len // k,
            )  # fmt: skip
            g = gold(out.tokens)
            add(method="beam search", prm=name, beams=beams, expand=s["expand"], step_tokens=k,
                tokens=int(out.tokens_generated[0]), scorer_calls=int(out.scorer_calls[0]),
                gold=g.mean(), gold_se=g.std() / np.sqrt(len(g)), kl=None,
                seconds=time.perf_counter() - start)  # fmt: skip

    v = task.vocab_size
    for w in s["args_weights"]:
        for mode, temp in (("greedy", 0.0), ("sampled", 1.0)):
            out = search.args_decode(
                model, params, prompts, pmask, jax.random.key(3), scorer=scorer,
                scorer_params=exact, weight=w, max_new_tokens=t_len, num_candidates=v,
                temperature=temp,
            )  # fmt: skip
            g = gold(out.tokens)
            if mode == "sampled":
                policy = search.markov_args_policy(task, w)
                kl, exact_gold = theory.markov_policy_kl_reward(
                    jnp.asarray(task.start_probs, jnp.float32), policy,
                    jnp.asarray(task.transition, jnp.float32),
                    jnp.asarray(task.bigram_reward, jnp.float32),
                )  # fmt: skip
                kl, exact_gold = float(kl), float(exact_gold)
            else:
                kl, exact_gold = float(neg_logp(out.tokens).mean()), None
            add(method=f"ARGS {mode}", prm="exact", weight=w, tokens=t_len,
                scorer_calls=int(out.scorer_calls[0]), gold=g.mean(),
                gold_se=g.std() / np.sqrt(len(g)), kl=kl, exact_gold=exact_gold)  # fmt: skip

    f_kl, f_gold = theory.markov_kl_reward_frontier(
        jnp.asarray(task.start_probs, jnp.float32),
        jnp.asarray(task.transition, jnp.float32),
        jnp.asarray(task.bigram_reward, jnp.float32),
        jnp.asarray(s["betas"], jnp.float32),
        length=t_len,
    )
    for beta, kl_, g_ in zip(s["betas"], np.asarray(f_kl), np.asarray(f_gold)):
        add(method="KL-regularised optimum", beta=beta, tokens=t_len, kl=kl_, exact_gold=g_)
    base = float(bon_gold[0])
    add(method="base policy", tokens=t_len, kl=0.0, exact_gold=base)

    with open(workdir / "points.jsonl", "w") as f:
        for p in points:
            f.write(json.dumps(p) + "\n")
    write_report(workdir, points, s, task)
    return points


def finding(points: list[dict]) -> dict:
    """Gold of exact-PRM beam search vs best-of-n (exact outcome scorer) at equal tokens."""
    bon_gold = {
        p["tokens"]: p["gold"] for p in points if p["method"] == "best-of-n" and p["prm"] == "exact"
    }
    pairs = [
        (p["tokens"], p["gold"], bon_gold[p["tokens"]])
        for p in points
        if p["method"] == "beam search" and p["prm"] == "exact" and p["tokens"] in bon_gold
    ]
    return {"pairs": pairs, "beam_wins": all(b > n for _, b, n in pairs) and bool(pairs)}


def _plots(workdir: Path, points: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    groups = {}
    for p in points:
        if p.get("gold") is None:
            continue
        label = p["method"] + (f" ({p['prm']})" if p.get("prm") else "")
        if p["method"].startswith("ARGS"):
            label += f" w={p['weight']}"
        groups.setdefault(label, []).append((p["tokens"], p["gold"]))
    for label, xy in sorted(groups.items()):
        xy = sorted(xy)
        ax.plot(*zip(*xy), "o-" if len(xy) > 1 else "s", label=label, ms=4)
    opt = max(p["exact_gold"] for p in points if p["method"] == "KL-regularised optimum")
    ax.axhline(opt, ls="--", c="k", lw=0.8, label="optimum, smallest β")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("tokens generated per prompt")
    ax.set_ylabel("gold reward")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(workdir / "compute.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    front = sorted(
        (p["kl"], p["exact_gold"]) for p in points if p["method"] == "KL-regularised optimum"
    )
    ax.plot(*zip(*front), "k-", label="KL-regularised optimum (exact)")
    for method, style in (("best-of-n", "o-"), ("ARGS sampled", "s-"), ("ARGS greedy", "^")):
        xy = sorted(
            (p["kl"], p.get("exact_gold") if p.get("exact_gold") is not None else p["gold"])
            for p in points
            if p["method"] == method and p.get("kl") is not None
        )
        if xy:
            ax.plot(*zip(*xy), style, label=method, ms=4)
    ax.set_xlabel("KL(π ‖ base) (nats)")
    ax.set_ylabel("gold reward")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(workdir / "kl.png", dpi=120)
    plt.close(fig)


def write_report(workdir: Path, points: list[dict], s: dict, task) -> None:
    _plots(workdir, points)
    f = finding(points)
    fmt = lambda x: "—" if x is None else f"{x:.3f}"
    lines = [
        "# Test-time search on the synthetic task",
        "",
        f"World: Markov chain, V={task.vocab_size}, T={task.length}, P={task.prompt_length}, "
        f"seed 0; {s['prompts']} prompts; steps of {s['step_tokens']} tokens; beam expansions "
        f"M={s['expand']}; noisy PRM σ={s['noise']}. Gold: mean over prompts (± s.e.); "
        "exact gold and KL where the method's law is known in closed form.",
        "",
        "| method | PRM | setting | tokens/prompt | scorer calls | gold (± s.e.) | exact gold "
        "| KL |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for p in points:
        setting = ", ".join(
            f"{key}={p[key]}" for key in ("n", "beams", "weight", "beta") if key in p
        )
        g = "—" if p.get("gold") is None else f"{p['gold']:.3f} ± {p['gold_se']:.3f}"
        lines.append(
            f"| {p['method']} | {p.get('prm', '—')} | {setting} | {p['tokens']} | "
            f"{p.get('scorer_calls', '—')} | {g} | {fmt(p.get('exact_gold'))} | "
            f"{fmt(p.get('kl'))} |"
        )
    lines += [
        "",
        "## Finding",
        "",
        "Exact-PRM beam search vs best-of-n (exact outcome scorer) at equal tokens generated: "
        + "; ".join(f"{t} tokens: beam {b:.3f} vs best-of-n {n:.3f}" for t, b, n in f["pairs"])
        + (
            ". Beam search wins at every budget."
            if f["beam_wins"]
            else ". Beam search does not win everywhere."
        ),
        "",
        "Plots: `compute.png` (gold vs tokens generated), `kl.png` (gold vs KL, with the exact "
        "frontier). Points: `points.jsonl`.",
        "",
    ]
    (workdir / "report.md").write_text("\n".join(lines))


def main(argv):
    del argv
    if not _WORKDIR.value:
        raise app.UsageError("--workdir is required")
    start = time.perf_counter()
    points = run(Path(_WORKDIR.value), _SMOKE.value)
    f = finding(points)
    seconds = time.perf_counter() - start
    print(f"wrote {_WORKDIR.value}/report.md ({len(points)} points, {seconds:.1f} s)")
    print(f"beam search vs best-of-n at equal tokens: {f['pairs']}")


if __name__ == "__main__":
    app.run(main)
