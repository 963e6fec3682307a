"""rewardjax.numerics: the one weighted mean (0 for all-zero weights), as_float, log1mexp."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import evaluate, numerics, train


def _np_weighted_mean(x, w):
    x, w = np.asarray(x, np.float64), np.broadcast_to(np.asarray(w, np.float64), np.shape(x))
    return 0.0 if w.sum() == 0 else float((w * x).sum() / w.sum())


@pytest.mark.parametrize(
    "weight",
    [[1.0, 1.0, 0.0, 1.0], [0.25, 0.25, 0.0, 0.0], [2.0, 0.5, 1.0, 3.0], [0.0] * 4, [1, 0, 1, 1]],
)
def test_weighted_mean_matches_numpy(weight):
    x = np.float32([1.0, 3.0, -7.0, 0.5])
    got = jax.jit(numerics.weighted_mean)(x, jnp.asarray(weight))
    np.testing.assert_allclose(got, _np_weighted_mean(x, weight), rtol=1e-6)


def test_weighted_mean_defaults_to_the_plain_mean_and_broadcasts_a_scalar_weight():
    x = np.float32([1.0, 2.0, 6.0])
    np.testing.assert_allclose(numerics.weighted_mean(x), 3.0)
    np.testing.assert_allclose(numerics.weighted_mean(x, 0.5), 3.0)
    np.testing.assert_allclose(numerics.weighted_mean(x, True), 3.0)


def test_weighted_mean_of_padding_only_is_zero_with_zero_gradient():
    x, w = jnp.float32([1.0, 2.0]), jnp.zeros(2)
    value, grad = jax.value_and_grad(numerics.weighted_mean)(x, w)
    assert float(value) == 0.0
    np.testing.assert_array_equal(grad, [0.0, 0.0])


def test_every_caller_uses_the_one_weighted_mean():
    """train and evaluate re-export the same function: one zero-weight behaviour."""
    assert train.weighted_mean is numerics.weighted_mean
    x, w = np.float32([1.0, 3.0]), np.float32([0.25, 0.25])
    # The former train copy floored the denominator at 1 (it gave 1.0 here).
    np.testing.assert_allclose(train.weighted_mean(x, w), 2.0)
    # The former evaluate copy gave NaN for an all-zero weight.
    acc = evaluate.pair_accuracy(np.float32([1.0, 0.0]), np.float32([0.0, 1.0]), weight=np.zeros(2))
    assert float(acc) == 0.0


def test_as_float_promotes_to_at_least_float32():
    assert numerics.as_float(jnp.ones(2, jnp.bfloat16)).dtype == jnp.float32
    assert numerics.as_float(np.int32([1, 2])).dtype == jnp.float32
    assert numerics.as_float(True).dtype == jnp.float32


def test_log1mexp_matches_numpy_on_both_branches_with_finite_gradients():
    x = np.float32([-1e-6, -0.1, -0.69, -0.7, -5.0, -50.0])
    want = np.log1p(-np.exp(np.float64(x)))  # exact enough in float64 at these points
    np.testing.assert_allclose(jax.jit(numerics.log1mexp)(x), want, rtol=1e-5)
    grad = jax.grad(lambda v: numerics.log1mexp(v).sum())(jnp.asarray(x))
    np.testing.assert_allclose(grad, -1.0 / np.expm1(-np.float64(x)), rtol=1e-4)
