"""Prefix sharing (arXiv 2410.20305): one row [prompt | y_1 | ... | y_K] gives the rewards,
log-probs and gradients of the K unshared rows [prompt | y_k], checked against the unshared
forwards and against layouts and masks built by brute force in NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import losses
from rewardjax.models import (
    HEADS,
    CausalLM,
    RewardEnsemble,
    RewardModel,
    RewardModelConfig,
    get_preset,
    score_pairs,
)
from rewardjax.models.prefix import branch_logprobs, share_prefix, shared_length
from rewardjax.models.transformer import branch_attention_mask

BACKBONE = get_preset("tiny", n_layers=1, d_model=32, d_ff=64, vocab_size=40)
T = 10
# Per example: prompt length, then the K response lengths (unequal; one response empty).
LENGTHS = [(3, (4, 2, 5)), (1, (5, 6, 1)), (4, (1, 3, 0)), (2, (8, 7, 3))]
HEAD_KWARGS = {
    "scalar": {},
    "multi_attribute": {"num_attributes": 3},
    "ensemble": {"num_members": 2},
    "ordinal": {"num_bins": 3, "bin_values": [0.0, 1.0, 2.0]},
    "mixture": {"num_components": 2},
}


def _examples(k, seed=0):
    """Right-padded rows [prompt | y_k | pad] of a random prompt shared by the K responses:
    tokens, mask, completion_mask as [B, K, T] NumPy arrays, plus the pieces."""
    rng = np.random.default_rng(seed)
    b = len(LENGTHS)
    tokens = np.zeros((b, k, T), np.int32)
    mask, completion = np.zeros_like(tokens), np.zeros_like(tokens)
    pieces = []
    for i, (p, cs) in enumerate(LENGTHS):
        prompt = rng.integers(1, BACKBONE.vocab_size, p)
        responses = [rng.integers(1, BACKBONE.vocab_size, c) for c in cs[:k]]
        pieces.append((prompt, responses))
        for j, r in enumerate(responses):
            row = np.concatenate([prompt, r])
            tokens[i, j, : len(row)] = row
            mask[i, j, : len(row)] = 1
            completion[i, j, p : len(row)] = 1
    return tokens, mask, completion, pieces


def _pair_batch():
    tokens, mask, completion, _ = _examples(2)
    names = ("tokens", "mask", "completion_mask")
    batch = {}
    for j, side in enumerate(("chosen", "rejected")):
        batch.update({f"{side}_{n}": a[:, j] for n, a in zip(names, (tokens, mask, completion))})
    return batch


def _length(k):
    examples = []
    tokens, mask, _, pieces = _examples(k)
    for i, (prompt, _) in enumerate(pieces):
        seqs = tuple(tokens[i, j, : mask[i, j].sum()] for j in range(k))
        examples.append({"seqs": seqs, "prompt_len": len(prompt)})
    return shared_length(examples, max_length=T, num_responses=k, multiple=1)


def test_shared_rows_match_a_layout_built_by_hand_and_save_the_repeated_prompts():
    k = 3
    tokens, mask, completion, pieces = _examples(k)
    length = _length(k)
    rows = jax.jit(functools.partial(share_prefix, length=length))(tokens, mask, completion)
    rows = jax.tree.map(np.asarray, rows)
    # Longest example: prompt 2 + responses 8 + 7 + 3.
    assert length == 20 < k * T
    for i, (prompt, responses) in enumerate(pieces):
        want_tokens = np.concatenate([prompt, *responses])
        want_branch = np.concatenate(
            [np.zeros(len(prompt))] + [np.full(len(r), j + 1) for j, r in enumerate(responses)]
        )
        n = len(want_tokens)
        np.testing.assert_array_equal(rows.tokens[i, :n], want_tokens)
        np.testing.assert_array_equal(rows.tokens[i, n:], 0)
        np.testing.assert_array_equal(rows.branch_ids[i, :n], want_branch)
        np.testing.assert_array_equal(rows.branch_ids[i, n:], 0)
        np.testing.assert_array_equal(rows.mask[i], np.arange(length) < n)
        np.testing.assert_array_equal(rows.completion_mask[i, :n], want_branch > 0)
        ends = len(prompt) + np.cumsum([len(r) for r in responses])
        want_last = [e - 1 if len(r) else len(prompt) - 1 for e, r in zip(ends, responses)]
        np.testing.assert_array_equal(rows.last_index[i], want_last)
    np.testing.assert_array_equal(rows.overflow, 0)
    # Tokens computed: each repeated prompt once instead of K times.
    prompts = sum(p for p, _ in LENGTHS)
    assert int(mask.sum() - rows.mask.sum()) == (k - 1) * prompts == 20
    # A too-short L cuts tokens and counts them.
    short = share_prefix(tokens, mask, completion, length=12)
    np.testing.assert_array_equal(short.overflow, np.maximum(rows.mask.sum(-1) - 12, 0))


def test_branch_mask_and_positions_equal_a_brute_force_enumeration():
    rng = np.random.default_rng(1)
    segments = np.array([[1, 1, 1, 1, 1, 2, 2, 2, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]])
    # Each segment's prefix first, then its branches (interleaved in the second row).
    branches = np.array([[0, 0, 1, 1, 2, 0, 1, 2, 0, 0], [0, 0, 1, 2, 1, 2, 3, 3, 1, 2]])
    mask = np.asarray(branch_attention_mask(jnp.asarray(segments), jnp.asarray(branches)))
    want = np.zeros_like(mask)
    for b in range(2):
        for i in range(T):
            for j in range(i + 1):
                same = segments[b, i] == segments[b, j] != 0
                want[b, i, j] = same and branches[b, j] in (0, branches[b, i])
    np.testing.assert_array_equal(mask, want)
    # The backbone's hidden states equal those of each branch's tokens run alone, at positions
    # counted within (prefix + branch), for an interleaved layout too.
    model = CausalLM(BACKBONE)
    tokens = rng.integers(1, BACKBONE.vocab_size, (2, T)).astype(np.int32)
    params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens)
    hidden = jax.jit(
        lambda p: model.apply(
            p, tokens, segment_ids=segments, branch_ids=branches, method="hidden_and_logits"
        )[0]
    )(params)
    # Each real token's context alone (the tokens it sees, in order, itself last), right-padded.
    alone, alone_mask, last, where = [], [], [], []
    for b, i in zip(*np.nonzero(segments)):
        keep = np.flatnonzero(want[b, i])
        alone.append(np.pad(tokens[b, keep], (0, T - len(keep))))
        alone_mask.append(np.arange(T) < len(keep))
        last.append(len(keep) - 1)
        where.append((b, i))
    solo = jax.jit(
        lambda p: model.apply(
            p,
            np.stack(alone),
            segment_ids=np.stack(alone_mask).astype(np.int32),
            method="hidden_and_logits",
        )[0]
    )(params)
    hidden, solo = np.asarray(hidden), np.asarray(solo)
    got = np.stack([hidden[b, i] for b, i in where])
    np.testing.assert_allclose(got, solo[np.arange(len(last)), last], atol=1e-5)


@pytest.fixture(scope="module")
def pair_batch():
    return _pair_batch()


@pytest.mark.parametrize("head", sorted(HEADS))
def test_pair_rewards_of_every_head_equal_the_unshared_ones(head, pair_batch):
    model = RewardModel(
        RewardModelConfig(backbone=BACKBONE, head=head, head_kwargs=HEAD_KWARGS[head])
    )
    b = pair_batch
    params = jax.jit(model.init)(
        jax.random.PRNGKey(2), b["chosen_tokens"], b["chosen_mask"], b["chosen_completion_mask"]
    )
    both = jax.jit(
        lambda p: (score_pairs(model, p, b), score_pairs(model, p, b, prefix_length=_length(2)))
    )
    unshared, shared = both(params)
    for u, s in zip(unshared, shared):
        np.testing.assert_allclose(s.reward, u.reward, atol=1e-5, rtol=1e-5)
        assert set(s.aux) == set(u.aux)
        for key in u.aux:
            np.testing.assert_allclose(s.aux[key], u.aux[key], atol=1e-5, rtol=1e-5)


def test_pair_reward_gradients_and_an_ensemble_of_models_equal_the_unshared_ones(pair_batch):
    b, length = pair_batch, _length(2)
    model = RewardModel(RewardModelConfig(backbone=BACKBONE, head="scalar", prefix_length=length))
    params = jax.jit(model.init)(jax.random.PRNGKey(3), b["chosen_tokens"], b["chosen_mask"])

    def loss(p, prefix_length):
        c, r = score_pairs(model, p, b, prefix_length=prefix_length)
        return jnp.mean(losses.bradley_terry(c.reward, r.reward))

    # prefix_length=None falls back to the model's config.prefix_length (shared); the plain
    # model (no prefix_length) scores the rows apart. One compilation for both gradients.
    plain = RewardModel(RewardModelConfig(backbone=BACKBONE, head="scalar"))

    def plain_loss(p):
        c, r = score_pairs(plain, p, b)
        return jnp.mean(losses.bradley_terry(c.reward, r.reward))

    shared_loss = functools.partial(loss, prefix_length=None)
    grads = jax.jit(lambda p: (jax.grad(plain_loss)(p), jax.grad(shared_loss)(p)))
    grad_plain, grad_shared = grads(params)
    for g, h in zip(jax.tree.leaves(grad_plain), jax.tree.leaves(grad_shared), strict=True):
        np.testing.assert_allclose(h, g, atol=1e-5, rtol=1e-4)
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grad_plain)) > 1e-3

    ensemble = RewardEnsemble(RewardModelConfig(backbone=BACKBONE, head="scalar"), num_members=2)
    e_params = jax.jit(ensemble.init)(jax.random.PRNGKey(4), b["chosen_tokens"], b["chosen_mask"])
    pairs = jax.jit(
        lambda p: (score_pairs(ensemble, p, b), score_pairs(ensemble, p, b, prefix_length=length))
    )
    for x, y in zip(*pairs(e_params)):
        assert x.reward.shape == y.reward.shape == (2, len(LENGTHS))
        np.testing.assert_allclose(y.reward, x.reward, atol=1e-5, rtol=1e-5)


def _unshared_logps(model, params, tokens, mask, completion):
    """Σ log π(y_k | x) of each [prompt | y_k] row run on its own: [B, K]."""
    out = []
    for j in range(tokens.shape[1]):
        logits, _ = model.apply(params, tokens[:, j], segment_ids=mask[:, j])
        out.append(
            losses.sequence_logprobs(logits[:, :-1], tokens[:, j, 1:], completion[:, j, 1:] > 0)
        )
    return jnp.stack(out, axis=1)


def _shared_logps(model, params, tokens, mask, completion, length):
    rows = share_prefix(tokens, mask, completion, length=length)
    logits, _ = model.apply(params, rows.tokens, segment_ids=rows.mask, branch_ids=rows.branch_ids)
    return branch_logprobs(logits, rows)


@pytest.mark.parametrize("k", [2, 3])
def test_response_logprobs_and_their_gradients_equal_the_unshared_ones(k):
    """Pairs (DPO) and ranked lists of three: log-probs, counts and a DPO-style gradient."""
    tokens, mask, completion, pieces = _examples(k, seed=5)
    length = _length(k)
    model = CausalLM(BACKBONE)
    params = jax.jit(model.init)(jax.random.PRNGKey(6), tokens[:, 0])
    weights = jnp.asarray([1.0, -2.0, 0.5][:k])

    def both(p):
        u = _unshared_logps(model, p, tokens, mask, completion)
        s, counts = _shared_logps(model, p, tokens, mask, completion, length)
        return u, s, counts

    # log-sigmoid of a weighted sum, like a DPO margin: gradients through the shared prompt.
    objective = lambda i: lambda p: jnp.sum(jax.nn.log_sigmoid(both(p)[i] @ weights))
    run = jax.jit(lambda p: (both(p), jax.grad(objective(0))(p), jax.grad(objective(1))(p)))
    (u, s, counts), g_u, g_s = run(params)
    np.testing.assert_allclose(s, u, atol=1e-5, rtol=1e-5)
    # Counts: every completion token (none at position 0: the prompts are non-empty).
    np.testing.assert_array_equal(counts, [[len(r) for r in rs] for _, rs in pieces])
    for a, c in zip(jax.tree.leaves(g_u), jax.tree.leaves(g_s), strict=True):
        np.testing.assert_allclose(c, a, atol=1e-5, rtol=1e-4)
