"""Tests for rewardjax.losses.process against independent NumPy references (float64 loops)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.special import expit, log_expit

from rewardjax.losses import process

B, S, T = 3, 5, 7


def _np_ce(z, y):
    return -(y * log_expit(z) + (1 - y) * log_expit(-z))


def _rng(seed=0):
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- step_cross_entropy


@pytest.mark.parametrize("soft", [False, True])
def test_step_cross_entropy_matches_reference(soft):
    rng = _rng()
    z = rng.normal(size=(B, S)) * 3
    y = rng.uniform(size=(B, S)) if soft else rng.integers(0, 2, size=(B, S)).astype(float)
    got = jax.jit(process.step_cross_entropy)(z.astype(np.float32), y.astype(np.float32))
    assert got.shape == (B, S) and got.dtype == jnp.float32
    want = [
        [-(yy * np.log(expit(zz)) + (1 - yy) * np.log(1 - expit(zz))) for zz, yy in zip(a, b)]
        for a, b in zip(z, y)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_step_cross_entropy_soft_label_minimum_and_extremes():
    # The minimum over z of the soft-label loss is at σ(z) = y.
    y = np.array([0.1, 0.5, 0.9])
    grad = jax.grad(lambda z: process.step_cross_entropy(z, y).sum())(jnp.log(y / (1 - y)))
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)
    z = jnp.array([[-1e4, 1e4, -1e4, 1e4]])
    labels = jnp.array([[0.0, 1.0, 1.0, 0.0]])
    loss, g = jax.value_and_grad(lambda z: process.step_cross_entropy(z, labels).sum())(z)
    assert np.isfinite(loss) and np.all(np.isfinite(g))
    np.testing.assert_allclose(process.step_cross_entropy(z, labels), [[0, 0, 1e4, 1e4]])


def test_step_cross_entropy_masking_equals_slicing_and_grads():
    rng = _rng(1)
    z, y = rng.normal(size=(B, S)), rng.uniform(size=(B, S))
    lengths = np.array([5, 2, 0])
    where = np.arange(S)[None] < lengths[:, None]
    padded = np.where(where, z, np.nan)  # padding holds garbage
    loss_fn = lambda z: process.step_cross_entropy(z, y, where=where).sum()
    loss, g = jax.value_and_grad(loss_fn)(padded)
    want = sum(_np_ce(z[b, :n], y[b, :n]).sum() for b, n in enumerate(lengths))
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~where] == 0)
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda z: process.step_cross_entropy(z, y, where=where)),
            (z,),
            order=1,
            modes=("rev",),
        )


# ---------------------------------------------------------------- step_bradley_terry


def _np_step_bt(scores, pairs, margin=0.0, e=0.0):
    out = np.zeros(pairs.shape[:-1])
    for b in range(pairs.shape[0]):
        for p, (i, j) in enumerate(pairs[b]):
            d = scores[b, i] - scores[b, j] - (margin if np.isscalar(margin) else margin[b, p])
            out[b, p] = -(1 - e) * log_expit(d) - e * log_expit(-d)
    return out


@pytest.mark.parametrize("kwargs", [{}, {"margin": 0.5, "label_smoothing": 0.1}])
def test_step_bradley_terry_matches_reference(kwargs):
    rng = _rng(2)
    scores = rng.normal(size=(B, S)) * 2
    pairs = rng.integers(0, S, size=(B, 4, 2))
    fn = jax.jit(functools.partial(process.step_bradley_terry, **kwargs))
    got = fn(scores.astype(np.float32), pairs)
    assert got.shape == (B, 4)
    want = _np_step_bt(scores, pairs, kwargs.get("margin", 0.0), kwargs.get("label_smoothing", 0.0))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_step_bradley_terry_two_completions_and_per_pair_margin():
    """Two completions side by side in one row: (i, S_a + i) compares their i-th steps."""
    rng = _rng(3)
    a, b = rng.normal(size=(B, 3)), rng.normal(size=(B, 3))
    row = np.concatenate([a, b], axis=1)
    pairs = np.broadcast_to(np.stack([np.arange(3), 3 + np.arange(3)], -1), (B, 3, 2))
    margin = rng.uniform(size=(B, 3))
    got = process.step_bradley_terry(row, pairs, margin=margin)
    np.testing.assert_allclose(got, -log_expit(a - b - margin), rtol=1e-5, atol=1e-6)
    # Shared pairs [P, 2] broadcast over the batch.
    np.testing.assert_allclose(process.step_bradley_terry(row, pairs[0], margin=margin), got)


def test_step_bradley_terry_masking_grads_and_extremes():
    rng = _rng(4)
    scores = rng.normal(size=(B, S))
    pairs = rng.integers(0, S, size=(B, 3, 2))
    where = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    bad = np.where(where[..., None], pairs, 99)  # out-of-range padding indices
    loss_fn = lambda s: process.step_bradley_terry(s, bad, where=where).sum()
    loss, g = jax.value_and_grad(loss_fn)(scores)
    want = sum(_np_step_bt(scores[b : b + 1], pairs[b : b + 1, where[b]]).sum() for b in range(B))
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    # Only steps named by a kept pair receive gradient.
    named = np.zeros((B, S), bool)
    for b in range(B):
        named[b, pairs[b, where[b]].ravel()] = True
    assert np.all(np.asarray(g)[~named] == 0)
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda s: process.step_bradley_terry(s, pairs, where=where)),
            (scores,),
            order=1,
            modes=("rev",),
        )
    huge = jnp.array([[1e4, -1e4]])
    for pair in ([[[0, 1]]], [[[1, 0]]]):
        bt = functools.partial(process.step_bradley_terry, pairs=np.array(pair))
        val, g = jax.value_and_grad(lambda s, bt=bt: bt(s).sum())(huge)
        assert np.isfinite(val) and np.all(np.isfinite(g))
    with pytest.raises(ValueError, match="label_smoothing"):
        process.step_bradley_terry(scores, pairs, label_smoothing=2.0)
    with pytest.raises(ValueError, match="axis of 2"):
        process.step_bradley_terry(scores, pairs[..., :1])


# ---------------------------------------------------------------- implicit PRM


def _logps(seed=5):
    rng = _rng(seed)
    policy = np.log(rng.uniform(0.05, 1.0, size=(B, T)))
    ref = np.log(rng.uniform(0.05, 1.0, size=(B, T)))
    return policy, ref


def test_implicit_prm_outcome_loss_matches_reference():
    policy, ref = _logps()
    outcome = np.array([1.0, 0.0, 0.7])
    lengths = np.array([7, 3, 1])
    where = np.arange(T)[None] < lengths[:, None]
    pol_pad = np.where(where, policy, -np.inf)
    ref_pad = np.where(where, ref, np.nan)
    for beta in (0.1, np.array([0.05, 1.0, 2.0])):
        fn = jax.jit(functools.partial(process.implicit_prm_outcome_loss, beta=beta, where=where))
        got = fn(pol_pad, ref_pad, outcome)
        betas = np.broadcast_to(beta, (B,))
        want = [
            _np_ce(betas[b] * np.sum(policy[b, :n] - ref[b, :n]), outcome[b])
            for b, n in enumerate(lengths)
        ]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_implicit_prm_outcome_loss_masking_grads_and_extremes():
    policy, ref = (x.astype(np.float32) for x in _logps(6))
    outcome = np.array([1.0, 0.0, 1.0], np.float32)
    where = np.array([[1] * T, [1, 1, 0, 0, 0, 0, 0], [0] * T], bool)  # row 2: no response
    fn = lambda p: process.implicit_prm_outcome_loss(p, ref, outcome, beta=0.5, where=where)
    loss, g = jax.value_and_grad(lambda p: fn(p).sum())(np.where(where, policy, -np.inf))
    assert loss.shape == () and np.all(np.isfinite(g))
    assert fn(policy)[2] == 0 and np.all(np.asarray(g)[~where] == 0)
    sliced = process.implicit_prm_outcome_loss(
        policy[1:2, :2], ref[1:2, :2], outcome[1:2], beta=0.5
    )
    np.testing.assert_allclose(fn(policy)[1], sliced[0], rtol=1e-6)
    with jax.enable_x64(True):
        p64, r64 = _logps(6)
        fn64 = lambda p: process.implicit_prm_outcome_loss(p, r64, outcome, beta=0.5, where=where)
        check_grads(jax.jit(fn64), (p64,), order=1, modes=("rev",))
    # The gradient pushes log π up on correct and down on incorrect outcomes.
    g_all = jax.grad(lambda p: process.implicit_prm_outcome_loss(p, ref, outcome, beta=0.5).sum())(
        policy
    )
    assert np.all(np.asarray(g_all)[0] < 0) and np.all(np.asarray(g_all)[1] > 0)
    big = np.full((2, 3), 1e4)
    val, g = jax.value_and_grad(
        lambda p: process.implicit_prm_outcome_loss(p, -p, np.array([1.0, 0.0]), beta=1.0).sum()
    )(big)
    assert np.isfinite(val) and np.all(np.isfinite(g))
    with pytest.raises(ValueError, match="beta"):
        process.implicit_prm_outcome_loss(policy, ref, outcome, beta=0.0)


def test_implicit_prm_step_rewards_match_reference_and_sum_to_sequence_reward():
    policy, ref = _logps(7)
    # Row 0: prompt token, steps 0,0,1,1,2, padding; row 1: steps 0..2 then none; row 2: all -1.
    step_ids = np.array([[-1, 0, 0, 1, 1, 2, -1], [0, 1, 1, 1, 2, 2, 2], [-1] * T])
    pol_pad = np.where(step_ids >= 0, policy, -np.inf)
    got = jax.jit(functools.partial(process.implicit_prm_step_rewards, beta=0.3, num_steps=4))(
        pol_pad, ref, step_ids
    )
    assert got.shape == (B, 4)
    want = np.zeros((B, 4))
    for b in range(B):
        for t in range(T):
            if step_ids[b, t] >= 0:
                want[b, step_ids[b, t]] += 0.3 * (policy[b, t] - ref[b, t])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # With every response token in a step, the step rewards sum to the sequence reward r_θ(y),
    # whose cross-entropy is the outcome loss.
    where = step_ids >= 0
    total = np.asarray(got).sum(-1)
    outcome = np.array([1.0, 0.0, 1.0])
    loss = process.implicit_prm_outcome_loss(pol_pad, ref, outcome, beta=0.3, where=where)
    np.testing.assert_allclose(loss[:2], _np_ce(total, outcome)[:2], rtol=1e-5)
    g = jax.grad(
        lambda p: process.implicit_prm_step_rewards(p, ref, step_ids, beta=0.3, num_steps=4).sum()
    )(pol_pad)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~where] == 0)


# ---------------------------------------------------------------- aggregate_steps


def _np_aggregate(z, keep, method):
    out = []
    for row, k in zip(z, keep):
        v = row[k]
        if len(v) == 0:
            out.append(0.0)
            continue
        p = expit(v)
        out.append(
            {
                "min": np.min(p),
                "product": np.prod(p),
                "last": p[-1],
                "mean": np.mean(p),
                "sum_logodds": np.sum(np.log(p) - np.log1p(-p)),
            }[method]
        )
    return np.array(out)


@pytest.mark.parametrize("method", process.AGGREGATIONS)
def test_aggregate_steps_matches_reference(method):
    rng = _rng(8)
    z = rng.normal(size=(4, S)) * 2
    keep = np.array(
        [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [0, 1, 0, 1, 0], [0, 0, 0, 0, 0]], bool
    )  # includes a non-contiguous mask and an empty row
    garbage = np.where(keep, z, np.nan)
    got = jax.jit(functools.partial(process.aggregate_steps, method=method))(garbage, keep)
    assert got.shape == (4,)
    np.testing.assert_allclose(got, _np_aggregate(z, keep, method), rtol=1e-5, atol=1e-6)
    # where=None uses every step.
    np.testing.assert_allclose(
        process.aggregate_steps(z, method=method),
        _np_aggregate(z, np.ones_like(keep), method),
        rtol=1e-5,
        atol=1e-6,
    )
    g = jax.grad(lambda z: process.aggregate_steps(z, keep, method=method).sum())(garbage)
    assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[~keep] == 0)
    with jax.enable_x64(True):
        check_grads(
            jax.jit(lambda z: process.aggregate_steps(z, keep, method=method)),
            (z,),
            order=1,
            modes=("rev",),
        )
    big = np.array([[1e4, -1e4, 1e4]])
    val, g = jax.value_and_grad(lambda z: process.aggregate_steps(z, method=method).sum())(big)
    assert np.isfinite(val) and np.all(np.isfinite(g))


def test_aggregate_steps_unknown_method():
    with pytest.raises(ValueError, match="unknown aggregation method 'max'"):
        process.aggregate_steps(np.zeros((1, 2)), method="max")
