"""Backbone tests: preset parameter counts, logical axes, masks, padding, packing,
KV-cache decoding, remat and dtype policy. Parity with Hugging Face lives in test_hf_parity.py."""

import dataclasses

import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rewardjax.models.layers import (
    RMSNorm,
    RopeScaling,
    apply_rope,
    rope_inverse_frequencies,
    rope_sin_cos,
)
from rewardjax.models.presets import PRESETS, get_preset
from rewardjax.models.transformer import (
    CausalLM,
    Transformer,
    TransformerConfig,
    init_cache,
    segment_positions,
)

# Parameter counts published with each model (Hugging Face model cards / config + safetensors).
PUBLISHED_PARAMS = {
    "llama2-7b": 6_738_415_616,
    "llama3.2-1b": 1_235_814_400,
    "llama3-8b": 8_030_261_248,
    "llama3.1-8b": 8_030_261_248,
    "qwen2-7b": 7_615_616_512,
    "gemma-7b": 8_537_680_896,
}

# A tiny config with weights large enough that logits are far from uniform.
CFG = get_preset("tiny", init_std=0.3)


@pytest.fixture(scope="module")
def lm():
    model = CausalLM(CFG)
    params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4), jnp.int32))
    return model, params


@pytest.fixture(scope="module")
def fwd(lm):
    model, params = lm
    apply = jax.jit(model.apply)
    return lambda tokens, **kw: apply(params, tokens, **kw)[0]


def _tokens(b, t, seed=0):
    return jnp.asarray(np.random.RandomState(seed).randint(1, CFG.vocab_size, (b, t)), jnp.int32)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_preset_parameter_counts_by_eval_shape(name):
    cfg = PRESETS[name]
    shapes = jax.eval_shape(
        lambda: CausalLM(cfg).init(jax.random.key(0), jnp.ones((1, 1), jnp.int32))
    )
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == PUBLISHED_PARAMS[name]


def test_logical_axis_names(lm):
    _, params = lm
    specs = nn.get_partition_spec(params)["params"]
    layers = specs["transformer"]["layers"]
    assert tuple(specs["transformer"]["embed"]["embedding"]) == ("vocab", "embed")
    assert tuple(specs["lm_head"]) == ("embed", "vocab")
    assert tuple(layers["attn"]["q_kernel"]) == ("layers", "embed", "heads", "head_dim")
    assert tuple(layers["attn"]["k_kernel"]) == ("layers", "embed", "kv_heads", "head_dim")
    assert tuple(layers["attn"]["o_kernel"]) == ("layers", "heads", "head_dim", "embed")
    assert tuple(layers["mlp"]["gate_kernel"]) == ("layers", "embed", "mlp")
    assert tuple(layers["mlp"]["down_kernel"]) == ("layers", "mlp", "embed")


def test_init_values(lm):
    _, params = lm
    params = nn.unbox(params)["params"]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    np.testing.assert_array_equal(params["transformer"]["final_norm"]["scale"], 1.0)
    std = float(jnp.std(params["transformer"]["layers"]["mlp"]["up_kernel"]))
    assert abs(std - CFG.init_std) < 0.05 * CFG.init_std


def test_tied_model_has_no_lm_head():
    cfg = dataclasses.replace(CFG, tie_embeddings=True)
    shapes = jax.eval_shape(CausalLM(cfg).init, jax.random.key(0), jnp.ones((1, 2), jnp.int32))
    assert set(shapes["params"]) == {"transformer"}


def test_segment_positions_reference():
    seg = np.array([[0, 0, 1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 0, 0, 0, 0]])
    expected = np.zeros_like(seg)
    for b in range(seg.shape[0]):
        for t in range(seg.shape[1]):
            run = t
            while run > 0 and seg[b, run - 1] == seg[b, t]:
                run -= 1
            expected[b, t] = t - run
    np.testing.assert_array_equal(segment_positions(jnp.asarray(seg)), expected)


_INV_FREQ = rope_inverse_frequencies(16, 10000.0)


@jax.jit
def _rope_dot(q, k, m, n):
    """<rope(q, m), rope(k, n)> for q, k of shape [Dh]."""
    sq, cq = rope_sin_cos(jnp.full((1, 1), m), _INV_FREQ)
    sk, ck = rope_sin_cos(jnp.full((1, 1), n), _INV_FREQ)
    return jnp.vdot(
        apply_rope(q[None, None, None], sq, cq), apply_rope(k[None, None, None], sk, ck)
    )


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(m=st.integers(0, 500), n=st.integers(0, 500), shift=st.integers(0, 500))
def test_rope_scores_depend_only_on_relative_position(m, n, shift):
    q, k = np.random.RandomState(m + n).randn(2, 16).astype(np.float32)
    q, k = jnp.asarray(q), jnp.asarray(k)
    np.testing.assert_allclose(
        _rope_dot(q, k, m, n), _rope_dot(q, k, m + shift, n + shift), rtol=1e-3, atol=1e-3
    )


def test_rope_preserves_norm_and_has_gradients():
    x = jnp.asarray(np.random.RandomState(0).randn(2, 3, 4, 16), jnp.float32)
    sin, cos = rope_sin_cos(jnp.arange(6).reshape(2, 3), _INV_FREQ)
    rot = jax.jit(apply_rope)(x, sin, cos)
    np.testing.assert_allclose(
        jnp.linalg.norm(rot, axis=-1), jnp.linalg.norm(x, axis=-1), rtol=1e-5
    )
    check_grads(lambda x: apply_rope(x, sin, cos), (x,), order=1, modes=["rev"], atol=1e-2)


@pytest.mark.parametrize("plus_one", [False, True])
def test_rmsnorm_reference_scale_invariance_and_gradients(plus_one):
    x = jnp.asarray(np.random.RandomState(1).randn(3, 8) * 5, jnp.float32)
    norm = RMSNorm(eps=1e-6, plus_one=plus_one)
    w = {"params": {"scale": jnp.linspace(-0.5, 0.5, 8)}}
    fn = jax.jit(lambda x: norm.apply(w, x))
    xn = np.asarray(x, np.float64)
    scale = np.linspace(-0.5, 0.5, 8) + (1.0 if plus_one else 0.0)
    ref = xn / np.sqrt((xn**2).mean(-1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(fn(x), ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fn(x * 1e4), fn(x), rtol=1e-5, atol=1e-6)
    check_grads(fn, (x,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


def test_llama3_rope_scaling_bands():
    """Llama 3.1 scaling: high frequencies kept, low frequencies divided by the factor."""
    base = np.asarray(rope_inverse_frequencies(128, 500000.0))
    scaling = RopeScaling(kind="llama3", factor=8.0, original_max_position=8192)
    scaled = np.asarray(rope_inverse_frequencies(128, 500000.0, scaling))
    wavelen = 2 * np.pi / base
    high, low = wavelen < 8192 / 4, wavelen > 8192 / 1
    np.testing.assert_allclose(scaled[high], base[high], rtol=1e-6)
    np.testing.assert_allclose(scaled[low], base[low] / 8, rtol=1e-6)
    mid = ~high & ~low
    assert mid.any() and np.all((scaled[mid] < base[mid]) & (scaled[mid] > base[mid] / 8))


def test_left_and_right_padding_invariance(fwd):
    tok = _tokens(1, 6)
    ref = fwd(tok, segment_ids=jnp.ones_like(tok))
    pad = jnp.zeros((1, 3), jnp.int32)
    left = jnp.concatenate([pad, tok], 1)
    right = jnp.concatenate([tok, pad], 1)
    seg_left = jnp.concatenate([pad, jnp.ones_like(tok)], 1)
    seg_right = jnp.concatenate([jnp.ones_like(tok), pad], 1)
    out_left = fwd(left, segment_ids=seg_left)
    out_right = fwd(right, segment_ids=seg_right)
    np.testing.assert_allclose(out_left[:, 3:], ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_right[:, :6], ref, rtol=1e-5, atol=1e-5)


def test_packed_sequences_equal_separate(fwd):
    a, b = _tokens(1, 5, seed=1), _tokens(1, 4, seed=2)
    packed = jnp.concatenate([a, b], 1)
    seg = jnp.asarray([[1] * 5 + [2] * 4])
    out = fwd(packed, segment_ids=seg)
    # Each sequence alone, right-padded to the same length (padding invariance tested above).
    ref_a = fwd(jnp.pad(a, ((0, 0), (0, 4))), segment_ids=jnp.asarray([[1] * 5 + [0] * 4]))
    ref_b = fwd(jnp.pad(b, ((0, 0), (0, 5))), segment_ids=jnp.asarray([[1] * 4 + [0] * 5]))
    np.testing.assert_allclose(out[:, :5], ref_a[:, :5], atol=1e-5)
    np.testing.assert_allclose(out[:, 5:], ref_b[:, :4], atol=1e-5)


def test_causality_future_tokens_do_not_change_past(fwd):
    tok = _tokens(2, 9)
    changed = tok.at[:, 5:].set((tok[:, 5:] + 1) % CFG.vocab_size)
    seg = jnp.ones_like(tok)
    out1, out2 = fwd(tok, segment_ids=seg), fwd(changed, segment_ids=seg)
    np.testing.assert_allclose(out1[:, :5], out2[:, :5], atol=1e-6)
    assert np.abs(out1[:, 5:] - out2[:, 5:]).max() > 1e-3


@pytest.mark.parametrize("prefill", [1, 4])
def test_kv_cache_decoding_equals_teacher_forcing(lm, fwd, prefill):
    """Prefill a left-padded prompt chunk, then feed one token at a time: every step's logits must
    equal the full (teacher-forced) forward on the whole sequence."""
    model, params = lm
    tok = _tokens(2, 9, seed=3)
    seg = jnp.asarray([[0, 0, 1, 1, 1, 1, 1, 1, 1], [1] * 9])
    full = fwd(tok, segment_ids=seg)
    cache = init_cache(CFG, 2, 12)
    step = jax.jit(lambda c, x, s: model.apply(params, x, segment_ids=s, cache=c, decode=True))
    logits, cache = step(cache, tok[:, : prefill + 2], seg[:, : prefill + 2])
    pieces = [logits]
    for t in range(prefill + 2, 9):
        logits, cache = step(cache, tok[:, t : t + 1], seg[:, t : t + 1])
        pieces.append(logits)
    decoded = jnp.concatenate(pieces, 1)
    real = np.asarray(seg, bool)
    np.testing.assert_allclose(np.asarray(decoded)[real], np.asarray(full)[real], atol=1e-5)
    assert int(cache.index) == 9
    np.testing.assert_array_equal(cache.next_position, [7, 9])


def test_decode_flag_and_cache_must_agree(lm):
    model, params = lm
    with pytest.raises(ValueError, match="decode=True"):
        model.apply(params, _tokens(1, 2), decode=True)
    with pytest.raises(ValueError, match="decode=True"):
        model.apply(params, _tokens(1, 2), cache=init_cache(CFG, 1, 4))


def test_remat_same_values_and_grads(lm):
    _, params = lm
    tok, seg = _tokens(2, 6), jnp.ones((2, 6), jnp.int32)

    def loss(p, cfg):
        logits, _ = CausalLM(cfg).apply(p, tok, segment_ids=seg)
        return jnp.mean(jax.nn.log_softmax(logits)[..., 0])

    grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    v1, g1 = grad(params, CFG)
    v2, g2 = grad(params, dataclasses.replace(CFG, remat=True))
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(g1))


def test_dot_product_attention_equals_the_einsum_attention(lm):
    """attention="dot_product" (jax.nn.dot_product_attention) gives the same logits and gradients
    as the default, on rows with two packed segments and padding (GQA: 4 query heads, 2 kv)."""
    _, params = lm
    tok = _tokens(2, 9)
    seg = jnp.asarray([[1] * 5 + [2] * 4, [1] * 6 + [0] * 3])

    def loss(p, cfg):
        logits, _ = CausalLM(cfg).apply(p, tok, segment_ids=seg)
        return jnp.sum(jax.nn.log_softmax(logits)[..., 0] * (seg > 0)), logits

    grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
    (_, l1), g1 = grad(params, CFG)
    (_, l2), g2 = grad(params, dataclasses.replace(CFG, attention="dot_product"))
    real = np.asarray(seg > 0)
    np.testing.assert_allclose(np.asarray(l2)[real], np.asarray(l1)[real], atol=1e-4, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-4)


def test_bfloat16_compute_policy(lm, fwd):
    _, params = lm
    cfg = dataclasses.replace(CFG, dtype="bfloat16")
    tok = _tokens(2, 9)
    hidden, _ = jax.jit(Transformer(cfg).apply)({"params": params["params"]["transformer"]}, tok)
    logits, _ = jax.jit(CausalLM(cfg).apply)(params, tok)
    ref = fwd(tok, segment_ids=jnp.ones_like(tok))
    assert hidden.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
    # bf16 keeps 8 mantissa bits; through two wide-init layers agreement is ~5% of the scale.
    assert np.abs(logits - ref).max() < 0.1 * np.abs(ref).max()


@pytest.mark.parametrize(
    "fields, match",
    [
        (dict(n_heads=4, n_kv_heads=3), "n_kv_heads"),
        (dict(mlp_activation="relu"), "mlp_activation"),
        (dict(dtype="int8"), "dtype"),
        (dict(d_model=0), "d_model"),
        (dict(d_model=60, n_heads=8, n_kv_heads=8), "head_dim"),
        (dict(attention="flash"), "attention"),
    ],
)
def test_config_validation(fields, match):
    base = dict(vocab_size=16, d_model=32, n_layers=1, n_heads=4, n_kv_heads=2, d_ff=64)
    with pytest.raises(ValueError, match=match):
        TransformerConfig(**{**base, **fields})


def test_unknown_preset():
    with pytest.raises(KeyError, match="tiny"):
        get_preset("llama-9000")
