"""The scorer interface of test-time search, the exact Markov-chain oracle PRM and a noisy one.

A scorer is any jittable function of its parameters and a batch of prompts and (partial)
completions that returns one value per row:

    scorer(params, prompt_tokens [B, P], prompt_mask [B, P], completion [B, L],
           completion_mask [B, L]) -> Float[B]

`completion_mask` is 1 on the first ``t`` completion tokens (the prefix scored) and 0 after; the
prompts may be left- or right-padded. A *prefix scorer* (a process reward model, PRM) values any
prefix, e.g. V(prefix) = E[reward | prefix]; an *outcome scorer* (an outcome reward model, a
verifier, a gold reward) is only meaningful on whole completions. Both have the same signature, so
a trained process model (``lambda params, *batch: prm.apply(params, ...)``), a reward model or an
exact oracle plug into every search the same way. Searches take the function as a static argument
(reuse the same object, or each new one compiles a new program) and ``scorer_params`` as a traced
pytree (new weights, noise levels or tables reuse the program, and no weights are baked into it).

On the synthetic Markov-chain task the exact PRM is known (`rewardjax.theory.process`):
`markov_value_scorer` wraps the tables of `task_prefix_values` (E_π[gold | prefix]),
`noisy_scorer` adds a fixed Gaussian error per prefix (an imperfect PRM: the same prefix always
gets the same error), and `markov_chain_lm` builds a `CausalLM` whose next-token law is exactly
the task's chain, so search on the model and the theory's exact answers talk about one policy.

Papers:
- Wang et al. 2023, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human
  Annotations", arXiv 2312.08935 (a PRM as the value of a prefix).
- Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050 (process reward models).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from rewardjax.data import synthetic
from rewardjax.models import CausalLM, TransformerConfig
from rewardjax.theory import process

__all__ = [
    "MarkovValueParams",
    "NoisyParams",
    "OutcomeScorer",
    "PrefixScorer",
    "Scorer",
    "markov_args_policy",
    "markov_chain_lm",
    "markov_gold",
    "markov_value",
    "markov_value_scorer",
    "noisy_scorer",
    "sequence_scorer",
]

Scorer = Callable[
    [Any, Int[Array, "B P"], Int[Array, "B P"], Int[Array, "B L"], Int[Array, "B L"]],
    Float[Array, " B"],
]
"""``scorer(params, prompt_tokens, prompt_mask, completion, completion_mask) -> [B]`` (jittable;
``params`` is any pytree, traced)."""

PrefixScorer = Scorer
"""A scorer meaningful on any prefix of a completion (a PRM: the value of the prefix)."""

OutcomeScorer = Scorer
"""A scorer of whole completions (an outcome reward model, a verifier, a gold reward)."""

_LOG_ZERO = -1e4  # float32 softmax gives exactly 0 to a logit 1e4 below the rest


class MarkovValueParams(NamedTuple):
    """The exact PRM's tables: reward-to-go ``values`` W [T+1, V] and ``bigram_reward`` [V, V]."""

    values: Float[Array, "T+1 V"]
    bigram_reward: Float[Array, "V V"]


class NoisyParams(NamedTuple):
    """A noisy scorer's parameters: the exact scorer's ``inner`` params, the ``key`` fixing the
    error function and its standard deviation ``std`` (0-d)."""

    inner: Any
    key: jax.Array
    std: Float[Array, ""]


def _last_prompt_token(prompt_tokens, prompt_mask):
    last = jnp.max(jnp.where(prompt_mask > 0, jnp.arange(prompt_tokens.shape[1]), 0), axis=1)
    return jnp.take_along_axis(prompt_tokens, last[:, None], axis=1)[:, 0]


def markov_value(
    params: MarkovValueParams,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    completion: Int[Array, "B L"],
    completion_mask: Int[Array, "B L"],
) -> Float[Array, " B"]:
    """The exact PRM of a synthetic Markov task, a ``Scorer`` (params from `markov_value_scorer`).

    V(y_{≤t}) = Σ_{s≤t} r(y_{s-1}, y_s) + W_t(y_t)   (`rewardjax.theory.process`)

    with y_0 the last real prompt token and t = Σ completion_mask (the real tokens first); model
    ids are vocabulary tokens + `synthetic.ID_OFFSET`. At t = T it is the gold reward itself.
    """
    length = params.values.shape[0] - 1
    if completion.shape[1] > length:
        raise ValueError(
            f"markov_value: completions have {completion.shape[1]} tokens but the task's "
            f"responses have T={length}; pass at most T completion columns"
        )
    y0 = synthetic.to_tokens(_last_prompt_token(prompt_tokens, prompt_mask))
    lengths = jnp.sum(completion_mask > 0, axis=1)
    return process.value_of_prefixes(
        y0,
        synthetic.to_tokens(completion),
        lengths,
        values=params.values,
        bigram_reward=params.bigram_reward,
    )


def markov_value_scorer(
    task: Any, *, policy: Float[ArrayLike, "T V V"] | None = None
) -> tuple[PrefixScorer, MarkovValueParams]:
    """The exact PRM of a synthetic task: E_π[gold reward | y_0, y_{≤t}] (see `markov_value`).

    Adapter from `rewardjax.theory.process` (`prefix_values`, as in `task_prefix_values`) to the
    ``Scorer`` interface.

    Reference: Wang et al. 2023, "Math-Shepherd", arXiv 2312.08935 (the value a PRM estimates).

    Args:
      task: a `rewardjax.data.MarkovTask` with its pattern bonus off (the exact values cover
        additive rewards only).
      policy: the policy whose value is wanted, [T, V, V] (None: the base chain).

    Returns:
      ``(markov_value, params)``: one scorer function for every task (one compiled search per
      shape), the task's tables as its params.

    Raises:
      ValueError: the task's pattern bonus is active.
    """
    process.task_prefix_values(task, [0], [[0]], [0], policy=policy)  # raises on a pattern bonus
    values = process.prefix_values(
        np.asarray(task.transition, np.float32),
        np.asarray(task.bigram_reward, np.float32),
        length=task.length,
        policy=None if policy is None else np.asarray(policy, np.float32),
    )
    return markov_value, MarkovValueParams(
        jnp.asarray(values, jnp.float32), jnp.asarray(task.bigram_reward, jnp.float32)
    )


def markov_gold(
    task: Any,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    completion: Int[Array, "B L"],
    completion_mask: Int[Array, "B L"],
) -> Float[Array, " B"]:
    """The gold reward of a synthetic task on whole completions, a ``Scorer`` (params: the task).

    r(y_0, y) = Σ_t bigram_reward[y_{t-1}, y_t] + pattern_bonus · 1[pattern in y]
    (`rewardjax.data.synthetic.gold_reward`); completions of exactly T tokens.
    """
    del completion_mask
    y0 = synthetic.to_tokens(_last_prompt_token(prompt_tokens, prompt_mask))
    return synthetic.gold_reward(task, y0, synthetic.to_tokens(completion))


def _prefix_hash(prompt_tokens, prompt_mask, completion, completion_mask):
    """A 32-bit FNV-1a hash of the real prompt tokens then the completion prefix, per row (padding
    and the tokens after the prefix are skipped, so neither changes the hash)."""
    toks = jnp.concatenate([prompt_tokens, completion], axis=1).astype(jnp.uint32)
    real = jnp.concatenate([prompt_mask > 0, completion_mask > 0], axis=1)
    mult = jnp.uint32(0x01000193)
    boundary = jnp.uint32(0x9E3779B9)  # mixed in between prompt and completion

    def mix(h, inputs):
        x, keep, first_completion = inputs
        h = jnp.where(first_completion, (h ^ boundary) * mult, h)
        return jnp.where(keep, (h ^ x) * mult, h), None

    first = jnp.arange(toks.shape[1]) == prompt_tokens.shape[1]
    first = jnp.broadcast_to(first[:, None], toks.T.shape)
    h, _ = jax.lax.scan(
        mix, jnp.full(toks.shape[:1], 0x811C9DC5, jnp.uint32), (toks.T, real.T, first)
    )
    return h


@functools.cache
def _noisy(scorer: Scorer) -> Scorer:
    def noisy(params, prompt_tokens, prompt_mask, completion, completion_mask):
        exact = scorer(params.inner, prompt_tokens, prompt_mask, completion, completion_mask)
        h = _prefix_hash(prompt_tokens, prompt_mask, completion, completion_mask)
        eps = jax.vmap(lambda x: jax.random.normal(jax.random.fold_in(params.key, x)))(h)
        return exact + params.std * eps

    noisy.__doc__ = f"{getattr(scorer, '__name__', 'scorer')} plus a fixed N(0, std²) per prefix."
    return noisy


def noisy_scorer(
    scorer: Scorer, params: Any, key: jax.Array, *, std: float | Float[Array, ""]
) -> tuple[Scorer, NoisyParams]:
    """An imperfect PRM: ``scorer`` plus a fixed Gaussian error per prefix.

    s̃(x, y_{≤t}) = s(x, y_{≤t}) + σ ε(x, y_{≤t}),   ε ~ N(0, 1) drawn from
    ``fold_in(key, hash(x, y_{≤t}))``

    so the error is a deterministic function of the prefix (the same prefix scored twice gets the
    same value, as a trained model's would), independent across distinct prefixes (up to hash
    collisions, 2^-32). The returned function is the same object for the same ``scorer``, and
    ``std`` and ``key`` are traced: searches with several noise levels share one program (std = 0
    is the exact scorer).

    Args:
      scorer: the exact scorer; params: its parameters.
      key: PRNG key fixing the error function.
      std: σ ≥ 0.

    Returns:
      ``(noisy scorer, NoisyParams)``.
    """
    if isinstance(std, (int, float)) and std < 0:
        raise ValueError(f"noisy_scorer: std={std} must be >= 0")
    return _noisy(scorer), NoisyParams(params, key, jnp.asarray(std, jnp.float32))


@functools.cache
def sequence_scorer(fn: Callable[..., Float[Array, " B"]]) -> Scorer:
    """A ``Scorer`` from a scorer of whole token rows (how reward models and PRMs are applied).

    sequence_scorer(fn)(params, prompt, prompt_mask, completion, completion_mask)
        = fn(params, [prompt, completion], [prompt_mask, completion_mask], [0, completion_mask])

    the prompt and completion concatenated along T (the mask as segment ids: padding between them
    is masked out of attention and positions) with the completion mask as the third argument.
    E.g. a process reward model (`rewardjax.models.process`):
    ``fn = lambda p, t, m, c: score_prefixes(prm, p, t, m, c).last``. The same object is
    returned for the same ``fn`` (one compiled search per ``fn``).

    Args:
      fn: ``fn(params, tokens [B, P+L], mask [B, P+L], completion_mask [B, P+L]) -> [B]``.

    Returns:
      The scorer.
    """

    def scorer(params, prompt_tokens, prompt_mask, completion, completion_mask):
        tokens = jnp.concatenate([prompt_tokens, completion], axis=1)
        mask = jnp.concatenate([prompt_mask, completion_mask], axis=1).astype(jnp.int32)
        comp = jnp.concatenate([jnp.zeros_like(prompt_mask), completion_mask], axis=1)
        return fn(params, tokens, mask, comp.astype(jnp.int32))

    return scorer


def markov_chain_lm(task: Any) -> tuple[CausalLM, dict]:
    """A one-layer ``CausalLM`` whose next-token law is exactly the task's Markov chain.

    π(b | ..., a) = transition[a, b] on model ids a + 1, b + 1 (the pad id 0 gets probability 0):
    the attention and MLP outputs are zero, the embedding of id i is the unit vector e_i, the final
    RMSNorm maps it to √D e_i (up to its ε), and the LM head holds log transition / √D. Search on
    this model is search on the chain itself, so the theory's exact values apply to its outputs.

    Args:
      task: a `rewardjax.data.MarkovTask` (reads ``transition``).

    Returns:
      (model, params) with vocab_size V + 1 and float32 parameters.
    """
    trans = np.asarray(task.transition, np.float64)
    v = trans.shape[0] + synthetic.ID_OFFSET
    d = v + (v % 2)  # head_dim must be even
    cfg = TransformerConfig(
        vocab_size=v, d_model=d, n_layers=1, n_heads=1, n_kv_heads=1, d_ff=2, norm_eps=1e-6
    )
    model = CausalLM(cfg)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 1), jnp.int32))
    params = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, np.float32), nn.meta.unbox(shapes))
    inner = params["params"]["transformer"]
    inner["embed"]["embedding"] = np.eye(v, d, dtype=np.float32)
    inner["final_norm"]["scale"] = np.ones(d, np.float32)
    inner["layers"]["attn_norm"]["scale"] = np.ones((1, d), np.float32)
    inner["layers"]["mlp_norm"]["scale"] = np.ones((1, d), np.float32)
    logits = np.full((d, v), _LOG_ZERO)
    logits[synthetic.ID_OFFSET : v, synthetic.ID_OFFSET :] = np.maximum(np.log(trans), _LOG_ZERO)
    logits[:, 0] = _LOG_ZERO
    scale = np.sqrt(d / (1.0 + d * cfg.norm_eps))  # |RMSNorm(e_i)| = √D / √(1 + D ε)
    params["params"]["lm_head"] = (logits / scale).astype(np.float32)
    return model, jax.tree_util.tree_map(jnp.asarray, params)


def markov_args_policy(
    task: Any,
    weight: float | Float[ArrayLike, ""],
    *,
    num_candidates: int | None = None,
    temperature: float = 1.0,
) -> Float[Array, "T V V"]:
    """The exact policy of sampled ARGS on a synthetic task with the exact value scorer.

    With V(y_{≤t}) = collected + r(a, b) + W_t(b) (`markov_value`) the collected reward is the
    same for every candidate b after a prefix ending in a, so ARGS samples the Markov policy

        π_t(b | a) ∝ exp((log p(b | a) + w (r(a, b) + W_t(b))) / τ),   b ∈ top-k of p(· | a),

    whose exact KL and reward follow from `rewardjax.theory.markov_policy_kl_reward`.

    Reference: Khanov et al. 2024, "ARGS: Alignment as Reward-Guided Search", arXiv 2402.01694.

    Args:
      task: a `rewardjax.data.MarkovTask` (pattern bonus off).
      weight: w. num_candidates: k (None: the whole vocabulary). temperature: τ > 0.

    Returns:
      policy[t - 1, a, b] = π_t(b | a), shape [T, V, V].
    """
    trans = jnp.asarray(task.transition, jnp.float32)
    reward = jnp.asarray(task.bigram_reward, jnp.float32)
    w = process.prefix_values(trans, reward, length=task.length)  # [T + 1, V]
    logp = jnp.log(trans)
    k = trans.shape[-1] if num_candidates is None else num_candidates
    kth = jax.lax.top_k(logp, k)[0][:, -1:]
    score = logp[None] + weight * (reward[None] + w[1:, None, :])  # [T, V, V]
    score = jnp.where(logp[None] >= kth[None], score / temperature, -jnp.inf)
    return jax.nn.softmax(score, axis=-1)
