"""STARC distance on a finite space vs a NumPy reference, and its invariances."""

import hypothesis
import hypothesis.strategies as st
import jax
import numpy as np
from jax.test_util import check_grads

from rewardjax import theory

Y = 7


def _ref_starc(a, b, p):
    def standardise(r):
        c = r - p @ r
        norm = np.sqrt(p @ c**2)
        return c / norm if norm > 0 else 0 * c

    return np.sqrt(p @ (standardise(a) - standardise(b)) ** 2)


def test_matches_reference_batched_and_grads():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 4, Y))
    p = rng.dirichlet(np.ones(Y), size=4)
    got = jax.jit(theory.starc_distance)(a, b, p)
    np.testing.assert_allclose(got, [_ref_starc(a[i], b[i], p[i]) for i in range(4)], rtol=1e-5)
    check_grads(
        lambda x: theory.starc_distance(x, b[0], p[0]),
        (a[0],),
        1,
        modes=["rev"],
        atol=1e-2,
        rtol=1e-2,
    )
    np.testing.assert_allclose(theory.starc_distance(a[0], -a[0], p[0]), 2.0, rtol=1e-6)
    # A constant reward standardises to exactly 0, so its distance to any reward is ‖s(a)‖ = 1.
    np.testing.assert_array_equal(theory.standardize_reward(np.ones(Y), p[0]), 0.0)
    np.testing.assert_allclose(theory.starc_distance(np.ones(Y), a[0], p[0]), 1.0, rtol=1e-6)
    big = 1e4 * np.sign(a[0])
    assert np.isfinite(theory.starc_distance(big, b[0], p[0]))


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(st.integers(0, 10_000), st.floats(0.01, 100.0), st.floats(-50.0, 50.0))
def test_invariances(seed, scale, shift):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(2, Y))
    p = rng.dirichlet(np.ones(Y))
    d = float(theory.starc_distance(a, b, p))
    assert 0.0 <= d <= 2.0 + 1e-6
    np.testing.assert_allclose(theory.starc_distance(b, a, p), d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(theory.starc_distance(scale * a + shift, b, p), d, atol=1e-4)
    # An affine image is at distance 0; float32 rounding of the normalised rewards (relative
    # ~1e-7) reaches the distance through a square root: ~sqrt(Y * 1e-7) ~ 1e-3 at worst.
    assert theory.starc_distance(a, scale * a + shift, p) < 3e-3


def test_zero_probability_outcomes_equal_slicing():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, Y))
    p = rng.dirichlet(np.ones(Y))
    p[2] = 0.0
    p /= p.sum()
    keep = p > 0
    a_masked = np.where(keep, a, 1e3)
    np.testing.assert_allclose(
        theory.starc_distance(a_masked, b, p),
        theory.starc_distance(a[keep], b[keep], p[keep]),
        rtol=1e-5,
    )
