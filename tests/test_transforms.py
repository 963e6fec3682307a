"""Tests for rewardjax.transforms against NumPy/SciPy references written here."""

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

from rewardjax import transforms

HYPOTHESIS = settings(max_examples=25, deadline=None)
GRAD_TOL = dict(order=1, modes=("rev",), eps=1e-3, atol=2e-2, rtol=2e-2)
B, N = 4, 6


def _floats(shape, bound=20.0):
    return hnp.arrays(np.float32, shape, elements=st.floats(-bound, bound, width=32))


def _rng(seed=0):
    return np.random.default_rng(seed)


def _finite_value_and_grad(f, x):
    """f(x) and the gradient of sum(f) are finite (jitted: eager dispatch is slow)."""
    value, grad = jax.jit(lambda y: (f(y), jax.grad(lambda z: jnp.sum(f(z)))(y)))(x)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))


def test_public_names_exist_and_registry():
    for name in transforms.__all__:
        assert callable(getattr(transforms, name)), name
    for name in transforms.names():
        assert name in transforms.__all__
        assert transforms.get(name) is getattr(transforms, name)
    assert transforms.names() == tuple(sorted(transforms.names()))
    with pytest.raises(ValueError, match=r"'nope'.*whiten"):
        transforms.get("nope")


def test_log_sigmoid_centered_matches_numpy_and_grads():
    r = _rng().normal(size=(B, N)).astype(np.float32) * 3
    ref = _rng(1).normal(size=(B, 1)).astype(np.float32)
    got = jax.jit(transforms.log_sigmoid_centered)(r, ref)
    expected = -np.logaddexp(0.0, -(r.astype(np.float64) - ref))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    check_grads(jax.jit(transforms.log_sigmoid_centered), (r, ref), **GRAD_TOL)
    extreme = jnp.array([-1e4, 1e4, 0.0])
    _finite_value_and_grad(lambda x: transforms.log_sigmoid_centered(x, -x), extreme)


@pytest.mark.parametrize("q", [0.0, 0.5, 0.85, 1.0])
def test_reference_quantile_matches_numpy(q):
    samples = _rng().normal(size=(B, N)).astype(np.float32)
    got = jax.jit(transforms.reference_quantile)(samples, q)  # q traced: no recompile per q
    np.testing.assert_allclose(got, np.quantile(samples, q, axis=-1), rtol=1e-5, atol=1e-6)
    along0 = jax.jit(transforms.reference_quantile, static_argnames="axis")(samples, q, axis=0)
    np.testing.assert_allclose(along0, np.quantile(samples, q, axis=0), rtol=1e-5, atol=1e-6)


def test_reference_quantile_grads_and_default():
    samples = _rng(2).normal(size=(B, N)).astype(np.float32)
    np.testing.assert_allclose(
        transforms.reference_quantile(samples), np.quantile(samples, 0.85, axis=-1), rtol=1e-5
    )
    check_grads(jax.jit(transforms.reference_quantile), (samples,), **GRAD_TOL)
    _finite_value_and_grad(transforms.reference_quantile, jnp.array([[-1e4, 1e4, 0.0, 3.0]]))


def test_preference_as_reward_matches_numpy_and_grads():
    r = _rng().normal(size=(B,)).astype(np.float32) * 2
    ref = _rng(1).normal(size=(B, N)).astype(np.float32)
    got = jax.jit(transforms.preference_as_reward)(r, ref)
    expected = np.array(
        [np.mean(special.expit(r[b] - ref[b].astype(np.float64))) for b in range(B)]
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    check_grads(jax.jit(transforms.preference_as_reward), (r, ref), **GRAD_TOL)
    ref_extreme = jnp.array([[-1e4, 1e4, 0.0]] * 3)
    _finite_value_and_grad(
        lambda x: transforms.preference_as_reward(x, ref_extreme), jnp.array([-1e4, 1e4, 0.0])
    )


def test_calibrate_matches_scipy_percentileofscore_with_ties():
    # Integer-valued rewards so that ties with the reference samples are common.
    r = _rng().integers(-3, 4, size=(B, 3)).astype(np.float32)
    ref = _rng(1).integers(-3, 4, size=(B, 3, 10)).astype(np.float32)
    got = jax.jit(transforms.calibrate)(r, ref)
    expected = np.array(
        [
            [stats.percentileofscore(ref[b, k], r[b, k], kind="mean") / 100 for k in range(3)]
            for b in range(B)
        ]
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)
    extreme = transforms.calibrate(jnp.array([-1e4, 1e4]), jnp.array([[0.0, -1e4], [1e4, 1e4]]))
    np.testing.assert_allclose(extreme, [0.25, 0.5])


def test_calibrate_is_zero_temperature_limit_of_par():
    # σ((r - r_n)/τ) → 1{r > r_n} + ½·1{r = r_n} as τ → 0: PAR tends to the calibrated reward.
    r = _rng().integers(-4, 5, size=(B,)).astype(np.float32) / 2
    ref = _rng(1).integers(-4, 5, size=(B, N)).astype(np.float32) / 2
    tau = 0.01
    np.testing.assert_allclose(
        transforms.preference_as_reward(r / tau, ref / tau), transforms.calibrate(r, ref), atol=1e-6
    )


def _np_whiten(x, shift_mean=True, eps=1e-8):
    x = x.astype(np.float64)
    out = (x - x.mean()) / np.sqrt(x.var() + eps)
    return out + x.mean() if not shift_mean else out


@pytest.mark.parametrize("shift_mean", [True, False])
def test_whiten_matches_numpy_and_masking_equals_slicing(shift_mean):
    x = (_rng().normal(size=(B, N)) * 3 + 1).astype(np.float32)
    mask = _rng(1).random((B, N)) < 0.7
    garbage = np.where(mask, x, np.nan).astype(np.float32)  # masked entries must not leak
    fn = jax.jit(functools.partial(transforms.whiten, shift_mean=shift_mean))
    np.testing.assert_allclose(fn(x), _np_whiten(x, shift_mean), rtol=1e-4, atol=1e-5)
    got = np.asarray(fn(garbage, where=mask))
    np.testing.assert_allclose(got[mask], _np_whiten(x[mask], shift_mean), rtol=1e-4, atol=1e-5)
    assert np.all(got[~mask] == 0)
    grad = jax.grad(lambda y: jnp.sum(fn(y, where=mask) * jnp.arange(B * N).reshape(B, N)))(
        jnp.asarray(garbage)
    )
    assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[~mask] == 0)


def test_whiten_per_axis_and_grads_and_extremes():
    x = _rng(3).normal(size=(B, N)).astype(np.float32)
    per_row = jax.jit(functools.partial(transforms.whiten, axis=-1))
    got = per_row(x)
    np.testing.assert_allclose(got, np.stack([_np_whiten(row) for row in x]), rtol=1e-4, atol=1e-5)
    check_grads(per_row, (x,), **GRAD_TOL)
    _finite_value_and_grad(transforms.whiten, jnp.array([-1e4, 1e4, 0.0, 1.0]))
    # A fully masked row gives zeros, not NaN.
    mask = np.ones((B, N), bool)
    mask[0] = False
    masked = np.asarray(per_row(x, where=mask))
    assert np.all(masked[0] == 0) and np.all(np.isfinite(masked))


def test_center_matches_numpy_masking_and_grads():
    x = _rng().normal(size=(B, N)).astype(np.float32)
    mask = _rng(1).random((B, N)) < 0.6
    mask[:, 0] = True
    got = jax.jit(transforms.center, static_argnames="axis")(x, axis=-1)
    np.testing.assert_allclose(got, x - x.mean(axis=-1, keepdims=True), atol=1e-6)
    garbage = np.where(mask, x, np.inf).astype(np.float32)
    masked = np.asarray(transforms.center(garbage, where=mask, axis=-1))
    for b in range(B):
        np.testing.assert_allclose(
            masked[b][mask[b]], x[b][mask[b]] - x[b][mask[b]].mean(), atol=1e-6
        )
    assert np.all(masked[~mask] == 0)
    np.testing.assert_allclose(transforms.center(x), x - x.mean(), atol=1e-6)
    check_grads(jax.jit(lambda y: transforms.center(y, where=mask)), (x,), **GRAD_TOL)
    _finite_value_and_grad(transforms.center, jnp.array([-1e4, 1e4, 3.0]))


def test_clip_matches_numpy_and_grads():
    x = np.linspace(-5, 5, 11, dtype=np.float32) + 0.05  # away from the kinks at ±2
    fn = jax.jit(functools.partial(transforms.clip, lower=-2.0, upper=2.0))
    np.testing.assert_array_equal(fn(x), np.clip(x, -2.0, 2.0))
    np.testing.assert_array_equal(transforms.clip(x, upper=1.0), np.minimum(x, 1.0))
    np.testing.assert_array_equal(transforms.clip(x, lower=1.0), np.maximum(x, 1.0))
    check_grads(jax.jit(fn), (x,), **GRAD_TOL)
    _finite_value_and_grad(fn, jnp.array([-1e4, 1e4]))
    with pytest.raises(ValueError, match="lower"):
        transforms.clip(x)
    with pytest.raises(ValueError, match="lower"):
        transforms.clip(x, lower=1.0, upper=0.0)


@pytest.mark.parametrize("method", ["mean", "min", "uwo"])
def test_ensemble_matches_numpy_and_grads(method):
    e = _rng().normal(size=(5, B, 3)).astype(np.float32)
    coef = 0.7
    expected = {
        "mean": e.mean(0),
        "min": e.min(0),
        "uwo": e.mean(0) - coef * np.mean((e - e.mean(0)) ** 2, axis=0),
    }[method]
    fn = jax.jit(functools.partial(transforms.ensemble, method=method, coef=coef))
    np.testing.assert_allclose(fn(e), expected, rtol=1e-5, atol=1e-6)
    check_grads(jax.jit(fn), (e,), **GRAD_TOL)
    _finite_value_and_grad(fn, jnp.array([[-1e4, 1e4], [1e4, -1e4], [0.0, 1.0]]))


def test_ensemble_and_combine_reject_unknown_method():
    with pytest.raises(ValueError, match="method"):
        transforms.ensemble(jnp.ones((2, 3)), method="median")
    with pytest.raises(ValueError, match="method"):
        transforms.combine(jnp.ones((2, 3)), method="max")
    with pytest.raises(ValueError, match="weights"):
        transforms.combine(jnp.ones((2, 3)), method="weighted")
    with pytest.raises(ValueError, match="weights"):
        transforms.combine(jnp.ones((2, 3)), method="sum", weights=jnp.ones(2))
    with pytest.raises(ValueError, match="weights"):
        transforms.combine(jnp.ones((2, 3)), method="weighted", weights=jnp.ones(3))


def test_combine_sum_of_log_sigmoid_centred_is_log_prob_all_good():
    r = _rng().normal(size=(3, B)).astype(np.float32) * 2
    ref = _rng(1).normal(size=(3, 1)).astype(np.float32)
    u = transforms.log_sigmoid_centered(r, ref)
    got = jax.jit(transforms.combine)(u)
    np.testing.assert_allclose(
        got, np.log(np.prod(special.expit(r.astype(np.float64) - ref), axis=0)), rtol=1e-5
    )


@pytest.mark.parametrize("method", ["weighted", "min", "softmin", "softmin_weighted"])
def test_combine_matches_numpy_and_grads(method):
    r = _rng().normal(size=(3, B, 2)).astype(np.float32)
    w = np.array([0.5, 1.0, 2.0], np.float32)
    tau = 0.3
    r64 = r.astype(np.float64)
    kwargs = {
        "weighted": dict(method="weighted", weights=w),
        "min": dict(method="min"),
        "softmin": dict(method="softmin", temperature=tau),
        "softmin_weighted": dict(method="softmin", temperature=tau, weights=w),
    }[method]
    wn = w[:, None, None] / w.sum()
    expected = {
        "weighted": np.einsum("k,kbc->bc", w, r64),
        "min": r64.min(0),
        "softmin": -tau * np.log(np.mean(np.exp(-r64 / tau), axis=0)),
        "softmin_weighted": -tau * special.logsumexp(-r64 / tau, axis=0, b=wn),
    }[method]
    fn = jax.jit(functools.partial(transforms.combine, **kwargs))
    np.testing.assert_allclose(fn(r), expected, rtol=1e-5, atol=1e-6)
    check_grads(jax.jit(fn), (r,), **GRAD_TOL)
    _finite_value_and_grad(fn, jnp.array([[-1e4, 1e4], [1e4, -1e4], [0.0, 1.0]]))


def test_softmin_interpolates_between_min_and_mean():
    r = _rng(4).normal(size=(3, 5)).astype(np.float32)
    softmin = jax.jit(functools.partial(transforms.combine, method="softmin"))  # τ traced
    cold = softmin(r, temperature=1e-3)
    hot = softmin(r, temperature=1e3)  # mean - var/(2τ) + O(τ⁻²)
    np.testing.assert_allclose(cold, r.min(0), atol=2e-3)
    np.testing.assert_allclose(hot, r.mean(0), atol=2e-3)
    mid = softmin(r, temperature=1.0)
    assert np.all(mid >= r.min(0) - 1e-6) and np.all(mid <= r.mean(0) + 1e-6)


# Each entry maps (rewards [B, N], reference [B, N]) to a transform that must be
# non-decreasing in the rewards.
_MONOTONE = {
    "log_sigmoid_centered": lambda r, ref: transforms.log_sigmoid_centered(r, ref[:, :1]),
    "preference_as_reward": lambda r, ref: transforms.preference_as_reward(r[:, 0], ref),
    "calibrate": lambda r, ref: transforms.calibrate(r[:, 0], ref),
    "clip": lambda r, ref: transforms.clip(r, lower=-1.0, upper=1.0),
    "ensemble_mean": lambda r, ref: transforms.ensemble(r, method="mean"),
    "ensemble_min": lambda r, ref: transforms.ensemble(r, method="min"),
    "combine_sum": lambda r, ref: transforms.combine(r),
    "combine_min": lambda r, ref: transforms.combine(r, method="min"),
    "combine_softmin": lambda r, ref: transforms.combine(r, method="softmin", temperature=0.5),
}
_monotone_all = jax.jit(lambda r, ref: {k: f(r, ref) for k, f in _MONOTONE.items()})


@HYPOTHESIS
@given(r=_floats((B, N)), step=hnp.arrays(np.float32, (B, N), elements=st.floats(0, 5, width=32)))
def test_transforms_are_monotone_in_rewards(r, step):
    ref = np.linspace(-5, 5, B * N, dtype=np.float32).reshape(B, N)
    low, high = _monotone_all(r, ref), _monotone_all(r + step, ref)
    for name in _MONOTONE:
        assert np.all(np.asarray(high[name]) >= np.asarray(low[name]) - 1e-5), name


@HYPOTHESIS
@given(r=_floats((B, N)))
def test_whiten_and_center_preserve_order(r):
    order = np.argsort(r, axis=None, kind="stable")
    for out in (transforms.whiten(jnp.asarray(r)), transforms.center(jnp.asarray(r))):
        assert np.all(np.diff(np.asarray(out).reshape(-1)[order]) >= -1e-5)


@HYPOTHESIS
@given(r=_floats((B,), bound=7.0), ref=_floats((B, N), bound=7.0))  # σ(14) < 1 in float32
def test_par_in_open_unit_interval_and_calibrate_in_unit_interval(r, ref):
    par = np.asarray(transforms.preference_as_reward(r, ref))
    cal = np.asarray(transforms.calibrate(r, ref))
    assert np.all((par > 0) & (par < 1))
    assert np.all((cal >= 0) & (cal <= 1))
