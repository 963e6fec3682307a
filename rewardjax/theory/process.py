"""Exact values of response prefixes on the Markov-chain world: the ground truth of process rewards.

The world is that of `rewardjax.theory.markov` (and `rewardjax.data.synthetic`): a prompt ends in
y_0, the response y_1..y_T follows a Markov policy π_t(y_t = b | y_{t-1} = a) (the base chain
`transition`[a, b] at every t, or any time-dependent policy such as the KL-optimal tilted one of
`markov_optimal_policy`), and the gold reward is additive over bigrams,
r(y) = Σ_{t=1..T} `bigram_reward`[y_{t-1}, y_t].

The value of a prefix y_{1..t} (what a process reward model is trained to predict, Math-Shepherd's
"expected correctness" with the reward in place of correctness) is

    V(y_{≤t}) = E_π[r(y) | y_{≤t}] = Σ_{s≤t} r(y_{s-1}, y_s) + W_t(y_t),

the reward already collected plus the reward-to-go W_t(a) = E_π[Σ_{s>t} r(y_{s-1}, y_s) | y_t = a],
which depends on the prefix only through its last token. W follows from the backward recursion
(policy evaluation, the expectation counterpart of the soft-Bellman recursion of `markov`)

    W_T ≡ 0,   W_{t-1}(a) = Σ_b π_t(b | a) (r(a, b) + W_t(b)).

`mc_prefix_values` gives Math-Shepherd's Monte-Carlo labels (the mean gold reward of k rollouts
continued from the prefix), whose error against the exact value is what a study of label noise
from finite rollouts measures.

Non-additive rewards: the synthetic task's optional pattern bonus (a bonus once the pattern occurs
in y_1..y_T) is not covered by the exact functions: `task_prefix_values` raises ValueError when the
bonus is active. The Monte-Carlo labels handle it (they only need whole-response rewards).

Papers:
- Wang et al. 2023, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human
  Annotations", arXiv 2312.08935 (Monte-Carlo step labels from k completions).
- Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050 (process supervision).
- Sutton & Barto 2018, "Reinforcement Learning: An Introduction", §4.1 (iterative policy
  evaluation; no arXiv id).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Int

__all__ = [
    "mc_prefix_values",
    "prefix_values",
    "task_prefix_values",
    "value_of_prefixes",
]


def _reward_to_go(policy, bigram_reward):
    """W [T+1, V] from a per-step policy [T, V, V] (rows summing to 1) and rewards [V, V]."""
    # A bigram the policy never takes contributes nothing, whatever its reward holds.
    step_reward = jnp.sum(jnp.where(policy > 0, policy * bigram_reward, 0.0), axis=-1)  # [T, V]

    def backward(w_next, inputs):
        pi, r = inputs
        w = r + pi @ w_next
        return w, w

    w_last = jnp.zeros(policy.shape[-1], policy.dtype)
    _, w = jax.lax.scan(backward, w_last, (policy, step_reward), reverse=True)
    return jnp.concatenate([w, w_last[None]], axis=0)


def _as_policy(transition, policy, length):
    if policy is None:
        shape = (*transition.shape[:-2], length, *transition.shape[-2:])
        return jnp.broadcast_to(transition[..., None, :, :], shape)
    if policy.shape[-3] != length:
        raise ValueError(
            f"policy has {policy.shape[-3]} steps (shape {policy.shape}) but length={length}; "
            "pass one [V, V] matrix per response token, policy[t - 1] = π_t"
        )
    return policy


@functools.partial(jax.jit, static_argnames="length")
def prefix_values(
    transition: Float[ArrayLike, "*batch V V"],
    bigram_reward: Float[ArrayLike, "*batch V V"],
    *,
    length: int,
    policy: Float[ArrayLike, "*batch T V V"] | None = None,
) -> Float[Array, "*batch T+1 V"]:
    """Exact reward-to-go table of every prefix length and last token, by backward recursion.

    W_T ≡ 0,   W_{t-1}(a) = Σ_b π_t(b | a) (r(a, b) + W_t(b)),   so
    W_t(a) = E_π[Σ_{s=t+1..T} r(y_{s-1}, y_s) | y_t = a]

    and the value of a prefix y_{1..t} is Σ_{s≤t} r(y_{s-1}, y_s) + W_t(y_t) (`value_of_prefixes`);
    W_0(y_0) is the expected reward of a whole response to a prompt ending in y_0.

    Reference: Sutton & Barto 2018, "Reinforcement Learning: An Introduction", §4.1 (policy
    evaluation; no arXiv id); the target of process reward models in Wang et al. 2023,
    "Math-Shepherd", arXiv 2312.08935.

    Args:
      transition: the base chain p(b | a), shape [..., V, V], rows summing to 1.
      bigram_reward: r(a, b), shape [..., V, V].
      length: T, the number of response tokens (static).
      policy: optional time-dependent Markov policy, policy[t - 1, a, b] = π_t(b | a), shape
        [..., T, V, V] (e.g. `markov_optimal_policy(...)`); None follows `transition` at every step.

    Returns:
      W with W[t, a] = W_t(a), shape [..., T + 1, V] (W[T] = 0).
    """
    transition = jnp.asarray(transition, jnp.result_type(float))
    bigram_reward = jnp.asarray(bigram_reward, transition.dtype)
    policy = None if policy is None else jnp.asarray(policy, transition.dtype)
    policy = _as_policy(transition, policy, length)
    return jnp.vectorize(_reward_to_go, signature="(t,v,v),(v,v)->(s,v)")(policy, bigram_reward)


def _collected(y0, prefixes, lengths, bigram_reward):
    """Σ_{s≤len} r(y_{s-1}, y_s) and the last token y_len, for padded prefixes [B, L]."""
    full = jnp.concatenate([y0[:, None], prefixes], axis=1)  # [B, L + 1]
    steps = jnp.arange(1, prefixes.shape[1] + 1)
    inside = steps[None, :] <= lengths[:, None]
    prev, nxt = full[:, :-1], full[:, 1:]
    # Padding beyond a prefix may hold any id; clip so the gather stays in range, then mask.
    v = bigram_reward.shape[-1]
    r = bigram_reward[jnp.clip(prev, 0, v - 1), jnp.clip(nxt, 0, v - 1)]
    collected = jnp.sum(jnp.where(inside, r, 0.0), axis=1)
    last = jnp.take_along_axis(full, lengths[:, None], axis=1)[:, 0]
    return collected, last


@jax.jit
def value_of_prefixes(
    y0: Int[ArrayLike, " B"],
    prefixes: Int[ArrayLike, "B L"],
    lengths: Int[ArrayLike, " B"],
    *,
    values: Float[ArrayLike, "T+1 V"],
    bigram_reward: Float[ArrayLike, "V V"],
) -> Float[Array, " B"]:
    """Exact value of each prefix: the reward collected so far plus the reward-to-go.

    V(y_{≤t}) = Σ_{s=1..t} r(y_{s-1}, y_s) + W_t(y_t),   t = lengths[b]  (t = 0: W_0(y_0))

    Reference: Wang et al. 2023, "Math-Shepherd", arXiv 2312.08935 (the value a step label
    estimates); W from `prefix_values`.

    Args:
      y0: the last prompt token of each example, shape [B] (vocabulary tokens, not model ids).
      prefixes: response tokens y_1..y_L, shape [B, L] with L ≤ T; entries at positions ≥ the
        prefix's length are padding and ignored (they may hold anything).
      lengths: t, the number of prefix tokens of each example, in [0, L], shape [B].
      values: W from `prefix_values` (under the policy whose value is wanted), shape [T + 1, V].
      bigram_reward: r(a, b), shape [V, V].

    Returns:
      E_π[r(y) | y_0, y_{1..t}], shape [B].
    """
    values = jnp.asarray(values)
    y0, prefixes, lengths = (jnp.asarray(x, jnp.int32) for x in (y0, prefixes, lengths))
    collected, last = _collected(y0, prefixes, lengths, jnp.asarray(bigram_reward, values.dtype))
    return collected + values[lengths, last]


def _pattern_active(task: Any) -> bool:
    m = len(task.pattern)
    return m > 0 and task.pattern_bonus != 0.0 and m <= task.length


def task_prefix_values(
    task: Any,
    y0: Int[ArrayLike, " B"],
    prefixes: Int[ArrayLike, "B L"],
    lengths: Int[ArrayLike, " B"],
    *,
    policy: Float[ArrayLike, "T V V"] | None = None,
) -> Float[Array, " B"]:
    """Exact E_π[gold reward | prefix] on a synthetic task: `prefix_values` + `value_of_prefixes`.

    V(y_{≤t}) = Σ_{s≤t} r(y_{s-1}, y_s) + W_t(y_t)   (see the module docstring)

    Reference: Wang et al. 2023, "Math-Shepherd", arXiv 2312.08935.

    Args:
      task: a `rewardjax.data.MarkovTask` (read by attribute: `transition`, `bigram_reward`,
        `length`, `pattern`, `pattern_bonus`; theory does not import data).
      y0: last prompt tokens, shape [B].
      prefixes: response prefixes, shape [B, L] (L ≤ T, padded beyond `lengths`).
      lengths: prefix lengths in [0, L], shape [B].
      policy: optional per-step policy [T, V, V]; None is the base chain.

    Returns:
      The exact values, shape [B].

    Raises:
      ValueError: the task's pattern bonus is active (non-additive reward; the exact recursion
        covers additive rewards only — use `mc_prefix_values`, or a task with pattern_bonus=0).
    """
    if _pattern_active(task):
        raise ValueError(
            f"task has an active pattern bonus (pattern={task.pattern}, "
            f"pattern_bonus={task.pattern_bonus}): the gold reward is not additive over bigrams, "
            "so the exact prefix values do not cover it. Use make_markov_task(..., "
            "pattern_bonus=0.0) for exact values, or mc_prefix_values for Monte-Carlo labels"
        )
    w = prefix_values(task.transition, task.bigram_reward, length=task.length, policy=policy)
    return value_of_prefixes(y0, prefixes, lengths, values=w, bigram_reward=task.bigram_reward)


@functools.partial(jax.jit, static_argnames=("num_rollouts", "length", "pattern", "pattern_bonus"))
def _mc_prefix_values(
    key,
    policy,
    bigram_reward,
    y0,
    prefixes,
    lengths,
    *,
    num_rollouts,
    length,
    pattern,
    pattern_bonus,
):
    b, width = prefixes.shape
    # The prefix's tokens, padded to T; positions ≥ its length are sampled instead.
    forced = jnp.zeros((b, length), jnp.int32).at[:, :width].set(prefixes[:, :length])
    log_policy = jnp.log(policy)  # [T, V, V]; log 0 = -inf never sampled

    def step(carry, inputs):
        prev, reward = carry  # [B, K] each
        t, k, log_pi = inputs  # t = 1..T
        sampled = jax.random.categorical(k, log_pi[prev]).astype(jnp.int32)
        keep = (t <= lengths)[:, None]
        token = jnp.where(keep, forced[:, t - 1, None], sampled)
        return (token, reward + bigram_reward[prev, token]), token

    start = jnp.broadcast_to(y0[:, None], (b, num_rollouts))
    keys = jax.random.split(key, length)
    carry = (start, jnp.zeros((b, num_rollouts), bigram_reward.dtype))
    times = jnp.arange(1, length + 1)
    (_, reward), tokens = jax.lax.scan(step, carry, (times, keys, log_policy))
    m = len(pattern)
    if m and pattern_bonus != 0.0 and m <= length:
        starts = length - m + 1
        hits = jnp.ones((starts, b, num_rollouts), bool)
        for j, p in enumerate(pattern):  # a loop over the short static pattern, not over tokens
            hits &= tokens[j : j + starts] == p
        reward = reward + pattern_bonus * hits.any(0)
    return jnp.mean(reward, axis=-1)


def mc_prefix_values(
    key: Array,
    task: Any,
    y0: Int[ArrayLike, " B"],
    prefixes: Int[ArrayLike, "B L"],
    lengths: Int[ArrayLike, " B"],
    *,
    num_rollouts: int,
    policy: Float[ArrayLike, "T V V"] | None = None,
) -> Float[Array, " B"]:
    """Monte-Carlo value labels: the mean gold reward of k rollouts continued from each prefix.

    V̂_k(y_{≤t}) = (1/k) Σ_{j=1..k} r(y_{≤t}, ỹ^{(j)}_{t+1..T}),   ỹ^{(j)} ~ π(· | y_{≤t}) i.i.d.

    Math-Shepherd's soft estimate with the gold reward in place of answer correctness; it is
    unbiased for E_π[r | y_{≤t}] with variance Var_π[r | y_{≤t}] / k, and it covers the task's
    pattern bonus (it needs only whole-response rewards). One jitted program: the k rollouts of
    all B prefixes advance together in a `lax.scan` over the T positions.

    Reference: Wang et al. 2023, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without
    Human Annotations", arXiv 2312.08935.

    Args:
      key: PRNG key.
      task: a `rewardjax.data.MarkovTask` (read by attribute: `transition`, `bigram_reward`,
        `length`, `pattern`, `pattern_bonus`).
      y0: last prompt tokens, shape [B].
      prefixes: response prefixes, shape [B, L] (L ≤ T, padded beyond `lengths`).
      lengths: prefix lengths in [0, L], shape [B].
      num_rollouts: k ≥ 1, rollouts per prefix (static).
      policy: optional per-step rollout policy [T, V, V] (policy[t - 1] = π_t); None rolls out
        under the base chain.

    Returns:
      The Monte-Carlo labels, shape [B], float32.
    """
    if num_rollouts < 1:
        raise ValueError(f"num_rollouts={num_rollouts} must be >= 1")
    prefixes = jnp.asarray(prefixes, jnp.int32)
    if prefixes.ndim != 2 or prefixes.shape[1] > task.length:
        raise ValueError(
            f"prefixes must have shape [B, L] with L <= T={task.length}, got {prefixes.shape}"
        )
    transition = jnp.asarray(task.transition, jnp.float32)
    policy = None if policy is None else jnp.asarray(policy, jnp.float32)
    return _mc_prefix_values(
        key,
        _as_policy(transition, policy, task.length),
        jnp.asarray(task.bigram_reward, jnp.float32),
        jnp.asarray(y0, jnp.int32),
        prefixes,
        jnp.asarray(lengths, jnp.int32),
        num_rollouts=num_rollouts,
        length=task.length,
        pattern=tuple(task.pattern),
        pattern_bonus=float(task.pattern_bonus),
    )
