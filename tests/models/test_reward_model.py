"""Reward models on the tiny backbone: pooling, padding, multi-response layout, ensembles, implicit
rewards, and parity with transformers' LlamaForSequenceClassification."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import losses
from rewardjax.models import (
    CausalLM,
    EndogenousReward,
    ImplicitReward,
    RewardEnsemble,
    RewardModel,
    RewardModelConfig,
    Transformer,
    config_to_hf,
    get_preset,
    save_hf,
    score_pairs,
)

BACKBONE = get_preset("tiny")
SEP = 255


def _config(head="scalar", **head_kwargs):
    return RewardModelConfig(backbone=BACKBONE, head=head, head_kwargs=head_kwargs)


def _right_padded(seed, lengths, t, prompt_len=3):
    rng = np.random.default_rng(seed)
    real = np.arange(t)[None] < np.asarray(lengths)[:, None]
    tokens = np.where(real, rng.integers(1, SEP, size=(len(lengths), t)), 0).astype(np.int32)
    completion = (real & (np.arange(t)[None] >= prompt_len)).astype(np.int32)
    return tokens, real.astype(np.int32), completion


def _to_left(x, lengths):
    return np.stack([np.roll(row, row.shape[0] - n) for row, n in zip(x, lengths)])


@functools.cache
def _init_fn(model):
    """Jitted `init` returning plain (unboxed) params: eager Flax init is slow on 2 CPU cores."""
    return jax.jit(lambda key, *args: nn.meta.unbox(model.init(key, *args)))


def _init(model, seed, *args):
    return _init_fn(model)(jax.random.key(seed), *args)


@functools.cache
def _apply(model):
    return jax.jit(model.apply)


@jax.jit
def _lm_logits(params, tokens, mask):
    return CausalLM(BACKBONE).apply(params, tokens, segment_ids=mask)[0]


def test_scalar_reward_pools_last_real_token_like_indexing_by_hand():
    lengths = [7, 3, 10, 1]
    tokens, mask, _ = _right_padded(0, lengths, 10)
    model = RewardModel(_config())
    params = _init(model, 0, tokens, mask)
    reward = _apply(model)(params, tokens, mask).reward
    hidden, _ = jax.jit(Transformer(BACKBONE).apply)(
        {"params": params["params"]["backbone"]}, tokens, segment_ids=mask
    )
    last = np.asarray(hidden)[np.arange(4), np.asarray(lengths) - 1]
    head = jax.tree.map(np.asarray, params["params"]["head"]["out"])
    np.testing.assert_allclose(
        reward, (last @ head["kernel"] + head["bias"])[:, 0], rtol=1e-5, atol=1e-6
    )


def test_left_and_right_padding_give_the_same_reward():
    # The mixture head pools the last token (components) and the last prompt token (router).
    lengths = [9, 5, 12, 4]
    tokens, mask, completion = _right_padded(1, lengths, 12)
    model = RewardModel(_config("mixture", num_components=3))
    params = _init(model, 1, tokens, mask, completion)
    apply = _apply(model)
    right = apply(params, tokens, mask, completion)
    left = apply(params, *(_to_left(x, lengths) for x in (tokens, mask, completion)))
    np.testing.assert_allclose(right.reward, left.reward, rtol=1e-5, atol=1e-5)
    for name in right.aux:
        np.testing.assert_allclose(right.aux[name], left.aux[name], rtol=1e-5, atol=1e-5)
    # The context (prompt) matters to the router: changing the prompt changes its weights.
    other = tokens.copy()
    other[:, 0] = (other[:, 0] % 200) + 1
    moved = apply(params, other, mask, completion)
    assert not np.allclose(moved.aux["router_log_probs"], right.aux["router_log_probs"])


def test_init_and_apply_are_deterministic():
    tokens, mask, _ = _right_padded(2, [7, 3, 10, 1], 10)
    model = RewardModel(_config())
    a, b = (_init(model, 3, tokens, mask) for _ in range(2))
    assert all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
    c = _init(model, 4, tokens, mask)
    kernel = lambda p: p["params"]["head"]["out"]["kernel"]
    assert not np.array_equal(kernel(a), kernel(c))
    first, second = (_apply(model)(a, tokens, mask) for _ in range(2))
    np.testing.assert_array_equal(first.reward, second.reward)
    assert first.reward.dtype == jnp.float32 and np.all(np.isfinite(first.reward))


def _multi_response_rows():
    """Two rows: prompt, r1, SEP, r2, SEP, r3, SEP (row 0) and prompt, r1, SEP, r2, SEP (row 1)."""
    rng = np.random.default_rng(5)
    rows = []
    for n_responses in (3, 2):
        prompt = list(rng.integers(1, SEP, size=4))
        pieces, ids = [prompt], [[0] * 4]
        for k in range(1, n_responses + 1):
            response = [*rng.integers(1, SEP, size=int(rng.integers(2, 5))), SEP]
            pieces.append(response)
            ids.append([k] * len(response))
        rows.append((np.concatenate(pieces), np.concatenate(ids)))
    t = max(len(r[0]) for r in rows) + 2
    tokens = np.zeros((2, t), np.int32)
    response_ids = np.zeros((2, t), np.int32)
    mask = np.zeros((2, t), np.int32)
    for i, (toks, ids) in enumerate(rows):
        tokens[i, : len(toks)], response_ids[i, : len(ids)], mask[i, : len(toks)] = toks, ids, 1
    return tokens, mask, response_ids


def test_multi_response_scores_equal_each_response_scored_on_its_causal_prefix():
    tokens, mask, response_ids = _multi_response_rows()
    config = _config("mixture", num_components=2)  # the router reads the prompt's last token
    model = RewardModel(dataclasses.replace(config, max_responses=4))
    params = _init(model, 6, tokens, mask)
    out = _apply(model)(params, tokens, mask, None, response_ids)
    assert out.reward.shape == (2, 4)
    np.testing.assert_array_equal(
        out.aux["response_mask"], [[True, True, True, False], [True, True, False, False]]
    )
    # Causal layout: response k sees the prompt and responses < k, so it scores like the row cut
    # after its SEP and scored alone (right-padded), everything after the prompt as the completion.
    cut_rows, where = [], []
    for i in range(2):
        for k in range(1, int(response_ids[i].max()) + 1):
            end = int(np.nonzero(response_ids[i] == k)[0].max()) + 1
            cut_rows.append(np.arange(tokens.shape[1]) < end)
            where.append((i, k - 1))
    keep = np.stack(cut_rows)
    rows = [i for i, _ in where]
    alone = _apply(model)(
        params,
        np.where(keep, tokens[rows], 0),
        np.where(keep, mask[rows], 0),
        np.where(keep, response_ids[rows] > 0, 0).astype(np.int32),
    )
    np.testing.assert_allclose(
        out.reward[tuple(np.array(where).T)], alone.reward, rtol=1e-5, atol=1e-5
    )
    # The scores feed the listwise losses, with absent slots masked out.
    loss = losses.listwise_softmax(out.reward, jnp.array([2, 0]), where=out.aux["response_mask"])
    assert loss.shape == (2,) and np.all(np.isfinite(loss))


def test_full_member_ensemble_equals_loop_over_members():
    tokens, mask, completion = _right_padded(7, [6, 4, 8], 8)
    config = _config("multi_attribute", num_attributes=3)
    ensemble = RewardEnsemble(config, num_members=3)
    params = _init(ensemble, 8, tokens, mask, completion)
    out = _apply(ensemble)(params, tokens, mask, completion)
    assert out.reward.shape == (3, 3) and out.aux["attributes"].shape == (3, 3, 3)
    single = RewardModel(config)
    for e in range(3):
        member = jax.tree.map(lambda p, e=e: p[e], params["params"]["members"])
        expected = _apply(single)({"params": member}, tokens, mask, completion)
        np.testing.assert_allclose(out.reward[e], expected.reward, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out.reward[0], out.reward[1])


def test_score_pairs_equals_scoring_each_side():
    tokens, mask, completion = _right_padded(9, [5, 7, 3, 10], 10)
    rejected, rmask, rcompletion = _right_padded(10, [6, 2, 7, 9], 10)
    batch = dict(
        chosen_tokens=tokens, chosen_mask=mask, chosen_completion_mask=completion,
        rejected_tokens=rejected, rejected_mask=rmask, rejected_completion_mask=rcompletion,
    )  # fmt: skip
    model = RewardModel(_config())
    params = _init(model, 11, tokens, mask)
    chosen, rej = jax.jit(lambda p, b: score_pairs(model, p, b))(params, batch)
    apply = _apply(model)
    np.testing.assert_allclose(
        chosen.reward, apply(params, tokens, mask, completion).reward, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        rej.reward, apply(params, rejected, rmask, rcompletion).reward, rtol=1e-5, atol=1e-6
    )


def _np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_dpo_reward_matches_numpy_and_freezes_the_reference():
    tokens, mask, completion = _right_padded(12, [8, 5, 10], 10, prompt_len=4)
    reward_fn = ImplicitReward(BACKBONE, beta=0.3)
    params = _init(reward_fn, 13, tokens, mask)
    params["reference"] = _init(reward_fn, 14, tokens, mask)["policy"]
    out = _apply(reward_fn)(params, tokens, mask, completion)

    def seq_logp(p):
        logp = _np_log_softmax(_lm_logits(p, tokens, mask))[:, :-1]
        picked = np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
        return (picked * completion[:, 1:]).sum(-1)

    expected = 0.3 * (seq_logp(params["policy"]) - seq_logp(params["reference"]))
    np.testing.assert_allclose(out.reward, expected, rtol=1e-4, atol=1e-4)
    grads = jax.jit(jax.grad(lambda p: reward_fn.apply(p, tokens, mask, completion).reward.sum()))(
        params
    )
    assert all(np.all(g == 0) for g in jax.tree.leaves(grads["reference"]))
    assert any(np.any(g != 0) for g in jax.tree.leaves(grads["policy"]))


def test_reference_free_implicit_rewards_match_numpy_and_hold_no_reference():
    tokens, mask, completion = _right_padded(12, [8, 5, 10], 10, prompt_len=4)
    params = _init(ImplicitReward(BACKBONE, beta=2.0, loss="simpo"), 13, tokens, mask)
    assert set(params) == {"policy"}
    logp = _np_log_softmax(_lm_logits(params["policy"], tokens, mask))[:, :-1]
    picked = (np.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0] * completion[:, 1:]).sum(-1)
    mean = picked / completion[:, 1:].sum(-1)
    simpo = _apply(ImplicitReward(BACKBONE, beta=2.0, loss="simpo"))(
        params, tokens, mask, completion
    )
    np.testing.assert_allclose(simpo.reward, 2.0 * mean, rtol=1e-4, atol=1e-4)
    orpo = _apply(ImplicitReward(BACKBONE, loss="orpo"))(params, tokens, mask, completion)
    p = np.exp(mean)
    np.testing.assert_allclose(orpo.reward, np.log(p / (1 - p)), rtol=1e-4, atol=1e-4)


def test_endogenous_reward_is_inverse_soft_bellman_and_telescopes():
    alpha = 0.5
    lengths = [10, 6, 4]
    tokens, mask, completion = _right_padded(15, lengths, 10, prompt_len=3)
    reward_fn = EndogenousReward(BACKBONE, alpha=alpha)
    params = _init(ImplicitReward(BACKBONE, beta=0.3), 16, tokens, mask)["policy"]
    out = _apply(reward_fn)(params, tokens, mask, completion)
    logits = np.asarray(_lm_logits(params, tokens, mask), np.float64)
    value = alpha * np.log(np.exp(logits / alpha).sum(-1))  # V(s) from the logits at each position
    for i, n in enumerate(lengths):
        expected_tokens = np.zeros(10)
        for t in range(3, n):  # completion tokens 3..n-1; the state after token n-1 is terminal
            next_value = value[i, t] if t + 1 < n else 0.0
            expected_tokens[t] = logits[i, t - 1, tokens[i, t]] - next_value
        np.testing.assert_allclose(out.aux["token_rewards"][i], expected_tokens, atol=1e-4)
        # Telescoping: the total is α Σ log π_α(y_t | s_t) + V(s_first).
        log_pi = _np_log_softmax(logits[i] / alpha)
        total = alpha * sum(log_pi[t - 1, tokens[i, t]] for t in range(3, n)) + value[i, 2]
        np.testing.assert_allclose(out.reward[i], total, rtol=1e-5, atol=1e-4)


def test_config_and_implicit_reward_validation():
    with pytest.raises(ValueError, match=r"RewardModelConfig\.head='linear'"):
        RewardModelConfig(backbone=BACKBONE, head="linear")
    with pytest.raises(ValueError, match="max_responses"):
        RewardModelConfig(backbone=BACKBONE, max_responses=0)
    config = RewardModelConfig(
        backbone=BACKBONE, head="ordinal", head_kwargs={"num_bins": 3, "bin_values": [0, 1, 2]}
    )
    assert hash(config) == hash(dataclasses.replace(config))
    assert dict(config.head_kwargs)["bin_values"] == (0, 1, 2)
    tokens, mask, _ = _right_padded(17, [3], 3)
    for reward_fn in (ImplicitReward(BACKBONE), EndogenousReward(BACKBONE)):
        with pytest.raises(ValueError, match="needs completion_mask"):
            reward_fn.apply(None, tokens, mask)  # checked before the params are touched


def test_scalar_reward_matches_transformers_llama_for_sequence_classification(tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokens, mask, _ = _right_padded(18, [7, 4, 9, 10], 10)
    model = RewardModel(_config())
    params = _init(model, 19, tokens, mask)
    params["params"]["head"]["out"]["bias"] = jnp.zeros(1)  # HF's score layer has no bias
    lm_params = {
        "params": {
            "transformer": params["params"]["backbone"],
            "lm_head": jnp.zeros((BACKBONE.d_model, BACKBONE.vocab_size)),
        }
    }
    save_hf(str(tmp_path), BACKBONE, lm_params)
    hf = transformers.LlamaForSequenceClassification.from_pretrained(
        str(tmp_path), num_labels=1, pad_token_id=0, torch_dtype=torch.float32
    ).eval()
    assert config_to_hf(BACKBONE)["hidden_size"] == hf.config.hidden_size
    with torch.no_grad():
        hf.score.weight.copy_(torch.tensor(np.asarray(params["params"]["head"]["out"]["kernel"]).T))
        expected = (
            hf(input_ids=torch.from_numpy(tokens).long(), attention_mask=torch.from_numpy(mask))
            .logits[:, 0]
            .numpy()
        )
    np.testing.assert_allclose(_apply(model)(params, tokens, mask).reward, expected, atol=1e-4)
