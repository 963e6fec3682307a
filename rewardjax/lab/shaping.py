"""Reward shaping, exactly: the KL-regularised optimum of a transformed proxy, judged by gold.

RL with a transformed proxy u(r) and KL coefficient β aims at the tilted policy

    q_β(y | x) ∝ π_ref(y | x) exp(u(x, y) / β),

the maximiser of E_q[u] - β KL(q ‖ π_ref). The transforms of Wang et al. and Fu et al. need the
reference policy's reward distribution per prompt; the trainer estimates it from a few reference
completions (`rewards.CombinedReward`), but on the enumerated world the whole law π_ref(·|x) is
known, so each transform is computed exactly (`exact_transform`):

- raw: u = r;
- log-sigmoid centring (Wang et al.): u = log σ(r(x, y) - r_q(x)), r_q(x) the q-quantile of r under
  π_ref(·|x) (`exact_reference_quantile`: the smallest value v with P_ref[r ≤ v] ≥ q);
- PAR (Fu et al.): u = E_{y'~π_ref}[σ(r(x, y) - r(x, y'))];
- calibration (Balashankar et al.): u = P_ref[r(y') < r(y)] + ½ P_ref[r(y') = r(y)].

Each transform is monotone in r, so every tilted optimum ends on the proxy's argmax as β → 0; they
differ in the path there: how much KL each spends, and how much gold it reaches, before the proxy's
errors dominate (`shaped_optima`, `hacking_onset`).

Papers: Wang et al. 2024, "Transforming and Combining Rewards for Aligning Large Language Models",
arXiv 2402.00742; Fu et al. 2025, "Reward Shaping to Mitigate Reward Hacking in RLHF",
arXiv 2502.18770; Balashankar et al. 2024, "InfAlign: Inference-aware language model alignment",
arXiv 2412.19792; Korbak, Perez, Buckley 2022, "RL with KL penalties is better viewed as Bayesian
inference", arXiv 2205.11275 (the tilted optimum).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from rewardjax import theory

__all__ = [
    "SHAPINGS",
    "HackingOnset",
    "ShapedCurve",
    "exact_calibration",
    "exact_par",
    "exact_reference_quantile",
    "exact_transform",
    "hacking_onset",
    "shaped_optima",
    "shaped_optimum",
]

# The trainer's names (`config.reward.transform`), "raw" for none.
SHAPINGS = ("raw", "log_sigmoid_centered", "preference_as_reward", "calibrate")


def exact_reference_quantile(
    rewards: Float[np.ndarray, "P Y"], ref_probs: Float[np.ndarray, "P Y"], q: float = 0.85
) -> Float[np.ndarray, " P"]:
    """The q-quantile of r(x, ·) under π_ref(·|x), exactly: min {v : P_ref[r ≤ v] ≥ q}.

    Args:
      rewards: r(x, y) of every response, [P, Y].
      ref_probs: π_ref(y | x), rows summing to 1, [P, Y].
      q: in [0, 1].

    Returns:
      r_q(x), [P].
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"exact_reference_quantile: q={q} is not in [0, 1].")
    rewards, ref_probs = np.asarray(rewards, np.float64), np.asarray(ref_probs, np.float64)
    order = np.argsort(rewards, axis=-1, kind="stable")
    r = np.take_along_axis(rewards, order, -1)
    cdf = np.cumsum(np.take_along_axis(ref_probs, order, -1), -1)
    # The first index whose cumulative mass reaches q (rounding: 1e-12 of slack).
    index = np.argmax(cdf >= q - 1e-12, axis=-1)
    return r[np.arange(len(r)), index]


@jax.jit
def _par(rewards, ref_probs):
    # σ(r_i - r_j) = 1 / (1 + e^{m - r_i} e^{r_j - m}), m the prompt's mid-range: two exps per
    # response instead of one per pair (the [Y, Y] block is a product and a reciprocal); exact
    # while the range stays below ~170 (float32 exp), else the direct form.
    def one(args):
        r, p = args
        m = 0.5 * (jnp.max(r) + jnp.min(r))
        fast = lambda: 1.0 / (1.0 + jnp.exp(m - r)[:, None] * jnp.exp(r - m)[None, :]) @ p
        safe = lambda: jax.nn.sigmoid(r[:, None] - r[None, :]) @ p
        return jax.lax.cond(jnp.max(r) - jnp.min(r) < 150.0, fast, safe)

    return jax.lax.map(one, (rewards, ref_probs))


def exact_par(
    rewards: Float[np.ndarray, "P Y"], ref_probs: Float[np.ndarray, "P Y"]
) -> Float[np.ndarray, "P Y"]:
    """PAR(x, y) = Σ_{y'} π_ref(y'|x) σ(r(x, y) - r(x, y')), exact over the enumerated responses.

    Fu et al. 2025, "Reward Shaping to Mitigate Reward Hacking in RLHF", arXiv 2502.18770 (the
    trainer's `transforms.preference_as_reward` is its estimate from N reference samples).

    Args:
      rewards: r, [P, Y].
      ref_probs: π_ref, [P, Y].

    Returns:
      PAR in (0, 1), [P, Y] (float64; computed in float32, one [Y, Y] block per prompt).
    """
    out = _par(jnp.asarray(rewards, jnp.float32), jnp.asarray(ref_probs, jnp.float32))
    return np.asarray(out, np.float64)


def exact_calibration(
    rewards: Float[np.ndarray, "P Y"], ref_probs: Float[np.ndarray, "P Y"]
) -> Float[np.ndarray, "P Y"]:
    """C(x, y) = P_ref[r(x, y') < r(x, y)] + ½ P_ref[r(x, y') = r(x, y)], exact (mid-rank).

    Balashankar et al. 2024, "InfAlign", arXiv 2412.19792 (`transforms.calibrate` estimates it
    from samples).

    Args:
      rewards: r, [P, Y].
      ref_probs: π_ref, [P, Y].

    Returns:
      C in [0, 1], [P, Y].
    """
    rewards, ref_probs = np.asarray(rewards, np.float64), np.asarray(ref_probs, np.float64)
    out = np.empty_like(rewards)
    for i, (r, p) in enumerate(zip(rewards, ref_probs)):
        values, inverse = np.unique(r, return_inverse=True)
        mass = np.bincount(inverse.reshape(-1), weights=p, minlength=len(values))
        below = np.cumsum(mass) - mass
        out[i] = below[inverse] + 0.5 * mass[inverse]
    return out


def exact_transform(
    name: str,
    rewards: Float[np.ndarray, "P Y"],
    ref_probs: Float[np.ndarray, "P Y"],
    *,
    quantile: float = 0.85,
) -> Float[np.ndarray, "P Y"]:
    """The transformed reward u(r) of `SHAPINGS` (module docstring), exact under π_ref.

    Args:
      name: one of `SHAPINGS`.
      rewards: the proxy r, [P, Y].
      ref_probs: π_ref, [P, Y].
      quantile: q of the centring ("log_sigmoid_centered"; the trainer's default 0.85).

    Returns:
      u, [P, Y].
    """
    rewards = np.asarray(rewards, np.float64)
    if name == "raw":
        return rewards
    if name == "log_sigmoid_centered":
        centre = exact_reference_quantile(rewards, ref_probs, quantile)[:, None]
        return np.asarray(jax.nn.log_sigmoid(rewards - centre), np.float64)
    if name == "preference_as_reward":
        return exact_par(rewards, ref_probs)
    if name == "calibrate":
        return exact_calibration(rewards, ref_probs)
    raise ValueError(f"exact_transform: unknown transform {name!r}; choose one of {SHAPINGS}.")


class ShapedCurve(NamedTuple):
    """The tilted optima of one transformed reward, one point per β, each field [J]."""

    beta: Float[np.ndarray, " J"]
    kl: Float[np.ndarray, " J"]  # mean_x KL(q_β ‖ π_ref), nats
    gold: Float[np.ndarray, " J"]  # mean_x E_{q_β}[gold]
    proxy: Float[np.ndarray, " J"]  # mean_x E_{q_β}[r], the untransformed proxy
    utility: Float[np.ndarray, " J"]  # mean_x E_{q_β}[u]


@jax.jit
def _tilted(ref_probs, utility, gold, proxy, betas):
    def one(beta):
        q = theory.tilted_distribution(ref_probs, utility, beta)
        log_ratio = jnp.log(jnp.where(q > 0, q, 1.0) / jnp.where(ref_probs > 0, ref_probs, 1.0))
        kl = jnp.sum(jnp.where(q > 0, q * log_ratio, 0.0), -1)
        mean = lambda v: jnp.sum(q * v, -1).mean()
        return kl.mean(), mean(gold), mean(proxy), mean(utility)

    return jax.lax.map(one, betas)


def shaped_optimum(
    utility: Float[np.ndarray, "P Y"],
    ref_probs: Float[np.ndarray, "P Y"],
    gold: Float[np.ndarray, "P Y"],
    proxy: Float[np.ndarray, "P Y"],
    betas: Float[np.ndarray, " J"],
) -> ShapedCurve:
    """q_β ∝ π_ref e^{u/β} for each β (one β for every prompt), and its exact KL, gold and proxy.

    Reference: Korbak, Perez, Buckley 2022, arXiv 2205.11275.

    Args:
      utility: the transformed reward u, [P, Y].
      ref_probs: π_ref, [P, Y].
      gold: the gold reward, [P, Y].
      proxy: the raw proxy r, [P, Y].
      betas: β > 0, [J].

    Returns:
      ShapedCurve (prompt means).
    """
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    betas = np.asarray(betas, np.float64)
    out = _tilted(f32(ref_probs), f32(utility), f32(gold), f32(proxy), f32(betas))
    return ShapedCurve(betas, *(np.asarray(x, np.float64) for x in out))


def shaped_optima(
    proxy: Float[np.ndarray, "P Y"],
    ref_probs: Float[np.ndarray, "P Y"],
    gold: Float[np.ndarray, "P Y"],
    *,
    shapings: tuple[str, ...] = SHAPINGS,
    betas: Float[np.ndarray, " J"] | None = None,
    quantile: float = 0.85,
) -> dict[str, ShapedCurve]:
    """The exact tilted optima of each transformed proxy (`exact_transform`), judged by gold.

    The transforms have different scales, so each one's β grid is `betas` times u's standard
    deviation under π_ref (mean over prompts): every curve spans KL ≈ 0 to the proxy's argmax.

    Args:
      proxy: r, [P, Y].
      ref_probs: π_ref, [P, Y].
      gold: [P, Y].
      shapings: names from `SHAPINGS`.
      betas: the relative β grid, [J]; default 50 points from 1e-6 to 1e2.
      quantile: q of the log-sigmoid centring.

    Returns:
      name -> ShapedCurve.
    """
    ref_probs = np.asarray(ref_probs, np.float64)
    betas = np.geomspace(1e-6, 1e2, 50) if betas is None else np.asarray(betas, np.float64)
    out = {}
    for name in shapings:
        u = exact_transform(name, proxy, ref_probs, quantile=quantile)
        mean = np.sum(ref_probs * u, -1, keepdims=True)
        scale = float(np.mean(np.sqrt(np.sum(ref_probs * (u - mean) ** 2, -1))))
        out[name] = shaped_optimum(u, ref_probs, gold, proxy, scale * betas)
    return out


class HackingOnset(NamedTuple):
    """Where gold stops rising along a KL-ordered curve (points sorted by KL)."""

    peak_gold: float  # the highest gold reward
    peak_kl: float  # the KL where it is reached: where hacking starts
    final_gold: float  # gold at the largest KL
    final_kl: float
    drop: float  # peak_gold - final_gold (>= 0)


def hacking_onset(
    kl: Float[np.ndarray, " M"], gold: Float[np.ndarray, " M"], *, max_kl: float = np.inf
) -> HackingOnset:
    """The gold peak of a curve and the KL where it is reached, over points with KL ≤ `max_kl`.

    Args:
      kl, gold: the curve, [M] (any order).
      max_kl: ignore points beyond this KL (compare curves over a common range).

    Returns:
      HackingOnset.
    """
    kl, gold = np.asarray(kl, np.float64), np.asarray(gold, np.float64)
    keep = np.isfinite(kl) & np.isfinite(gold) & (kl <= max_kl)
    if not keep.any():
        raise ValueError(f"hacking_onset: no finite point with KL <= max_kl={max_kl}.")
    kl, gold = kl[keep], gold[keep]
    order = np.argsort(kl, kind="stable")
    kl, gold = kl[order], gold[order]
    i = int(np.argmax(gold))
    return HackingOnset(
        float(gold[i]), float(kl[i]), float(gold[-1]), float(kl[-1]), float(gold[i] - gold[-1])
    )
