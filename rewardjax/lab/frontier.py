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

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Float

from rewardjax import bon
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.lab.study import at_kl

__all__ = [
    "Curve",
    "frontier_curves",
    "gain_fraction",
    "law_curve",
    "point_gain_fraction",
    "soft_bon_curves",
]


class Curve(NamedTuple):
    """One policy family's points, each field [M]."""

    kl: Float[np.ndarray, " M"]
    gold: Float[np.ndarray, " M"]
    proxy: Float[np.ndarray, " M"]  # the proxy reward (NaN where it is not defined)


def frontier_curves(study: overopt.ExactBonStudy) -> dict[str, Curve]:
    """The curves of an exact study, by name.

    "optimum of gold": q_β ∝ π_0 e^{gold/β}; "optimum of proxy" (ideal RL on the proxy):
    q_β ∝ π_0 e^{proxy/β}; "BoN by proxy"; "BoN by gold", at its own KL
    (`study.bon.kl_best` = KL(π_n^gold ‖ π_0)), not the
    proxy's best-of-n KL `study.bon.kl` (on a discrete law the two differ: at large n each tends
    to -log π_0 of its reward's best response). Gold and proxy reward are prompt means.
    """
    b = study.bon
    nan = np.full_like(study.frontier_kl, np.nan)
    out = {
        "optimum of gold": Curve(study.frontier_kl, study.frontier_gold, nan),
        "optimum of proxy": Curve(study.proxy_opt_kl, study.proxy_opt_gold, study.proxy_opt_proxy),
        "BoN by proxy": Curve(b.kl, b.gold_reward, b.proxy_reward),
    }
    out["BoN by gold"] = Curve(b.kl_best, b.gold_best, np.full_like(b.kl_best, np.nan))
    return out


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


def law_curve(
    laws: Float[np.ndarray, "M P Y"],
    reference: Float[np.ndarray, "P Y"],
    gold: Float[np.ndarray, "P Y"],
    proxy: Float[np.ndarray, "P Y"] | None = None,
) -> Curve:
    """The exact points of M policies given by their laws over the enumerated responses.

    KL_m = mean_x Σ_y π_m(y|x) log(π_m(y|x) / π_ref(y|x)) (0 log 0 = 0), gold_m = mean_x
    E_{π_m}[gold], proxy_m = mean_x E_{π_m}[proxy] (NaN without a proxy).

    Args:
      laws: π_m, [M, P, Y] (rows summing to 1).
      reference: π_ref, [P, Y].
      gold, proxy: rewards, [P, Y].

    Returns:
      Curve with fields [M].
    """
    laws = np.asarray(laws, np.float64)
    reference = np.asarray(reference, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(laws > 0, laws * (np.log(laws) - np.log(reference)), 0.0)
    kl = terms.sum(-1).mean(-1)
    value = lambda r: np.sum(laws * np.asarray(r, np.float64), -1).mean(-1)
    return Curve(kl, value(gold), value(proxy) if proxy is not None else np.full_like(kl, np.nan))


def soft_bon_curves(
    law: overopt.SyntheticResponseLaw,
    proxy: Float[np.ndarray, "P Y"],
    ns: Float[np.ndarray, " K"],
    temperatures: Float[np.ndarray, " L"],
    *,
    num_nodes: int = 256,
) -> dict[float, Curve]:
    """Soft best-of-n by `proxy` from `law.probs`, exact: one Curve over n per temperature λ.

    Soft best-of-n draws n responses from π and keeps y_i with probability e^{r_i/λ} / Σ_j
    e^{r_j/λ}; its law (`bon.soft_bon_distribution`) runs from π (n = 1) to best-of-n (λ → 0)
    and to the tilt π e^{r/λ} / Z (n → ∞), the proxy's KL-regularised optimum at β = λ. Each
    point's KL (to `law.probs`), gold and proxy reward come from `law_curve`.

    Reference: Verdun et al. 2025, "Soft Best-of-n Sampling for Model Alignment",
    arXiv 2505.03156.

    Args:
      law: the world and the reference law (`law.probs`, [P, Y]).
      proxy: the reward soft best-of-n selects by, [P, Y].
      ns: n ≥ 1, [K].
      temperatures: λ > 0, [L].
      num_nodes: the quadrature's points Q; the error is ~exp(-2π Q / ((max r - min r)/λ +
        log n + 35)) (256 agrees with 2048 to 1e-7 on the quickstart world, λ ≥ 0.1 std(r)).

    Returns:
      {λ: Curve with fields [K]}.
    """
    out = {}
    probs = jnp.asarray(law.probs, jnp.float32)
    rewards = jnp.asarray(proxy, jnp.float32)
    ns_j = jnp.asarray(ns, jnp.float32)
    for lam in np.asarray(temperatures, np.float64):
        laws = np.asarray(_soft_bon_laws(probs, rewards, ns_j, lam, num_nodes), np.float64)
        laws = np.clip(laws, 0.0, None).transpose(1, 0, 2)  # [K, P, Y]
        laws /= laws.sum(-1, keepdims=True)
        out[float(lam)] = law_curve(laws, law.probs, law.gold, proxy)
    return out


@functools.partial(jax.jit, static_argnums=4)
def _soft_bon_laws(probs, rewards, ns, lam, num_nodes):
    """[P, K, Y]: one prompt at a time (the quadrature holds [K, Q, Y] floats)."""
    one = lambda pr: bon.soft_bon_distribution(pr[0], pr[1], ns, lam, num_nodes=num_nodes)
    return jax.lax.map(one, (probs, rewards))


def point_gain_fraction(
    kl: Float[np.ndarray, " M"],
    value: Float[np.ndarray, " M"],
    optimum: Curve,
    *,
    field: str = "gold",
    base: float,
) -> Float[np.ndarray, " M"]:
    """The fraction of the optimum's gain single policies reach at their own KL.

    f_m = (v_m - v_0) / (v*(KL_m) - v_0), v* the optimum's `field` read at KL_m (`lab.at_kl`);
    NaN where KL_m is outside the optimum's range. A trained policy (DPO, RL, BOND) is one point,
    not a curve, so it is compared with the optimum where it is.

    Args:
      kl, value: the policies' KLs and values, [M].
      optimum: the optimum's Curve.
      field: "gold" or "proxy".
      base: v_0.

    Returns:
      [M].
    """
    v_star = at_kl(optimum.kl, getattr(optimum, field), np.atleast_1d(kl))
    return (np.atleast_1d(np.asarray(value, np.float64)) - base) / (v_star - base)
