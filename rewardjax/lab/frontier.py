"""The frontier study: how close best-of-n comes to the exact KL-regularised optimum, at equal KL.

For a reward r and base law π_0 the tilted policy q_β ∝ π_0 e^{r/β} maximises E_q[r] - β KL(q‖π_0),
so its (KL, E_q[r]) curve is the frontier no policy crosses. Best-of-n by the same reward is a
different policy family; Beirami et al. and Yang et al. show it is nearly on that frontier (and
asymptotically equivalent to it). On the synthetic task both are exact (`exact_bon_study`), so the
gap is measured, not estimated: for the gold reward (the ceiling), and for a proxy, where best-of-n
by the proxy is compared with the proxy's optimum (ideal KL-regularised RL on the proxy), both
judged by the gold reward.

Papers: Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
arXiv 2401.01879; Yang et al. 2024, "Asymptotics of language model alignment", arXiv 2404.01730;
Gao, Schulman, Hilton 2022, arXiv 2210.10760.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from jaxtyping import Float

from rewardjax.evaluate import overoptimization as overopt
from rewardjax.lab.study import at_kl

__all__ = ["Curve", "frontier_curves", "gain_fraction"]


class Curve(NamedTuple):
    """One policy family's points, each field [M]."""

    kl: Float[np.ndarray, " M"]
    gold: Float[np.ndarray, " M"]
    proxy: Float[np.ndarray, " M"]  # the proxy reward (NaN where it is not defined)


def frontier_curves(study: overopt.ExactBonStudy) -> dict[str, Curve]:
    """The four curves of an exact study, by name.

    "optimum of gold": q_β ∝ π_0 e^{gold/β}; "BoN by gold"; "optimum of proxy" (ideal RL on the
    proxy): q_β ∝ π_0 e^{proxy/β}; "BoN by proxy". Gold and proxy reward are prompt means.
    """
    b = study.bon
    nan = np.full_like(study.frontier_kl, np.nan)
    return {
        "optimum of gold": Curve(study.frontier_kl, study.frontier_gold, nan),
        "BoN by gold": Curve(b.kl, b.gold_best, np.full_like(b.kl, np.nan)),
        "optimum of proxy": Curve(study.proxy_opt_kl, study.proxy_opt_gold, study.proxy_opt_proxy),
        "BoN by proxy": Curve(b.kl, b.gold_reward, b.proxy_reward),
    }


def gain_fraction(
    curve: Curve,
    optimum: Curve,
    grid: Float[np.ndarray, " G"],
    *,
    field: str = "gold",
    base: float,
) -> Float[np.ndarray, " G"]:
    """The fraction of the optimum's gain a policy family reaches at equal KL.

    f(KL) = (v(KL) - v_0) / (v*(KL) - v_0), v the family's value (gold or proxy reward), v* the
    optimum's, v_0 = `base` (the base policy's value, KL = 0); both read at the grid's KLs by
    linear interpolation (`lab.at_kl`). f = 1 on the frontier; NaN outside either curve's range.

    Args:
      curve, optimum: Curves.
      grid: KLs, [G].
      field: "gold" or "proxy".
      base: v_0.

    Returns:
      [G].
    """
    v = at_kl(curve.kl, getattr(curve, field), grid)
    v_star = at_kl(optimum.kl, getattr(optimum, field), grid)
    return (v - base) / (v_star - base)
