"""PRM beam search and ARGS against brute force in NumPy (enumeration of every continuation on a
tiny vocabulary, a NumPy ARGS step on the exact Markov chain), and their KV-cache paths against a
full forward of a random transformer whose logits depend on the whole context."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import sampling, search
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
    cfg = TransformerConfig(
        vocab_size=VOCAB, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=16, init_std=0.5
    )
    model = CausalLM(cfg)
    return model, jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4), jnp.int32))


@pytest.fixture(scope="module")
def prompts():
    tokens = jnp.asarray([[0, 1, 2], [2, 2, 1], [0, 0, 2]], jnp.int32)
    mask = jnp.asarray([[0, 1, 1], [1, 1, 1], [0, 0, 1]], jnp.int32)  # left-padded
    return tokens, mask


def test_beam_search_all_candidates_equals_brute_force(lm, prompts):
    model, params = lm
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


def test_sampled_beam_search_cache_and_single_compile(lm, prompts):
    """The beams' log-probs (from the gathered KV cache) equal a full forward of the returned
    tokens, the beams are sorted and scored by the scorer, and new keys/params reuse the program."""
    model, params = lm
    rng = np.random.default_rng(1)
    kw = dict(scorer=table_score, num_beams=BEAMS, expand=3, step_tokens=K, num_steps=STEPS)
    size = search.beam_search._cache_size()
    for seed in range(2):
        sparams = (
            jnp.asarray(rng.normal(size=(K * STEPS, VOCAB))),
            jnp.asarray(rng.normal(size=3)),
        )
        out = search.beam_search(
            model, params, *prompts, jax.random.key(seed), scorer_params=sparams,
            temperature=1.0 + seed, **kw,
        )  # fmt: skip
        tokens, mask = prompts
        full = jnp.concatenate([jnp.repeat(tokens, BEAMS, 0), out.candidates.reshape(-1, 6)], 1)
        fmask = jnp.concatenate([jnp.repeat(mask, BEAMS, 0), jnp.ones((3 * BEAMS, 6), int)], 1)
        comp = jnp.concatenate([jnp.zeros_like(fmask[:, :3]), fmask[:, 3:]], 1)
        lp = sampling.completion_logprobs(model, params, full, mask=fmask, completion_mask=comp)
        # Left-padded prompts: the completion is the last 6 columns of the forward.
        np.testing.assert_allclose(
            np.asarray(lp[:, 3:]).reshape(3, BEAMS, 6)[:, 0], out.logprobs, atol=2e-5
        )
        for i, x0 in enumerate([2, 1, 2]):
            want = [_np_table_score(sparams, x0, c) for c in np.asarray(out.candidates[i])]
            np.testing.assert_allclose(out.candidate_scores[i], want, rtol=1e-5, atol=1e-5)
        assert np.all(np.diff(np.asarray(out.candidate_scores), axis=1) <= 0)
    assert search.beam_search._cache_size() == size + 1


@pytest.fixture(scope="module")
def markov():
    task = synthetic.make_markov_task(5, vocab_size=3, length=4, prompt_length=2)
    model, params = search.markov_chain_lm(task)
    scorer, sparams = search.markov_value_scorer(task)
    return task, model, params, scorer, sparams


def _np_reward_to_go(task):
    trans, reward, t_len = task.transition, task.bigram_reward, task.length
    w = np.zeros((t_len + 1, trans.shape[0]))
    for t in range(t_len - 1, -1, -1):
        w[t] = (trans * (reward + w[t + 1][None])).sum(1)
    return w


def _np_args_scores(task, w_table, y0, prefix, weight, k):
    """ARGS scores of the top-k next tokens b: log p(b | a) + w (collected + r(a, b) + W(b))."""
    trans, reward = task.transition, task.bigram_reward
    seq = [y0, *prefix]
    collected = sum(reward[seq[i], seq[i + 1]] for i in range(len(prefix)))
    logits = np.log(trans[seq[-1]])
    cand = np.argsort(-logits, kind="stable")[:k]
    t = len(prefix) + 1
    return cand, logits[cand] + weight * (collected + reward[seq[-1], cand] + w_table[t, cand])


ROWS = 256


def test_args_greedy_and_sampled_against_numpy(markov):
    task, model, params, scorer, sparams = markov
    w_table = _np_reward_to_go(task)
    prompts = synthetic.to_ids(synthetic.sample_prompts(task, jax.random.key(0), ROWS))
    pm = jnp.ones_like(prompts)
    kw = dict(scorer=scorer, scorer_params=sparams, max_new_tokens=task.length, num_candidates=2)
    for weight in (0.0, 2.0):
        out = search.args_decode(model, params, prompts, pm, jax.random.key(1), weight=weight, **kw)
        for i in range(8):
            y0, prefix = int(prompts[i, -1]) - 1, []
            for _ in range(task.length):
                cand, score = _np_args_scores(task, w_table, y0, prefix, weight, 2)
                prefix.append(int(cand[np.argmax(score)]))
            np.testing.assert_array_equal(np.asarray(out.tokens[i]) - 1, prefix)
        y = np.concatenate([np.asarray(prompts[:, -1:]), np.asarray(out.tokens)], 1) - 1
        gold = task.bigram_reward[y[:, :-1], y[:, 1:]].sum(1)
        np.testing.assert_allclose(out.scores, gold, rtol=1e-5, atol=1e-5)
        if weight == 0.0:
            greedy = np.argmax(task.transition, axis=1)  # greedy decoding of the chain
            want = [y0 := int(p) - 1 for p in np.asarray(prompts[:8, -1])]
            for i, y0 in enumerate(want):
                seq = [y0]
                for _ in range(task.length):
                    seq.append(int(greedy[seq[-1]]))
                np.testing.assert_array_equal(np.asarray(out.tokens[i]) - 1, seq[1:])
    # Sampled ARGS (τ = 1, all 3 tokens): the first token's law is softmax of the NumPy scores.
    one = jnp.broadcast_to(prompts[:1], prompts.shape)
    kw["num_candidates"] = 3
    size = search.args_decode._cache_size()
    out = search.args_decode(
        model, params, one, pm, jax.random.key(2), weight=1.5, temperature=1.0, **kw
    )
    search.args_decode(model, params, one, pm, jax.random.key(3), weight=0.5, temperature=0.5, **kw)
    assert search.args_decode._cache_size() == size + 1  # weight and temperature are traced
    cand, score = _np_args_scores(task, w_table, int(one[0, -1]) - 1, [], 1.5, 3)
    probs = np.zeros(3)
    probs[cand] = np.exp(score - score.max()) / np.exp(score - score.max()).sum()
    freq = np.bincount(np.asarray(out.tokens[:, 0]) - 1, minlength=3) / ROWS
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(0.25 / ROWS))
    # The exact ARGS policy of the library (used by the study for KL) at t = 1 from that y0.
    policy = search.markov_args_policy(task, 1.5, num_candidates=3)
    np.testing.assert_allclose(policy[0, int(one[0, -1]) - 1], probs, rtol=1e-5, atol=1e-6)
    policy = np.asarray(search.markov_args_policy(task, 0.7, num_candidates=2, temperature=0.5))
    for t, a in itertools.product(range(task.length), range(3)):
        prefix = [a] * t  # a prefix of t tokens ending in a (the collected reward cancels)
        cand, score = _np_args_scores(task, w_table, a, prefix, 0.7, 2)
        want = np.zeros(3)
        want[cand] = np.exp(2 * (score - score.max())) / np.exp(2 * (score - score.max())).sum()
        np.testing.assert_allclose(policy[t, a], want, rtol=1e-5, atol=1e-6)


def test_args_zero_weight_equals_greedy_sampling_with_cache(lm, prompts):
    """w = 0: greedy ARGS is greedy decoding of a context-dependent model (KV-cache path)."""
    model, params = lm
    sparams = (jnp.zeros((6, VOCAB)), jnp.zeros(VOCAB))
    out = search.args_decode(
        model, params, *prompts, jax.random.key(0), scorer=table_score, scorer_params=sparams,
        weight=0.0, max_new_tokens=6, num_candidates=VOCAB,
    )  # fmt: skip
    ref = sampling.sample(
        model, params, *prompts, jax.random.key(0), max_new_tokens=6, temperature=0.0
    )
    np.testing.assert_array_equal(out.tokens, ref.tokens[:, 0])
    np.testing.assert_allclose(out.logprobs, ref.logprobs[:, 0], atol=1e-5)
