"""Step-level beam search guided by a process reward model, batched and jitted with a KV cache.

Each prompt keeps ``num_beams`` partial completions (beams). One search step extends every beam by
``expand`` candidate next steps of ``step_tokens`` tokens each, decoded from the policy with the
KV cache, scores all ``num_beams · expand`` prefixes with the PRM, and keeps the ``num_beams`` best:

    C_s = { (y, z) : y ∈ B_{s-1}, z ∈ Z(y) },  |Z(y)| = M,
    B_s = top-B of C_s by s(x, (y, z))

with Z(y) = M independent k-token continuations z ~ π(· | x, y) (``expansion="sample"``, Snell et
al.'s setting), or every k-token string over the vocabulary (``expansion="all"``, M = V^k, a
deterministic search that brute force can check). The first step starts from one beam (the
prompt): with sampling its B·M candidates are i.i.d. draws, with ``"all"`` the duplicates of the
prompt are masked out.

The whole search is one compiled program: the prompts are prefilled once, the cache is replicated
to the B·M candidate rows of each prompt, every step decodes k tokens for all rows in one
``lax.fori_loop`` and, after scoring, gathers the surviving rows' cache, logits and tokens (each
kept beam is copied into its M children) — no Python loop over beams, candidates or tokens.

Paper: Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective than
Scaling Model Parameters", arXiv 2408.03314 (§5, beam search against a PRM).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from rewardjax import sampling
from rewardjax.models import CausalLM, KVCache, init_cache
from rewardjax.search.scorers import Scorer
from rewardjax.search.voting import SearchOutput

__all__ = ["beam_search"]


def _prefill(module: CausalLM, tokens, mask, cache):
    hidden, cache = module.transformer(tokens, segment_ids=mask, cache=cache, decode=True)
    last = jnp.max(jnp.where(mask > 0, jnp.arange(tokens.shape[1]), 0), axis=1)
    return module.logits(jnp.take_along_axis(hidden, last[:, None, None], axis=1))[:, 0], cache


def _step(module: CausalLM, token, cache):
    live = jnp.ones_like(token)
    logits, cache = module(token[:, None], segment_ids=live[:, None], cache=cache, decode=True)
    return logits[:, 0], cache


def _take_rows(cache: KVCache, rows: Int[Array, " R"]) -> KVCache:
    """The cache of the given batch rows (repeats allowed): a gather along the batch axis."""
    return KVCache(
        k=jnp.take(cache.k, rows, axis=1),
        v=jnp.take(cache.v, rows, axis=1),
        segment_ids=jnp.take(cache.segment_ids, rows, axis=0),
        index=cache.index,
        next_position=jnp.take(cache.next_position, rows, axis=0),
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "scorer",
        "num_beams",
        "expand",
        "step_tokens",
        "num_steps",
        "expansion",
        "top_k",
        "top_p",
    ),
)
def beam_search(
    model: CausalLM,
    params: Any,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    key: jax.Array,
    *,
    scorer: Scorer,
    scorer_params: Any = None,
    num_beams: int,
    expand: int,
    step_tokens: int,
    num_steps: int,
    expansion: str = "sample",
    temperature: float | Float[Array, ""] = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
) -> SearchOutput:
    """PRM-guided step-level beam search (module docstring), one jitted call for all prompts.

    Reference: Snell et al. 2024, arXiv 2408.03314 (§5).

    Args:
      model, params: the policy ``CausalLM`` (static) and its parameters.
      prompt_tokens, prompt_mask: prompts [B, P] and 0/1 masks (left- or right-padded; at least
        one real token each).
      key: PRNG key for the sampled expansions.
      scorer: a prefix scorer (static; ``rewardjax.search.PrefixScorer``) and scorer_params its
        parameters (a traced pytree), called on the
        B·num_beams·expand candidate prefixes after every step.
      num_beams: beams kept per prompt. expand: M, candidates per beam per step.
      step_tokens: k, tokens per step. num_steps: S; completions have L = S·k tokens.
      expansion: "sample" (M draws from the policy: temperature, top_k, top_p as in
        ``rewardjax.sampling.sample``; temperature 0 is greedy) or "all" (every k-token string
        over the model vocabulary, in lexicographic order; needs M = vocab_size^k).

    Returns:
      ``SearchOutput``: the best final beam per prompt, ``candidates`` the final beams [B,
      num_beams, L] best first with ``candidate_scores``, ``tokens_generated`` =
      num_beams·M·S·k and ``scorer_calls`` = num_beams·M·S per prompt. No stop tokens: every
      completion has L tokens (mask all ones).
    """
    if expansion not in ("sample", "all"):
        raise ValueError(f"beam_search: expansion must be 'sample' or 'all', got {expansion!r}")
    vocab = model.config.vocab_size
    if expansion == "all" and expand != vocab**step_tokens:
        raise ValueError(
            f"beam_search: expansion='all' enumerates every {step_tokens}-token string, so expand "
            f"must be vocab_size**step_tokens = {vocab**step_tokens}, got {expand}"
        )
    if num_beams < 1 or expand < 1:
        raise ValueError(
            f"beam_search: need num_beams >= 1 and expand >= 1, got {num_beams} and {expand}"
        )
    b, p = prompt_tokens.shape
    width = num_beams * expand  # candidate rows per prompt
    rows = b * width
    length = num_steps * step_tokens
    prompt_mask = prompt_mask.astype(jnp.int32)

    cache = init_cache(model.config, b, p + length)
    logits, cache = model.apply(params, prompt_tokens, prompt_mask, cache, method=_prefill)
    replicate = jnp.repeat(jnp.arange(b), width)
    cache = _take_rows(cache, replicate)
    logits = logits[replicate]
    prompts_rep, masks_rep = prompt_tokens[replicate], prompt_mask[replicate]

    temperature = jnp.asarray(temperature, jnp.float32)
    greedy = temperature <= 0
    inv_temp = jnp.where(greedy, 1.0, 1.0 / jnp.where(greedy, 1.0, temperature))
    child = jnp.arange(rows) % expand  # candidate index m of each row
    positions = jnp.arange(length)

    def decode_token(j, state):
        s, logits, cache, toks, lps = state
        t = s * step_tokens + j
        if expansion == "all":
            token = (child // vocab ** (step_tokens - 1 - j)) % vocab
        else:
            filtered = sampling.filter_logits(logits * inv_temp, top_k=top_k, top_p=top_p)
            drawn = jax.random.categorical(jax.random.fold_in(key, t), filtered)
            token = jnp.where(greedy, jnp.argmax(logits, axis=-1), drawn)
        token = token.astype(jnp.int32)
        toks = jax.lax.dynamic_update_slice(toks, token[:, None], (0, t))
        lp = sampling.token_logprobs(logits, token)
        lps = jax.lax.dynamic_update_slice(lps, lp[:, None], (0, t))
        logits, cache = model.apply(params, token, cache, method=_step)
        return s, logits, cache, toks, lps

    def search_step(s, state):
        logits, cache, toks, lps, beam_scores = state
        _, logits, cache, toks, lps = jax.lax.fori_loop(
            0, step_tokens, decode_token, (s, logits, cache, toks, lps)
        )
        mask = (positions < (s + 1) * step_tokens).astype(jnp.int32)
        mask = jnp.broadcast_to(mask, toks.shape)
        scores = scorer(scorer_params, prompts_rep, masks_rep, toks, mask)
        scores = scores.astype(jnp.float32).reshape(b, width)
        parent_ok = jnp.repeat(jnp.isfinite(beam_scores), expand, axis=1)
        scores = jnp.where(parent_ok, scores, -jnp.inf)
        kept, index = jax.lax.top_k(scores, num_beams)  # [b, num_beams], best first
        source = (jnp.arange(b)[:, None] * width + index).reshape(-1)  # [b * num_beams]
        gather = jnp.repeat(source, expand)  # each kept beam into its M children
        return logits[gather], _take_rows(cache, gather), toks[gather], lps[gather], kept

    first = jnp.zeros((b, num_beams), jnp.float32)
    if expansion == "all":  # one beam (the prompt) to start from; the copies are duplicates
        first = jnp.where(jnp.arange(num_beams) == 0, 0.0, -jnp.inf) + first
    toks = jnp.zeros((rows, length), jnp.int32)
    lps = jnp.zeros((rows, length), jnp.float32)
    _, _, toks, lps, beam_scores = jax.lax.fori_loop(
        0, num_steps, search_step, (logits, cache, toks, lps, first)
    )
    beams = toks.reshape(b, num_beams, expand, length)[:, :, 0]
    beam_lps = lps.reshape(b, num_beams, expand, length)[:, :, 0]
    return SearchOutput(
        tokens=beams[:, 0],
        mask=jnp.ones((b, length), jnp.int32),
        scores=beam_scores[:, 0],
        logprobs=beam_lps[:, 0],
        candidates=beams,
        candidate_scores=beam_scores,
        tokens_generated=jnp.full((b,), width * length, jnp.int32),
        scorer_calls=jnp.full((b,), width * num_steps, jnp.int32),
    )
