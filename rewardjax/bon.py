"""Best-of-n: exact laws on discrete outcomes, samplers, and estimators from reward samples.

On a discrete base law π over Y outcomes with rewards r (ties allowed), F(y) = P[r ≤ r(y)] and
F⁻(y) = P[r < r(y)]. Best-of-n draws n outcomes iid from π and keeps one of highest reward (ties
broken uniformly), so P[best reward = r(y)] = F(y)^n - F⁻(y)^n, shared by the tied outcomes in
proportion to π. All functions are pure, jittable and vectorised: n broadcasts against the batch
shape of `probs`, so one call gives the laws for many n and many problems at once.

Papers:
- Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy", arXiv 2401.01879
  (exact law with ties, KL ≤ log n - (n-1)/n, win rate ≤ n/(n+1), the KL estimator).
- Stiennon et al. 2020, "Learning to summarize from human feedback", arXiv 2009.01325
  (the log n - (n-1)/n formula).
- Verdun et al. 2025, "Soft Best-of-n Sampling for Model Alignment", arXiv 2505.03156.
- Sessa et al. 2024, "BOND: Aligning LLMs with Best-of-N Distillation", arXiv 2407.14622.
- David & Nagaraja 2003, "Order Statistics" (the unbiased estimator of E[max of n]).
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray

__all__ = [
    "BonCurves",
    "best_of_n",
    "bon_distribution",
    "bon_expected_reward",
    "bon_kl",
    "bon_kl_bound",
    "bon_kl_estimate",
    "bon_win_rate",
    "bond_reward",
    "empirical_bon_curves",
    "soft_best_of_n",
    "soft_bon_distribution",
]


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


class BonCurves(NamedTuple):
    """Best-of-n curves from reward samples: one value per n (batch shape + [K])."""

    reward: Array  # unbiased estimate of E[max of n iid rewards] (or of `values` at the best)
    kl: Array  # log n - (n-1)/n: the exact KL for a tie-free (continuous) reward, else a bound


def _sort_last(x: Array) -> Array:
    """Sort along the last axis; float32 goes through order-preserving int32 keys.

    XLA's CPU sort is ~3× faster on int32 than on float32 keys. The key flips the magnitude bits
    of negative floats, so integer order is float order (-0.0 sorts just before +0.0).
    """
    if x.dtype != jnp.float32:
        return jnp.sort(x, axis=-1)
    flip = jnp.int32(0x7FFFFFFF)
    bits = jax.lax.bitcast_convert_type(x, jnp.int32)
    keys = jnp.sort(jnp.where(bits < 0, bits ^ flip, bits), axis=-1)
    return jax.lax.bitcast_convert_type(jnp.where(keys < 0, keys ^ flip, keys), jnp.float32)


def _window_expectation(r_desc: Array, ns: np.ndarray, q_table: np.ndarray) -> Array:
    """Σ_d w_n(d) r_(M-d) over the top `window` order statistics for each n in ns."""
    size = q_table.shape[-1] // 2  # the table is zero-padded to 2M entries
    window = r_desc.shape[-1]
    # The weights depend only on constants; the barrier stops XLA from folding them at compile
    # time (minutes, and gigabytes of constants) — computing them at run time is cheap.
    table, n = jax.lax.optimization_barrier((jnp.asarray(q_table), jnp.asarray(ns, jnp.int32)))
    n = n[:, None]
    d = jnp.arange(window)
    valid = n - 1 + d <= size - 1
    # log w_n(d) = log(n/M) + Q(n-1+d) - Q(n-1) - Q(d), each Q split into float32 hi + lo parts;
    # the hi parts are subtracted in the order that keeps each difference exact (Sterbenz).
    rows = jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(table, s, window, axis=1))(n[:, 0] - 1)
    (a_hi, a_lo), (b_hi, b_lo) = rows.transpose(1, 0, 2), table[:, n - 1]
    c_hi, c_lo = table[:, :window]
    hi = jnp.where(d >= n - 1, (a_hi - c_hi) - b_hi, (a_hi - b_hi) - c_hi)
    lo = (a_lo - b_lo) - c_lo + jnp.log(n / size)
    weights = jnp.where(valid, jnp.exp(hi + lo), 0.0)
    return jnp.einsum("...l,kl->...k", r_desc, weights.astype(r_desc.dtype))


def empirical_bon_curves(
    rewards: Float[ArrayLike, "*batch N"],
    ns: Int[ArrayLike, " K"],
    *,
    values: Float[ArrayLike, "*batch N"] | None = None,
    tail_mass: float = 1e-7,
) -> BonCurves:
    """Expected best-of-n reward for many n from M reward samples of the base policy, no resampling.

    With r_(1) ≤ … ≤ r_(M) the sorted samples, the mean of max over all C(M, n) subsets,

        Ê_n = Σ_{i=n}^{M} C(i-1, n-1) / C(M, n) · r_(i),

    is an unbiased estimator of E[max of n iid rewards] (a U-statistic). The weights are
    w_n(i) = (n/M) Π_{j=1}^{n-1} (i-j)/(M-j); their logs come from a float64 table of
    Q(x) = Σ_{k=M-x}^{M-1} log k (split into float32 hi + lo) so they stay accurate for M = 10⁶,
    where float32 gammaln differences would be off by O(1). Weights of the order statistics below
    the top ⌈M log(1/tail_mass)/n⌉ sum to less than tail_mass and are dropped; n values are grouped
    by window size so the work is O(M log(1/tail_mass) log K), not O(M K).

    With `values` (e.g. the gold reward of each sample, `rewards` being the proxy), the same
    weights average the concomitants instead: Σ_i w_n(i) v̄_[i], with v̄_[i] the value of the sample
    of i-th smallest reward, averaged within reward ties (best-of-n breaks ties uniformly), an
    unbiased estimate of E[value of the best-of-n sample] (the gold-vs-proxy curves of Gao et al.).

    The KL returned is the analytic log n - (n-1)/n (`bon_kl_bound`): exact when the reward has no
    ties (a continuous reward model), an upper bound otherwise; use `bon_kl` on a discrete law.

    Jittable in `rewards`; `ns` must be concrete (it fixes the static window shapes).

    Reference: David & Nagaraja 2003, "Order Statistics" (Section 2.1); used for best-of-n curves
    by Nakano et al. 2021, "WebGPT", arXiv 2112.09332; concomitants: David & Nagaraja 2003,
    Section 6.8; Gao et al. 2022, "Scaling Laws for Reward Model Overoptimization",
    arXiv 2210.10760.

    Args:
      rewards: reward samples of the base policy, shape [..., M] (M = N samples per prompt).
      ns: distinct or repeated integers 1 ≤ n ≤ M, shape [K].
      values: optional per-sample values to read at the best-of-n sample, shape [..., M].
      tail_mass: total weight that may be dropped from the bottom order statistics.

    Returns:
      BonCurves(reward [..., K], kl [K]).
    """
    try:
        ns_np = np.asarray(ns, dtype=np.int64).reshape(-1)
    except jax.errors.TracerArrayConversionError as err:
        raise TypeError("empirical_bon_curves: `ns` must be concrete (not traced).") from err
    rewards = jnp.asarray(rewards)
    size = rewards.shape[-1]
    if ns_np.size == 0 or ns_np.min() < 1 or ns_np.max() > size:
        raise ValueError(f"empirical_bon_curves: ns must lie in [1, M={size}], got {ns_np}.")
    return _empirical_bon_curves(rewards, values, tuple(ns_np.tolist()), float(tail_mass))


def _concomitants_desc(rewards: Array, values: Array) -> Array:
    """`values` ordered by descending `rewards`, each replaced by the mean over its reward tie."""
    order = jnp.argsort(rewards, axis=-1, descending=True)
    r = jnp.take_along_axis(rewards, order, axis=-1)
    v = jnp.take_along_axis(values, order, axis=-1)
    size = r.shape[-1]
    starts = jnp.concatenate([jnp.ones_like(r[..., :1], bool), r[..., 1:] != r[..., :-1]], -1)
    group = jnp.cumsum(starts, axis=-1) - 1

    def tie_means(v_row, group_row):
        total = jax.ops.segment_sum(v_row, group_row, num_segments=size)
        count = jax.ops.segment_sum(jnp.ones_like(v_row), group_row, num_segments=size)
        return (total / jnp.maximum(count, 1.0))[group_row]

    flat = jax.vmap(tie_means)(v.reshape(-1, size), group.reshape(-1, size))
    return flat.reshape(v.shape)


@functools.partial(jax.jit, static_argnames=("ns", "tail_mass"))
def _empirical_bon_curves(
    rewards: Array, values: Array | None, ns: tuple[int, ...], tail_mass: float
) -> BonCurves:
    rewards = rewards.astype(jnp.promote_types(rewards.dtype, jnp.float32))
    ns_np = np.asarray(ns)
    size = rewards.shape[-1]
    q = np.concatenate([[0.0], np.cumsum(np.log(np.arange(size - 1, 0, -1, dtype=np.float64)))])
    q = np.concatenate([q, np.zeros(size)])  # padding: slices past the end are masked
    q_hi = q.astype(np.float32)
    q_table = np.stack([q_hi, (q - q_hi).astype(np.float32)])  # [2, 2M]
    if values is None:
        r_desc = jnp.flip(_sort_last(rewards), axis=-1)
    else:
        values = jnp.broadcast_to(jnp.asarray(values, rewards.dtype), rewards.shape)
        r_desc = _concomitants_desc(rewards, values)
    # The weights sum to one: centring keeps float32 accumulation error relative to the spread of
    # the samples, not to their offset.
    centre = jnp.mean(r_desc, axis=-1, keepdims=True)
    r_desc = r_desc - centre
    needed = np.ceil(size * np.log(1 / tail_mass) / ns_np) + 1
    # Windows rounded up to powers of √2 (few distinct static shapes, ≤ 41% extra work).
    windows = np.minimum(size, np.ceil(np.sqrt(2) ** np.ceil(2 * np.log2(needed)))).astype(int)
    parts, positions = [], []
    for window in np.unique(windows):
        (pos,) = np.nonzero(windows == window)
        parts.append(_window_expectation(r_desc[..., :window], ns_np[pos], q_table))
        positions.append(pos)
    reward = jnp.concatenate(parts, axis=-1)[..., np.argsort(np.concatenate(positions))] + centre
    return BonCurves(reward, bon_kl_bound(jnp.asarray(ns_np, rewards.dtype)))


@jax.jit
def best_of_n(key: PRNGKeyArray, rewards: Float[ArrayLike, "*batch N"]) -> Int[Array, "*batch"]:
    """Index of a highest reward along the last axis, ties broken uniformly at random.

    Reference: Beirami et al. 2024, arXiv 2401.01879 (the best-of-n policy).

    Args:
      key: PRNG key.
      rewards: rewards of n candidates, shape [..., N].

    Returns:
      the chosen index in [0, N), shape [...].
    """
    rewards = jnp.asarray(rewards)
    is_max = rewards == jnp.max(rewards, axis=-1, keepdims=True)
    return jax.random.categorical(key, jnp.where(is_max, 0.0, -jnp.inf), axis=-1)


@jax.jit
def soft_best_of_n(
    key: PRNGKeyArray,
    rewards: Float[ArrayLike, "*batch N"],
    temperature: Float[ArrayLike, "*batch"],
) -> Int[Array, "*batch"]:
    """Soft best-of-n: pick candidate i with probability softmax(r / λ)_i along the last axis.

    λ → 0 recovers best-of-n, λ → ∞ a uniform pick (the base policy); as n → ∞ the output law
    tends to the tilted policy π e^{r/λ} / Z.

    Reference: Verdun et al. 2025, "Soft Best-of-n Sampling for Model Alignment", arXiv 2505.03156.

    Args:
      key: PRNG key.
      rewards: rewards of n candidates, shape [..., N].
      temperature: λ > 0, broadcastable against the batch shape [...].

    Returns:
      the chosen index in [0, N), shape [...].
    """
    rewards = jnp.asarray(rewards)
    rewards = rewards.astype(jnp.promote_types(rewards.dtype, jnp.float32))
    logits = rewards / jnp.asarray(temperature, rewards.dtype)[..., None]
    return jax.random.categorical(key, logits, axis=-1)


def _compress_gaps(log_w: Array, max_gap: float) -> Array:
    """Cap the gaps between consecutive sorted log-weights at max_gap (keeps the order)."""
    order = jnp.argsort(log_w, axis=-1)
    sorted_w = jnp.take_along_axis(log_w, order, axis=-1)
    gaps = jnp.minimum(jnp.diff(sorted_w, axis=-1), max_gap)
    down = jnp.flip(jnp.cumsum(jnp.flip(gaps, -1), axis=-1), -1)
    capped = sorted_w[..., -1:] - jnp.concatenate([down, jnp.zeros_like(down[..., :1])], -1)
    return jnp.take_along_axis(capped, jnp.argsort(order, axis=-1), axis=-1)


@functools.partial(jax.jit, static_argnames=("num_nodes",))
def soft_bon_distribution(
    probs: Float[ArrayLike, "*batch Y"],
    rewards: Float[ArrayLike, "*batch Y"],
    n: Float[ArrayLike, "*b"],
    temperature: Float[ArrayLike, "*b"],
    *,
    num_nodes: int = 4096,
) -> Float[Array, "*b Y"]:
    """The exact law of soft best-of-n on a discrete base law.

    Draw n outcomes iid from π and keep X_i with probability w(X_i)/Σ_j w(X_j), w = e^{r/λ}. Then

        P[y] = n π(y) w(y) E[1/(w(y) + S)],  S = Σ_{j<n} w(X_j),
             = n π(y) w(y) ∫_0^∞ e^{-t w(y)} M(t)^{n-1} dt,  M(t) = Σ_z π(z) e^{-t w(z)},

    using 1/a = ∫_0^∞ e^{-ta} dt and independence. The integral is taken on t = e^u with the
    trapezoid rule on `num_nodes` points; the integrand is entire in u and decays (double)
    exponentially at both ends, so the error is ~exp(-2π/h) for step h — at float32 precision
    while h ≲ 0.25, i.e. (r_max - r_min)/λ + log n + 30 ≲ num_nodes/4. Gaps between sorted
    log-weights are capped at 40 (a ratio e^{-40}, far below float32 precision) so tiny λ stays
    cheap. Any real n ≥ 1 works; n = 1 gives π, λ → 0 best-of-n, n → ∞ the tilt π e^{r/λ}/Z.

    Reference: Verdun et al. 2025, "Soft Best-of-n Sampling for Model Alignment", arXiv 2505.03156.

    Args:
      probs: base law π, shape [..., Y], summing to 1.
      rewards: r(y), shape [..., Y].
      n: real n ≥ 1, broadcastable against the batch shape [...].
      temperature: λ > 0, broadcastable against the batch shape [...].
      num_nodes: quadrature points (static).

    Returns:
      the law, shape broadcast(n, temperature, [...]) + [Y].
    """
    probs, rewards = jnp.broadcast_arrays(jnp.asarray(probs), jnp.asarray(rewards))
    dtype = jnp.promote_types(probs.dtype, jnp.float32)
    probs, rewards = probs.astype(dtype), rewards.astype(dtype)
    n = jnp.asarray(n, dtype)[..., None]
    temperature = jnp.asarray(temperature, dtype)[..., None]
    positive = probs > 0
    log_w = rewards / temperature
    log_w = log_w - jnp.max(jnp.where(positive, log_w, -jnp.inf), axis=-1, keepdims=True)
    log_w = _compress_gaps(jnp.where(positive, log_w, 0.0), 40.0)
    log_w = log_w - jnp.max(jnp.where(positive, log_w, -jnp.inf), axis=-1, keepdims=True)
    log_p = jnp.where(positive, jnp.log(jnp.where(positive, probs, 1.0)), -jnp.inf)
    # u = log t on [-log n - 30, -min log w + 5]: the integrand is < e^-30 of its mass outside.
    lo = -jnp.log(n) - 30.0
    hi = -jnp.min(jnp.where(positive, log_w, 0.0), axis=-1, keepdims=True) + 5.0
    step = (hi - lo) / num_nodes
    u = lo + step * (jnp.arange(num_nodes, dtype=dtype) + 0.5)  # [..., Q]
    decay = jnp.exp(u[..., :, None] + log_w[..., None, :])  # t w(z), [..., Q, Y]
    # log M(t), [..., Q]: log1p(-Σ π (1 - e^{-tw})) while M ≈ 1, where (n-1) log M needs the
    # relative precision of 1 - M; logsumexp once M is small.
    drop = jnp.sum(
        jnp.where(positive[..., None, :], -probs[..., None, :] * jnp.expm1(-decay), 0.0), -1
    )
    near_one = drop < 0.5
    log_m = jnp.where(
        near_one,
        jnp.log1p(-jnp.where(near_one, drop, 0.0)),
        jax.nn.logsumexp(log_p[..., None, :] - decay, axis=-1),
    )
    log_integrand = u[..., :, None] - decay + (n[..., None] - 1) * log_m[..., :, None]
    log_integral = jnp.log(step) + jax.nn.logsumexp(log_integrand, axis=-2)  # [..., Y]
    law = jnp.exp(jnp.log(n) + log_p + log_w + log_integral)
    return jnp.where(positive, law, 0.0)


@jax.jit
def bond_reward(
    rewards: Float[ArrayLike, "*batch N"], reference_samples: Float[ArrayLike, "*batch M"]
) -> Float[Array, "*batch N"]:
    """The BOND quantile reward log F̂(r): log of the fraction of reference rewards ≤ r.

    r_BOND(y) = log P_{y'∼π_ref}[r(y') ≤ r(y)], estimated with M reference samples; it is
    -inf where r is below every reference sample (clip or add a floor before training on it).
    Best-of-n has log-density log n + (n-1) log F relative to the base, which makes this the
    reward whose KL-regularised optimum is best-of-n.

    Reference: Sessa et al. 2024, "BOND: Aligning LLMs with Best-of-N Distillation",
    arXiv 2407.14622.

    Args:
      rewards: rewards of the policy samples, shape [..., N].
      reference_samples: rewards of reference-policy samples for the same prompts, [..., M].

    Returns:
      log F̂(r), shape [..., N].
    """
    rewards = jnp.asarray(rewards)
    reference = jnp.asarray(reference_samples)
    batch = jnp.broadcast_shapes(rewards.shape[:-1], reference.shape[:-1])
    rewards = jnp.broadcast_to(rewards, (*batch, rewards.shape[-1]))
    reference = jnp.broadcast_to(reference, (*batch, reference.shape[-1]))
    dtype = jnp.promote_types(rewards.dtype, jnp.float32)

    def one(r, ref):
        return jnp.searchsorted(jnp.sort(ref), r, side="right")

    count = jax.vmap(one)(
        rewards.reshape(-1, rewards.shape[-1]), reference.reshape(-1, reference.shape[-1])
    ).reshape(rewards.shape)
    return jnp.log(count.astype(dtype)) - jnp.log(jnp.asarray(reference.shape[-1], dtype))
