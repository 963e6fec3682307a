"""Best-of-N and (weighted) majority voting over sampled completions, vectorised over prompts.

Weighted majority voting (Snell et al. 2024, "weighted best-of-N") groups the N completions of a
prompt by their final answer a(y) and picks the answer with the largest total score,

    â = argmax_a Σ_{i: a(y_i) = a} s(y_i),

then returns the best-scored completion of that answer. With all scores 1 it is plain majority
voting (self-consistency); with every answer distinct it is best-of-N. The "answer" is a user
function of the completion tokens (the last token, an extracted field, ...). Scores should be
non-negative (e.g. a verifier's probability of correctness): a sum of negative scores favours rare
answers.

Papers:
- Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling
  Model Parameters", arXiv 2408.03314 (best-of-N weighted, beam search against a PRM).
- Wang et al. 2022, "Self-Consistency Improves Chain of Thought Reasoning in Language Models",
  arXiv 2203.11171 (majority voting).
- Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy", arXiv 2401.01879.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from rewardjax import bon, sampling
from rewardjax.models import CausalLM
from rewardjax.search.scorers import Scorer

__all__ = [
    "AnswerFn",
    "SearchOutput",
    "VoteOutput",
    "best_of_n_search",
    "last_token_answer",
    "majority_vote",
    "weighted_vote",
    "weighted_vote_search",
]

AnswerFn = Callable[[Int[Array, "B L"], Int[Array, "B L"]], Int[Array, " B"]]
"""``answer(completion, completion_mask) -> [B]`` integer answer ids (jittable)."""


class SearchOutput(NamedTuple):
    """The result of a test-time search, one completion per prompt (``L`` new tokens).

    Attributes:
      tokens: int32 ``[B, L]`` the chosen completion; ``mask`` ``[B, L]`` 1 on its real tokens.
      scores: float32 ``[B]`` the scorer's value of the chosen completion (for voting: the total
        score of its answer).
      logprobs: float32 ``[B, L]`` ``log π(token)`` of the chosen completion under the policy.
      candidates: int32 ``[B, K, L]`` what the search ended with (best-of-N: the N samples;
        beam search: the final beams, best first; ARGS: K = 1).
      candidate_scores: float32 ``[B, K]`` their scores.
      tokens_generated: int32 ``[B]`` policy tokens decoded per prompt (the compute).
      scorer_calls: int32 ``[B]`` prefixes or completions scored per prompt.
    """

    tokens: Int[Array, "B L"]
    mask: Int[Array, "B L"]
    scores: Float[Array, " B"]
    logprobs: Float[Array, "B L"]
    candidates: Int[Array, "B K L"]
    candidate_scores: Float[Array, "B K"]
    tokens_generated: Int[Array, " B"]
    scorer_calls: Int[Array, " B"]


class VoteOutput(NamedTuple):
    """Weighted vote over N candidates: ``index`` [...] of the chosen candidate, its ``answer``
    [...], the winning answer's ``total`` score [...] and every candidate's answer ``totals``
    [..., N]."""

    index: Int[Array, "*B"]
    answer: Int[Array, "*B"]
    total: Float[Array, "*B"]
    totals: Float[Array, "*B N"]


def last_token_answer(
    completion: Int[Array, "B L"], completion_mask: Int[Array, "B L"]
) -> Int[Array, " B"]:
    """The answer of a completion is its last real token (``completion[t - 1]``, t = Σ mask)."""
    last = jnp.maximum(jnp.sum(completion_mask > 0, axis=1) - 1, 0)
    return jnp.take_along_axis(completion, last[:, None], axis=1)[:, 0]


@jax.jit
def weighted_vote(
    answers: Int[ArrayLike, "*B N"],
    scores: Float[ArrayLike, "*B N"],
    *,
    where: Bool[ArrayLike, "*B N"] | None = None,
) -> VoteOutput:
    """Weighted majority vote: the answer of largest total score, and its best-scored candidate.

    S(a) = Σ_{i: a_i = a, where_i} s_i,   â = argmax_a S(a),   î = argmax_{i: a_i = â} s_i

    Ties between answers go to the answer whose first candidate comes first; ties within the
    answer to the first candidate. O(N²) per prompt (pairwise answer equality), fine for the N of
    test-time search (up to a few thousand).

    Reference: Snell et al. 2024, arXiv 2408.03314 (best-of-N weighted); Wang et al. 2022,
    arXiv 2203.11171 (majority voting: all scores 1).

    Args:
      answers: integer answer of each candidate, shape [..., N].
      scores: score of each candidate, shape [..., N].
      where: optional mask of candidates that vote (at least one per row).

    Returns:
      ``VoteOutput`` (index [...], answer [...], total [...], totals [..., N]).
    """
    answers = jnp.asarray(answers)
    scores = jnp.asarray(scores, jnp.float32)
    where = jnp.ones(answers.shape, bool) if where is None else jnp.asarray(where, bool)
    same = answers[..., :, None] == answers[..., None, :]  # [..., N, N]
    totals = jnp.sum(jnp.where(same & where[..., None, :], scores[..., None, :], 0.0), axis=-1)
    totals = jnp.where(where, totals, -jnp.inf)
    first = jnp.argmax(totals, axis=-1)  # first candidate of a winning answer
    answer = jnp.take_along_axis(answers, first[..., None], axis=-1)[..., 0]
    member = (answers == answer[..., None]) & where
    index = jnp.argmax(jnp.where(member, scores, -jnp.inf), axis=-1)
    total = jnp.take_along_axis(totals, first[..., None], axis=-1)[..., 0]
    return VoteOutput(index=index, answer=answer, total=total, totals=totals)


def majority_vote(
    answers: Int[ArrayLike, "*B N"], *, where: Bool[ArrayLike, "*B N"] | None = None
) -> VoteOutput:
    """Plain majority voting (self-consistency): ``weighted_vote`` with every score 1.

    Reference: Wang et al. 2022, arXiv 2203.11171.
    """
    return weighted_vote(answers, jnp.ones(jnp.shape(answers), jnp.float32), where=where)


def _scored_samples(
    model, params, prompt_tokens, prompt_mask, key, scorer, scorer_params, **sample_kwargs
):
    """N samples per prompt (`sampling.sample`) and the scorer on each: (out, scores [B, N])."""
    out = sampling.sample(model, params, prompt_tokens, prompt_mask, key, **sample_kwargs)
    return out, _score(scorer, scorer_params, prompt_tokens, prompt_mask, out)


@functools.partial(jax.jit, static_argnames="scorer")
def _score(scorer, scorer_params, prompt_tokens, prompt_mask, out):
    """The scorer on every sample, [B, N] float32."""
    b, n, _ = out.tokens.shape
    flat = lambda x: x.reshape(b * n, x.shape[-1])
    scores = scorer(
        scorer_params,
        jnp.repeat(prompt_tokens, n, axis=0),
        jnp.repeat(prompt_mask.astype(jnp.int32), n, axis=0),
        flat(out.tokens),
        flat(out.mask),
    )
    return scores.reshape(b, n).astype(jnp.float32)


def _pick(out, scores, index, chosen_scores):
    take = lambda x: jnp.take_along_axis(x, index[:, None, None], axis=1)[:, 0]
    b, n = scores.shape
    return SearchOutput(
        tokens=take(out.tokens),
        mask=take(out.mask),
        scores=chosen_scores,
        logprobs=take(out.logprobs),
        candidates=out.tokens,
        candidate_scores=scores,
        tokens_generated=jnp.sum(out.lengths, axis=1).astype(jnp.int32),
        scorer_calls=jnp.full((b,), n, jnp.int32),
    )


@jax.jit
def _pick_best(key, out, scores):
    index = bon.best_of_n(key, scores)
    return _pick(out, scores, index, jnp.take_along_axis(scores, index[:, None], axis=1)[:, 0])


@functools.partial(jax.jit, static_argnames="answer_fn")
def _pick_vote(answer_fn, out, scores):
    b, n, length = out.tokens.shape
    answers = answer_fn(out.tokens.reshape(b * n, length), out.mask.reshape(b * n, length))
    vote = weighted_vote(answers.reshape(b, n), scores)
    return _pick(out, scores, vote.index, vote.total)


def best_of_n_search(
    model: CausalLM,
    params: Any,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    key: jax.Array,
    *,
    scorer: Scorer,
    scorer_params: Any = None,
    num_samples: int,
    max_new_tokens: int,
    temperature: float | Float[Array, ""] = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_tokens: tuple[int, ...] = (),
) -> SearchOutput:
    """Best-of-N: sample N completions per prompt, keep one of highest score (ties uniform).

    ŷ = argmax_{i ≤ N} s(x, y_i),   y_i ~ π(· | x) i.i.d. (``rewardjax.sampling.sample``; the
    selection is ``rewardjax.bon.best_of_n``). Three compiled programs, each once per shape: the
    sampler's own (shared with ``weighted_vote_search`` and plain ``sampling.sample`` calls of the
    same settings), the scoring of the B·N samples, and the selection.

    Reference: Beirami et al. 2024, arXiv 2401.01879; Snell et al. 2024, arXiv 2408.03314.

    Args:
      model, params: the policy ``CausalLM`` (static) and its parameters.
      prompt_tokens, prompt_mask: prompts [B, P] and 0/1 masks (left- or right-padded).
      key: PRNG key (sampling and tie-breaking).
      scorer: an outcome scorer (static; see ``rewardjax.search.Scorer``); scorer_params: its
        parameters (a traced pytree).
      num_samples: N; max_new_tokens: L; temperature, top_k, top_p, stop_tokens: as in
        ``rewardjax.sampling.sample``.

    Returns:
      ``SearchOutput``; ``candidates`` are the N samples [B, N, L], ``tokens_generated`` Σ lengths.
    """
    k_sample, k_pick = jax.random.split(key)
    out, scores = _scored_samples(
        model, params, prompt_tokens, prompt_mask, k_sample, scorer, scorer_params,
        max_new_tokens=max_new_tokens, num_samples=num_samples, temperature=temperature,
        top_k=top_k, top_p=top_p, stop_tokens=stop_tokens,
    )  # fmt: skip
    return _pick_best(k_pick, out, scores)


def weighted_vote_search(
    model: CausalLM,
    params: Any,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    key: jax.Array,
    *,
    scorer: Scorer,
    scorer_params: Any = None,
    answer_fn: AnswerFn,
    num_samples: int,
    max_new_tokens: int,
    temperature: float | Float[Array, ""] = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_tokens: tuple[int, ...] = (),
) -> SearchOutput:
    """Weighted majority voting over N sampled completions per prompt (see ``weighted_vote``).

    â = argmax_a Σ_{i: a(y_i) = a} s(x, y_i), and the output is the best-scored y_i with
    a(y_i) = â; ``scores`` holds the winning answer's total.

    Reference: Snell et al. 2024, arXiv 2408.03314 (best-of-N weighted).

    Args:
      as ``best_of_n_search``, plus ``answer_fn(completion [B, L], mask [B, L]) -> [B]`` (static),
      e.g. ``last_token_answer``.

    Returns:
      ``SearchOutput`` with ``candidates`` the N samples and ``candidate_scores`` their scores.
    """
    out, scores = _scored_samples(
        model, params, prompt_tokens, prompt_mask, key, scorer, scorer_params,
        max_new_tokens=max_new_tokens, num_samples=num_samples, temperature=temperature,
        top_k=top_k, top_p=top_p, stop_tokens=stop_tokens,
    )  # fmt: skip
    return _pick_vote(answer_fn, out, scores)
