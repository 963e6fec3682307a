"""Tests for rewardjax.losses.reward_model against independent NumPy/SciPy references."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.special import expit, log_expit, log_ndtr, logsumexp

from rewardjax import losses

finite = st.floats(-30.0, 30.0, allow_nan=False)


def _np_bradley_terry(c, r, margin=0.0, label_smoothing=0.0):
    z = c - r - margin
    return -(1 - label_smoothing) * log_expit(z) - label_smoothing * log_expit(-z)


# (loss, keyword hyper-parameters, independent reference on float64 NumPy arrays)
PAIRWISE = [
    (losses.bradley_terry, {}, _np_bradley_terry),
    (
        losses.bradley_terry,
        {"margin": 0.7, "label_smoothing": 0.1},
        functools.partial(_np_bradley_terry, margin=0.7, label_smoothing=0.1),
    ),
    (losses.hinge, {}, lambda c, r: np.maximum(0.0, 1.0 - (c - r))),
    (losses.hinge, {"margin": 2.5}, lambda c, r: np.maximum(0.0, 2.5 - (c - r))),
    (losses.thurstone, {}, lambda c, r: -log_ndtr(c - r)),
    (losses.thurstone, {"scale": 3.0}, lambda c, r: -log_ndtr((c - r) / 3.0)),
    (losses.reward_centering, {}, lambda c, r: (c + r) ** 2),
    (losses.rating_regression, {}, lambda p, t: (p - t) ** 2),
]
IDS = [f"{fn.__name__}-{kw}" for fn, kw, _ in PAIRWISE]


def _pair(shape=(3, 5), scale=3.0, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=shape) * scale, rng.normal(size=shape) * scale)


@pytest.mark.parametrize(("fn", "kwargs", "reference"), PAIRWISE, ids=IDS)
def test_pairwise_matches_reference_jitted(fn, kwargs, reference):
    c, r = _pair()
    got = jax.jit(functools.partial(fn, **kwargs))(c.astype(np.float32), r.astype(np.float32))
    assert got.shape == c.shape and got.dtype == jnp.float32
    np.testing.assert_allclose(got, reference(c, r), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize(("fn", "kwargs", "reference"), PAIRWISE, ids=IDS)
def test_pairwise_grads(fn, kwargs, reference):
    del reference
    c, r = _pair(shape=(4,), seed=1)
    with jax.enable_x64(True):
        check_grads(jax.jit(functools.partial(fn, **kwargs)), (c, r), order=1, modes=("rev",))


@pytest.mark.parametrize(("fn", "kwargs", "reference"), PAIRWISE, ids=IDS)
def test_pairwise_finite_at_extremes(fn, kwargs, reference):
    del reference
    pairs = np.array(list(itertools.product([-1e4, 0.0, 1e4], repeat=2)), np.float32)
    c, r = pairs[:, 0], pairs[:, 1]
    f = functools.partial(fn, **kwargs)
    value, grads = jax.jit(jax.value_and_grad(lambda c, r: jnp.sum(f(c, r)), argnums=(0, 1)))(c, r)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_bradley_terry_accepts_bfloat16_and_returns_float32():
    c, r = _pair()
    got = losses.bradley_terry(jnp.asarray(c, jnp.bfloat16), jnp.asarray(r, jnp.bfloat16))
    assert got.dtype == jnp.float32


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (losses.bradley_terry, {"label_smoothing": 1.5}),
        (losses.thurstone, {"scale": 0.0}),
    ],
)
def test_invalid_hyperparameter_names_the_field(fn, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        fn(jnp.zeros(2), jnp.zeros(2), **kwargs)


# Hyper-parameters passed traced, so one compilation serves every hypothesis example.
_bradley_terry = jax.jit(losses.bradley_terry)
_thurstone = jax.jit(losses.thurstone)


@settings(max_examples=25, deadline=None)
@given(c=finite, r=finite, shift=st.floats(-1e3, 1e3), e=st.floats(0.0, 1.0))
def test_bradley_terry_and_thurstone_invariant_to_common_shift(c, r, shift, e):
    with jax.enable_x64(True):
        c, r, e = np.float64(c), np.float64(r), np.float64(e)
        for f in (functools.partial(_bradley_terry, label_smoothing=e), _thurstone):
            np.testing.assert_allclose(f(c + shift, r + shift), f(c, r), rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(c=finite, r=finite, e=st.floats(0.0, 1.0))
def test_bradley_terry_label_smoothing_is_a_soft_flip(c, r, e):
    with jax.enable_x64(True):
        c, r, e = np.float64(c), np.float64(r), np.float64(e)
        flipped = _bradley_terry(r, c, label_smoothing=1.0 - e)
        # 1 - (1 - e) != e in floating point: allow that rounding (≈1e-16 · |c - r|) absolutely.
        smoothed = _bradley_terry(c, r, label_smoothing=e)
        np.testing.assert_allclose(smoothed, flipped, rtol=1e-9, atol=1e-13)


# --- ordinal (cumulative logit) ---------------------------------------------------------------


def _np_ordinal(score, rating, cutpoints):
    edges = np.concatenate([[-np.inf], cutpoints, [np.inf]])
    upper = expit(edges[rating + 1] - score)
    lower = expit(edges[rating] - score)
    return -np.log(upper - lower)


CUTS = np.array([-2.0, -0.5, 0.3, 1.8])  # K = 5 classes


def test_ordinal_matches_reference_for_every_class_jitted():
    rng = np.random.default_rng(2)
    score = rng.normal(size=(6, 5)) * 2
    rating = np.broadcast_to(np.arange(5), (6, 5))
    got = jax.jit(lambda s, k, t: losses.ordinal(s, k, cutpoints=t))(
        score.astype(np.float32), rating, CUTS.astype(np.float32)
    )
    want = np.vectorize(lambda s, k: _np_ordinal(s, k, CUTS))(score, rating)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_ordinal_per_example_cutpoints_and_probabilities_sum_to_one():
    rng = np.random.default_rng(3)
    cuts = np.sort(rng.normal(size=(4, 3)) * 2, axis=-1)  # per-example, K = 4
    score = rng.normal(size=4)
    f = jax.jit(lambda s, k, t: losses.ordinal(s, k, cutpoints=t))
    probs = sum(np.exp(-np.asarray(f(score, np.full(4, k), cuts))) for k in range(4))
    np.testing.assert_allclose(probs, 1.0, rtol=1e-5)
    got = f(score, np.array([0, 1, 2, 3]), cuts)
    want = [_np_ordinal(score[i], i, cuts[i]) for i in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_ordinal_grads_in_score_and_cutpoints():
    score = np.array([-1.5, 0.2, 0.9, 3.0, -0.1])
    rating = np.array([0, 1, 2, 4, 3])
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda s, t: losses.ordinal(s, rating, cutpoints=t)),
            (score, CUTS),
            1,
            modes=("rev",),
        )


def test_ordinal_finite_at_extremes():
    score = np.array([-1e4, 1e4] * 5, np.float32)
    rating = np.repeat(np.arange(5), 2)
    cuts = CUTS.astype(np.float32)
    f = lambda s, t: jnp.sum(losses.ordinal(s, rating, cutpoints=t))
    value, grads = jax.jit(jax.value_and_grad(f, argnums=(0, 1)))(score, cuts)
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)


def test_categorical_rating_is_the_nll_of_the_nearest_bin():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(7, 5)).astype(np.float32)
    values = np.array([0.0, 1.0, 2.5, 3.0, 4.0], np.float32)
    rating = np.array([0.0, 0.4, 0.5, 1.8, 2.75, 9.0, -3.0], np.float32)  # 0.5 and 2.75: ties
    got = jax.jit(lambda lp, y: losses.categorical_rating(lp, y, bin_values=values))(
        jax.nn.log_softmax(logits), rating
    )
    log_probs = logits - logsumexp(logits, axis=-1, keepdims=True)
    nearest = [0, 0, 0, 2, 2, 4, 0]  # by hand: ties go to the lower bin, the ends clamp
    want = -log_probs[np.arange(7), nearest]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The gradient moves probability onto the rated bin only: softmax(logits) - onehot.
    grad = jax.grad(
        lambda z: losses.categorical_rating(jax.nn.log_softmax(z), 1.0, bin_values=values)
    )(jnp.asarray(logits[0]))
    onehot = np.eye(5)[1]
    np.testing.assert_allclose(grad, np.exp(log_probs[0]) - onehot, rtol=1e-5, atol=1e-6)


MASKABLE = [p for p in PAIRWISE if p[0] is not losses.rating_regression]


@pytest.mark.parametrize(("fn", "kwargs", "reference"), MASKABLE, ids=IDS[: len(MASKABLE)])
def test_pairwise_where_masks_to_zero_loss_and_gradient(fn, kwargs, reference):
    """Padded pairs (inf / NaN scores) give 0 loss and 0 gradient; the rest match NumPy."""
    c, r = _pair(shape=(6,), seed=2)
    where = np.array([True, False, True, False, True, True])
    pc = np.where(where, c, np.inf).astype(np.float32)
    pr = np.where(where, r, np.nan).astype(np.float32)
    f = jax.jit(lambda c, r: fn(c, r, **kwargs, where=where))
    np.testing.assert_allclose(
        f(pc, pr), np.where(where, reference(c, r), 0.0), rtol=2e-5, atol=2e-5
    )
    # Masking equals slicing: the kept losses are those of the sliced pairs.
    kept = reference(c[where], r[where])
    np.testing.assert_allclose(f(pc, pr)[where], kept, rtol=2e-5, atol=2e-5)
    grads = jax.grad(lambda c, r: jnp.sum(f(c, r)), argnums=(0, 1))(pc, pr)
    for g in grads:
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(np.asarray(g)[~where], 0.0)
