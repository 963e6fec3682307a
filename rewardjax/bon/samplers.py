"""Best-of-n samplers and rewards: best-of-n and soft best-of-n selection (Verdun et al. 2025,
arXiv 2505.03156), the exact soft best-of-n law, and the BOND quantile reward (arXiv 2407.14622).
"""

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int, PRNGKeyArray


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
