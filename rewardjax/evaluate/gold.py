"""A proxy reward against a known gold reward: agreement, and best-of-n gold curves.

On the synthetic task the gold reward of every response is known, so a trained (proxy) reward model
can be judged against it: how often it orders a pair as the gold reward does, its rank correlation
with the gold reward, and — what overoptimization is about — the gold reward actually obtained when
best-of-n selects by the proxy, against the gold reward of best-of-n by the gold reward itself, as n
(and so KL(π_n ‖ π)) grows. Everything is pure and jittable; weight-0 examples count as absent.

Papers:
- Gao, Schulman, Hilton 2022, "Scaling Laws for Reward Model Overoptimization", arXiv 2210.10760
  (gold vs proxy reward of best-of-n as a function of KL).
- Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
  arXiv 2401.01879 (exact best-of-n law and KL, via `rewardjax.bon`).
- David & Nagaraja 2003, "Order Statistics", Sections 2.1 and 6.8 (U-statistics of order
  statistics and of their concomitants).
- Kendall 1945, "The treatment of ties in ranking problems" (tau-b); Spearman 1904.
"""

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, Real

from rewardjax import bon
from rewardjax.evaluate._arrays import as_float, weighted_mean, weights_like
from rewardjax.evaluate.pairs import pair_correct

__all__ = [
    "BonGoldCurves",
    "GoldAgreement",
    "empirical_bon_gold_curves",
    "exact_bon_gold_curves",
    "gold_agreement",
    "gold_pair_accuracy",
    "kendall_tau",
    "spearman",
]


@jax.jit
def gold_pair_accuracy(
    chosen: Float[ArrayLike, " B"],
    rejected: Float[ArrayLike, " B"],
    chosen_gold: Float[ArrayLike, " B"],
    rejected_gold: Float[ArrayLike, " B"],
    *,
    weight: Real[ArrayLike, " B"] | None = None,
) -> Float[Array, ""]:
    """How often the proxy orders a pair as the gold reward does (not as the noisy label does).

    acc = Σ_i w_i a_i / Σ_i w_i over pairs with g_c ≠ g_r, where a_i = 1 if sign(r_c - r_r) =
    sign(g_c - g_r), ½ on a proxy tie, else 0.

    Args:
      chosen, rejected: proxy rewards [B].
      chosen_gold, rejected_gold: gold rewards [B].
      weight: example weights [B]; None weighs all equally.

    Returns:
      scalar in [0, 1] (0 when no pair has a gold preference).
    """
    gold_margin = as_float(chosen_gold) - as_float(rejected_gold)
    forward = pair_correct(chosen, rejected)
    agree = jnp.where(gold_margin > 0, forward, 1.0 - forward)
    w = weights_like(weight, forward) * (gold_margin != 0)
    return weighted_mean(agree, w)


def _average_ranks(x: Array, kept: Array) -> Array:
    """Average ranks (1-based, ties get the mean rank) of finite x among the kept entries."""
    ref = jnp.sort(jnp.where(kept, x, jnp.inf))
    below = jnp.searchsorted(ref, x, side="left")
    upto = jnp.searchsorted(ref, x, side="right")
    return (below + upto + 1) / 2.0


@jax.jit
def spearman(
    x: Float[ArrayLike, " B"],
    y: Float[ArrayLike, " B"],
    *,
    weight: Real[ArrayLike, " B"] | None = None,
) -> Float[Array, ""]:
    """Spearman's rank correlation: the Pearson correlation of the average ranks of x and y.

    ρ = cov(R_x, R_y) / (σ(R_x) σ(R_y)), ranks among the examples with w > 0 (ties share their
    mean rank, as `scipy.stats.spearmanr`). O(B log B). Values must be finite.

    Reference: Spearman 1904, "The proof and measurement of association between two things".

    Args:
      x, y: [B].
      weight: [B]; examples with weight 0 are left out (other weights only select).

    Returns:
      scalar in [-1, 1] (NaN when x or y is constant).
    """
    x, y = as_float(x), as_float(y)
    kept = weights_like(weight, x) > 0
    rx, ry = _average_ranks(x, kept), _average_ranks(y, kept)
    k = kept.astype(x.dtype)
    rx, ry = rx - weighted_mean(rx, k), ry - weighted_mean(ry, k)
    return jnp.sum(k * rx * ry) / jnp.sqrt(jnp.sum(k * rx * rx) * jnp.sum(k * ry * ry))


@jax.jit
def kendall_tau(
    x: Float[ArrayLike, " B"],
    y: Float[ArrayLike, " B"],
    *,
    weight: Real[ArrayLike, " B"] | None = None,
) -> Float[Array, ""]:
    """Kendall's tau-b: (concordant - discordant) / √((pairs untied in x)(pairs untied in y)).

    τ_b = Σ_{i,j} sign(x_i - x_j) sign(y_i - y_j) / √(Σ_{i,j} 1[x_i ≠ x_j] · Σ_{i,j} 1[y_i ≠ y_j]),
    sums over pairs of kept examples (w > 0), as `scipy.stats.kendalltau`. O(B²) work in row
    blocks of O(256 B) memory.

    Reference: Kendall 1945, "The treatment of ties in ranking problems".

    Args:
      x, y: [B].
      weight: [B]; examples with weight 0 are left out (other weights only select).

    Returns:
      scalar in [-1, 1] (NaN when x or y is constant).
    """
    x, y = as_float(x), as_float(y)
    k = (weights_like(weight, x) > 0).astype(x.dtype)

    def row(args):
        xi, yi, ki = args
        sx, sy = jnp.sign(xi - x), jnp.sign(yi - y)
        kk = ki * k
        return jnp.stack([jnp.sum(kk * sx * sy), jnp.sum(kk * sx * sx), jnp.sum(kk * sy * sy)])

    s, nx, ny = jnp.sum(jax.lax.map(row, (x, y, k), batch_size=256), axis=0)
    return s / jnp.sqrt(nx * ny)


class GoldAgreement(NamedTuple):
    """Agreement of a proxy reward with the gold reward (scalars)."""

    pair_accuracy: Array  # `gold_pair_accuracy` on the preference pairs
    spearman: Array  # rank correlation over all responses (chosen and rejected pooled)
    kendall: Array  # tau-b over all responses


@jax.jit
def gold_agreement(
    chosen: Float[ArrayLike, " B"],
    rejected: Float[ArrayLike, " B"],
    chosen_gold: Float[ArrayLike, " B"],
    rejected_gold: Float[ArrayLike, " B"],
    *,
    weight: Real[ArrayLike, " B"] | None = None,
) -> GoldAgreement:
    """Gold pair accuracy, and Spearman / Kendall correlation of proxy and gold over 2B responses.

    Args:
      chosen, rejected: proxy rewards [B].
      chosen_gold, rejected_gold: gold rewards [B].
      weight: example weights [B] (0 drops both responses of a pair).

    Returns:
      GoldAgreement of scalars.
    """
    proxy = jnp.concatenate([as_float(chosen), as_float(rejected)])
    gold = jnp.concatenate([as_float(chosen_gold), as_float(rejected_gold)])
    w = jnp.tile(weights_like(weight, as_float(chosen)), 2)
    return GoldAgreement(
        gold_pair_accuracy(chosen, rejected, chosen_gold, rejected_gold, weight=weight),
        spearman(proxy, gold, weight=w),
        kendall_tau(proxy, gold, weight=w),
    )


class BonGoldCurves(NamedTuple):
    """Best-of-n by a proxy reward, judged by the gold reward; reward fields have shape [..., K]."""

    n: Array  # [K] the grid of n
    kl: Array  # [..., K] or [K]: KL(π_n ‖ π) of best-of-n by the proxy, nats
    proxy_reward: Array  # proxy reward of the proxy's best-of-n (what the optimiser sees)
    gold_reward: Array  # gold reward of the proxy's best-of-n (what it actually gets)
    gold_best: Array  # gold reward of best-of-n by the gold reward itself (the ceiling)
    kl_best: Array  # KL(π_n^gold ‖ π) of best-of-n by the gold reward (where gold_best lies)


def _move_n_last(x: Array) -> Array:
    return jnp.moveaxis(x, 0, -1)


@jax.jit
def exact_bon_gold_curves(
    probs: Float[ArrayLike, "*batch Y"],
    proxy: Float[ArrayLike, "*batch Y"],
    gold: Float[ArrayLike, "*batch Y"],
    ns: Real[ArrayLike, " K"] | Sequence[Real[ArrayLike, ""]],
) -> BonGoldCurves:
    """Exact best-of-n curves on a discrete base law: gold reward of proxy- and gold-selected BoN.

    With π_n^r the exact law of best-of-n by reward r (ties uniform, `bon.bon_distribution`):
    proxy_reward = Σ_y π_n^proxy(y) proxy(y), gold_reward = Σ_y π_n^proxy(y) gold(y),
    gold_best = Σ_y π_n^gold(y) gold(y), kl = KL(π_n^proxy ‖ π) and kl_best = KL(π_n^gold ‖ π)
    (`bon.bon_kl`: on a discrete law they differ, each reward's ties and best atom set its own
    KL). One vectorised
    call for all n and all problems (e.g. prompts) in the batch.

    Reference: Beirami et al. 2024, arXiv 2401.01879; Gao et al. 2022, arXiv 2210.10760.

    Args:
      probs: base law π over Y outcomes, [..., Y].
      proxy: proxy reward of each outcome, [..., Y].
      gold: gold reward of each outcome, [..., Y].
      ns: grid of n ≥ 1 (real allowed), [K].

    Returns:
      BonGoldCurves with n [K] and the other fields [..., K].
    """
    ns = as_float(jnp.asarray(ns))  # a list of n is allowed
    batch = jnp.broadcast_shapes(jnp.shape(probs)[:-1], jnp.shape(proxy)[:-1])
    n_col = ns.reshape((-1,) + (1,) * len(batch))
    gold = as_float(gold)
    law = bon.bon_distribution(probs, proxy, n_col)  # [K, ..., Y]
    gold_law = bon.bon_distribution(probs, gold, n_col)
    return BonGoldCurves(
        ns,
        _move_n_last(bon.bon_kl(probs, proxy, n_col)),
        _move_n_last(jnp.sum(law * as_float(proxy), axis=-1)),
        _move_n_last(jnp.sum(law * gold, axis=-1)),
        _move_n_last(jnp.sum(gold_law * gold, axis=-1)),
        _move_n_last(bon.bon_kl(probs, gold, n_col)),
    )


def empirical_bon_gold_curves(
    proxy: Float[ArrayLike, "*batch M"],
    gold: Float[ArrayLike, "*batch M"],
    ns: Int[ArrayLike, " K"] | Sequence[int],
) -> BonGoldCurves:
    """Best-of-n curves from M base-policy samples per prompt, unbiased, without resampling.

    Over all C(M, n) subsets of the M samples, the mean gold reward of the subset's proxy-best
    sample is Σ_i w_n(i) ḡ_(i), with ḡ_(i) the gold reward of the sample of i-th smallest proxy
    reward (its concomitant; averaged within proxy ties, which best-of-n breaks uniformly) and
    w_n(i) = C(i-1, n-1)/C(M, n) — an unbiased estimate of E[gold(best-of-n by proxy)]
    (`bon.empirical_bon_curves` with `values=gold`). The proxy and gold curves of best-of-n by
    their own reward are `bon.empirical_bon_curves`, and the KL is its log n - (n-1)/n (exact for a
    tie-free proxy, else an upper bound).

    Jittable in `proxy` and `gold`; `ns` must be concrete.

    References: David & Nagaraja 2003, "Order Statistics", Sections 2.1 and 6.8 (concomitants);
    Gao et al. 2022, arXiv 2210.10760 (best-of-n gold vs proxy curves).

    Args:
      proxy: proxy rewards of M base samples per prompt, [..., M].
      gold: their gold rewards, [..., M].
      ns: integers 1 ≤ n ≤ M, [K].

    Returns:
      BonGoldCurves with n, kl [K] and reward fields [..., K].
    """
    proxy, gold = jnp.broadcast_arrays(as_float(proxy), as_float(gold))
    proxy_curves = bon.empirical_bon_curves(proxy, ns)
    return BonGoldCurves(
        jnp.asarray(ns, proxy.dtype).reshape(-1),
        proxy_curves.kl,
        proxy_curves.reward,
        bon.empirical_bon_curves(proxy, ns, values=gold).reward,
        bon.empirical_bon_curves(gold, ns).reward,
        proxy_curves.kl,  # log n - (n-1)/n: the tie-free KL, the same for any reward
    )
