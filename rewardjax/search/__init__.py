"""Test-time search: best-of-N, weighted voting, PRM-guided beam search, reward-guided decoding.

Every search is jitted on top of ``rewardjax.sampling`` (KV-cache prefill, decoding in ``lax``
loops; beam search and ARGS are one program each, best-of-N and voting reuse the sampler's
program then score and select in small jitted programs) and takes any scorer with the
signature of ``Scorer``, a static function and traced params: ``scorer(params, prompt_tokens
[B, P], prompt_mask [B, P], completion [B, L], completion_mask [B, L]) -> [B]`` — a trained
process or outcome reward model (``sequence_scorer``), or on the synthetic Markov task the exact
oracle (``markov_value_scorer``) and a noisy copy of it (``noisy_scorer``).

Papers:
- Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling
  Model Parameters", arXiv 2408.03314 (best-of-N weighted, beam search against a PRM).
- Khanov et al. 2024, "ARGS: Alignment as Reward-Guided Search", arXiv 2402.01694.
- Wang et al. 2022, "Self-Consistency Improves Chain of Thought Reasoning in Language Models",
  arXiv 2203.11171 (majority voting).
- Wang et al. 2023, "Math-Shepherd", arXiv 2312.08935 (the value a PRM estimates).
"""

from rewardjax.search.args import args_decode
from rewardjax.search.beam import beam_search
from rewardjax.search.scorers import (
    MarkovValueParams,
    NoisyParams,
    OutcomeScorer,
    PrefixScorer,
    Scorer,
    markov_args_policy,
    markov_chain_lm,
    markov_gold,
    markov_value,
    markov_value_scorer,
    noisy_scorer,
    sequence_scorer,
)
from rewardjax.search.voting import (
    AnswerFn,
    SearchOutput,
    VoteOutput,
    best_of_n_search,
    last_token_answer,
    majority_vote,
    weighted_vote,
    weighted_vote_search,
)

__all__ = [
    "AnswerFn",
    "MarkovValueParams",
    "NoisyParams",
    "OutcomeScorer",
    "PrefixScorer",
    "Scorer",
    "SearchOutput",
    "VoteOutput",
    "args_decode",
    "beam_search",
    "best_of_n_search",
    "last_token_answer",
    "majority_vote",
    "markov_args_policy",
    "markov_chain_lm",
    "markov_gold",
    "markov_value",
    "markov_value_scorer",
    "noisy_scorer",
    "sequence_scorer",
    "weighted_vote",
    "weighted_vote_search",
]
