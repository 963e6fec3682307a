"""Reward heads on random hidden states, against NumPy written here."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

from rewardjax import models
from rewardjax.models import heads as H

D = 8


def _features(seed, shape=(3, 5, D)):
    return np.asarray(jax.random.normal(jax.random.key(seed), shape), np.float32)


def _np(params):
    return jax.tree.map(np.asarray, nn.meta.unbox(params))["params"]


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _silu(x):
    return x / (1 + np.exp(-x))


def _init_apply(head, x, c=None, seed=0):
    params = head.init(jax.random.key(seed), x, c)
    return params, jax.jit(head.apply)(params, x, c)


@pytest.mark.parametrize("padding", ["right", "left", "inner_zero"])
def test_last_token_index_and_pooling_match_hand_indexing(padding):
    rng = np.random.default_rng(0)
    b, t = 6, 9
    lengths = rng.integers(1, t + 1, size=b)
    mask = np.zeros((b, t), np.int32)
    for i, n in enumerate(lengths):
        if padding == "left":
            mask[i, t - n :] = 1
        else:
            mask[i, :n] = 1
    if padding == "inner_zero":  # a packed row with a hole: still the last nonzero position
        mask[0] = [1, 1, 0, 2, 2, 0, 0, 0, 0]
    hidden = _features(1, (b, t, D))
    expected_index = np.array([max(j for j in range(t) if mask[i, j]) for i in range(b)])
    np.testing.assert_array_equal(jax.jit(H.last_token_index)(mask), expected_index)
    np.testing.assert_array_equal(
        jax.jit(H.pool_last)(hidden, mask), hidden[np.arange(b), expected_index]
    )


_POOL = jax.jit(H.pool_last)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=7, max_size=7), st.booleans())
def test_pooling_ignores_padding_on_either_side(row, left):
    """Property: padding a row on either side never moves what is pooled."""
    mask = (np.asarray(row) > 0).astype(np.int32)
    if not mask.any():
        mask[3] = 1
    hidden = _features(12, (1, 7, D))
    pooled = _POOL(hidden, mask[None])
    pad = np.zeros(5, np.int32)
    padded_mask = np.concatenate([pad, mask] if left else [mask, pad])[None]
    padded_hidden = np.concatenate(
        [_features(13, (1, 5, D)), hidden] if left else [hidden, _features(13, (1, 5, D))], axis=1
    )
    np.testing.assert_array_equal(_POOL(padded_hidden, padded_mask), pooled)


def test_public_names_are_exported():
    for name in models.__all__:
        assert getattr(models, name) is not None, name
    for name in H.__all__:
        assert getattr(models, name) is getattr(H, name), name


def test_scalar_linear_and_mlp_heads_match_numpy():
    x = _features(0)
    params, out = _init_apply(H.ScalarHead(), x)
    p = _np(params)
    np.testing.assert_allclose(
        out.reward, (x @ p["out"]["kernel"] + p["out"]["bias"])[..., 0], rtol=1e-5, atol=1e-6
    )
    assert out.reward.shape == (3, 5) and out.reward.dtype == jnp.float32

    params, out = _init_apply(H.ScalarHead(hidden_dim=16), x)
    p = _np(params)
    h = _silu(x @ p["hidden"]["kernel"] + p["hidden"]["bias"])
    np.testing.assert_allclose(
        out.reward, (h @ p["out"]["kernel"] + p["out"]["bias"])[..., 0], rtol=1e-5, atol=1e-6
    )


def test_bfloat16_features_give_float32_rewards():
    x = jnp.asarray(_features(0), jnp.bfloat16)
    _, out = _init_apply(H.ScalarHead(hidden_dim=4), x)
    assert out.reward.dtype == jnp.float32


def test_multi_attribute_fixed_direction_matches_numpy():
    x = _features(2)
    direction = (0.5, -1.0, 2.0)
    params, out = _init_apply(H.MultiAttributeHead(3, gating="fixed", weights=direction), x)
    p = _np(params)
    attributes = x @ p["attributes"]["kernel"] + p["attributes"]["bias"]
    np.testing.assert_allclose(out.aux["attributes"], attributes, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.reward, attributes @ np.array(direction), rtol=1e-5, atol=1e-5)
    _, uniform = _init_apply(H.MultiAttributeHead(3, gating="fixed"), x)
    np.testing.assert_allclose(uniform.reward, uniform.aux["attributes"].mean(-1), rtol=1e-5)


def test_multi_attribute_learned_gate_on_context_matches_numpy():
    x, c = _features(3), _features(4)
    params, out = _init_apply(H.MultiAttributeHead(4, gating="learned", gate_hidden_dim=6), x, c)
    p = _np(params)
    attributes = x @ p["attributes"]["kernel"] + p["attributes"]["bias"]
    g = p["gate"]
    gate = _softmax(
        _silu(c @ g["hidden"]["kernel"] + g["hidden"]["bias"]) @ g["logits"]["kernel"]
        + g["logits"]["bias"]
    )
    np.testing.assert_allclose(out.aux["weights"], gate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.reward, (gate * attributes).sum(-1), rtol=1e-5, atol=1e-5)
    # Without a context the gate reads the features themselves.
    no_context = jax.jit(H.MultiAttributeHead(4, gate_hidden_dim=6).apply)(params, x)
    with_x = jax.jit(H.MultiAttributeHead(4, gate_hidden_dim=6).apply)(params, x, x)
    np.testing.assert_allclose(no_context.reward, with_x.reward, rtol=1e-6)


def test_ensemble_head_equals_loop_over_members():
    x = _features(5)
    head = H.EnsembleHead(num_members=4, hidden_dim=6)
    params, out = _init_apply(head, x)
    assert out.reward.shape == (4, 3, 5)
    p = _np(params)["members"]
    for e in range(4):
        h = _silu(x @ p["hidden"]["kernel"][e] + p["hidden"]["bias"][e])
        member = (h @ p["out"]["kernel"][e] + p["out"]["bias"][e])[..., 0]
        np.testing.assert_allclose(out.reward[e], member, rtol=1e-5, atol=1e-6)
    # Members are initialised independently.
    assert not np.allclose(out.reward[0], out.reward[1])


def test_ordinal_mean_is_expected_bin_value():
    x = _features(6)
    values = (-2.0, 0.0, 0.5, 3.0, 7.0)
    params, out = _init_apply(H.OrdinalHead(num_bins=5, bin_values=values), x)
    p = _np(params)
    probs = _softmax(x @ p["logits"]["kernel"] + p["logits"]["bias"])
    np.testing.assert_allclose(out.aux["probs"], probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(out.aux["log_probs"]), probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.reward, probs @ np.array(values), rtol=1e-5, atol=1e-5)
    _, default = _init_apply(H.OrdinalHead(), x)
    assert np.all((default.reward >= 1) & (default.reward <= 9))


def test_mixture_equals_hand_computed_mixture():
    x, c = _features(7), _features(8)
    params, out = _init_apply(H.MixtureHead(num_components=3), x, c)
    p = _np(params)
    components = x @ p["components"]["kernel"] + p["components"]["bias"]
    router = _softmax(c @ p["router"]["logits"]["kernel"] + p["router"]["logits"]["bias"])
    np.testing.assert_allclose(out.aux["components"], components, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(out.aux["router_log_probs"]), router, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.reward, (router * components).sum(-1), rtol=1e-5, atol=1e-5)


ALL_HEADS = [
    ("scalar", {}),
    ("scalar", {"hidden_dim": 4}),
    ("multi_attribute", {"num_attributes": 3}),
    ("ensemble", {"num_members": 2}),
    ("ordinal", {"num_bins": 4}),
    ("mixture", {"num_components": 2, "router_hidden_dim": 4}),
]


@pytest.mark.parametrize("name,kwargs", ALL_HEADS)
def test_every_head_is_deterministic_named_finite_and_differentiable(name, kwargs):
    head = H.make_head(name, **kwargs)
    x, c = _features(9, (2, D)), _features(10, (2, D))
    params = head.init(jax.random.key(0), x, c)
    again = head.init(jax.random.key(0), x, c)
    other = head.init(jax.random.key(1), x, c)
    leaves = jax.tree.leaves(params, is_leaf=lambda v: isinstance(v, nn.Partitioned))
    for leaf in leaves:  # every parameter carries one logical name per dimension
        assert isinstance(leaf, nn.Partitioned) and len(leaf.names) == leaf.value.ndim
    chex_equal = jax.tree.map(np.array_equal, nn.meta.unbox(params), nn.meta.unbox(again))
    assert all(jax.tree.leaves(chex_equal))
    assert not all(
        jax.tree.leaves(jax.tree.map(np.array_equal, nn.meta.unbox(params), nn.meta.unbox(other)))
    )
    plain = nn.meta.unbox(params)
    eager = head.apply(plain, x, c)
    jitted = jax.jit(head.apply)(plain, x, c)
    np.testing.assert_allclose(eager.reward, jitted.reward, rtol=1e-6)

    @jax.jit
    def reward_sum(features, context):
        return jnp.sum(head.apply(plain, features, context).reward)

    check_grads(reward_sum, (x, c), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
    extreme = np.full_like(x, 1e4) * np.sign(_features(11, x.shape))
    value, grads = jax.value_and_grad(reward_sum, argnums=(0, 1))(extreme, -extreme)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)


def test_bad_names_fail_loudly():
    with pytest.raises(ValueError, match="head='nope'"):
        H.make_head("nope")
    x = _features(0)
    with pytest.raises(ValueError, match="activation='swishy'"):
        H.ScalarHead(hidden_dim=2, activation="swishy").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="gating='soft'"):
        H.MultiAttributeHead(2, gating="soft").init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="weights has 3 entries"):
        H.MultiAttributeHead(2, gating="fixed", weights=(1, 2, 3)).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="bin_values has 2 entries"):
        H.OrdinalHead(num_bins=3, bin_values=(1, 2)).init(jax.random.key(0), x)
