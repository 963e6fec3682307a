"""Exact KL-regularised optimum and best-of-n laws for sequences from a Markov-chain base model.

The world (see the interface notes): a response y_1..y_T follows a prompt token y_0 ~ `start_probs`
[V]; the base model is p(y_t = b | y_{t-1} = a) = `transition`[a, b] ([V, V], row-stochastic); the
gold reward is r(y) = Σ_{t=1..T} `bigram_reward`[y_{t-1}, y_t] ([V, V]; a token reward r(b) is the
case bigram_reward[a, b] = r(b), a memoryless base model the case of equal rows of `transition`).
Policies are per prompt token: quantities are averaged over y_0 ~ start_probs.

- The KL-regularised optimum π*(y | y_0) ∝ p(y | y_0) e^{r(y)/β} is a time-dependent Markov policy
  π_t(b | a) = p(b | a) e^{r(a, b)/β + V_t(b) - V_{t-1}(a)} with the soft values of the backward
  soft-Bellman recursion V_T = 0, V_{t-1}(a) = log Σ_b p(b | a) e^{r(a, b)/β + V_t(b)}.
- KL and expected reward of any Markov policy follow exactly from the forward recursion of the
  state marginals and the chain rule KL = Σ_t E_{y_{t-1}}[KL(π_t(· | y_{t-1}) ‖ p(· | y_{t-1}))].
- The law of the sequence reward comes from dynamic programming over (last token, reward so far),
  which is exact when rewards lie on a lattice (see `markov_reward_law`); best-of-n picks by
  sequence reward, so its density ratio to p depends on y only through r(y), and its exact
  statistics follow from `rewardjax.bon` applied to that law.

Papers:
- Levine 2018, "Reinforcement Learning and Control as Probabilistic Inference: Tutorial and
  Review", arXiv 1805.00909 (soft Bellman recursion).
- Korbak, Perez, Buckley 2022, "RL with KL penalties is better viewed as Bayesian inference",
  arXiv 2205.11275.
- Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
  arXiv 2401.01879.
"""

import functools

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float

from rewardjax import bon
from rewardjax.theory._lattice import check_levels, level_sum_laws
from rewardjax.theory._support import support_log_probs

__all__ = [
    "markov_bon_kl_reward",
    "markov_kl_reward_frontier",
    "markov_optimal_policy",
    "markov_policy_kl_reward",
    "markov_reward_law",
]


def _optimal_policy(transition, bigram_reward, beta, *, length):
    log_p = support_log_probs(transition)
    scaled = jnp.where(transition > 0, bigram_reward / beta, 0.0)

    def backward(value_next, _):
        logits = log_p + scaled + value_next[None, :]
        value = jax.nn.logsumexp(logits, axis=-1)
        # Soft values are defined up to a constant per step; re-centre to keep them bounded.
        return value - jnp.max(value), jnp.exp(logits - value[:, None])

    _, policy = jax.lax.scan(backward, jnp.zeros_like(log_p[0]), None, length=length, reverse=True)
    return policy


def _policy_kl_reward(start_probs, policy, transition, bigram_reward):
    log_p = support_log_probs(transition)

    def forward(marginal, pi):
        positive = pi > 0
        log_ratio = jnp.where(positive, jnp.log(jnp.where(positive, pi, 1.0)) - log_p, 0.0)
        kl = marginal @ jnp.sum(pi * log_ratio, axis=-1)
        reward = marginal @ jnp.sum(pi * jnp.where(positive, bigram_reward, 0.0), axis=-1)
        return marginal @ pi, (kl, reward)

    _, (kl, reward) = jax.lax.scan(forward, start_probs, policy)
    return jnp.sum(kl), jnp.sum(reward)


@functools.partial(jax.jit, static_argnames="length")
def markov_optimal_policy(
    transition: Float[Array, "*batch V V"],
    bigram_reward: Float[Array, "*batch V V"],
    beta: Float[ArrayLike, "*batch"],
    *,
    length: int,
) -> Float[Array, "*batch T V V"]:
    """The exact KL-regularised optimal policy by the backward soft-Bellman recursion.

    π* = argmax_π E_π[r(y)] - β KL(π(· | y_0) ‖ p(· | y_0)) for every prompt token y_0, i.e.
    π*(y | y_0) ∝ p(y | y_0) e^{r(y)/β}. With V_T ≡ 0 and
    V_{t-1}(a) = log Σ_b p(b | a) e^{r(a, b)/β + V_t(b)}, it is the time-dependent Markov policy
    π_t(b | a) = p(b | a) e^{r(a, b)/β + V_t(b) - V_{t-1}(a)}.

    Reference: Levine 2018, "Reinforcement Learning and Control as Probabilistic Inference",
    arXiv 1805.00909; Korbak, Perez, Buckley 2022, arXiv 2205.11275.

    Args:
      transition: base model p(b | a), shape [..., V, V], rows summing to 1.
      bigram_reward: r(a, b), shape [..., V, V].
      beta: β > 0, broadcastable with the batch shape [...].
      length: T, the number of response tokens (static).

    Returns:
      policy[t - 1, a, b] = π_t(y_t = b | y_{t-1} = a), shape [..., T, V, V].
    """
    fn = functools.partial(_optimal_policy, length=length)
    return jnp.vectorize(fn, signature="(v,v),(v,v),()->(t,v,v)")(transition, bigram_reward, beta)


@jax.jit
def markov_policy_kl_reward(
    start_probs: Float[Array, "*batch V"],
    policy: Float[Array, "*batch T V V"],
    transition: Float[Array, "*batch V V"],
    bigram_reward: Float[Array, "*batch V V"],
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """Exact KL to the base chain and expected reward of a time-dependent Markov policy.

    With state marginals m_0 = start_probs, m_t = m_{t-1} π_t:
    KL = Σ_t Σ_a m_{t-1}(a) KL(π_t(· | a) ‖ p(· | a)) (chain rule, averaged over y_0) and
    E[r] = Σ_t Σ_{a,b} m_{t-1}(a) π_t(b | a) r(a, b). KL is +∞ if π puts mass where p has none.

    Reference: Cover & Thomas, "Elements of Information Theory", chain rule for relative entropy.

    Args:
      start_probs: law of the prompt token y_0, shape [..., V].
      policy: π_t(b | a) as policy[t - 1, a, b], shape [..., T, V, V] (for a time-homogeneous
        policy pass `jnp.broadcast_to(pi, (T, V, V))`).
      transition: base model p(b | a), shape [..., V, V].
      bigram_reward: r(a, b), shape [..., V, V].

    Returns:
      (kl, expected_reward), each of the broadcast batch shape.
    """
    return jnp.vectorize(_policy_kl_reward, signature="(v),(t,v,v),(v,v),(v,v)->(),()")(
        start_probs, policy, transition, bigram_reward
    )


@functools.partial(jax.jit, static_argnames="length")
def markov_kl_reward_frontier(
    start_probs: Float[Array, "*batch V"],
    transition: Float[Array, "*batch V V"],
    bigram_reward: Float[Array, "*batch V V"],
    betas: Float[ArrayLike, "*batch"],
    *,
    length: int,
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """(KL, expected reward) of the optimal sequence policy for each β: the exact frontier.

    Composes `markov_optimal_policy` and `markov_policy_kl_reward`; as for a single step,
    dE[r]/dKL = β along the frontier.

    Reference: Korbak, Perez, Buckley 2022, arXiv 2205.11275.

    Args:
      start_probs: law of y_0, shape [..., V].
      transition: p(b | a), shape [..., V, V].
      bigram_reward: r(a, b), shape [..., V, V].
      betas: β > 0, broadcastable with the batch shape (e.g. [K] for one world).
      length: T (static).

    Returns:
      (kl, expected_reward), each of the broadcast batch shape.
    """

    def one(start, trans, reward, beta):
        policy = _optimal_policy(trans, reward, beta, length=length)
        return _policy_kl_reward(start, policy, trans, reward)

    return jnp.vectorize(one, signature="(v),(v,v),(v,v),()->(),()")(
        start_probs, transition, bigram_reward, betas
    )


@functools.partial(jax.jit, static_argnames=("length", "num_levels"))
def _markov_reward_law(transition, bigram_reward, *, length, num_levels):
    levels = jnp.clip(jnp.round(bigram_reward), 0, num_levels - 1).astype(jnp.int32)
    fn = lambda trans, lev: level_sum_laws(trans, lev, length=length, num_levels=num_levels)[-1]
    return jnp.vectorize(fn, signature="(v,v),(v,v)->(v,s)")(transition, levels)


def markov_reward_law(
    transition: Float[Array, "*batch V V"],
    bigram_reward: Float[ArrayLike, "*batch V V"],
    *,
    length: int,
    num_levels: int,
) -> Float[Array, "*batch V S"]:
    """Exact law of the sequence reward S = Σ_t r(y_{t-1}, y_t) under the base chain, per y_0.

    Discretisation: the bigram rewards must be integer levels in {0, ..., L - 1} (L = num_levels),
    so S takes the S = T(L - 1) + 1 values 0..T(L - 1) and the dynamic programme
    f_t(b, s) = Σ_a Σ_l f_{t-1}(a, s - l) p(b | a) 1[r(a, b) = l] is exact (no binning error).
    A lattice reward r = c + h·k maps to levels k, with S_r = T c + h S. Called eagerly with
    non-integer or out-of-range values it raises ValueError; under jit they are rounded and clipped.

    Reference: Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
    arXiv 2401.01879 (best-of-n acts on the reward law).

    Args:
      transition: p(b | a), shape [..., V, V].
      bigram_reward: integer levels r(a, b), shape [..., V, V].
      length: T (static).
      num_levels: L (static).

    Returns:
      law[..., x, s] = P(S = s | y_0 = x), shape [..., V, T(L - 1) + 1].
    """
    check_levels(bigram_reward, num_levels)
    return _markov_reward_law(transition, bigram_reward, length=length, num_levels=num_levels)


@functools.partial(jax.jit, static_argnames=("length", "num_levels"))
def _markov_bon_kl_reward(start_probs, transition, bigram_reward, n, *, length, num_levels):
    laws = _markov_reward_law(transition, bigram_reward, length=length, num_levels=num_levels)

    def one(start, law, n):
        values = jnp.arange(law.shape[-1], dtype=law.dtype)
        per_prompt = jax.vmap(
            lambda row: (bon.bon_kl(row, values, n), bon.bon_expected_reward(row, values, n))
        )(law)
        return tuple(jnp.sum(jnp.where(start > 0, start * x, 0.0)) for x in per_prompt)

    return jnp.vectorize(one, signature="(v),(v,s),()->(),()")(start_probs, laws, n)


def markov_bon_kl_reward(
    start_probs: Float[Array, "*batch V"],
    transition: Float[Array, "*batch V V"],
    bigram_reward: Float[ArrayLike, "*batch V V"],
    n: Float[ArrayLike, "*batch"],
    *,
    length: int,
    num_levels: int,
) -> tuple[Float[Array, "*batch"], Float[Array, "*batch"]]:
    """Exact KL(π_n ‖ p) and E_{π_n}[r] of best-of-n over whole sequences, averaged over y_0.

    Best-of-n draws n responses from p(· | y_0) and keeps one with the highest sequence reward
    (ties uniform), so π_n(y)/p(y) depends on y only through S = r(y): the KL over sequences
    equals the KL between the best-of-n and base laws of S, and both statistics follow from
    `rewardjax.bon.bon_kl` / `bon_expected_reward` on the exact law of `markov_reward_law`.
    Rewards are integer levels (see `markov_reward_law`); the expected reward is in level units.

    Reference: Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy",
    arXiv 2401.01879.

    Args:
      start_probs: law of y_0, shape [..., V].
      transition: p(b | a), shape [..., V, V].
      bigram_reward: integer levels r(a, b), shape [..., V, V].
      n: number of samples n ≥ 1 (float allowed), broadcastable with the batch shape.
      length: T (static).
      num_levels: L (static).

    Returns:
      (kl, expected_reward), each of the broadcast batch shape.
    """
    check_levels(bigram_reward, num_levels)
    return _markov_bon_kl_reward(
        start_probs, transition, bigram_reward, n, length=length, num_levels=num_levels
    )
