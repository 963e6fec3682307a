"""Tests for rewardjax.kl against NumPy/SciPy references and Monte Carlo written here."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from jax.test_util import check_grads
from scipy import special, stats

from rewardjax import kl

HYPOTHESIS = settings(max_examples=25, deadline=None)
GRAD_TOL = dict(order=1, modes=("rev",), eps=1e-3, atol=2e-2, rtol=2e-2)
B, T, V = 3, 5, 7
ESTIMATORS = ("k1", "k2", "k3")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _np_estimate(logp, ref_logp, estimator):
    x = logp.astype(np.float64) - ref_logp
    return {"k1": x, "k2": x**2 / 2, "k3": np.exp(-x) - 1 + x}[estimator]


# One jitted function per estimator, built once so that repeated calls hit the compile cache.
_JITTED = {e: jax.jit(functools.partial(kl.kl_estimate, estimator=e)) for e in ESTIMATORS}


def _jit_estimate(estimator):
    return _JITTED[estimator]


def _value_and_grads(f, *args):
    """f(*args) and the gradient of sum(f) in every argument, jitted."""
    return jax.jit(lambda *a: (f(*a), jax.grad(lambda *b: jnp.sum(f(*b)), range(len(a)))(*a)))(
        *args
    )


def test_public_names_exist():
    for name in kl.__all__:
        assert getattr(kl, name) is not None, name


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_kl_estimate_matches_numpy_and_grads(estimator):
    logp = _rng().normal(size=(B, T)).astype(np.float32) - 2
    ref_logp = _rng(1).normal(size=(B, T)).astype(np.float32) - 2
    fn = _jit_estimate(estimator)
    np.testing.assert_allclose(
        fn(logp, ref_logp), _np_estimate(logp, ref_logp, estimator), rtol=1e-5, atol=1e-6
    )
    check_grads(fn, (logp, ref_logp), **GRAD_TOL)
    # bfloat16 log-probs are promoted to float32.
    assert fn(logp.astype(jnp.bfloat16), ref_logp.astype(jnp.bfloat16)).dtype == jnp.float32


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_kl_estimate_masking_equals_slicing(estimator):
    logp = _rng().normal(size=(B, T)).astype(np.float32)
    ref_logp = _rng(1).normal(size=(B, T)).astype(np.float32)
    mask = _rng(2).random((B, T)) < 0.6
    garbage = np.where(mask, logp, -np.inf).astype(np.float32)  # masked tokens must not leak
    values, (g_logp, g_ref) = _value_and_grads(
        lambda a, b: kl.kl_estimate(a, b, estimator=estimator, where=mask), garbage, ref_logp
    )
    values = np.asarray(values)
    sliced = _jit_estimate(estimator)(logp[mask], ref_logp[mask])
    np.testing.assert_allclose(values[mask], sliced, rtol=1e-6)
    assert np.all(values[~mask] == 0)
    assert np.all(np.isfinite(g_logp)) and np.all(np.isfinite(g_ref))
    assert np.all(np.asarray(g_logp)[~mask] == 0)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_kl_estimate_finite_at_extremes(estimator):
    logp = jnp.array([1e4, -1e4, 0.0, -1e4])
    ref_logp = jnp.array([-1e4, 1e4, 0.0, 0.0])
    clipped = lambda a, b: kl.kl_estimate(a, b, estimator=estimator, log_ratio_clip=20.0)
    values, grads = _value_and_grads(clipped, logp, ref_logp)
    assert np.all(np.isfinite(values)) and all(np.all(np.isfinite(g)) for g in grads)
    # Without clipping k1 and k2 stay finite; k3 is finite for log-ratios ≥ 0 and its
    # true value exp(-x) overflows (to +inf, never NaN) for x = -1e4.
    plain = lambda a, b: kl.kl_estimate(a, b, estimator=estimator)
    values, grads = _value_and_grads(plain, logp, ref_logp)
    values = np.asarray(values)
    if estimator == "k3":
        assert np.all(np.isfinite(values[[0, 2]])) and np.all(np.isposinf(values[[1, 3]]))
    else:
        assert np.all(np.isfinite(values)) and all(np.all(np.isfinite(g)) for g in grads)


def test_kl_estimate_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="estimator"):
        kl.kl_estimate(jnp.zeros(2), jnp.zeros(2), estimator="k4")


@HYPOTHESIS
@given(
    logp=hnp.arrays(np.float32, (16,), elements=st.floats(-40, 0, width=32)),
    ref_logp=hnp.arrays(np.float32, (16,), elements=st.floats(-40, 0, width=32)),
)
def test_k3_and_k2_are_nonnegative(logp, ref_logp):
    assert np.all(np.asarray(_jit_estimate("k3")(logp, ref_logp)) >= 0)
    assert np.all(np.asarray(_jit_estimate("k2")(logp, ref_logp)) >= 0)


# Monte Carlo: tokens y ~ π = N(0, 1), reference π_ref = N(μ, σ²). The tolerance is 5 standard
# errors of the sample mean (deterministic seed, so the test does not flake).
MC_SAMPLES = 400_000


def _gaussian_log_probs(mu, sigma, seed=0):
    y = _rng(seed).standard_normal(MC_SAMPLES)
    logp = stats.norm.logpdf(y)
    ref_logp = stats.norm.logpdf(y, loc=mu, scale=sigma)
    return logp.astype(np.float32), ref_logp.astype(np.float32)


def _mc_mean_and_tol(estimator, logp, ref_logp):
    samples = np.asarray(_jit_estimate(estimator)(logp, ref_logp), np.float64)
    return samples.mean(), 5 * samples.std() / np.sqrt(samples.size)


@pytest.mark.parametrize(("mu", "sigma"), [(0.1, 1.0), (1.0, 1.0), (0.3, 1.5)])
def test_k1_and_k3_are_unbiased_on_gaussian_pair(mu, sigma):
    # KL(N(0,1) ‖ N(μ,σ²)) = log σ + (1 + μ²) / (2σ²) - ½.
    exact = np.log(sigma) + (1 + mu**2) / (2 * sigma**2) - 0.5
    logp, ref_logp = _gaussian_log_probs(mu, sigma)
    for estimator in ("k1", "k3"):
        mean, tol = _mc_mean_and_tol(estimator, logp, ref_logp)
        assert abs(mean - exact) < tol, (estimator, mean, exact, tol)


@pytest.mark.parametrize("mu", [0.1, 1.0])
def test_k2_mean_and_its_small_bias_on_gaussian_pair(mu):
    # Equal variances: x = log π - log π_ref = -μy + μ²/2 with y ~ N(0,1), so
    # E[k2] = E[x²]/2 = μ²/2 + μ⁴/8 while KL = μ²/2: relative bias μ²/4.
    exact_kl, exact_k2 = mu**2 / 2, mu**2 / 2 + mu**4 / 8
    mean, tol = _mc_mean_and_tol("k2", *_gaussian_log_probs(mu, 1.0))
    assert abs(mean - exact_k2) < tol, (mean, exact_k2, tol)
    assert mean > exact_kl  # biased upwards ...
    if mu <= 0.1:
        assert abs(mean - exact_kl) / exact_kl < 0.01  # ... but little when π ≈ π_ref


def test_k3_has_lower_variance_than_k1_on_nearby_pair():
    logp, ref_logp = _gaussian_log_probs(0.1, 1.0)
    k1 = np.asarray(_jit_estimate("k1")(logp, ref_logp))
    k3 = np.asarray(_jit_estimate("k3")(logp, ref_logp))
    assert k3.std() < 0.2 * k1.std()


def _np_categorical_kl(logits_p, logits_q):
    p = special.softmax(logits_p.astype(np.float64), axis=-1)
    q = special.softmax(logits_q.astype(np.float64), axis=-1)
    return special.rel_entr(p, q).sum(-1)


def test_categorical_kl_matches_scipy_and_grads():
    logits_p = _rng().normal(size=(B, T, V)).astype(np.float32) * 2
    logits_q = _rng(1).normal(size=(B, T, V)).astype(np.float32) * 2
    fn = jax.jit(kl.categorical_kl)
    np.testing.assert_allclose(
        fn(logits_p, logits_q), _np_categorical_kl(logits_p, logits_q), rtol=1e-4, atol=1e-6
    )
    check_grads(fn, (logits_p, logits_q), **GRAD_TOL)


def test_categorical_kl_zero_probability_entries():
    ninf = -np.inf
    logits_p = np.array([[0.0, ninf, 1.0], [0.0, ninf, 1.0], [0.0, 0.5, 1.0]], np.float32)
    logits_q = np.array([[1.0, 2.0, 0.0], [1.0, ninf, 0.0], [1.0, ninf, 0.0]], np.float32)
    values, grads = _value_and_grads(kl.categorical_kl, logits_p[:2], logits_q[:2])
    np.testing.assert_allclose(values, _np_categorical_kl(logits_p[:2], logits_q[:2]), rtol=1e-5)
    assert all(np.all(np.isfinite(g)) for g in grads)
    # p puts mass where q has none: KL(p ‖ q) = +inf, as in SciPy.
    assert np.isposinf(kl.categorical_kl(logits_p[2], logits_q[2]))
    assert np.isposinf(_np_categorical_kl(logits_p[2], logits_q[2]))


def test_categorical_kl_finite_at_extremes():
    logits_p = jnp.array([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]])
    logits_q = jnp.array([[-1e4, 1e4, 0.0], [1e4, -1e4, 0.0]])
    values, grads = _value_and_grads(kl.categorical_kl, logits_p, logits_q)
    assert np.all(np.isfinite(values)) and all(np.all(np.isfinite(g)) for g in grads)
    np.testing.assert_allclose(values[0], 2e4, rtol=1e-6)  # p = e_0, log q_0 = -2e4


def test_categorical_kl_masking_equals_slicing():
    logits_p = _rng().normal(size=(B, T, V)).astype(np.float32)
    logits_q = _rng(1).normal(size=(B, T, V)).astype(np.float32)
    mask = _rng(2).random((B, T)) < 0.6
    garbage = np.where(mask[..., None], logits_p, np.nan).astype(np.float32)
    masked = lambda a, b: kl.categorical_kl(a, b, where=mask)
    values, grads = _value_and_grads(masked, garbage, logits_q)
    values = np.asarray(values)
    sliced = jax.jit(kl.categorical_kl)(logits_p[mask], logits_q[mask])
    np.testing.assert_allclose(values[mask], sliced, rtol=1e-6)
    assert np.all(values[~mask] == 0)
    assert all(np.all(np.isfinite(g)) for g in grads)


@HYPOTHESIS
@given(
    logits_p=hnp.arrays(np.float32, (2, V), elements=st.floats(-20, 20, width=32)),
    logits_q=hnp.arrays(np.float32, (2, V), elements=st.floats(-20, 20, width=32)),
    shift=st.floats(-50, 50, width=32),
)
def test_categorical_kl_nonnegative_zero_on_self_and_shift_invariant(logits_p, logits_q, shift):
    fn = jax.jit(kl.categorical_kl)
    value = np.asarray(fn(logits_p, logits_q))
    assert np.all(value >= -1e-6)
    np.testing.assert_allclose(fn(logits_p, logits_p), 0.0, atol=1e-6)
    np.testing.assert_allclose(fn(logits_p + shift, logits_q - shift), value, rtol=1e-3, atol=1e-4)


def _np_adaptive_beta(beta, kl_value, target, horizon, n_steps):
    error = np.clip(kl_value / target - 1, -0.2, 0.2)
    return beta * (1 + error * n_steps / horizon)


def test_fixed_kl_controller_is_constant():
    controller = kl.fixed_kl_controller(0.05)
    state = controller.init()
    update = jax.jit(controller.update)
    for kl_value in (0.0, 1.0, 100.0):
        state = update(state, kl_value, 256)
    np.testing.assert_allclose(state.beta, 0.05)
    assert isinstance(state, kl.KLControllerState)


def test_adaptive_kl_controller_matches_numpy():
    target, horizon, n_steps = 6.0, 10_000.0, 512
    controller = kl.adaptive_kl_controller(0.2, target, horizon)
    update = jax.jit(controller.update)
    beta, expected = controller.init(), 0.2
    for kl_value in (0.0, 3.0, 5.9, 6.0, 6.5, 7.2, 50.0):
        beta = update(beta, kl_value, n_steps)
        expected = _np_adaptive_beta(expected, kl_value, target, horizon, n_steps)
        np.testing.assert_allclose(beta.beta, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="target"):
        kl.adaptive_kl_controller(0.1, 0.0, 10.0)


_TARGET, _HORIZON = 2.0, 10_000.0
_ADAPTIVE_UPDATE = jax.jit(kl.adaptive_kl_controller(1.0, _TARGET, _HORIZON).update)


@HYPOTHESIS
@given(
    beta=st.floats(1e-3, 10.0),
    kl_value=st.floats(0.0, 100.0),
    n_steps=st.integers(1, 1000),
)
def test_adaptive_kl_controller_moves_towards_target_and_is_clipped(beta, kl_value, n_steps):
    state = kl.KLControllerState(beta=jnp.float32(beta))
    new = float(_ADAPTIVE_UPDATE(state, kl_value, n_steps).beta)
    ratio = new / float(np.float32(beta))
    step = 0.2 * n_steps / _HORIZON
    assert 1 - step - 1e-6 <= ratio <= 1 + step + 1e-6  # the proportional error is clipped
    if kl_value > _TARGET * (1 + 1e-3):
        assert ratio > 1  # too much KL: penalise harder
    elif kl_value < _TARGET * (1 - 1e-3):
        assert ratio < 1


def test_adaptive_kl_controller_closed_loop_reaches_target():
    # Toy policy whose KL responds to the penalty as KL = c / β: the fixed point is β* = c / target.
    c, target = 1.0, 0.5
    controller = kl.adaptive_kl_controller(10.0, target, 100.0)

    def step(state, _):
        kl_value = c / state.beta
        return controller.update(state, kl_value, 10), kl_value

    _, kls = jax.jit(lambda s: jax.lax.scan(step, s, length=300))(controller.init())
    gap = np.abs(np.log(np.asarray(kls) / target))
    assert np.all(np.diff(gap) <= 1e-6)  # never moves away from the target
    assert gap[-1] < 0.01
