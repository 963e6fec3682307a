"""ModelReward equals the reward model applied to rows built by hand in the training layout
(`data.collate`: prompt then completion, right-padded, completion_mask on the completion), for a
scalar and an ensemble head; re-tokenisation between a byte and a WordLevel tokenizer."""

import functools
import json

import flax.linen as nn
import jax
import numpy as np
import pytest

from rewardjax import data, models, rewards

BACKBONE = models.TransformerConfig(
    vocab_size=256, d_model=16, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=32
)


WIDTH = 32  # every hand-built row is padded to this width: one compilation of the reference


def _model_and_params(head="scalar", **head_kwargs):
    """Random params from the shapes of `init` (tracing only: compiling init is slow on CPU)."""
    model = models.RewardModel(models.RewardModelConfig(BACKBONE, head, head_kwargs))
    tokens = np.ones((1, 4), np.int32)
    shapes = jax.eval_shape(
        lambda k: nn.meta.unbox(model.init(k, tokens, tokens, tokens)), jax.random.key(0)
    )
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda x: (0.3 * rng.standard_normal(x.shape)).astype(x.dtype), shapes)
    return model, params


@functools.cache
def _reference_apply(model):
    return jax.jit(model.apply)


def reference(model, params, seqs):
    """The model applied to rows built by hand in the training layout (see `hand_rows`)."""
    return _reference_apply(model)(params, *hand_rows(seqs, WIDTH)).reward


@pytest.fixture(scope="module")
def scalar():
    return _model_and_params()


@pytest.fixture(scope="module")
def ensemble():
    return _model_and_params("ensemble", num_members=3)


def hand_rows(seqs, width):
    """(prompt ids, completion ids) pairs -> right-padded tokens, mask, completion_mask."""
    b = len(seqs)
    tokens, mask, comp = (np.zeros((b, width), np.int32) for _ in range(3))
    for i, (p, c) in enumerate(seqs):
        tokens[i, : len(p) + len(c)] = list(p) + list(c)
        mask[i, : len(p) + len(c)] = 1
        comp[i, len(p) : len(p) + len(c)] = 1
    return tokens, mask, comp


def policy_batch(seed=0, prompt_side="left"):
    """B=4 rows: prompts [4, 5] padded on `prompt_side`, completions [4, 6] right-padded with
    nonzero junk after the mask ends; returns the inputs and the real (prompt, completion) ids."""
    rng = np.random.default_rng(seed)
    p_len, c_len = [5, 3, 2, 4], [6, 4, 1, 3]
    prompts = rng.integers(1, 256, (4, 5)).astype(np.int32)
    comps = rng.integers(1, 256, (4, 6)).astype(np.int32)
    pmask = (np.arange(5)[None] < np.asarray(p_len)[:, None]).astype(np.int32)
    if prompt_side == "left":  # the same real tokens, moved to the end of the row
        prompts = np.stack([np.roll(r, 5 - n) for r, n in zip(prompts, p_len)])
        pmask = pmask[:, ::-1].copy()
    cmask = (np.arange(6)[None] < np.asarray(c_len)[:, None]).astype(np.int32)
    real = [(prompts[i][pmask[i] > 0], comps[i][cmask[i] > 0]) for i in range(4)]
    return rewards.RewardInputs(prompts, pmask, comps, cmask), real


def test_scalar_head_equals_apply_on_training_layout(scalar):
    model, params = scalar
    inputs, real = policy_batch()
    expected = reference(model, params, real)
    out = rewards.ModelReward(model, params)(inputs)
    assert out.rewards.dtype == np.float32 and out.token_rewards is None
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.aux["invalid"], np.zeros(4))
    # The padding side of the prompt does not matter.
    right, _ = policy_batch(prompt_side="right")
    np.testing.assert_allclose(
        rewards.ModelReward(model, params)(right).rewards, expected, rtol=1e-5, atol=1e-6
    )
    with pytest.raises(ValueError, match="needs an ensemble"):
        rewards.ModelReward(model, params, ensemble="worst_case")(inputs)


def test_out_of_vocabulary_ids_are_flagged(scalar):
    model, params = scalar
    inputs, _ = policy_batch()
    comps = np.asarray(inputs.completion_tokens).copy()
    comps[1, 0] = 300  # past the 256 embedding rows
    out = rewards.ModelReward(model, params)(inputs._replace(completion_tokens=comps))
    np.testing.assert_array_equal(out.aux["invalid"], [0, 1, 0, 0])
    assert np.isnan(out.rewards[1]) and np.isfinite(np.asarray(out.rewards)[[0, 2, 3]]).all()


@pytest.mark.parametrize("reduction", ["mean", "worst_case", "uncertainty", "uwo"])
def test_ensemble_reductions_against_numpy(ensemble, reduction):
    model, params = ensemble
    inputs, real = policy_batch(seed=1)
    members = np.asarray(reference(model, params, real), np.float64)  # [3, B]
    assert members.shape == (3, 4)
    c = 0.7
    expected = {
        "mean": members.mean(0),
        "worst_case": members.min(0),
        "uncertainty": members.mean(0) - c * members.std(0),
        "uwo": members.mean(0) - c * members.var(0),
    }[reduction]
    out = rewards.ModelReward(model, params, ensemble=reduction, uncertainty_coef=c)(inputs)
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.aux["members"], members.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.aux["ensemble_std"], members.std(0), rtol=1e-4, atol=1e-6)


@pytest.fixture(scope="module")
def word_tokenizer(tmp_path_factory):
    """A WordLevel tokenizer.json with an EOS token, built here from a small vocabulary."""
    import tokenizers
    from tokenizers import pre_tokenizers

    vocab = {"[PAD]": 0, "<eos>": 1, "hello": 2, "world": 3, "yes": 4, "no": 5, "[UNK]": 6}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path_factory.mktemp("word")
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<eos>"}))
    return data.HFTokenizer(str(folder))


def _word_inputs(with_text=False):
    """Policy (WordLevel) ids: prompts left-padded, completions closed by <eos> (id 1)."""
    prompts = np.asarray([[2, 3], [0, 2]], np.int32)
    pmask = np.asarray([[1, 1], [0, 1]], np.int32)
    comps = np.asarray([[4, 5, 1], [5, 1, 0]], np.int32)
    cmask = np.asarray([[1, 1, 1], [1, 1, 0]], np.int32)
    text = (["hello world", "hello"], ["yes no", "no"]) if with_text else (None, None)
    return rewards.RewardInputs(prompts, pmask, comps, cmask, *text)


def test_retokenises_policy_ids_for_a_byte_reward_model(scalar, word_tokenizer):
    model, params = scalar
    seqs = [(b"hello world", b"yes no"), (b"hello", b"no")]  # bytes: no EOS, as in training
    expected = reference(model, params, seqs)
    byte = data.ByteTokenizer()
    decoded = rewards.ModelReward(model, params, tokenizer=byte, policy_tokenizer=word_tokenizer)
    out = decoded(_word_inputs())
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-6)
    from_text = rewards.ModelReward(model, params, tokenizer=byte)(_word_inputs(with_text=True))
    np.testing.assert_allclose(from_text.rewards, expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"ByteTokenizer.*None.*prompt_text"):
        rewards.ModelReward(model, params, tokenizer=byte)(_word_inputs())
    # Truncation as data.encode_records: keep the prompt's end (>= max_length // 2) and the
    # completion's start.
    cut = rewards.ModelReward(model, params, tokenizer=byte, max_length=12)
    out = cut(_word_inputs(with_text=True))
    seqs = [(b" world", b"yes no"), (b"hello", b"no")]
    np.testing.assert_allclose(out.rewards, reference(model, params, seqs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.aux["truncated"], [1, 0])


def test_retokenises_byte_policy_for_a_word_reward_model(scalar, word_tokenizer):
    model, params = scalar
    byte = data.ByteTokenizer()
    texts = (["hello world", "hello"], ["yes no", "no"])
    ids = [(list(p.encode()), list(c.encode())) for p, c in zip(*texts)]
    width_p, width_c = 11, 6
    prompts = np.zeros((2, width_p), np.int32)
    pmask, comps = np.zeros_like(prompts), np.zeros((2, width_c), np.int32)
    cmask = np.zeros_like(comps)
    for i, (p, c) in enumerate(ids):
        prompts[i, : len(p)], pmask[i, : len(p)] = p, 1
        comps[i, : len(c)], cmask[i, : len(c)] = c, 1
    seqs = [([2, 3], [4, 5, 1]), ([2], [5, 1])]  # WordLevel ids, the EOS appended as in training
    expected = reference(model, params, seqs)
    reward = rewards.ModelReward(model, params, tokenizer=word_tokenizer, policy_tokenizer=byte)
    out = reward(rewards.RewardInputs(prompts, pmask, comps, cmask))
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-5, atol=1e-6)
    # Two byte tokenizers are the same: the ids are scored as they are, no text needed.
    same = rewards.ModelReward(model, params, tokenizer=byte, policy_tokenizer=data.ByteTokenizer())
    assert not same.retokenize
    direct = same(rewards.RewardInputs(prompts, pmask, comps, cmask))
    bytes_seqs = [(p, c) for p, c in ids]
    np.testing.assert_allclose(
        direct.rewards, reference(model, params, bytes_seqs), rtol=1e-5, atol=1e-6
    )


def test_is_a_reward_function(scalar):
    assert isinstance(rewards.ModelReward(*scalar), rewards.RewardFunction)
