"""Constrained multi-reward optimisation, exact on an enumerated world (the `constrained` study).

K proxy reward components r_k(x, y), each a useful proxy of the gold reward only up to a point
(Moskovitz et al. 2023): along component k's own KL-regularised optimum q_β ∝ π_ref e^{r_k/β},
the gold reward rises with E_q[r_k] and then falls. The component's *useful range* is its value
at the gold peak of that path, θ_k = E_{q_β*}[r_k] with β* = argmax_β E_{q_β}[gold].

The constrained problem keeps every component inside its useful range:

    max_π  Σ_k w_k v_k(π) - β KL(π ‖ π_ref)   s.t.  v_k(π) = E_π[r_k] ≤ θ_k   (k = 1..K)

(the prompt average of each expectation and of the KL). For multipliers λ ≥ 0 the Lagrangian's
maximiser is the tilted policy π_λ ∝ π_ref exp(Σ_k (w_k - λ_k) r_k / β), and the dual

    D(λ) = β · mean_x log Σ_y π_ref(y|x) e^{Σ_k (w_k - λ_k) r_k(x,y) / β} + Σ_k λ_k θ_k

is convex with ∂D/∂λ_k = θ_k - v_k(π_λ); its minimiser over λ ≥ 0 (L-BFGS-B) gives the
constrained optimum (strong duality: the problem is convex in π). The trainer's projected dual
ascent (`rewardjax.rl.constraints`) is the stochastic version of the same descent on D.

Papers:
- Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with Constrained RLHF",
  arXiv 2310.04373 (proxy points; one multiplier per component).
- Korbak, Perez, Buckley 2022, "RL with KL penalties is better viewed as Bayesian inference",
  arXiv 2205.11275 (the tilted optimum π_ref e^{r/β} / Z).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import scipy.optimize
from jaxtyping import Float
from scipy.special import logsumexp

__all__ = [
    "ConstrainedOptimum",
    "UsefulRange",
    "constrained_optimum",
    "tilted_policy",
    "tilted_stats",
    "useful_range",
]


def tilted_policy(
    ref_logprobs: Float[np.ndarray, "P Y"], reward: Float[np.ndarray, "P Y"], beta: float
) -> Float[np.ndarray, "P Y"]:
    """The KL-regularised optimum q(y|x) = π_ref(y|x) e^{r(x,y)/β} / Z(x), exact.

    Args:
      ref_logprobs: log π_ref(y|x) of every response, [P, Y].
      reward: r(x, y), [P, Y].
      beta: β > 0.

    Returns:
      q, [P, Y] (rows sum to 1).
    """
    if not beta > 0:
        raise ValueError(f"tilted_policy: beta={beta} must be > 0.")
    z = np.asarray(ref_logprobs, np.float64) + np.asarray(reward, np.float64) / beta
    return np.exp(z - logsumexp(z, axis=-1, keepdims=True))


def tilted_stats(
    q: Float[np.ndarray, "P Y"],
    ref_logprobs: Float[np.ndarray, "P Y"],
    gold: Float[np.ndarray, "P Y"],
    components: Float[np.ndarray, "K P Y"],
) -> tuple[float, float, Float[np.ndarray, " K"]]:
    """(KL(q ‖ π_ref), E_q[gold], E_q[r_k]), each the mean over the P prompts."""
    q = np.asarray(q, np.float64)
    logq = np.log(np.where(q > 0, q, 1.0))
    kl = float(np.mean(np.sum(q * (logq - ref_logprobs), -1)))
    gold_v = float(np.mean(np.sum(q * gold, -1)))
    values = np.mean(np.sum(q[None] * np.asarray(components), -1), -1)
    return kl, gold_v, values


class UsefulRange(NamedTuple):
    """A component's useful range along its own tilted path (see the module docstring).

    Attributes:
      theta: θ_k, the component's mean at the gold peak.
      beta: β* of the peak.
      kl: KL(q_β* ‖ π_ref) at the peak.
      gold: the gold reward at the peak.
      betas, kls, golds, values: the whole path, [M] each (β decreasing along it).
    """

    theta: float
    beta: float
    kl: float
    gold: float
    betas: np.ndarray
    kls: np.ndarray
    golds: np.ndarray
    values: np.ndarray


def useful_range(
    ref_logprobs: Float[np.ndarray, "P Y"],
    component: Float[np.ndarray, "P Y"],
    gold: Float[np.ndarray, "P Y"],
    betas: Float[np.ndarray, " M"],
) -> UsefulRange:
    """The component's value at the gold peak of its exact tilted path q_β ∝ π_ref e^{r_k/β}.

    θ_k = E_{q_β*}[r_k],  β* = argmax_{β in betas} E_{q_β}[gold].

    Args:
      ref_logprobs: log π_ref, [P, Y].
      component: r_k, [P, Y].
      gold: the gold reward, [P, Y].
      betas: the β grid, [M] (> 0; sorted here from large to small).

    Returns:
      UsefulRange.
    """
    betas = np.sort(np.asarray(betas, np.float64))[::-1]
    comp = np.asarray(component, np.float64)[None]
    rows = [tilted_stats(tilted_policy(ref_logprobs, comp[0], b), ref_logprobs, gold, comp)
            for b in betas]  # fmt: skip
    kls = np.array([r[0] for r in rows])
    golds = np.array([r[1] for r in rows])
    values = np.array([r[2][0] for r in rows])
    i = int(np.argmax(golds))
    return UsefulRange(
        float(values[i]), float(betas[i]), float(kls[i]), float(golds[i]),
        betas, kls, golds, values,
    )  # fmt: skip


class ConstrainedOptimum(NamedTuple):
    """The exact constrained optimum at one β.

    Attributes:
      multipliers: λ_k ≥ 0, [K].
      policy: π_λ, [P, Y].
      values: v_k(π_λ), [K].
      kl: KL(π_λ ‖ π_ref).
      gold: E_{π_λ}[gold] (NaN when no gold is given).
    """

    multipliers: np.ndarray
    policy: np.ndarray
    values: np.ndarray
    kl: float
    gold: float


def constrained_optimum(
    ref_logprobs: Float[np.ndarray, "P Y"],
    components: Float[np.ndarray, "K P Y"],
    thresholds: Sequence[float] | Float[np.ndarray, " K"],
    beta: float,
    *,
    weights: Sequence[float] | None = None,
    gold: Float[np.ndarray, "P Y"] | None = None,
    tol: float = 1e-10,
) -> ConstrainedOptimum:
    """max_π Σ_k w_k v_k - β KL(π ‖ π_ref) s.t. v_k ≤ θ_k, exactly, through its convex dual.

    D(λ) = β mean_x log Σ_y π_ref e^{Σ_k (w_k - λ_k) r_k / β} + Σ_k λ_k θ_k, minimised over
    λ ≥ 0 by L-BFGS-B with the exact gradient θ_k - v_k(π_λ); π_λ is the optimum.

    Reference: Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with
    Constrained RLHF", arXiv 2310.04373; Boyd & Vandenberghe 2004, "Convex Optimization", ch. 5.

    Args:
      ref_logprobs: log π_ref, [P, Y].
      components: r_k, [K, P, Y].
      thresholds: θ_k, [K].
      beta: β > 0.
      weights: w_k (default 1 each).
      gold: the gold reward [P, Y], for the returned `gold`.
      tol: L-BFGS-B's gradient tolerance.

    Returns:
      ConstrainedOptimum.
    """
    comps = np.asarray(components, np.float64)
    k = comps.shape[0]
    theta = np.asarray(thresholds, np.float64).reshape(k)
    w = np.ones(k) if weights is None else np.asarray(weights, np.float64).reshape(k)
    ref = np.asarray(ref_logprobs, np.float64)
    if not beta > 0:
        raise ValueError(f"constrained_optimum: beta={beta} must be > 0.")

    def dual(lam):
        z = ref + np.tensordot(w - lam, comps, axes=1) / beta
        log_z = logsumexp(z, axis=-1, keepdims=True)
        q = np.exp(z - log_z)
        v = np.mean(np.sum(q[None] * comps, -1), -1)
        return beta * float(np.mean(log_z)) + float(lam @ theta), theta - v

    result = scipy.optimize.minimize(
        dual, np.zeros(k), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * k,
        options={"gtol": tol, "ftol": 1e-15, "maxiter": 2000},
    )  # fmt: skip
    lam = np.maximum(result.x, 0.0)
    q = tilted_policy(ref, np.tensordot(w - lam, comps, axes=1), beta)
    kl, gold_v, values = tilted_stats(q, ref, np.zeros_like(ref) if gold is None else gold, comps)
    return ConstrainedOptimum(lam, q, values, kl, gold_v if gold is not None else float("nan"))
