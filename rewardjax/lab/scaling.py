"""Scaling laws of reward-model overoptimization: proxies of several sizes and data sizes.

Gao et al. optimise a policy against proxy reward models of several sizes, trained on several
amounts of data, and measure the gold reward R against d = √KL(π ‖ π_init):

- best-of-n:            R_bon(d) = d (α_bon - β_bon d)
- KL-regularised RL:    R_rl(d)  = d (α_rl - β_rl log d)

(`theory.gao_bon`, `theory.gao_rl`; least squares by `theory.fit_overoptimization`). Larger
reward models overoptimise less: β falls (and the gold peak rises) with the proxy's size. On the
synthetic world with every response enumerated, best-of-n is the exact law
(`evaluate.overoptimization.exact_bon_study`) and a trained policy's KL and gold reward are exact
sums over its law (`lab.policies`), so both forms are fitted to exact points.

This module holds what such a study composes: both forms fitted to one curve (`fit_gao_forms`),
and the trend of a coefficient with model size (`size_trend`); a trained reward model's scores of
every response are `lab.score_reward_model_run`, a policy run's exact points
`lab.checkpoint_path`.

Paper: Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization",
arXiv 2210.10760.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Float

from rewardjax import theory
from rewardjax.evaluate import overoptimization as overopt

__all__ = ["GaoFits", "SizeTrend", "fit_gao_forms", "size_trend"]


class GaoFits(NamedTuple):
    """Both of Gao et al.'s forms fitted to one curve (floats)."""

    bon: theory.OveroptimizationFit  # R = d (α - β d)
    rl: theory.OveroptimizationFit  # R = d (α - β log d)


def fit_gao_forms(
    kl: Float[np.ndarray, " M"], gold: Float[np.ndarray, " M"], *, gold_init: float | None = None
) -> GaoFits:
    """Least-squares α, β and R² of both forms, R_bon = d (α - β d) and R_rl = d (α - β log d),
    to the gold reward gained over the initial policy, R = gold - gold_init, at d = √KL.

    Reference: Gao, Schulman, Hilton 2022, arXiv 2210.10760, eqs. (1) and (2).

    Args:
      kl: KL(π ‖ π_init) of M policies, [M] (≥ 0).
      gold: their gold reward, [M].
      gold_init: the initial policy's gold reward; default the gold reward at the smallest KL
        (best-of-n's n = 1, an RL run's step 0).

    Returns:
      GaoFits(bon, rl), each an `OveroptimizationFit` of floats.
    """
    kl, gold = np.asarray(kl, np.float64), np.asarray(gold, np.float64)
    if kl.shape != gold.shape or kl.ndim != 1 or len(kl) < 3:
        raise ValueError(f"kl {kl.shape} and gold {gold.shape}: expected two equal [M], M >= 3.")
    start = float(gold[np.argmin(kl)]) if gold_init is None else float(gold_init)
    fits = (theory.fit_overoptimization(kl, gold - start, form) for form in ("bon", "rl"))
    return GaoFits(*(theory.OveroptimizationFit(*(float(x) for x in f)) for f in fits))


class SizeTrend(NamedTuple):
    """How a value moves with model size."""

    slope: float  # least-squares slope of the value per doubling of the size (log2 size)
    spearman: float  # rank correlation of the value with the size (1: rises with every step)


def size_trend(sizes: Float[np.ndarray, " K"], values: Float[np.ndarray, " K"]) -> SizeTrend:
    """The slope b of values ≈ a + b log2(size) (least squares) and Spearman's ρ(size, value).

    Gao et al. (arXiv 2210.10760, Figure 3) find β_bon and β_rl falling smoothly, close to
    linearly, in the log of the reward model's parameter count: slope < 0.

    Args:
      sizes: model sizes (e.g. parameter counts) > 0, [K], K ≥ 2.
      values: one value per size (e.g. the fitted β), [K].

    Returns:
      SizeTrend(slope, spearman).
    """
    x = np.log2(np.asarray(sizes, np.float64))
    y = np.asarray(values, np.float64)
    if x.shape != y.shape or len(x) < 2:
        raise ValueError(f"sizes {x.shape} and values {y.shape}: expected two equal [K], K >= 2.")
    xc = x - x.mean()
    slope = float(np.sum(xc * (y - y.mean())) / np.sum(xc**2))
    return SizeTrend(slope, overopt.spearman(x, y))
