"""Tests for plackett_luce and listwise_softmax against explicit NumPy loops."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.special import log_expit, logsumexp

from rewardjax import losses

_plackett_luce = jax.jit(losses.plackett_luce)
_listwise_softmax = jax.jit(losses.listwise_softmax)


def _np_plackett_luce(row):
    """-log P(ranking) for one ranked row, best first, by an explicit loop over positions."""
    return -sum(row[k] - logsumexp(row[k:]) for k in range(len(row)))


def _np_listwise_softmax(row, best):
    return logsumexp(row) - row[best]


def _scores_and_mask(seed, shape=(6, 5)):
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=shape) * 3
    mask = rng.random(shape) < 0.7
    mask[0] = False  # an example with nothing to rank
    mask[1] = [True] + [False] * (shape[1] - 1)  # a single response
    return scores, mask


def test_plackett_luce_matches_loop_jitted():
    scores, _ = _scores_and_mask(0)
    got = _plackett_luce(scores.astype(np.float32))
    want = [_np_plackett_luce(row) for row in scores]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_plackett_luce_masking_equals_slicing():
    scores, mask = _scores_and_mask(1)
    got = _plackett_luce(scores.astype(np.float32), where=mask)
    want = [_np_plackett_luce(row[m]) for row, m in zip(scores, mask)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    sliced = _plackett_luce(scores[:, :3].astype(np.float32))
    trailing = np.arange(5) < 3
    np.testing.assert_allclose(_plackett_luce(scores, where=trailing), sliced, rtol=1e-6)


def test_plackett_luce_grads_with_mask():
    scores, mask = _scores_and_mask(2, shape=(3, 4))
    with jax.enable_x64(True):
        f = jax.jit(lambda s: losses.plackett_luce(s, where=mask))
        check_grads(f, (scores,), order=1, modes=("rev",))
        # Masked-out scores get no gradient.
        grad = jax.grad(lambda s: jnp.sum(f(s)))(scores)
        assert np.all(grad[~mask] == 0.0)


def test_plackett_luce_finite_at_extremes():
    scores = np.array([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, 1e4, 0.0]], np.float32)
    mask = np.array([[True, True, False, True], [True, True, True, True]])
    value, grad = jax.jit(
        jax.value_and_grad(lambda s: jnp.sum(losses.plackett_luce(s, where=mask)))
    )(scores)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


@settings(max_examples=25, deadline=None)
@given(a=st.floats(-50, 50), b=st.floats(-50, 50), shift=st.floats(-1e3, 1e3))
def test_plackett_luce_two_items_is_bradley_terry_and_shift_invariant(a, b, shift):
    with jax.enable_x64(True):
        scores = np.array([a, b])
        pl = _plackett_luce(scores)
        np.testing.assert_allclose(pl, losses.bradley_terry(a, b), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(pl, -log_expit(a - b), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(_plackett_luce(scores + shift), pl, rtol=1e-9, atol=1e-9)


def test_listwise_softmax_matches_reference_jitted():
    scores, _ = _scores_and_mask(3)
    best = np.random.default_rng(3).integers(0, 5, size=6)
    got = _listwise_softmax(scores.astype(np.float32), best)
    want = [_np_listwise_softmax(row, k) for row, k in zip(scores, best)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_listwise_softmax_masking_equals_slicing():
    scores, mask = _scores_and_mask(4)
    mask[0, 2] = True  # every example needs its best response
    best = np.array([np.flatnonzero(m)[-1] for m in mask])
    got = _listwise_softmax(scores.astype(np.float32), best, where=mask)
    # After slicing, the best response sits at its rank among the valid ones.
    want = [_np_listwise_softmax(row[m], np.sum(m[:k])) for row, m, k in zip(scores, mask, best)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_listwise_softmax_grads_and_extremes():
    scores, mask = _scores_and_mask(5, shape=(3, 4))
    mask[:, 0] = True
    best = np.zeros(3, int)
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda s: losses.listwise_softmax(s, best, where=mask)),
            (scores,),
            order=1,
            modes=("rev",),
        )
    extreme = np.array([[1e4, -1e4, 1e4, 0.0], [-1e4, 1e4, -1e4, 1e4], [0.0, 1e4, 1e4, -1e4]])
    value, grad = jax.jit(
        jax.value_and_grad(lambda s: jnp.sum(losses.listwise_softmax(s, best, where=mask)))
    )(extreme.astype(np.float32))
    assert np.isfinite(value) and np.all(np.isfinite(grad))
