"""rewardjax.search scorers (exact Markov LM and PRM, noisy PRM) and best-of-N / weighted voting,
each against a NumPy reference written here (enumeration, dictionaries of answer totals)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import search
from rewardjax.data import synthetic

V, T, P = 3, 4, 2


@pytest.fixture(scope="module")
def task():
    return synthetic.make_markov_task(3, vocab_size=V, length=T, prompt_length=P)


def _np_value(task, y0, prefix):
    """E[gold | y0, prefix] by enumerating every continuation of the base chain."""
    trans, reward = task.transition, task.bigram_reward
    total = 0.0
    for rest in itertools.product(range(V), repeat=T - len(prefix)):
        seq = [y0, *prefix, *rest]
        prob = np.prod([trans[seq[i], seq[i + 1]] for i in range(len(prefix), T)])
        total += prob * sum(reward[seq[i], seq[i + 1]] for i in range(T))
    return total


def test_markov_chain_lm_is_the_chain(task):
    model, params = search.markov_chain_lm(task)
    tokens = jnp.asarray([[1, 2, 3, 1, 1, 2]])
    logits, _ = jax.jit(model.apply)(params, tokens)
    probs = np.asarray(jax.nn.softmax(logits[0], axis=-1))
    np.testing.assert_allclose(probs[:, 1:], task.transition[np.asarray(tokens[0]) - 1], atol=1e-6)
    assert np.all(probs[:, 0] == 0.0)  # the pad id is never generated


def test_markov_value_against_enumeration(task):
    scorer, params = search.markov_value_scorer(task)
    rng = np.random.default_rng(0)
    prompts = synthetic.to_ids(rng.integers(0, V, (12, P)))
    prompts[0, 0] = 0  # a left-padded prompt: y0 is still the last real token
    prompt_mask = (prompts > 0).astype(np.int32)
    completion = synthetic.to_ids(rng.integers(0, V, (12, T)))
    lengths = np.arange(12) % (T + 1)
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)
    got = jax.jit(scorer)(params, prompts, prompt_mask, completion, mask)
    want = [
        _np_value(task, prompts[i, -1] - 1, list(completion[i, : lengths[i]] - 1))
        for i in range(12)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    gold = search.markov_gold(task, prompts, prompt_mask, completion, np.ones_like(completion))
    full = lengths == T
    np.testing.assert_allclose(np.asarray(gold)[full], np.asarray(want)[full], rtol=1e-5)


def test_pattern_bonus_refused():
    task = synthetic.make_markov_task(0, vocab_size=V, length=T, pattern=(1,), pattern_bonus=1.0)
    with pytest.raises(ValueError, match="pattern"):
        search.markov_value_scorer(task)


def test_noisy_scorer_is_a_fixed_function_of_the_prefix(task):
    scorer, params = search.markov_value_scorer(task)
    noisy, nparams = search.noisy_scorer(scorer, params, jax.random.key(0), std=0.7)
    assert search.noisy_scorer(scorer, params, jax.random.key(1), std=0.1)[0] is noisy
    # Every prefix of length 3 of every prompt token: 3 * 27 distinct prefixes.
    seqs = np.array(list(itertools.product(range(V), repeat=3)))
    prompts = synthetic.to_ids(np.repeat(np.arange(V), len(seqs))[:, None].repeat(P, 1))
    completion = synthetic.to_ids(np.pad(np.tile(seqs, (V, 1)), ((0, 0), (0, 1))))
    mask = np.pad(np.ones((len(completion), 3), np.int32), ((0, 0), (0, 1)))
    pm = np.ones_like(prompts)
    fn, exact = jax.jit(noisy), jax.jit(scorer)
    err = np.asarray(
        fn(nparams, prompts, pm, completion, mask) - exact(params, prompts, pm, completion, mask)
    )
    # Padding beyond the prefix does not change the error; a second call gives the same values.
    junk = completion.copy()
    junk[:, 3] = 1
    err2 = np.asarray(fn(nparams, prompts, pm, junk, mask) - exact(params, prompts, pm, junk, mask))
    np.testing.assert_allclose(err, err2, atol=1e-5)
    # Nor does the amount of prompt padding (left-padding every prompt by one more column).
    padded = np.pad(prompts, ((0, 0), (1, 0)))
    pm_padded = np.pad(pm, ((0, 0), (1, 0)))
    err3 = np.asarray(
        fn(nparams, padded, pm_padded, completion, mask)
        - exact(params, padded, pm_padded, completion, mask)
    )
    np.testing.assert_allclose(err, err3, atol=1e-5)
    assert len(np.unique(np.round(err, 5))) == len(err)  # distinct prefixes, distinct errors
    # N(0, 0.7²) over 81 prefixes: mean within 4 standard errors, std within 30 %.
    assert abs(err.mean()) < 4 * 0.7 / np.sqrt(len(err))
    assert 0.7 * 0.7 < err.std() < 0.7 * 1.3
    zero = search.noisy_scorer(scorer, params, jax.random.key(0), std=0.0)[1]
    np.testing.assert_allclose(
        fn(zero, prompts, pm, completion, mask), exact(params, prompts, pm, completion, mask)
    )


def _np_weighted_vote(answers, scores):
    """Dictionary of totals; ties to the answer seen first; the best-scored member (first)."""
    totals, order = {}, []
    for a, s in zip(answers, scores):
        if a not in totals:
            order.append(a)
            totals[a] = 0.0
        totals[a] += s
    best = max(order, key=lambda a: (totals[a], -order.index(a)))
    members = [i for i, a in enumerate(answers) if a == best]
    index = max(members, key=lambda i: (scores[i], -i))
    return index, best, totals[best]


def test_weighted_and_majority_vote_against_numpy():
    rng = np.random.default_rng(1)
    answers = rng.integers(0, 4, (6, 5, 9))
    scores = rng.random((6, 5, 9)).astype(np.float32)
    scores[0, 0] = 1.0  # all-equal scores: ties broken by first occurrence
    out = search.weighted_vote(answers, scores)
    assert out.index.shape == (6, 5) and out.totals.shape == (6, 5, 9)
    for i, j in np.ndindex(6, 5):
        index, answer, total = _np_weighted_vote(list(answers[i, j]), list(scores[i, j]))
        assert (int(out.index[i, j]), int(out.answer[i, j])) == (index, answer)
        np.testing.assert_allclose(out.total[i, j], total, rtol=1e-6)
    maj = search.majority_vote(answers)
    for i, j in np.ndindex(6, 5):
        counts = np.bincount(answers[i, j], minlength=4)
        firsts = [list(answers[i, j]).index(a) if counts[a] else 99 for a in range(4)]
        want = min((a for a in range(4) if counts[a] == counts.max()), key=lambda a: firsts[a])
        assert int(maj.answer[i, j]) == want and int(maj.total[i, j]) == counts.max()
    # `where` removes candidates from the vote.
    where = np.ones((9,), bool)
    where[:4] = False
    out = search.weighted_vote(answers[0, 0], scores[0, 0], where=where)
    index, answer, _ = _np_weighted_vote(list(answers[0, 0, 4:]), list(scores[0, 0, 4:]))
    assert (int(out.index), int(out.answer)) == (index + 4, answer)


@pytest.fixture(scope="module")
def searched(task):
    model, params = search.markov_chain_lm(task)
    scorer, sparams = search.markov_value_scorer(task)
    prompts = synthetic.to_ids(synthetic.sample_prompts(task, jax.random.key(0), 6))
    pm = jnp.ones_like(prompts)
    kw = dict(scorer=scorer, scorer_params=sparams, num_samples=16, max_new_tokens=T)
    bon = search.best_of_n_search(model, params, prompts, pm, jax.random.key(1), **kw)
    vote = search.weighted_vote_search(
        model, params, prompts, pm, jax.random.key(2), answer_fn=search.last_token_answer, **kw
    )
    return prompts, bon, vote


def _np_gold(task, prompts, completions):
    y0 = np.broadcast_to(prompts[..., -1:], (*completions.shape[:-1], 1))
    y = np.concatenate([y0, completions], axis=-1) - 1
    return task.bigram_reward[y[..., :-1], y[..., 1:]].sum(-1)


def test_best_of_n_search(task, searched):
    prompts, out, _ = searched
    prompts = np.asarray(prompts)
    gold = _np_gold(task, prompts[:, None], np.asarray(out.candidates))  # [B, N]
    np.testing.assert_allclose(out.candidate_scores, gold, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out.scores, gold.max(1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        _np_gold(task, prompts, np.asarray(out.tokens)), gold.max(1), atol=1e-5
    )
    # log π of the chosen completion: the chain's log transition probabilities.
    y = np.concatenate([prompts[:, -1:], np.asarray(out.tokens)], axis=1) - 1
    np.testing.assert_allclose(
        out.logprobs, np.log(task.transition[y[:, :-1], y[:, 1:]]), atol=1e-5
    )
    assert np.all(out.tokens_generated == 16 * T) and np.all(out.scorer_calls == 16)
    assert np.all(out.mask == 1)


def test_weighted_vote_search(task, searched):
    prompts, _, out = searched
    cands, scores = np.asarray(out.candidates), np.asarray(out.candidate_scores)
    np.testing.assert_allclose(
        scores, _np_gold(task, np.asarray(prompts)[:, None], cands), atol=1e-5
    )
    for i in range(len(cands)):
        index, _, total = _np_weighted_vote(list(cands[i, :, -1]), list(scores[i]))
        np.testing.assert_array_equal(out.tokens[i], cands[i, index])
        np.testing.assert_allclose(out.scores[i], total, rtol=1e-5)


def test_sequence_scorer_concatenates_prompt_and_completion():
    def fn(params, tokens, mask, completion_mask):
        return jnp.sum(params * tokens * mask + 100 * completion_mask * tokens, axis=1)

    scorer = search.sequence_scorer(fn)
    assert search.sequence_scorer(fn) is scorer
    prompts, pm = np.array([[0, 2, 3]]), np.array([[0, 1, 1]])
    comp, cm = np.array([[1, 4, 2]]), np.array([[1, 1, 0]])
    got = scorer(jnp.float32(2.0), prompts, pm, comp, cm)
    np.testing.assert_allclose(got, [2 * (2 + 3 + 1 + 4) + 100 * (1 + 4)])


def test_public_names():
    for name in search.__all__:
        assert hasattr(search, name), name
    assert {
        "Scorer",
        "SearchOutput",
        "args_decode",
        "beam_search",
        "best_of_n_search",
        "markov_value_scorer",
        "noisy_scorer",
        "weighted_vote",
        "weighted_vote_search",
    } <= set(search.__all__)
