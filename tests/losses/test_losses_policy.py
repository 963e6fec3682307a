"""Tests for the reference-based policy losses against NumPy/SciPy formulas written here."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.special import expit, log_expit

from rewardjax import losses


# Independent references on (a, b) = (π_c - ref_c, π_r - ref_r), float64 NumPy.
def _np_dpo(a, b, beta=0.1, label_smoothing=0.0):
    z = beta * (a - b)
    return -(1 - label_smoothing) * log_expit(z) - label_smoothing * log_expit(-z)


def _np_robust(a, b, beta=0.1, label_smoothing=0.1):
    e, z = label_smoothing, beta * (a - b)
    return (-(1 - e) * log_expit(z) + e * log_expit(-z)) / (1 - 2 * e)


def _np_exo(a, b, beta=0.1, epsilon=1e-3):
    # KL((σ(z), 1-σ(z)) || (1-ε, ε)), written with plain probabilities.
    p = expit(beta * (a - b))
    return p * np.log(p / (1 - epsilon)) + (1 - p) * np.log((1 - p) / epsilon)


def _np_discopop(a, b, beta=0.1, tau=0.05):
    z = beta * (a - b)
    m = expit(z / tau)
    return (1 - m) * -log_expit(z) + m * np.exp(-z)


POLICY = [
    (losses.dpo, {}, _np_dpo),
    (losses.dpo, {"beta": 0.5, "label_smoothing": 0.2}, lambda a, b: _np_dpo(a, b, 0.5, 0.2)),
    (losses.robust_dpo, {}, _np_robust),
    (
        losses.robust_dpo,
        {"beta": 0.3, "label_smoothing": 0.3},
        lambda a, b: _np_robust(a, b, 0.3, 0.3),
    ),
    (losses.ipo, {}, lambda a, b: (a - b - 5.0) ** 2),
    (losses.ipo, {"beta": 0.5}, lambda a, b: (a - b - 1.0) ** 2),
    (losses.slic_hinge, {}, lambda a, b: np.maximum(0.0, 1 - 0.1 * (a - b))),
    (losses.slic_hinge, {"beta": 2.0}, lambda a, b: np.maximum(0.0, 1 - 2.0 * (a - b))),
    (
        losses.nca,
        {},
        lambda a, b: -log_expit(0.1 * a) - 0.5 * log_expit(-0.1 * a) - 0.5 * log_expit(-0.1 * b),
    ),
    (losses.bco, {}, lambda a, b: -log_expit(0.1 * a) - log_expit(-0.1 * b)),
    (
        losses.bco,
        {"beta": 0.5, "delta": 0.4},
        lambda a, b: -log_expit(0.5 * a - 0.4) - log_expit(0.4 - 0.5 * b),
    ),
    (losses.sppo_hard, {}, lambda a, b: (a - 5.0) ** 2 + (b + 5.0) ** 2),
    (losses.sppo_hard, {"beta": 1.0}, lambda a, b: (a - 0.5) ** 2 + (b + 0.5) ** 2),
    (losses.apo_zero, {}, lambda a, b: 1 - expit(0.1 * a) + expit(0.1 * b)),
    (losses.apo_down, {}, lambda a, b: expit(0.1 * a) + 1 - expit(0.1 * (a - b))),
    (losses.exo, {}, _np_exo),
    (losses.exo, {"beta": 0.5, "epsilon": 0.05}, lambda a, b: _np_exo(a, b, 0.5, 0.05)),
    (losses.discopop, {}, _np_discopop),
    (losses.discopop, {"beta": 0.5, "tau": 0.5}, lambda a, b: _np_discopop(a, b, 0.5, 0.5)),
]
NAMES = [f"{fn.__name__}{kw}" for fn, kw, _ in POLICY]


@jax.jit
def _all_losses(*logps):
    """Every configuration in POLICY, stacked to [len(POLICY), *B]: one compilation for all."""
    return jnp.stack([fn(*logps, **kwargs) for fn, kwargs, _ in POLICY])


def _logps(shape=(3, 4), seed=0):
    """Four log-prob arrays of plausible magnitude (summed over ~20 tokens)."""
    rng = np.random.default_rng(seed)
    return tuple(-np.abs(rng.normal(20.0, 8.0, size=shape)) for _ in range(4))


def test_matches_reference_jitted():
    pc, pr, rc, rr = _logps()
    got = _all_losses(*(x.astype(np.float32) for x in (pc, pr, rc, rr)))
    assert got.shape == (len(POLICY), *pc.shape) and got.dtype == jnp.float32
    for name, value, (_, _, reference) in zip(NAMES, got, POLICY):
        want = reference(pc - rc, pr - rr)
        np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-5, err_msg=name)


def test_grads():
    with jax.enable_x64(True):
        check_grads(_all_losses, _logps(shape=(3,), seed=1), order=1, modes=("rev",))


def test_finite_values_and_grads_at_extremes():
    # Every pattern of -1e4, 0, 1e4 over the four inputs.
    extremes = np.array(list(itertools.product([-1e4, 0.0, 1e4], repeat=4)), np.float32).T
    totals = lambda *xs: jnp.sum(_all_losses(*xs), axis=-1)
    values, grads = jax.jit(lambda *xs: (totals(*xs), jax.jacrev(totals, (0, 1, 2, 3))(*xs)))(
        *extremes
    )
    for i, name in enumerate(NAMES):
        assert np.isfinite(values[i]), name
        assert all(np.all(np.isfinite(g[i])) for g in grads), name


@pytest.mark.parametrize(
    ("fn", "kwargs"),
    [
        (losses.dpo, {"beta": 0.0}),
        (losses.dpo, {"label_smoothing": 0.7}),
        (losses.robust_dpo, {"label_smoothing": 0.5}),
        (losses.exo, {"epsilon": 0.0}),
        (losses.discopop, {"tau": 2.0}),
    ],
)
def test_invalid_hyperparameter_names_the_field(fn, kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        fn(*(jnp.zeros(2),) * 4, **kwargs)


def test_bco_delta_gets_no_gradient():
    pc, pr, rc, rr = _logps(shape=(3,))
    grad = jax.jit(jax.grad(lambda d: jnp.sum(losses.bco(pc, pr, rc, rr, delta=d))))(0.3)
    assert grad == 0.0


logp = st.floats(-200.0, 0.0)
_dpo = jax.jit(losses.dpo)
_robust_dpo = jax.jit(losses.robust_dpo)
_exo = jax.jit(losses.exo)
_bradley_terry = jax.jit(losses.bradley_terry)
_implicit_reward = jax.jit(losses.implicit_reward)


@settings(max_examples=25, deadline=None)
@given(pc=logp, pr=logp, rc=logp, rr=logp, beta=st.floats(0.01, 2.0), e=st.floats(0.0, 0.5))
def test_dpo_is_bradley_terry_on_implicit_rewards(pc, pr, rc, rr, beta, e):
    with jax.enable_x64(True):
        beta, e = np.float64(beta), np.float64(e)
        chosen = _implicit_reward(pc, rc, beta=beta)
        rejected = _implicit_reward(pr, rr, beta=beta)
        np.testing.assert_allclose(
            _dpo(pc, pr, rc, rr, beta=beta, label_smoothing=e),
            _bradley_terry(chosen, rejected, label_smoothing=e),
            rtol=1e-9,
            atol=1e-12,
        )


@settings(max_examples=25, deadline=None)
@given(pc=logp, pr=logp, rc=logp, rr=logp, beta=st.floats(0.01, 2.0), e=st.floats(0.0, 0.45))
def test_robust_dpo_is_unbiased_under_label_flips(pc, pr, rc, rr, beta, e):
    with jax.enable_x64(True):
        beta, e = np.float64(beta), np.float64(e)
        kept = _robust_dpo(pc, pr, rc, rr, beta=beta, label_smoothing=e)
        flipped = _robust_dpo(pr, pc, rr, rc, beta=beta, label_smoothing=e)
        clean = _dpo(pc, pr, rc, rr, beta=beta)
        np.testing.assert_allclose((1 - e) * kept + e * flipped, clean, rtol=1e-8, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(pc=logp, pr=logp, rc=logp, rr=logp, eps=st.floats(1e-4, 0.5))
def test_exo_is_a_kl_nonnegative_and_zero_at_the_target(pc, pr, rc, rr, eps):
    with jax.enable_x64(True):
        eps = np.float64(eps)
        assert _exo(pc, pr, rc, rr, epsilon=eps) >= -1e-12
        # σ(βΔ) = 1 - ε  ⇔  Δ = log((1 - ε)/ε) / β
        delta = np.log((1 - eps) / eps) / 0.1
        at_target = _exo(delta, 0.0, 0.0, 0.0, epsilon=eps)
        np.testing.assert_allclose(at_target, 0.0, atol=1e-9)


@jax.jit
def _all_masked_losses(where, *logps):
    return jnp.stack([fn(*logps, **kwargs, where=where) for fn, kwargs, _ in POLICY])


def test_where_masks_to_zero_loss_and_gradient_and_equals_slicing():
    """Padding holds -inf and NaN log-probs: masked entries are 0 with a 0 gradient, the rest
    match the NumPy references (masking equals slicing)."""
    pc, pr, rc, rr = _logps(shape=(6,), seed=3)
    where = np.array([True, False, True, True, False, True])
    padded = [np.where(where, x, bad) for x, bad in zip((pc, pr, rc, rr), (-np.inf, np.nan) * 2)]
    padded = [x.astype(np.float32) for x in padded]
    got = _all_masked_losses(where, *padded)
    for name, value, (_, _, reference) in zip(NAMES, got, POLICY):
        want = np.where(where, reference(pc - rc, pr - rr), 0.0)
        np.testing.assert_allclose(value, want, rtol=1e-4, atol=1e-5, err_msg=name)
    grads = jax.jacrev(lambda *x: _all_masked_losses(where, *x).sum(), argnums=(0, 1, 2, 3))(
        *padded
    )
    for g in grads:
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(np.asarray(g)[~where], 0.0)
