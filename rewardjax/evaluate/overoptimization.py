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

Paper: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
arXiv 2210.10760.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from jaxtyping import Float, Int
from matplotlib.figure import Figure

from rewardjax.evaluate import gold as gold_lib

__all__ = [
    "GoldPeak",
    "RLCurve",
    "gold_peak",
    "moving_average",
    "plot_rl_curves",
    "read_rl_curve",
    "spearman",
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
