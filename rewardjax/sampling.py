"""The policy side of a ``CausalLM``: log-probs of given completions and jitted sampling.

``sample`` prefills the (left- or right-padded) prompts into a pre-allocated KV cache, then decodes
every new token inside one ``lax.while_loop`` (stopping early once every row has hit a stop token),
so a call is one compiled program and calls with the same shapes and static settings reuse it.

Papers:
- The Curious Case of Neural Text Degeneration (arXiv:1904.09751), nucleus (top-p) sampling.
- Hierarchical Neural Story Generation (arXiv:1805.04833), top-k sampling.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from rewardjax.models import CausalLM, init_cache

__all__ = [
    "SampleOutput",
    "completion_logprobs",
    "filter_logits",
    "restrict_logits",
    "sample",
    "token_logprobs",
]

_NEG_INF = -jnp.inf


def token_logprobs(logits: Float[Array, "*B V"], tokens: Int[Array, "*B"]) -> Float[Array, "*B"]:
    """Float32 ``log softmax(logits)[token]``."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]


def completion_logprobs(
    model: CausalLM,
    params: Any,
    tokens: Int[Array, "B T"],
    *,
    mask: Int[Array, "B T"],
    completion_mask: Int[Array, "B T"],
) -> Float[Array, "B T"]:
    """Float32 ``log pi(tokens[:, t] | tokens[:, :t])`` on completion tokens, 0 elsewhere.

    ``mask`` (1 on real tokens) is the backbone's segment ids; ``completion_mask`` marks response
    tokens (token t is predicted from position t - 1, so position 0 is never a completion token).
    Summed over T this is ``losses.sequence_logprobs`` of the shifted logits.
    """
    logits, _ = model.apply(params, tokens, segment_ids=mask)
    logp = jnp.pad(token_logprobs(logits[:, :-1], tokens[:, 1:]), ((0, 0), (1, 0)))
    return jnp.where(completion_mask > 0, logp, 0.0)


def restrict_logits(
    logits: Float[Array, "*B V"], token_range: tuple[int, int] | None
) -> Float[Array, "*B V"]:
    """Logits with every id outside ``[low, high) = token_range`` set to -inf (None: unchanged).

    A model's embedding can have rows no tokenizer id uses (padding id 0, rows rounded up for
    speed, ids past a synthetic task's vocabulary); the policy a trainer optimises is the model's
    distribution over the ids the data can hold, so the sampler and the trainer's log-probs both
    restrict to them.
    """
    if token_range is None:
        return logits
    low, high = token_range
    ids = jnp.arange(logits.shape[-1])
    return jnp.where((ids >= low) & (ids < high), logits, _NEG_INF)


def filter_logits(
    logits: Float[Array, "B V"], *, top_k: int = 0, top_p: float = 1.0
) -> Float[Array, "B V"]:
    """Set logits outside the top-k / nucleus to -inf (float32).

    top-k keeps the ``top_k`` largest logits (0 = off). Then top-p keeps the smallest prefix of
    tokens, by decreasing probability under ``softmax`` of what is left, whose mass reaches
    ``top_p`` (1.0 = off); the most likely token is always kept. Ties at a threshold are kept.
    """
    logits = logits.astype(jnp.float32)
    if top_k > 0:
        kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
        logits = jnp.where(logits >= kth, logits, _NEG_INF)
    if top_p < 1.0:
        desc = jnp.sort(logits, axis=-1)[:, ::-1]
        probs = jax.nn.softmax(desc, axis=-1)
        mass_before = jnp.cumsum(probs, axis=-1) - probs
        n_keep = jnp.sum(mass_before < top_p, axis=-1, keepdims=True)
        threshold = jnp.take_along_axis(desc, n_keep - 1, axis=-1)
        logits = jnp.where(logits >= threshold, logits, _NEG_INF)
    return logits


def _categorical(key: jax.Array, logits: Float[Array, "B V"]) -> Int[Array, " B"]:
    """One draw per row from ``softmax(logits)`` by inversion of the CDF.

    With ``u ~ U[0, 1)`` per row and ``c`` the running sum of ``exp(logits - max)``, the draw is
    the first token whose ``c`` exceeds ``u * c[-1]``: tokens of probability 0 (``-inf``) are never
    drawn. One uniform per row instead of the Gumbel trick's one per logit (whose random bits
    and logs dominated the decode step on CPU); the prefix sum is a parallel scan (float32 error
    O(log V) ulps).
    """
    p = jnp.exp(logits - jnp.max(logits, axis=-1, keepdims=True))
    c = jnp.cumsum(p, axis=-1)
    u = jax.random.uniform(key, (logits.shape[0], 1), jnp.float32)
    drawn = jnp.sum(c <= u * c[:, -1:], axis=-1)
    return jnp.minimum(drawn, logits.shape[-1] - 1).astype(jnp.int32)


class SampleOutput(NamedTuple):
    """Sampled completions, ``[B, N, L]`` with ``L = max_new_tokens``.

    Attributes:
      tokens: int32 new tokens; ``pad_id`` after a row stopped.
      mask: int32, 1 on generated tokens (the stop token included), 0 after.
      logprobs: float32 ``log pi(token)`` under the model's own distribution (temperature 1, no
        truncation), 0 where ``mask`` is 0: the policy log-prob for KL and policy gradients.
      sampling_logprobs: float32 log-prob under the distribution actually sampled (temperature,
        top-k, top-p applied; 0 for greedy decoding), 0 where ``mask`` is 0.
      lengths: int32 ``[B, N]`` number of generated tokens.
    """

    tokens: Int[Array, "B N L"]
    mask: Int[Array, "B N L"]
    logprobs: Float[Array, "B N L"]
    sampling_logprobs: Float[Array, "B N L"]
    lengths: Int[Array, "B N"]


def _prefill(module: CausalLM, tokens, mask, cache):
    hidden, cache = module.transformer(tokens, segment_ids=mask, cache=cache, decode=True)
    last = jnp.max(jnp.where(mask > 0, jnp.arange(tokens.shape[1]), 0), axis=1)
    return module.logits(jnp.take_along_axis(hidden, last[:, None, None], axis=1))[:, 0], cache


def _step(module: CausalLM, token, live, cache):
    logits, cache = module(token[:, None], segment_ids=live[:, None], cache=cache, decode=True)
    return logits[:, 0], cache


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "max_new_tokens",
        "num_samples",
        "top_k",
        "top_p",
        "stop_tokens",
        "token_range",
    ),
)
def sample(
    model: CausalLM,
    params: Any,
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    key: jax.Array,
    *,
    max_new_tokens: int,
    num_samples: int = 1,
    temperature: float | Float[Array, ""] = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    stop_tokens: tuple[int, ...] = (),
    pad_id: int | Int[Array, ""] = 0,
    token_range: tuple[int, int] | None = None,
) -> SampleOutput:
    """Sample ``num_samples`` completions of each prompt with a KV cache, in one jitted call.

    Each step draws ``y ~ softmax(filter(logits / temperature))`` (``temperature == 0``: greedy),
    where ``filter`` applies top-k, then top-p to the renormalised top-k distribution, and the
    logits are first restricted to ``token_range`` (``restrict_logits``; the ``logprobs`` too);
    a row stops after emitting any of ``stop_tokens`` or after ``max_new_tokens`` tokens.

    Args:
      model: the ``CausalLM`` (static: its config is part of the compiled program).
      params: its parameters.
      prompt_tokens, prompt_mask: prompts and their 0/1 masks, left- or right-padded; every
        prompt needs at least one real token (e.g. a BOS token).
      key: PRNG key; the same key gives the same samples.
      max_new_tokens, num_samples, top_k, top_p, stop_tokens, token_range: static settings (a
        change recompiles); ``temperature`` and ``pad_id`` are traced (no recompilation).

    Returns:
      ``SampleOutput`` with ``[B, num_samples, max_new_tokens]`` arrays.
    """
    b, p = prompt_tokens.shape
    rows = b * num_samples
    prompt_tokens = jnp.repeat(prompt_tokens, num_samples, axis=0)
    prompt_mask = jnp.repeat(prompt_mask.astype(jnp.int32), num_samples, axis=0)
    cache = init_cache(model.config, rows, p + max_new_tokens)
    logits, cache = model.apply(params, prompt_tokens, prompt_mask, cache, method=_prefill)
    temperature = jnp.asarray(temperature, jnp.float32)
    greedy = temperature <= 0
    inv_temp = jnp.where(greedy, 1.0, 1.0 / jnp.where(greedy, 1.0, temperature))
    stops = jnp.asarray(stop_tokens, jnp.int32)
    out_shape = (rows, max_new_tokens)

    def body(state):
        t, logits, cache, done, toks, lps, slps = state
        logits = restrict_logits(logits, token_range)
        filtered = filter_logits(logits * inv_temp, top_k=top_k, top_p=top_p)
        drawn = _categorical(jax.random.fold_in(key, t), filtered)
        token = jnp.where(greedy, jnp.argmax(logits, axis=-1), drawn).astype(jnp.int32)
        live = ~done
        token = jnp.where(live, token, pad_id)
        lp = token_logprobs(logits, token)
        slp = jnp.where(greedy, 0.0, token_logprobs(filtered, token))
        toks = toks.at[:, t].set(token)
        lps = lps.at[:, t].set(jnp.where(live, lp, 0.0))
        slps = slps.at[:, t].set(jnp.where(live, slp, 0.0))
        done = done | jnp.isin(token, stops)
        logits, cache = model.apply(params, token, live.astype(jnp.int32), cache, method=_step)
        return t + 1, logits, cache, done, toks, lps, slps

    def cond(state):
        t, _, _, done, *_ = state
        return (t < max_new_tokens) & ~jnp.all(done)

    init = (
        jnp.zeros((), jnp.int32),
        logits,
        cache,
        jnp.zeros((rows,), bool),
        jnp.full(out_shape, pad_id, jnp.int32),
        jnp.zeros(out_shape, jnp.float32),
        jnp.zeros(out_shape, jnp.float32),
    )
    t, _, _, _, toks, lps, slps = jax.lax.while_loop(cond, body, init)
    # A row is live at step s iff it has not emitted a stop token before s (and s was run).
    stopped = jnp.isin(toks, stops)
    before = jnp.cumsum(stopped, axis=1) - stopped
    mask = ((before == 0) & (jnp.arange(max_new_tokens) < t)).astype(jnp.int32)
    reshape = lambda x: x.reshape(b, num_samples, max_new_tokens)
    return SampleOutput(
        tokens=reshape(toks),
        mask=reshape(mask),
        logprobs=reshape(lps),
        sampling_logprobs=reshape(slps),
        lengths=mask.sum(axis=1).reshape(b, num_samples),
    )
