"""Overoptimization in an RL run's own metrics: gold and proxy reward against KL, and the gold peak.

An RL run (`rewardjax.train.tasks.rl`) logs to `<workdir>/metrics.jsonl`, every
`train.log_every` iterations, the mean over those iterations of the proxy reward it optimises
(`reward`), the synthetic task's gold reward (`gold_reward`), the KL to the reference policy
(`kl`, the k1 estimate Σ_t log π/π_ref of the sampled completions) and the Monte-Carlo KL to the
base Markov chain (`kl_base_chain`). Read as a curve against KL, a faithful reward gives a gold
reward that rises with KL; a proxy that the policy learns to exploit gives Gao et al.'s shape:
the gold reward peaks at some KL and then falls while the proxy keeps rising.

    curve = read_rl_curve("runs/rl_proxy")
    peak = gold_peak(curve, window=3)   # peak.kl, peak.rise, peak.drop, peak.proxy_gain

Best-of-n on the synthetic task can be computed exactly instead: with a short response (V^T
responses, e.g. 8^4 = 4096) every response to a prompt is enumerated, scored by the proxy, and the
exact best-of-n law (`rewardjax.bon`) gives the gold and proxy reward and the exact KL for any n
(2^20 as cheaply as 2), beside the exact KL-regularised optimum of the gold reward (the frontier
no policy can beat) and of the proxy (what ideal KL-regularised RL on the proxy reaches):

    law = synthetic_response_law(task, model, params, key, num_prompts=32)
    study = exact_bon_study(law, ns=2.0 ** np.arange(21), betas=np.geomspace(0.05, 20, 40))
    peak = bon_gold_peak(study.bon)   # peak.index, peak.kl, peak.rise, peak.drop, peak.proxy_gain

Papers: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
arXiv 2210.10760; Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
arXiv 2401.01879; Korbak, Perez, Buckley 2022, "RL with KL penalties is better viewed as Bayesian
inference", arXiv 2205.11275 (the tilted optimum).
"""

from __future__ import annotations

import functools
import itertools
import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float, Int
from matplotlib.figure import Figure

from rewardjax import theory
from rewardjax.data import synthetic
from rewardjax.evaluate import gold as gold_lib

__all__ = [
    "ExactBonStudy",
    "GoldPeak",
    "RLCurve",
    "SyntheticResponseLaw",
    "bon_gold_peak",
    "enumerate_responses",
    "exact_bon_study",
    "gold_peak",
    "moving_average",
    "plot_exact_bon_study",
    "plot_rl_curves",
    "read_rl_curve",
    "spearman",
    "synthetic_response_law",
    "write_points",
]

# metrics.jsonl key of each RLCurve field.
_KEYS = {
    "kl": "kl",
    "gold": "gold_reward",
    "proxy": "reward",
    "kl_base_chain": "kl_base_chain",
    "invalid_fraction": "invalid_fraction",
}
_REQUIRED = ("kl", "gold", "proxy")


class RLCurve(NamedTuple):
    """The logged points of an RL run, in step order, each field [M] (M logged points).

    `kl_base_chain` and `invalid_fraction` are NaN where the run did not log them (only the
    synthetic task has a base chain and a gold reward).
    """

    step: Int[np.ndarray, " M"]
    kl: Float[np.ndarray, " M"]  # KL to the reference (the initial policy), per sequence
    gold: Float[np.ndarray, " M"]  # mean gold reward of the sampled completions
    proxy: Float[np.ndarray, " M"]  # mean reward the run optimised
    kl_base_chain: Float[np.ndarray, " M"]  # KL to the base Markov chain, per sequence
    invalid_fraction: Float[np.ndarray, " M"]  # completions the gold reward rejects

    def to_records(self) -> list[dict[str, float]]:
        """One JSON-able dict per point (NaN kept as None)."""
        out = []
        for i in range(len(self.step)):
            row = {"step": int(self.step[i])}
            for name in _KEYS:
                v = float(getattr(self, name)[i])
                row[name] = v if np.isfinite(v) else None
            out.append(row)
        return out


def read_rl_curve(path: str | os.PathLike) -> RLCurve:
    """Reads the train records of an RL run (a work directory or its `metrics.jsonl`).

    Args:
      path: the run's work directory, or the path of its `metrics.jsonl`.

    Returns:
      RLCurve of the records that hold `kl`, `gold_reward` and `reward` (evaluation records and
      others are skipped), sorted by step.

    Raises:
      ValueError: if the file is missing, a line is not JSON (the message names the file and the
        line), or no record holds the three keys (not an RL run on the synthetic task).
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, "metrics.jsonl")
    if not os.path.exists(path):
        raise ValueError(
            f"{path}: no such file; give the work directory of an RL run "
            "(python -m rewardjax.main --config=configs/rl.py:<algo> --workdir=DIR)."
        )
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{number}: not a JSON record ({e.msg}).") from e
            if all(_KEYS[k] in record for k in _REQUIRED) and "step" in record:
                rows.append(record)
    if not rows:
        raise ValueError(
            f"{path}: no record holds {[_KEYS[k] for k in _REQUIRED]}; this reads the metrics of "
            "an RL run on the synthetic task (config.task='rl', config.data.source='synthetic')."
        )
    rows.sort(key=lambda r: r["step"])
    column = lambda key: np.array([float(r.get(key, np.nan)) for r in rows], np.float64)
    return RLCurve(
        step=np.array([int(r["step"]) for r in rows]),
        **{name: column(key) for name, key in _KEYS.items()},
    )


def moving_average(x: Float[np.ndarray, " M"], window: int) -> Float[np.ndarray, " Mw"]:
    """Trailing-free ("valid") moving average: out[i] = mean(x[i : i + window]).

    Args:
      x: [M].
      window: w, 1 <= w <= M (w = 1 returns x).

    Returns:
      [M - w + 1] (Mw in the annotation).
    """
    x = np.asarray(x, np.float64)
    if not 1 <= window <= len(x):
        raise ValueError(f"window={window}: expected 1 <= window <= {len(x)} (the points).")
    return np.convolve(x, np.full(window, 1.0 / window), mode="valid")


def spearman(x: Float[np.ndarray, " M"], y: Float[np.ndarray, " M"]) -> float:
    """Spearman's rank correlation of two curves (average ranks for ties; NaN if one is constant).

    ρ = Pearson correlation of rank(x) and rank(y). Reference: Spearman 1904, "The proof and
    measurement of association between two things".
    """
    return float(gold_lib.spearman(np.asarray(x, np.float32), np.asarray(y, np.float32)))


class GoldPeak(NamedTuple):
    """Where the (smoothed) gold reward of a run peaks against KL, and how it got there and left.

    All values are on the curve smoothed by `moving_average(·, window)` (KL, gold and proxy alike).
    """

    index: int  # the peak's index in the smoothed curve (0 .. M - window)
    kl: float  # KL at the peak
    gold: float  # gold reward at the peak
    rise: float  # gold at the peak - gold at the first smoothed point (>= 0)
    drop: float  # gold at the peak - gold at the last smoothed point (>= 0)
    proxy_gain: float  # proxy at the last smoothed point - proxy at the peak
    final_kl: float  # KL at the last smoothed point


def _peak(kl: np.ndarray, gold: np.ndarray, proxy: np.ndarray) -> GoldPeak:
    """GoldPeak of curves [M] at i* = argmax gold."""
    i = int(np.argmax(gold))
    return GoldPeak(
        index=i,
        kl=float(kl[i]),
        gold=float(gold[i]),
        rise=float(gold[i] - gold[0]),
        drop=float(gold[i] - gold[-1]),
        proxy_gain=float(proxy[-1] - proxy[i]),
        final_kl=float(kl[-1]),
    )


def gold_peak(curve: RLCurve, *, window: int = 1) -> GoldPeak:
    """The maximum of the smoothed gold reward, with the rise before it and the drop after it.

    With ḡ, p̄, k̄ the `window`-point moving averages of gold, proxy and KL and i* = argmax ḡ:
    rise = ḡ[i*] - ḡ[0], drop = ḡ[i*] - ḡ[-1], proxy_gain = p̄[-1] - p̄[i*]. Overoptimization
    (Gao et al. 2022, arXiv 2210.10760) is rise > 0, drop > 0 and proxy_gain > 0 by margins
    larger than the noise of a logged mean; a faithful reward has drop ≈ 0.

    Args:
      curve: from `read_rl_curve`.
      window: points per moving average (1 = raw points).

    Returns:
      GoldPeak.
    """
    gold = moving_average(curve.gold, window)
    proxy = moving_average(curve.proxy, window)
    kl = moving_average(curve.kl, window)
    return _peak(kl, gold, proxy)


def plot_rl_curves(
    curves: Mapping[str, RLCurve],
    path: str | os.PathLike,
    *,
    frontier: tuple[np.ndarray, np.ndarray] | None = None,
    kl_key: str = "kl",
) -> str:
    """Gold reward (solid) and proxy reward (dashed) against KL for each named run; one PNG.

    Args:
      curves: run name -> RLCurve (e.g. {"gold reward": ..., "proxy reward model": ...}).
      path: the PNG to write.
      frontier: optional exact (KL, gold reward) frontier of the KL-regularised optimum
        (`rewardjax.theory.markov_kl_reward_frontier`), drawn in grey.
      kl_key: the RLCurve field on the x axis, "kl" (to the reference) or "kl_base_chain".

    Returns:
      The path written.
    """
    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    if frontier is not None:
        ax.plot(*frontier, color="0.6", lw=3, alpha=0.6, label="exact optimum (gold frontier)")
    for i, (name, c) in enumerate(curves.items()):
        color = f"C{i}"
        kl = getattr(c, kl_key)
        ax.plot(kl, c.gold, "o-", color=color, ms=3, label=f"{name}: gold")
        ax.plot(kl, c.proxy, "s--", color=color, ms=3, alpha=0.7, label=f"{name}: proxy")
    ax.set_xlabel("KL to the reference" if kl_key == "kl" else "KL to the base chain")
    ax.set_ylabel("reward (mean per completion)")
    ax.axhline(0.0, color="0.8", lw=0.8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    return os.fspath(path)


# --- Exact best-of-n on the synthetic task, by enumeration ---------------------------------------

MAX_RESPONSES = 1 << 16  # V^T above this is refused: scoring it would take minutes on a CPU


def enumerate_responses(vocab_size: int, length: int) -> Int[np.ndarray, "Y T"]:
    """Every response y_1..y_T over V tokens, Y = V^T rows in lexicographic order (int32)."""
    count = vocab_size**length
    if count > MAX_RESPONSES:
        raise ValueError(
            f"vocab_size ** length = {vocab_size}^{length} = {count} responses exceed "
            f"{MAX_RESPONSES}; shorten config.data.synthetic.length or vocab_size to enumerate."
        )
    return np.array(list(itertools.product(range(vocab_size), repeat=length)), np.int32)


class SyntheticResponseLaw(NamedTuple):
    """All responses to P sampled prompts: base law, gold reward and proxy reward(s) of each.

    `proxy` is [P, Y] for one reward, [E, P, Y] for an ensemble head (members kept).
    """

    prompts: Int[np.ndarray, "P Pl"]  # vocabulary tokens
    responses: Int[np.ndarray, "Y T"]
    probs: Float[np.ndarray, "P Y"]  # exact π_0(y | prompt), float64, rows sum to 1
    gold: Float[np.ndarray, "P Y"]
    proxy: Float[np.ndarray, "*E P Y"] | None  # None: not scored (`reward_fn=None`)


@functools.partial(jax.jit, static_argnums=0)
def _score_members(reward_fn, params, tokens, mask, completion_mask):
    return reward_fn.apply(params, tokens, mask, completion_mask).reward


def synthetic_response_law(
    task: synthetic.MarkovTask,
    reward_fn,
    params,
    key: jax.Array,
    *,
    num_prompts: int,
    batch_size: int = 4096,
) -> SyntheticResponseLaw:
    """Samples P prompts and scores every one of the V^T responses to each with the proxy.

    π_0(y | x) = Π_t transition[y_{t-1}, y_t] with y_0 the prompt's last token (exact, float64);
    gold(y) from `synthetic.gold_reward`; proxy from `reward_fn.apply` on the model ids of
    prompt + response (jitted, `batch_size` rows at a time, one compilation).

    Args:
      task: the world (`data.make_markov_task`); V^T must not exceed `MAX_RESPONSES`.
      reward_fn, params: the proxy (a `ScoringModel`); an ensemble head keeps its E members.
        reward_fn=None leaves `proxy` None (score the responses with another proxy).
      key: PRNG key for the prompts.
      num_prompts: P.
      batch_size: rows per forward pass.

    Returns:
      SyntheticResponseLaw (numpy).
    """
    responses = enumerate_responses(task.vocab_size, task.length)
    prompts = np.asarray(synthetic.sample_prompts(task, key, num_prompts))
    count = len(responses)
    prev = np.concatenate(
        [
            np.broadcast_to(prompts[:, -1, None, None], (num_prompts, count, 1)),
            np.broadcast_to(responses[:, :-1], (num_prompts, count, task.length - 1)),
        ],
        axis=-1,
    )  # [P, Y, T]: y_{t-1}
    nxt = np.broadcast_to(responses, (num_prompts, count, task.length))
    logp = np.log(task.transition)[prev, nxt].sum(-1)
    probs = np.exp(logp - logp.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    gold = np.asarray(task.bigram_reward, np.float64)[prev, nxt].sum(-1)
    if task.pattern and task.pattern_bonus:
        y0 = np.repeat(prompts[:, -1], count)
        tiled = np.tile(responses, (num_prompts, 1))
        gold = np.asarray(synthetic.gold_reward(task, y0, tiled), np.float64).reshape(gold.shape)
    if reward_fn is None:
        return SyntheticResponseLaw(prompts, responses, probs, gold, None)
    rows = np.concatenate(
        [np.repeat(prompts, count, 0), np.tile(responses, (num_prompts, 1))], axis=1
    )
    tokens = np.asarray(synthetic.to_ids(rows), np.int32)
    completion = np.zeros_like(tokens)
    completion[:, prompts.shape[1] :] = 1
    total, pad = len(tokens), -len(tokens) % batch_size
    tokens = np.pad(tokens, ((0, pad), (0, 0)), constant_values=1)
    completion = np.pad(completion, ((0, pad), (0, 0)))
    mask = np.ones((batch_size, tokens.shape[1]), np.int32)  # an argument: no constant folding
    scores = [
        np.asarray(
            _score_members(
                reward_fn,
                params,
                tokens[i : i + batch_size],
                mask,
                completion[i : i + batch_size],
            ),
            np.float64,
        )
        for i in range(0, len(tokens), batch_size)
    ]
    proxy = np.concatenate(scores, axis=-1)[..., :total]
    proxy = proxy.reshape((*proxy.shape[:-1], num_prompts, count))
    return SyntheticResponseLaw(prompts, responses, probs, gold, proxy)


class ExactBonStudy(NamedTuple):
    """Exact best-of-n by a proxy and the exact KL-regularised optima, averaged over prompts.

    KL and rewards are means over the P prompts of per-prompt values (the KL of the
    prompt-conditional policy to π_0, averaged over prompts).
    """

    bon: gold_lib.BonGoldCurves  # every field [K]
    frontier_kl: Float[np.ndarray, " J"]  # the gold reward's tilted optimum, one point per β
    frontier_gold: Float[np.ndarray, " J"]
    proxy_opt_kl: Float[np.ndarray, " J"]  # the proxy's tilted optimum (ideal RL on the proxy)
    proxy_opt_proxy: Float[np.ndarray, " J"]  # its proxy reward
    proxy_opt_gold: Float[np.ndarray, " J"]  # its gold reward
    betas: Float[np.ndarray, " J"]


@jax.jit
def _tilted_gold(probs, proxy, gold, betas):
    q = theory.tilted_distribution(probs, proxy, betas[:, None])  # [J, P, Y]
    log_ratio = jnp.where(q > 0, jnp.log(jnp.where(q > 0, q, 1.0) / probs), 0.0)
    kl = jnp.sum(q * log_ratio, -1)
    return kl.mean(-1), jnp.sum(q * proxy, -1).mean(-1), jnp.sum(q * gold, -1).mean(-1)


def exact_bon_study(
    law: SyntheticResponseLaw,
    ns: Float[np.ndarray, " K"],
    betas: Float[np.ndarray, " J"],
    *,
    proxy: Float[np.ndarray, "P Y"] | None = None,
    proxy_optimum: bool = True,
) -> ExactBonStudy:
    """Exact best-of-n curves of a proxy and the exact tilted optima, on enumerated responses.

    Per prompt x, with π_n^r the exact best-of-n law by r (`evaluate.exact_bon_gold_curves`):
    gold(n) = Σ_y π_n^proxy(y) gold(y), KL(n) = KL(π_n^proxy ‖ π_0), and the tilted optimum
    q_β ∝ π_0 e^{r/β} (`theory.tilted_distribution`) for r = gold (the frontier: the most gold
    reward any policy reaches at its KL) and r = proxy (ideal KL-regularised RL on the proxy,
    judged by gold). Means over prompts; a common β per point is optimal for the mean objective.

    References: Beirami et al. 2024, arXiv 2401.01879; Gao et al. 2022, arXiv 2210.10760;
    Korbak, Perez, Buckley 2022, arXiv 2205.11275.

    Args:
      law: from `synthetic_response_law`.
      ns: the grid of n ≥ 1 (real allowed), [K].
      betas: the grid of β > 0 for both optima, [J].
      proxy: the proxy reward to use [P, Y]; default `law.proxy` (an ensemble's must be reduced
        first, e.g. `law.proxy.mean(0)`).
      proxy_optimum: False skips the proxy's tilted optimum (its fields are then NaN).

    Returns:
      ExactBonStudy (numpy, float64 where the inputs allow).
    """
    proxy = law.proxy if proxy is None else proxy
    if proxy is None or np.ndim(proxy) != 2:
        raise ValueError(
            f"proxy has shape {np.shape(proxy)}; expected [P, Y] (reduce an ensemble's members "
            "first, e.g. proxy=law.proxy.mean(0) or transforms.ensemble)."
        )
    probs = jnp.asarray(law.probs, jnp.float32)
    p32, g32 = jnp.asarray(proxy, jnp.float32), jnp.asarray(law.gold, jnp.float32)
    curves = gold_lib.exact_bon_gold_curves(probs, p32, g32, jnp.asarray(ns, jnp.float32))
    bon = gold_lib.BonGoldCurves(
        np.asarray(curves.n, np.float64), *(np.asarray(x, np.float64).mean(0) for x in curves[1:])
    )
    betas_j = jnp.asarray(betas, jnp.float32)
    f_kl, f_gold = theory.kl_reward_frontier(probs, g32, betas_j[:, None])
    if proxy_optimum:
        o_kl, o_proxy, o_gold = _tilted_gold(probs, p32, g32, betas_j)
    else:
        o_kl = o_proxy = o_gold = np.full(np.shape(betas), np.nan)
    as_np = lambda x: np.asarray(x, np.float64)
    return ExactBonStudy(
        bon,
        as_np(f_kl).mean(-1),
        as_np(f_gold).mean(-1),
        as_np(o_kl),
        as_np(o_proxy),
        as_np(o_gold),
        np.asarray(betas, np.float64),
    )


def bon_gold_peak(curves: gold_lib.BonGoldCurves) -> GoldPeak:
    """The maximum over n of the gold reward of best-of-n by the proxy (`gold_peak` for BoN).

    With g_k, p_k, KL_k the curves at the K values of n (increasing) and i* = argmax g:
    rise = g[i*] - g[0], drop = g[i*] - g[-1], proxy_gain = p[-1] - p[i*]. Overoptimization
    (Gao et al. 2022, arXiv 2210.10760, Figure 1) is 0 < i* < K - 1 with drop > 0 and
    proxy_gain > 0.

    Args:
      curves: BonGoldCurves with fields [K], n increasing.

    Returns:
      GoldPeak (index into the K points).
    """
    gold, proxy, kl = (
        np.asarray(x, np.float64) for x in (curves.gold_reward, curves.proxy_reward, curves.kl)
    )
    if gold.ndim != 1:
        raise ValueError(
            f"bon_gold_peak: curves of shape {gold.shape}; expected [K] (average first)."
        )
    return _peak(kl, gold, proxy)


def plot_exact_bon_study(
    study: ExactBonStudy,
    path: str | os.PathLike,
    *,
    fit: theory.OveroptimizationFit | None = None,
    title: str = "Best-of-n by the proxy vs the exact optimum",
    extra: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> str:
    """Gold and proxy reward of best-of-n by the proxy against KL, Gao et al.'s fit of the gold
    curve, best-of-n by the gold reward, and the exact gold frontier (tilted optimum), one PNG.

    Args:
      study: from `exact_bon_study`.
      path: the PNG to write.
      fit: `evaluate.fit_bon_gold(study.bon)`: drawn as gold(n=1) + d (α - β d), d = √KL.
      title: the axes' title.
      extra: more named (KL [M], gold [M]) curves to draw (e.g. other proxies).

    Returns:
      The path written.
    """
    b = study.bon
    kl = np.asarray(b.kl)
    fig = Figure(figsize=(6.5, 4.4))
    ax = fig.subplots()
    top = kl.max() * 1.05
    keep = study.frontier_kl <= top
    ax.plot(
        study.frontier_kl[keep],
        study.frontier_gold[keep],
        color="0.55",
        lw=3,
        alpha=0.6,
        label="exact optimum of gold (frontier)",
    )
    ax.plot(b.kl_best, b.gold_best, "^--", color="C2", ms=3, label="gold: BoN by gold")
    ax.plot(kl, b.proxy_reward, "s--", color="C1", ms=3, label="proxy: BoN by proxy")
    ax.plot(kl, b.gold_reward, "o-", color="C0", ms=4, label="gold: BoN by proxy")
    if fit is not None:
        grid = np.linspace(0.0, kl.max(), 200)
        fitted = float(b.gold_reward[0]) + np.asarray(
            theory.gao_bon(np.sqrt(grid), fit.alpha, fit.beta)
        )
        ax.plot(
            grid,
            fitted,
            ":",
            color="black",
            label=f"Gao et al. fit d(α-βd), α={fit.alpha:.2f} β={fit.beta:.2f} "
            f"(R²={fit.r_squared:.2f})",
        )
    for i, (name, (x, y)) in enumerate((extra or {}).items()):
        ax.plot(x, y, "x-", color=f"C{i + 3}", ms=3, label=name)
    i = int(np.argmax(b.gold_reward))
    ax.annotate(
        f"peak n={b.n[i]:.0f}",
        (kl[i], b.gold_reward[i]),
        textcoords="offset points",
        xytext=(0, 8),
        ha="center",
        fontsize=7,
    )
    ax.set(xlabel="KL(π ‖ π_0) [nats]", ylabel="reward (mean over prompts)", title=title)
    ax.axhline(float(b.gold_reward[0]), color="0.85", lw=0.8)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=110)
    return os.fspath(path)


def write_points(path: str | os.PathLike, rows: list[Mapping[str, object]]) -> str:
    """One JSON object per line (NaN and infinities written as null); returns the path."""

    def clean(v):
        if isinstance(v, float | np.floating):
            return float(v) if np.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v

    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: clean(v) for k, v in row.items()}) + "\n")
    return os.fspath(path)
