"""Tests for rewardjax.rl.aggregation against NumPy loops written here, and padding invariance."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads

from rewardjax.rl import aggregation

B, T, MAX_LEN = 5, 6, 8
HYPOTHESIS = settings(max_examples=25, deadline=None)
_aggregate = jax.jit(aggregation.aggregate, static_argnames=("mode", "max_length"))


def _np_aggregate(loss, mask, mode, max_length=None, weights=None):
    """Loops over rows and their real tokens, in float64."""
    w = np.ones(len(loss)) if weights is None else np.asarray(weights, np.float64)
    if mode == "token_mean":
        num = den = 0.0
        for b in range(len(loss)):
            for t in range(loss.shape[1]):
                if mask[b, t]:
                    num += w[b] * float(loss[b, t])
                    den += w[b]
        return num / den if den else 0.0
    num = den = 0.0
    for b in range(len(loss)):
        tokens = [float(loss[b, t]) for t in range(loss.shape[1]) if mask[b, t]]
        if not tokens:
            continue
        if mode == "seq_mean_token_mean":
            value = sum(tokens) / len(tokens)
        elif mode == "seq_mean_token_sum":
            value = sum(tokens)
        else:
            value = sum(tokens) / max_length
        num += w[b] * value
        den += w[b]
    return num / den if den else 0.0


def _example(seed=0, garbage=np.nan):
    rng = np.random.default_rng(seed)
    lengths = np.array([T, 3, 0, 1, 5])  # one empty completion
    mask = np.arange(T)[None, :] < lengths[:, None]
    mask[4] = [0, 1, 1, 0, 1, 0]  # a hole and a leading pad
    loss = np.where(mask, rng.normal(size=(B, T)), garbage).astype(np.float32)
    weights = np.array([1.0, 0.5, 2.0, 1.0, 0.0], np.float32)  # row 4 is a padding row
    return loss, mask, weights


def _kwargs(mode):
    return {"max_length": MAX_LEN} if mode == "seq_mean_token_sum_norm" else {}


@pytest.mark.parametrize("mode", aggregation.MODES)
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_numpy_reference_jitted(mode, weighted):
    loss, mask, weights = _example()
    w = weights if weighted else None
    got = _aggregate(loss, mask, mode, weights=w, **_kwargs(mode))
    assert got.shape == () and got.dtype == jnp.float32
    want = _np_aggregate(loss, mask, mode, MAX_LEN, w)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_modes_differ_as_documented():
    """A long row and a short row: the token mean weighs tokens, the sequence means weigh rows."""
    loss = np.array([[1.0, 1.0, 1.0, 1.0], [4.0, 0.0, 0.0, 0.0]], np.float32)
    mask = np.array([[1, 1, 1, 1], [1, 0, 0, 0]])
    got = dict(zip(aggregation.MODES, jax.jit(_all_modes)(loss, mask, None).tolist(), strict=True))
    np.testing.assert_allclose(got["token_mean"], 8 / 5, rtol=1e-6)
    np.testing.assert_allclose(got["seq_mean_token_mean"], (1 + 4) / 2, rtol=1e-6)
    np.testing.assert_allclose(got["seq_mean_token_sum"], (4 + 4) / 2, rtol=1e-6)
    np.testing.assert_allclose(got["seq_mean_token_sum_norm"], (4 + 4) / 2 / MAX_LEN, rtol=1e-6)


def _all_modes(loss, mask, weights):
    """The four modes stacked in `MODES` order, as one function (one compilation per shape)."""
    return jnp.stack(
        [
            aggregation.aggregate(loss, mask, m, weights=weights, **_kwargs(m))
            for m in aggregation.MODES
        ]
    )


@jax.jit
def _values_and_grads(loss, mask, weights):
    """Values [4] and their gradients [4, B, T] with respect to the per-token loss."""
    return _all_modes(loss, mask, weights), jax.jacrev(_all_modes)(loss, mask, weights)


def test_padding_width_does_not_change_value_or_gradient():
    """The same batch padded two ways: extra masked columns, and extra rows of mask 0 / weight 0."""
    loss, mask, weights = _example(seed=1, garbage=0.0)
    value, grad = _values_and_grads(loss, mask, weights)
    # 1) Extra columns holding garbage at masked positions.
    wide_loss = np.pad(loss, ((0, 0), (0, 4)), constant_values=1e6)
    wide_mask = np.pad(mask, ((0, 0), (0, 4)))
    v1, g1 = _values_and_grads(wide_loss, wide_mask, weights)
    # 2) Extra rows: two with mask 0 (weight 1), one with real tokens but weight 0.
    rows = np.full((3, T), 3.0, np.float32)
    row_mask = np.zeros((3, T), bool)
    row_mask[2, :2] = True
    tall_loss, tall_mask = np.concatenate([loss, rows]), np.concatenate([mask, row_mask])
    tall_w = np.concatenate([weights, [1.0, 1.0, 0.0]]).astype(np.float32)
    v2, g2 = _values_and_grads(tall_loss, tall_mask, tall_w)
    # 3) Both at once, the extra rows only masked (weight 1).
    both_loss = np.pad(tall_loss[: B + 2], ((0, 0), (0, 4)), constant_values=-7.0)
    both_mask = np.pad(tall_mask[: B + 2], ((0, 0), (0, 4)))
    v3, g3 = _values_and_grads(both_loss, both_mask, tall_w[: B + 2])
    for v in (v1, v2, v3):
        np.testing.assert_allclose(v, value, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g1[:, :, :T], grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g2[:, :B], grad, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(g3[:, :B, :T], grad, rtol=1e-6, atol=1e-7)
    assert np.all(g1[:, :, T:] == 0) and np.all(g2[:, B:] == 0) and np.all(g3[:, B:] == 0)
    assert np.any(grad != 0, axis=(1, 2)).all()  # the gradients compared are not trivially 0


def test_nan_at_pads_and_empty_batch_are_finite():
    loss, mask, weights = _example(seed=2, garbage=np.nan)
    value, grad = _values_and_grads(loss, mask, weights)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))
    assert np.all(np.asarray(grad)[:, ~mask] == 0)
    value, grad = _values_and_grads(loss, np.zeros_like(mask), weights)
    assert np.all(value == 0) and np.all(grad == 0)


def test_check_grads_and_bfloat16():
    loss, mask, weights = _example(seed=3, garbage=0.0)
    fn = jax.jit(lambda x: _all_modes(x, mask, weights))
    check_grads(fn, (loss,), order=1, modes=("rev",), eps=1e-2, atol=1e-2, rtol=1e-2)
    low = jnp.asarray(loss, jnp.bfloat16)
    got = jax.jit(_all_modes)(low, mask, None)
    assert got.dtype == jnp.float32
    for m, value in zip(aggregation.MODES, got, strict=True):
        want = _np_aggregate(np.asarray(low, np.float64), mask, m, MAX_LEN)
        np.testing.assert_allclose(value, want, rtol=1e-5, atol=1e-6)


def test_errors():
    # The functions' own errors, which a user meets without the runtime type checker (the
    # tests run it, and it would reject these shapes first): inspect.unwrap strips it.
    loss, mask, _ = _example()
    with pytest.raises(ValueError, match=r"'mean'.*token_mean.*seq_mean_token_sum_norm"):
        inspect.unwrap(aggregation.aggregate)(loss, mask, "mean")
    with pytest.raises(ValueError, match="max_length"):
        inspect.unwrap(aggregation.aggregate)(loss, mask, "seq_mean_token_sum_norm")
    with pytest.raises(ValueError, match="mask has shape"):
        inspect.unwrap(aggregation.aggregate)(loss, mask[:, :2], "token_mean")
    with pytest.raises(ValueError, match="weights has shape"):
        inspect.unwrap(aggregation.aggregate)(loss, mask, "token_mean", weights=np.ones(B + 1))


@HYPOTHESIS
@given(
    c=st.floats(-100, 100, width=32),
    lengths=hnp.arrays(np.int64, (B,), elements=st.integers(0, T)),
    scale=st.floats(0.1, 10),
)
def test_constant_loss_and_weight_scale(c, lengths, scale):
    """A constant per-token loss c: token_mean = seq_mean_token_mean = c; the sums give c times
    the mean length of the non-empty rows; scaling all weights changes nothing."""
    mask = np.arange(T)[None, :] < lengths[:, None]
    loss = np.full((B, T), c, np.float32)
    weights = np.array([1.0, 2.0, 0.5, 1.0, 3.0], np.float32)
    nonempty = lengths > 0
    if not nonempty.any():
        expected = dict.fromkeys(aggregation.MODES, 0.0)
    else:
        mean_len = np.average(lengths[nonempty], weights=weights[nonempty])
        expected = {
            "token_mean": c,
            "seq_mean_token_mean": c,
            "seq_mean_token_sum": c * mean_len,
            "seq_mean_token_sum_norm": c * mean_len / MAX_LEN,
        }
    for mode in aggregation.MODES:
        got = _aggregate(loss, mask, mode, weights=weights, **_kwargs(mode))
        np.testing.assert_allclose(got, expected[mode], rtol=1e-5, atol=1e-5)
        scaled = _aggregate(loss, mask, mode, weights=weights * scale, **_kwargs(mode))
        np.testing.assert_allclose(scaled, got, rtol=1e-5, atol=1e-5)
