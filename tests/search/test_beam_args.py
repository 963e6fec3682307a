"""PRM beam search and ARGS against brute force in NumPy (enumeration of every continuation on a
tiny vocabulary, a NumPy ARGS step on the exact Markov chain), and their KV-cache paths against a
full forward of a random transformer whose logits depend on the whole context."""

import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import search
from rewardjax.data import synthetic
from rewardjax.models import CausalLM, TransformerConfig

VOCAB, K, STEPS, BEAMS = 3, 2, 3, 2  # ids 0..2, 2 tokens per step, 3 steps, 2 beams


def table_score(params, prompt_tokens, prompt_mask, completion, completion_mask):
    """A deterministic, non-additive prefix scorer (jnp): cos(Σ_t w[t, y_t] + u[last prompt])."""
    w, u = params
    m = completion_mask > 0
    lin = jnp.sum(jnp.where(m, w[jnp.arange(completion.shape[1]), completion], 0.0), axis=1)
    last = jnp.max(jnp.where(prompt_mask > 0, jnp.arange(prompt_tokens.shape[1]), 0), axis=1)
    x0 = jnp.take_along_axis(prompt_tokens, last[:, None], axis=1)[:, 0]
    return jnp.cos(lin + u[x0]) + 0.1 * lin


def _np_table_score(params, x0, prefix):
    w, u = (np.asarray(a, np.float64) for a in params)
    lin = sum(w[t, y] for t, y in enumerate(prefix))
    return np.cos(lin + u[x0]) + 0.1 * lin


def _np_beam_search(params, x0, num_beams):
    """Brute force: every k-token continuation of every beam, keep the top by score."""
    beams = [()]
    for _ in range(STEPS):
        cands = [b + z for b in beams for z in itertools.product(range(VOCAB), repeat=K)]
        scores = np.array([_np_table_score(params, x0, c) for c in cands])
        order = np.argsort(-scores, kind="stable")[:num_beams]
        beams, kept = [cands[i] for i in order], scores[order]
    return beams, kept


@pytest.fixture(scope="module")
def lm():
    """A random 1-layer transformer (parameters drawn in NumPy: no compilation) whose next-token
    law depends on the whole context, and its jitted full forward (the cache-free reference)."""
    cfg = TransformerConfig(
        vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=16
    )
    model = CausalLM(cfg)
    shapes = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), jnp.ones((1, 4), int)))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda x: jnp.asarray(rng.normal(0.0, 0.5, x.shape), jnp.float32), shapes
    )
    return model, params, jax.jit(model.apply)


def _np_logprobs(logits):
    logits = np.asarray(logits, np.float64)
    return (
        logits
        - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )


@pytest.fixture(scope="module")
def prompts():
    tokens = jnp.asarray([[0, 1, 2], [2, 2, 1], [0, 0, 2]], jnp.int32)
    mask = jnp.asarray([[0, 1, 1], [1, 1, 1], [0, 0, 1]], jnp.int32)  # left-padded
    return tokens, mask


def test_beam_search_all_candidates_equals_brute_force(lm, prompts):
    model, params, _ = lm
    rng = np.random.default_rng(0)
    sparams = (
        jnp.asarray(rng.normal(size=(K * STEPS, VOCAB))),
        jnp.asarray(rng.normal(size=VOCAB)),
    )
    out = search.beam_search(
        model, params, *prompts, jax.random.key(0), scorer=table_score, scorer_params=sparams,
        num_beams=BEAMS, expand=VOCAB**K, step_tokens=K, num_steps=STEPS, expansion="all",
    )  # fmt: skip
    for i, x0 in enumerate([2, 1, 2]):
        beams, kept = _np_beam_search(sparams, x0, BEAMS)
        assert [tuple(b) for b in np.asarray(out.candidates[i]).tolist()] == beams
        np.testing.assert_allclose(out.candidate_scores[i], kept, rtol=1e-5, atol=1e-5)
        assert tuple(np.asarray(out.tokens[i]).tolist()) == beams[0]
    assert np.all(out.tokens_generated == BEAMS * VOCAB**K * K * STEPS)
    assert np.all(out.scorer_calls == BEAMS * VOCAB**K * STEPS)
    with pytest.raises(ValueError, match="expand must be"):
        search.beam_search(
            model, params, *prompts, jax.random.key(0), scorer=table_score, scorer_params=sparams,
            num_beams=BEAMS, expand=4, step_tokens=K, num_steps=STEPS, expansion="all",
        )  # fmt: skip


ROWS = 256  # every full-forward reference runs on [ROWS, 3 + 6] tokens: one compiled forward


def _forward_logprobs(lm, tokens, mask):
    """log softmax of the cache-free forward, rows padded to ROWS (one compiled shape)."""
    _, params, forward = lm
    n = len(tokens)
    pad = ((0, ROWS - n), (0, 0))
    logits, _ = forward(params, np.pad(tokens, pad), segment_ids=np.pad(mask, pad))
    return _np_logprobs(logits[:n])


def test_sampled_beam_search_cache_and_single_compile(lm, prompts):
    """The beams' log-probs (from the gathered KV cache) equal a full forward of the returned
    tokens, the beams are sorted and scored by the scorer, and new keys/params reuse the program."""
    model, params, _ = lm
    rng = np.random.default_rng(1)
    kw = dict(scorer=table_score, num_beams=BEAMS, expand=3, step_tokens=K, num_steps=STEPS)
    size = search.beam_search._cache_size()
    tokens, mask = (np.asarray(x) for x in prompts)
    for seed in range(2):
        sparams = (
            jnp.asarray(rng.normal(size=(K * STEPS, VOCAB))),
            jnp.asarray(rng.normal(size=3)),
        )
        out = search.beam_search(
            model, params, *prompts, jax.random.key(seed), scorer_params=sparams,
            temperature=1.0 + seed, **kw,
        )  # fmt: skip
        beams = np.asarray(out.candidates).reshape(-1, 6)
        full = np.concatenate([np.repeat(tokens, BEAMS, 0), beams], 1)
        fmask = np.concatenate([np.repeat(mask, BEAMS, 0), np.ones_like(beams)], 1)
        logp = _forward_logprobs(lm, full, fmask)  # position 2 + t predicts completion token t
        want = np.take_along_axis(logp[:, 2:8], beams[..., None], axis=-1)[..., 0]
        np.testing.assert_allclose(want.reshape(3, BEAMS, 6)[:, 0], out.logprobs, atol=2e-5)
        for i, x0 in enumerate([2, 1, 2]):
            want = [_np_table_score(sparams, x0, c) for c in np.asarray(out.candidates[i])]
            np.testing.assert_allclose(out.candidate_scores[i], want, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(np.asarray(out.candidate_scores), axis=1) <= 0)
    assert search.beam_search._cache_size() == size + 1


def _np_reward_to_go(task):
    trans, reward, t_len = task.transition, task.bigram_reward, task.length
    w = np.zeros((t_len + 1, trans.shape[0]))
    for t in range(t_len - 1, -1, -1):
        w[t] = (trans * (reward + w[t + 1][None])).sum(1)
    return w


def test_markov_args_policy_against_numpy():
    """The exact law of sampled ARGS with the exact PRM (the study's KL): at position t after a,
    softmax over the top-k b of (log p(b | a) + w (r(a, b) + W_t(b))) / τ."""
    task = synthetic.make_markov_task(5, vocab_size=3, length=4, prompt_length=2)
    w_table = _np_reward_to_go(task)
    policy = np.asarray(search.markov_args_policy(task, 0.7, num_candidates=2, temperature=0.5))
    for t, a in itertools.product(range(task.length), range(3)):
        logp = np.log(task.transition[a])
        cand = np.argsort(-logp, kind="stable")[:2]
        score = (logp[cand] + 0.7 * (task.bigram_reward[a, cand] + w_table[t + 1, cand])) / 0.5
        want = np.zeros(3)
        want[cand] = np.exp(score - score.max()) / np.exp(score - score.max()).sum()
        np.testing.assert_allclose(policy[t, a], want, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def many_prompts():
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, VOCAB, (ROWS, 3)).astype(np.int32)
    mask = np.ones_like(tokens)
    mask[::3, 0] = 0  # every third prompt left-padded
    return tokens, mask


def _np_greedy_args(lm, sparams, tokens, mask, weight, k):
    """NumPy ARGS: the top-k tokens of the cache-free forward, re-scored, argmax, token by token."""
    sparams = tuple(np.asarray(x, np.float64) for x in sparams)
    rows, x0 = len(tokens), tokens[:, -1]
    prefix = np.zeros((rows, 6), np.int32)
    for t in range(6):
        full = np.concatenate([tokens, prefix], 1)
        fmask = np.concatenate([mask, np.repeat((np.arange(6) < t)[None], rows, 0)], 1)
        logp = _forward_logprobs(lm, full, fmask.astype(np.int32))[:, 2 + t]
        for i in range(rows):
            cand = np.argsort(-logp[i], kind="stable")[:k]
            score = [
                logp[i, c] + weight * _np_table_score(sparams, x0[i], [*prefix[i, :t], c])
                for c in cand
            ]
            prefix[i, t] = cand[int(np.argmax(score))]
    return prefix, logp


def test_args_greedy_against_numpy_brute_force(lm, many_prompts):
    """Greedy ARGS (KV cache) against NumPy on a cache-free forward: at each position the top-k
    tokens re-scored by logit + w · score(prefix + token), argmax; with w = 0 it is greedy
    decoding of the model, and its log-probs are the model's."""
    model, params, _ = lm
    tokens, mask = many_prompts
    rng = np.random.default_rng(3)
    sparams = (jnp.asarray(rng.normal(size=(6, VOCAB))), jnp.asarray(rng.normal(size=VOCAB)))
    kw = dict(scorer=table_score, scorer_params=sparams, max_new_tokens=6, num_candidates=2)
    size = search.args_decode._cache_size()
    for weight in (1.5, 0.0):
        out = search.args_decode(
            model, params, tokens, mask, jax.random.key(0), weight=weight, temperature=0.0, **kw
        )
        want, _ = _np_greedy_args(lm, sparams, tokens, mask, weight, 2)
        np.testing.assert_array_equal(out.tokens, want)
        final = [_np_table_score(sparams, tokens[i, -1], want[i]) for i in range(ROWS)]
        np.testing.assert_allclose(out.scores, final, rtol=1e-5, atol=1e-5)
    assert search.args_decode._cache_size() == size + 1  # the weight is traced
    full = np.concatenate([tokens, want], 1)
    logp = _forward_logprobs(lm, full, np.concatenate([mask, np.ones_like(want)], 1))
    model_lp = np.take_along_axis(logp[:, 2:8], want[..., None], axis=-1)[..., 0]
    np.testing.assert_allclose(out.logprobs, model_lp, atol=2e-5)
    np.testing.assert_array_equal(want, np.argmax(logp[:, 2:8], axis=-1))  # w = 0: greedy
    assert np.all(out.tokens_generated == 6) and np.all(out.scorer_calls == 12)


def test_args_sampled_first_token_law(lm, many_prompts):
    """Sampled ARGS: the first token of ROWS copies of one prompt follows softmax((logit + w ·
    score) / τ) over the top-k (NumPy), within 4 binomial standard errors."""
    model, params, _ = lm
    tokens, mask = many_prompts
    one, one_mask = np.repeat(tokens[1:2], ROWS, 0), np.repeat(mask[1:2], ROWS, 0)
    rng = np.random.default_rng(4)
    sparams = (jnp.asarray(rng.normal(size=(6, VOCAB))), jnp.asarray(rng.normal(size=VOCAB)))
    out = search.args_decode(
        model, params, one, one_mask, jax.random.key(5), scorer=table_score, scorer_params=sparams,
        weight=0.8, temperature=0.7, max_new_tokens=6, num_candidates=2,
    )  # fmt: skip
    full = np.concatenate([one, np.zeros((ROWS, 6), np.int32)], 1)
    fmask = np.concatenate([one_mask, np.zeros((ROWS, 6), np.int32)], 1)
    logp = _forward_logprobs(lm, full, fmask)[0, 2]
    cand = np.argsort(-logp, kind="stable")[:2]
    score = (
        np.array([logp[c] + 0.8 * _np_table_score(sparams, one[0, -1], [c]) for c in cand]) / 0.7
    )
    probs = np.zeros(VOCAB)
    probs[cand] = np.exp(score - score.max()) / np.exp(score - score.max()).sum()
    freq = np.bincount(np.asarray(out.tokens[:, 0]), minlength=VOCAB) / ROWS
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(0.25 / ROWS))
