"""The ensembles study: does best-of-n by an ensemble of proxies overoptimise less than by one?

E proxy reward models are aggregated per response by `transforms.ensemble`: the mean, the worst
case (min) and uncertainty-weighted optimisation (mean - λ · variance). Best-of-n by each
aggregate (exact law, `evaluate.overoptimization.exact_bon_study`) is judged by the gold reward
and compared with best-of-n by each single member at equal KL (members' KLs differ, so every
curve is read on one KL grid, `lab.at_kl`).

Paper: Coste, Anwar, Kirk, Krueger 2023, "Reward Model Ensembles Help Mitigate Overoptimization",
arXiv 2310.02743 (Figure 3: best-of-n gold reward of single vs ensemble proxies against KL).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from rewardjax import transforms
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.lab.study import at_kl

__all__ = ["aggregate_members", "ensemble_bon_gold"]


def aggregate_members(
    members: Float[np.ndarray, "E P Y"], *, uwo_coef: float = 0.5
) -> dict[str, Float[np.ndarray, "P Y"]]:
    """The ensemble's aggregates: "mean", "min" (worst case), "uwo" (mean - λ var), λ = uwo_coef."""
    r = jnp.asarray(members, jnp.float32)
    out = {m: transforms.ensemble(r, method=m) for m in ("mean", "min")}
    out["uwo"] = transforms.ensemble(r, method="uwo", coef=uwo_coef)
    return {k: np.asarray(v, np.float64) for k, v in out.items()}


def ensemble_bon_gold(
    law: overopt.SyntheticResponseLaw,
    members: Float[np.ndarray, "E P Y"],
    ns: Float[np.ndarray, " K"],
    grid: Float[np.ndarray, " G"],
    *,
    uwo_coef: float = 0.5,
) -> tuple[dict[str, Float[np.ndarray, " G"]], dict[str, overopt.ExactBonStudy]]:
    """Gold reward of best-of-n by each member and each aggregate, read at the KLs of `grid`.

    Returns:
      ({"single": mean over the members that reach each KL of their gold there, "single e" for each
      member e, "mean", "min", "uwo": the aggregates'}, {name: its ExactBonStudy}); gold values
      [G], NaN past a curve's largest KL.
    """
    betas = np.array([1.0])  # the optima are not used here
    studies = {}
    for e in range(len(members)):
        studies[f"single {e}"] = overopt.exact_bon_study(
            law, ns, betas, proxy=members[e], proxy_optimum=False
        )
    for name, proxy in aggregate_members(members, uwo_coef=uwo_coef).items():
        studies[name] = overopt.exact_bon_study(law, ns, betas, proxy=proxy, proxy_optimum=False)
    gold = {k: at_kl(s.bon.kl, s.bon.gold_reward, grid) for k, s in studies.items()}
    singles = np.stack([gold[f"single {e}"] for e in range(len(members))])
    with np.errstate(all="ignore"):  # a KL no member reaches stays NaN
        single = np.nanmean(np.where(np.isnan(singles).all(0), np.inf, singles), 0)
    gold = {"single": np.where(np.isinf(single), np.nan, single), **gold}
    return gold, studies
