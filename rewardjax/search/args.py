"""Reward-guided decoding (ARGS): next-token score = logit + w · reward(prefix + token).

At every position the policy's top-k next tokens are re-scored by a prefix reward,

    score(v) = logit_π(v | x, y_{<t}) + w · s(x, (y_{<t}, v)),   v ∈ top-k(logit_π),

and the next token is argmax score (greedy) or a draw from softmax(score / τ) over the k
candidates (sampled). The policy advances with its KV cache (one forward per token); the scorer is
called on the k candidate prefixes of every row at every position (B·k prefixes per token), as a
black box. With w = 0 greedy ARGS is greedy decoding of the policy.

On the synthetic Markov task with the exact value scorer V(y_{≤t}) = collected + W_t(y_t), the
sampled ARGS policy (k = V, τ = 1) is itself a time-dependent Markov policy,
π_t(b | a) ∝ p(b | a) e^{w (r(a, b) + W_t(b))}: its exact KL and reward follow from
`rewardjax.theory.markov_policy_kl_reward`. With the soft value of `markov_optimal_policy` in
place of W and w = 1/β it would be exactly the KL-regularised optimum.

Paper: Khanov, Burapacheep, Li 2024, "ARGS: Alignment as Reward-Guided Search", arXiv 2402.01694.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from rewardjax import sampling
from rewardjax.models import CausalLM, init_cache
from rewardjax.search.beam import _prefill, _step
from rewardjax.search.scorers import Scorer
from rewardjax.search.voting import SearchOutput

__all__ = ["args_decode"]


@functools.partial(jax.jit, static_argnames=("model", "scorer", "max_new_tokens", "num_candidates"))
def args_decode(
    model: CausalLM,
    params: Any,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    key: jax.Array,
    *,
    scorer: Scorer,
    scorer_params: Any = None,
    weight: float | Float[Array, ""],
    max_new_tokens: int,
    num_candidates: int = 10,
    temperature: float | Float[Array, ""] = 0.0,
) -> SearchOutput:
    """ARGS decoding of every prompt in one jitted call (module docstring).

    Reference: Khanov et al. 2024, "ARGS: Alignment as Reward-Guided Search", arXiv 2402.01694.

    Args:
      model, params: the policy ``CausalLM`` (static) and its parameters.
      prompt_tokens, prompt_mask: prompts [B, P] and 0/1 masks (left- or right-padded).
      key: PRNG key (used when sampling).
      scorer: a prefix scorer (static; ``rewardjax.search.PrefixScorer``) and scorer_params its
        parameters (a traced pytree).
      weight: w, the reward weight (traced: no recompilation).
      max_new_tokens: L. num_candidates: k, candidates per position (static, ≤ vocab size).
      temperature: τ; 0 (default) is greedy ARGS, > 0 samples from softmax(score / τ) over the
        k candidates (traced).

    Returns:
      ``SearchOutput`` with K = 1: ``scores`` the scorer's value of the whole completion,
      ``logprobs`` the policy's ``log π(token)``, ``tokens_generated`` = L and ``scorer_calls``
      = k·L per prompt.
    """
    vocab = model.config.vocab_size
    if not 1 <= num_candidates <= vocab:
        raise ValueError(
            f"args_decode: num_candidates={num_candidates} must be in [1, vocab_size={vocab}]"
        )
    b, p = prompt_tokens.shape
    k, length = num_candidates, max_new_tokens
    prompt_mask = prompt_mask.astype(jnp.int32)
    cache = init_cache(model.config, b, p + length)
    logits, cache = model.apply(params, prompt_tokens, prompt_mask, cache, method=_prefill)
    prompts_rep = jnp.repeat(prompt_tokens, k, axis=0)
    masks_rep = jnp.repeat(prompt_mask, k, axis=0)
    weight = jnp.asarray(weight, jnp.float32)
    temperature = jnp.asarray(temperature, jnp.float32)
    greedy = temperature <= 0
    inv_temp = jnp.where(greedy, 1.0, 1.0 / jnp.where(greedy, 1.0, temperature))
    positions = jnp.arange(length)

    def body(t, state):
        logits, cache, toks, lps = state
        top_logits, cand = jax.lax.top_k(logits.astype(jnp.float32), k)  # [b, k]
        cand_toks = jnp.repeat(toks, k, axis=0)
        cand_toks = jax.lax.dynamic_update_slice(cand_toks, cand.reshape(-1, 1), (0, t))
        mask = jnp.broadcast_to((positions <= t).astype(jnp.int32), cand_toks.shape)
        rewards = scorer(scorer_params, prompts_rep, masks_rep, cand_toks, mask).reshape(b, k)
        score = top_logits + weight * rewards.astype(jnp.float32)
        drawn = jax.random.categorical(jax.random.fold_in(key, t), score * inv_temp)
        choice = jnp.where(greedy, jnp.argmax(score, axis=-1), drawn)
        token = jnp.take_along_axis(cand, choice[:, None], axis=1)[:, 0].astype(jnp.int32)
        toks = jax.lax.dynamic_update_slice(toks, token[:, None], (0, t))
        lp = sampling.token_logprobs(logits, token)
        lps = jax.lax.dynamic_update_slice(lps, lp[:, None], (0, t))
        logits, cache = model.apply(params, token, cache, method=_step)
        return logits, cache, toks, lps

    init = (logits, cache, jnp.zeros((b, length), jnp.int32), jnp.zeros((b, length), jnp.float32))
    _, _, toks, lps = jax.lax.fori_loop(0, length, body, init)
    mask = jnp.ones((b, length), jnp.int32)
    final = scorer(scorer_params, prompt_tokens, prompt_mask, toks, mask).astype(jnp.float32)
    return SearchOutput(
        tokens=toks,
        mask=mask,
        scores=final,
        logprobs=lps,
        candidates=toks[:, None],
        candidate_scores=final[:, None],
        tokens_generated=jnp.full((b,), length, jnp.int32),
        scorer_calls=jnp.full((b,), k * length, jnp.int32),
    )
