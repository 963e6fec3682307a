"""Best-of-n curves from reward samples of the base policy: the unbiased order-statistics estimator
(David & Nagaraja 2003, "Order Statistics"; Nakano et al. 2021, arXiv 2112.09332) and concomitants.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from rewardjax.bon.laws import bon_kl_bound


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
