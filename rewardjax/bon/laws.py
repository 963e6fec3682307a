"""Exact best-of-n laws on a discrete base law: the law, its KL, expected reward, win rate, the KL
bound and the KL estimator (Beirami et al. 2024, arXiv 2401.01879; Stiennon et al. 2020,
arXiv 2009.01325).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float


class _Atoms(NamedTuple):
    """Per-outcome CDF quantities of a discrete law, in the outcomes' own order, shape [..., Y]."""

    probs: Array  # π(y), normalised
    log_cdf: Array  # log F(y), 0 for the top reward group
    log_below: Array  # log t(y) = log F⁻(y)/F(y); -1 (a placeholder) where F⁻(y) = 0
    has_below: Array  # F⁻(y) > 0
    positive: Array  # π(y) > 0


def _atoms_1d(probs: Array, rewards: Array) -> _Atoms:
    """CDF quantities of one law [Y]: O(Y log Y) by a sort, a tie-group sum and cumulative sums."""
    size = probs.shape[-1]
    probs = probs / jnp.sum(probs)  # so F and 1 - P[r > r(y)] agree, also off the simplex
    order = jnp.argsort(rewards)
    sorted_r, sorted_p = rewards[order], probs[order]
    start = jnp.searchsorted(sorted_r, sorted_r, side="left")
    end = jnp.searchsorted(sorted_r, sorted_r, side="right") - 1
    # Tie-group mass summed directly, not as a difference of cumulative sums near 1.
    group_id = jnp.cumsum(jnp.concatenate([jnp.zeros(1, jnp.int32), sorted_r[1:] != sorted_r[:-1]]))
    group_mass = jax.ops.segment_sum(sorted_p, group_id, num_segments=size)[group_id]
    cum = jnp.cumsum(sorted_p)
    cdf = cum[end]
    below = jnp.concatenate([jnp.zeros(1, cum.dtype), cum[:-1]])[start]
    # Survival P[r > r(y)] from the top, so log F is accurate where F ≈ 1 (what large n sees).
    tail = jnp.cumsum(sorted_p[::-1])[::-1]
    above = jnp.concatenate([tail[1:], jnp.zeros(1, tail.dtype)])[end]
    low = cdf < 0.5
    log_cdf = jnp.where(
        low, jnp.log(jnp.where(low, cdf, 1.0)), jnp.log1p(-jnp.where(low, 0.0, above))
    )
    log_cdf = jnp.where((above > 0) & (cdf > 0), log_cdf, 0.0)  # 0 at the top; π = 0 below
    # log t = log(1 - g/F): log1p when the group is a small part of F, else log F⁻ - log F.
    frac = group_mass / jnp.exp(log_cdf)
    has_below = below > 0
    small = frac < 0.5
    log_below = jnp.where(
        small,
        jnp.log1p(-jnp.where(small, frac, 0.0)),
        jnp.log(jnp.where(has_below, below, 1.0)) - log_cdf,
    )
    has_below = has_below & (log_below < 0)
    log_below = jnp.where(has_below, log_below, -1.0)
    inverse = jnp.argsort(order)
    return _Atoms(probs, log_cdf[inverse], log_below[inverse], has_below[inverse], probs > 0)


def _atoms(probs: Array, rewards: Array) -> _Atoms:
    probs, rewards = jnp.broadcast_arrays(jnp.asarray(probs), jnp.asarray(rewards))
    if probs.ndim == 0:
        raise ValueError("probs and rewards need a last axis of outcomes (shape [..., Y]).")
    dtype = jnp.promote_types(probs.dtype, jnp.float32)
    flat = [x.astype(dtype).reshape(-1, probs.shape[-1]) for x in (probs, rewards)]
    atoms = jax.vmap(_atoms_1d)(*flat)
    return _Atoms(*(x.reshape(probs.shape) for x in atoms))


def _expand_n(n: ArrayLike, atoms: _Atoms) -> Array:
    return jnp.asarray(n, atoms.log_cdf.dtype)[..., None]


def _log_ratio(atoms: _Atoms, n: Array) -> Array:
    """log π_n(y)/π(y) = (n-1) log F + log(1 - t^n) - log(1 - t), t = F⁻/F (stable for large n)."""
    head = jnp.where(atoms.log_cdf == 0, 0.0, (n - 1) * atoms.log_cdf)
    top = jnp.where(atoms.has_below, jnp.log(-jnp.expm1(n * atoms.log_below)), 0.0)
    bottom = jnp.where(atoms.has_below, jnp.log(-jnp.expm1(atoms.log_below)), 0.0)
    return head + top - bottom


def _bon_law(atoms: _Atoms, n: Array) -> Array:
    # Per-outcome factors first, then one fused pass over the n axis: two exps per element.
    scale = jnp.where(atoms.has_below, -jnp.expm1(atoms.log_below), 1.0)
    weight = jnp.where(atoms.positive, atoms.probs / scale, 0.0)
    head = jnp.exp(jnp.where(atoms.log_cdf == 0, 0.0, (n - 1) * atoms.log_cdf))
    top = jnp.where(atoms.has_below, -jnp.expm1(n * atoms.log_below), 1.0)
    return weight * head * top


@jax.jit
def bon_distribution(
    probs: Float[ArrayLike, "*batch Y"],
    rewards: Float[ArrayLike, "*batch Y"],
    n: Float[ArrayLike, "*b"],
) -> Float[Array, "*b Y"]:
    """The exact law of best-of-n with uniform tie-breaking.

    π_n(y) = π(y) · (F(y)^n - F⁻(y)^n) / (F(y) - F⁻(y)),  F(y) = P[r ≤ r(y)], F⁻(y) = P[r < r(y)],

    evaluated as π(y) F^{n-1} (1 - t^n)/(1 - t) with t = F⁻/F (expm1/log1p, log F from the upper
    tail near 1), so it is accurate for tiny atoms and for n up to 1e30. Any real n ≥ 1 works.
    Cost: one O(Y log Y) sort per problem, then O(Y) per value of n.

    Reference: Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
    arXiv 2401.01879 (Lemma 1).

    Args:
      probs: base law π, shape [..., Y] (normalised here; zeros allowed).
      rewards: r(y), shape [..., Y]; ties allowed.
      n: number of samples (real, ≥ 1), broadcastable against the batch shape [...]; e.g.
        probs [Y] with n [K] gives [K, Y], and probs [B, Y] with n [K, 1] gives [K, B, Y].

    Returns:
      π_n, shape broadcast(n.shape, [...]) + [Y].
    """
    atoms = _atoms(probs, rewards)
    return _bon_law(atoms, _expand_n(n, atoms))


@jax.jit
def bon_kl(
    probs: Float[ArrayLike, "*batch Y"],
    rewards: Float[ArrayLike, "*batch Y"],
    n: Float[ArrayLike, "*b"],
) -> Float[Array, "*b"]:
    """Exact KL(π_n ‖ π) of best-of-n from the base law.

    KL = Σ_y π_n(y) log(π_n(y)/π(y)), with π_n/π = F^{n-1}(1 - t^n)/(1 - t) in log space.
    It never exceeds log n - (n-1)/n (`bon_kl_bound`), with equality only in the continuous limit;
    ties and a heavy top atom make the bound loose (the KL stays below log 1/π(top)).

    Reference: Beirami et al. 2024, arXiv 2401.01879 (Theorem 1).

    Args:
      probs: base law π, shape [..., Y] (normalised here; zeros allowed).
      rewards: r(y), shape [..., Y].
      n: real n ≥ 1, broadcastable against the batch shape.

    Returns:
      KL in nats, shape broadcast(n.shape, [...]).
    """
    atoms = _atoms(probs, rewards)
    n = _expand_n(n, atoms)
    law = _bon_law(atoms, n)
    return jnp.sum(jnp.where(law > 0, law * _log_ratio(atoms, n), 0.0), axis=-1)


@jax.jit
def bon_kl_bound(n: Float[ArrayLike, "*b"]) -> Float[Array, "*b"]:
    """The analytic best-of-n KL, log n - (n-1)/n: exact for a continuous reward, else a bound.

    Reference: Stiennon et al. 2020, arXiv 2009.01325; shown to be an upper bound by Beirami et al.
    2024, arXiv 2401.01879.
    """
    n = jnp.asarray(n, jnp.promote_types(jnp.asarray(n).dtype, jnp.float32))
    return jnp.log(n) - (n - 1) / n


@jax.jit
def bon_expected_reward(
    probs: Float[ArrayLike, "*batch Y"],
    rewards: Float[ArrayLike, "*batch Y"],
    n: Float[ArrayLike, "*b"],
) -> Float[Array, "*b"]:
    """E_{π_n}[r] = Σ_y π_n(y) r(y), the expected reward of best-of-n (exact).

    Reference: Beirami et al. 2024, arXiv 2401.01879.

    Args:
      probs: base law π, shape [..., Y] (normalised here; zeros allowed).
      rewards: r(y), shape [..., Y].
      n: real n ≥ 1, broadcastable against the batch shape.

    Returns:
      shape broadcast(n.shape, [...]).
    """
    law = bon_distribution(probs, rewards, n)
    return jnp.sum(jnp.where(law > 0, law * jnp.asarray(rewards, law.dtype), 0.0), axis=-1)


@jax.jit
def bon_win_rate(
    probs: Float[ArrayLike, "*batch Y"],
    rewards: Float[ArrayLike, "*batch Y"],
    n: Float[ArrayLike, "*b"],
) -> Float[Array, "*b"]:
    """P[r(Y_n) > r(Y)] + ½ P[r(Y_n) = r(Y)], best-of-n against one base sample (ties count half).

    = Σ_y π_n(y) (F(y) + F⁻(y))/2 ≤ n/(n+1), with equality in the continuous limit.

    Reference: Beirami et al. 2024, arXiv 2401.01879 (Theorem 4).

    Args:
      probs: base law π, shape [..., Y] (normalised here; zeros allowed).
      rewards: r(y), shape [..., Y].
      n: real n ≥ 1, broadcastable against the batch shape.

    Returns:
      shape broadcast(n.shape, [...]).
    """
    atoms = _atoms(probs, rewards)
    law = _bon_law(atoms, _expand_n(n, atoms))
    below = jnp.where(atoms.has_below, jnp.exp(atoms.log_below), 0.0)
    mid_cdf = jnp.exp(atoms.log_cdf) * (1 + below) / 2
    return jnp.sum(law * mid_cdf, axis=-1)


@jax.jit
def bon_kl_estimate(
    selected_prob: Float[ArrayLike, "*batch"], n: Float[ArrayLike, "*batch"]
) -> Float[Array, "*batch"]:
    """The KL estimator of Beirami et al. from ε = π(y), the base probability of the chosen output.

    KL̂_n(ε) = (1-ε)^n (log n + (n-1) log(1-ε) - (n-1)/n) + (1 - (1-ε)^n) log((1 - (1-ε)^n)/ε),

    the exact best-of-n KL of a base law that is continuous except for one top atom of mass ε.
    ε → 0 recovers log n - (n-1)/n; ε = 1 gives 0. Average it over best-of-n outputs.

    Reference: Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
    arXiv 2401.01879 (Section 4).

    Args:
      selected_prob: ε ∈ (0, 1], shape [...].
      n: real n ≥ 1, broadcastable against selected_prob.

    Returns:
      KL estimate in nats, shape broadcast([...]).
    """
    eps = jnp.asarray(selected_prob, jnp.promote_types(jnp.asarray(selected_prob).dtype, "f4"))
    n = jnp.asarray(n, eps.dtype)
    inside = eps < 1
    log_rest = jnp.log1p(-jnp.where(inside, eps, 0.0))  # log(1-ε)
    stay = jnp.exp(n * log_rest)  # (1-ε)^n: no sample hits the atom
    hit = -jnp.expm1(n * log_rest)
    smooth = jnp.log(n) + (n - 1) * log_rest - (n - 1) / n
    atom = jnp.log(jnp.where(inside, hit, 1.0)) - jnp.log(eps)
    return jnp.where(inside, stay * smooth + hit * atom, 0.0)
