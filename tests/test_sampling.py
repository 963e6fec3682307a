"""Sampler tests: log-probs equal teacher forcing, greedy equals an argmax loop over full forwards,
stop tokens, determinism, no recompilation, and top-k / top-p frequencies against the exact
restricted distribution computed in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from rewardjax import losses
from rewardjax.models import CausalLM, get_preset
from rewardjax.sampling import completion_logprobs, filter_logits, sample

CFG = get_preset("tiny", init_std=0.3)  # wide init: peaked next-token distributions
L = 6  # new tokens
N = 3  # samples per prompt
PROMPTS = jnp.asarray([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]], jnp.int32)
PROMPT_MASK = jnp.asarray([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], jnp.int32)


@pytest.fixture(scope="module")
def lm():
    model = CausalLM(CFG)
    return model, jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4), jnp.int32))


def _sample(lm, key, **kw):
    model, params = lm
    kw = {"temperature": 1.0, "stop_tokens": (), "params": params, **kw}
    return sample(
        model,
        kw.pop("params"),
        PROMPTS,
        PROMPT_MASK,
        key,
        max_new_tokens=L,
        num_samples=N,
        **kw,
    )


@pytest.fixture(scope="module")
def drawn(lm):
    return _sample(lm, jax.random.key(1))


def _np_softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_shapes_and_logprobs_equal_teacher_forcing(lm, drawn):
    model, params = lm
    assert drawn.tokens.shape == drawn.mask.shape == drawn.logprobs.shape == (2, N, L)
    assert drawn.tokens.dtype == jnp.int32 and drawn.logprobs.dtype == jnp.float32
    np.testing.assert_array_equal(drawn.mask, 1)  # no stop tokens: every step is generated
    rows = 2 * N
    full = jnp.concatenate([jnp.repeat(PROMPTS, N, 0), drawn.tokens.reshape(rows, L)], 1)
    mask = jnp.concatenate([jnp.repeat(PROMPT_MASK, N, 0), jnp.ones((rows, L), jnp.int32)], 1)
    completion = jnp.pad(jnp.ones((rows, L), jnp.int32), ((0, 0), (PROMPTS.shape[1], 0)))
    ref = jax.jit(completion_logprobs, static_argnums=0)(
        model, params, full, mask=mask, completion_mask=completion
    )
    np.testing.assert_allclose(drawn.logprobs.reshape(rows, L), ref[:, -L:], atol=1e-5)
    np.testing.assert_array_equal(ref[:, : PROMPTS.shape[1]], 0.0)
    # Summed, it is losses.sequence_logprobs of the shifted logits.
    logits, _ = jax.jit(model.apply)(params, full, segment_ids=mask)
    seq = losses.sequence_logprobs(logits[:, :-1], full[:, 1:], where=completion[:, 1:] > 0)
    np.testing.assert_allclose(ref.sum(1), seq, rtol=1e-5)
    # temperature 1, no truncation: the sampled distribution is the model's.
    np.testing.assert_allclose(drawn.sampling_logprobs, drawn.logprobs, atol=1e-5)
    # the N samples of one prompt are different draws
    assert len({tuple(np.asarray(s)) for s in drawn.tokens[1]}) == N


def test_determinism_and_no_recompilation(lm, drawn):
    _, params = lm
    size = sample._cache_size()
    again = _sample(lm, jax.random.key(1))
    for a, b in zip(drawn, again, strict=True):
        np.testing.assert_array_equal(a, b)
    other = _sample(lm, jax.random.key(2))
    assert np.any(np.asarray(other.tokens) != np.asarray(drawn.tokens))
    scaled = jax.tree.map(lambda x: x * 1.01, params)
    _sample(lm, jax.random.key(3), temperature=0.7, params=scaled)
    assert sample._cache_size() == size


def test_stop_tokens(lm, drawn):
    stop = int(drawn.tokens[0, 0, 2])
    out = _sample(lm, jax.random.key(1), stop_tokens=(stop, 255))
    toks, ref = np.asarray(out.tokens), np.asarray(drawn.tokens)
    for b in range(2):
        for n in range(N):
            hits = np.flatnonzero(np.isin(ref[b, n], [stop, 255]))
            length = hits[0] + 1 if hits.size else L
            # Same key, same logits: identical draws up to the stop token, then padding.
            np.testing.assert_array_equal(toks[b, n, :length], ref[b, n, :length])
            np.testing.assert_array_equal(toks[b, n, length:], 0)
            np.testing.assert_array_equal(out.mask[b, n], np.arange(L) < length)
            assert out.lengths[b, n] == length
            np.testing.assert_array_equal(np.asarray(out.logprobs[b, n, length:]), 0.0)
    assert out.lengths[0, 0] == 3


def test_greedy_equals_argmax_loop_and_is_padding_invariant(lm):
    """Reference: repeatedly run the full (no-cache) forward on the unpadded, right-padded
    sequence and append the argmax; the sampler gets the prompts left-padded."""
    model, params = lm
    out = _sample(lm, jax.random.key(5), temperature=0.0)
    fwd = jax.jit(lambda x, s: model.apply(params, x, segment_ids=s)[0])
    size = PROMPTS.shape[1] + L
    for b in range(2):
        seq = [int(t) for t, m in zip(PROMPTS[b], PROMPT_MASK[b], strict=True) if m]
        for _ in range(L):
            buf = np.zeros((1, size), np.int32)
            buf[0, : len(seq)] = seq
            logits = fwd(jnp.asarray(buf), jnp.asarray(buf * 0 + (np.arange(size) < len(seq))))
            seq.append(int(jnp.argmax(logits[0, len(seq) - 1])))
        for n in range(N):
            np.testing.assert_array_equal(out.tokens[b, n], seq[-L:])
    np.testing.assert_array_equal(out.sampling_logprobs, 0.0)


@pytest.mark.parametrize(
    "top_k, top_p, temperature", [(5, 1.0, 0.8), (0, 0.8, 1.0)], ids=["top_k", "top_p"]
)
def test_restricted_sampling_frequencies(lm, top_k, top_p, temperature):
    """4000 one-token samples vs the exact (restricted) distribution (NumPy): the support is exact
    and the total-variation distance is below 0.04 (its standard error here is ~0.01)."""
    model, params = lm
    n = 4000
    out = sample(
        model,
        params,
        PROMPTS[1:],
        PROMPT_MASK[1:],
        jax.random.key(7),
        max_new_tokens=1,
        num_samples=n,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    logits, _ = jax.jit(model.apply)(params, PROMPTS[1:])
    z = np.asarray(logits[0, -1], np.float64) / temperature
    order = np.argsort(-z)
    if top_k:
        keep = order[:top_k]
    else:
        probs = _np_softmax(z)[order]
        keep = order[: int(np.searchsorted(np.cumsum(probs), top_p) + 1)]
    exact = np.zeros_like(z)
    exact[keep] = _np_softmax(z[keep])
    assert 2 <= len(keep) < 50  # the restriction is neither trivial nor empty
    tokens = np.asarray(out.tokens[0, :, 0])
    assert set(tokens) <= set(keep)
    freq = np.bincount(tokens, minlength=CFG.vocab_size) / n
    assert 0.5 * np.abs(freq - exact).sum() < 0.04
    np.testing.assert_allclose(out.sampling_logprobs[0, :, 0], np.log(exact[tokens]), atol=1e-4)


def test_full_distribution_chi_square(lm):
    """8000 one-token samples at temperature 1.5 (all 256 tokens possible) vs the exact softmax:
    Pearson's chi-square over bins of expected count >= 5 (the rest pooled), p-value > 1e-3."""
    model, params = lm
    n, temperature = 8000, 1.5
    out = sample(
        model,
        params,
        PROMPTS[1:],
        PROMPT_MASK[1:],
        jax.random.key(11),
        max_new_tokens=1,
        num_samples=n,
        temperature=temperature,
    )
    logits, _ = jax.jit(model.apply)(params, PROMPTS[1:])
    expected = n * _np_softmax(np.asarray(logits[0, -1], np.float64) / temperature)
    observed = np.bincount(np.asarray(out.tokens[0, :, 0]), minlength=CFG.vocab_size)
    big = expected >= 5
    assert big.sum() >= 20  # enough bins for the test to have power
    obs = np.append(observed[big], observed[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    assert scipy.stats.chisquare(obs, exp).pvalue > 1e-3


@pytest.mark.parametrize("top_k, top_p", [(1, 1.0), (3, 1.0), (0, 0.5), (0, 0.95), (4, 0.6)])
def test_filter_logits_reference(top_k, top_p):
    logits = np.random.RandomState(top_k).randn(4, 30).astype(np.float32) * 2
    got = np.isfinite(
        np.asarray(
            jax.jit(filter_logits, static_argnames=("top_k", "top_p"))(
                jnp.asarray(logits), top_k=top_k, top_p=top_p
            )
        )
    )
    for row, kept in zip(logits, got, strict=True):
        order = np.argsort(-row)[: top_k or None]  # top-k first ...
        if top_p < 1:  # ... then the nucleus of the renormalised top-k distribution
            p = _np_softmax(row[order].astype(np.float64))
            order = order[: int(np.searchsorted(np.cumsum(p), top_p) + 1)]
        assert set(np.flatnonzero(kept)) == set(order)


def test_token_range_restricts_the_support_and_renormalises(lm):
    """token_range=(low, high): 2000 draws (and greedy) never leave [low, high); `logprobs` are
    the model's log-softmax over those ids only (NumPy), so a policy's KL and ratio see the same
    distribution it samples from."""
    model, params = lm
    logits, _ = jax.jit(model.apply)(params, PROMPTS[1:])
    z = np.asarray(logits[0, -1], np.float64)
    # a range of 39 ids (the rest are rows the data never holds) without the unrestricted argmax
    top = int(np.argmax(z))
    low = top + 1 if top < 128 else top - 39
    high = low + 39
    out = sample(
        model,
        params,
        PROMPTS[1:],
        PROMPT_MASK[1:],
        jax.random.key(3),
        max_new_tokens=1,
        num_samples=2000,
        token_range=(low, high),
    )
    tokens = np.asarray(out.tokens[0, :, 0])
    assert tokens.min() >= low and tokens.max() < high
    restricted = z[low:high] - np.log(np.exp(z[low:high] - z.max()).sum()) - z.max()
    np.testing.assert_allclose(out.logprobs[0, :, 0], restricted[tokens - low], atol=1e-4)
    # frequencies follow the renormalised softmax (TV distance; standard error ~0.01)
    freq = np.bincount(tokens - low, minlength=high - low) / tokens.size
    assert 0.5 * np.abs(freq - np.exp(restricted)).sum() < 0.05
    greedy = sample(
        model,
        params,
        PROMPTS[1:],
        PROMPT_MASK[1:],
        jax.random.key(3),
        max_new_tokens=1,
        temperature=0.0,
        token_range=(low, high),
    )
    assert int(greedy.tokens[0, 0, 0]) == low + int(np.argmax(z[low:high]))
