"""Tests for simpo, orpo and kto against NumPy/SciPy formulas written here."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads
from scipy.special import expit, log_expit

from rewardjax import losses


def _np_log_odds(log_p):
    """log(p / (1 - p)) in float64, accurate enough for the |log p| ≥ 1e-7 used here."""
    p = np.exp(log_p)
    return np.log(p / (1.0 - p))


def _np_orpo(chosen, rejected):
    return -log_expit(_np_log_odds(chosen) - _np_log_odds(rejected))


def _np_simpo(pc, pr, lc, lr, beta=2.0, gamma=0.5):
    return -log_expit(beta * (pc / lc - pr / lr) - gamma)


def _np_kto(policy, reference, desirable, z0, beta=0.1, w_d=1.0, w_u=1.0):
    rho = policy - reference
    return np.where(
        desirable, w_d * (1.0 - expit(beta * (rho - z0))), w_u * (1.0 - expit(beta * (z0 - rho)))
    )


rng = np.random.default_rng(0)
LENGTHS = rng.integers(1, 40, size=(2, 6)).astype(np.float64)
SUMMED = -np.abs(rng.normal(0.8, 0.5, size=(2, 6))) * LENGTHS
MEAN = np.array([[-0.01, -0.3, -2.0, -1e-5, -0.69, -5.0], [-0.02, -0.7, -0.1, -3.0, -1e-3, -0.5]])
DESIRABLE = np.array([True, False, True, True, False, False])
Z0 = 0.7


@jax.jit
def _all(pc, pr, lc, lr, mc, mr, pol, ref, z0):
    """Every configuration under test at once (one compilation)."""
    return (
        losses.simpo(pc, pr, lc, lr),
        losses.simpo(pc, pr, lc, lr, beta=1.0, gamma=1.2),
        losses.orpo(mc, mr),
        losses.kto(pol, ref, DESIRABLE, z0),
        losses.kto(pol, ref, DESIRABLE, z0, beta=0.5, desirable_weight=1.3, undesirable_weight=0.4),
    )


def _inputs(dtype):
    pc, pr = SUMMED
    lc, lr = LENGTHS
    mc, mr = MEAN
    args = (pc, pr, lc, lr, mc, mr, SUMMED[0], SUMMED[1] + 3.0, Z0)
    return tuple(np.asarray(a, dtype) for a in args)


def test_matches_reference_jitted():
    got = _all(*_inputs(np.float32))
    pc, pr, lc, lr, mc, mr, pol, ref, z0 = _inputs(np.float64)
    want = (
        _np_simpo(pc, pr, lc, lr),
        _np_simpo(pc, pr, lc, lr, beta=1.0, gamma=1.2),
        _np_orpo(mc, mr),
        _np_kto(pol, ref, DESIRABLE, z0),
        _np_kto(pol, ref, DESIRABLE, z0, beta=0.5, w_d=1.3, w_u=0.4),
    )
    names = ["simpo", "simpo(beta=1, gamma=1.2)", "orpo", "kto", "kto(weighted)"]
    for name, g, w in zip(names, got, want):
        assert g.dtype == jnp.float32, name
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6, err_msg=name)


def test_orpo_is_accurate_near_zero_log_prob():
    # Mean log-probs of -1e-7 would lose all precision through log(1 - exp(x)) in float32.
    chosen, rejected = np.float32(-1e-7), np.float32(-2e-7)
    want = _np_orpo(np.float64(chosen), np.float64(rejected))
    np.testing.assert_allclose(jax.jit(losses.orpo)(chosen, rejected), want, rtol=1e-5)


def test_grads():
    pc, pr, lc, lr, mc, mr, pol, ref, z0 = _inputs(np.float64)
    # Keep finite differences (step 1e-4) away from log p = 0, where log-odds has a pole.
    mc, mr = np.minimum(mc, -0.05), np.minimum(mr, -0.05)
    with jax.enable_x64(True):
        # Lengths and the KTO reference point are held fixed: only log-probs are differentiated.
        f = jax.jit(lambda pc, pr, mc, mr, pol, ref: _all(pc, pr, lc, lr, mc, mr, pol, ref, z0))
        check_grads(f, (pc, pr, mc, mr, pol, ref), order=1, modes=("rev",), eps=1e-6)


def test_kto_reference_point_gets_no_gradient():
    pol, ref = SUMMED
    grad = jax.jit(jax.grad(lambda z0: jnp.sum(losses.kto(pol, ref, DESIRABLE, z0))))(0.3)
    assert grad == 0.0


def test_finite_values_and_grads_at_extremes():
    big = [-1e4, 0.0, 1e4]
    pairs = np.array(list(itertools.product(big, repeat=2)), np.float32).T
    log_probs = np.array(list(itertools.product([-1e4, -1e-30, 0.0], repeat=2)), np.float32).T
    lengths = np.ones(pairs.shape[1], np.float32)
    desirable = np.arange(pairs.shape[1]) % 2 == 0

    def totals(pc, pr, mc, mr):
        return jnp.stack(
            [
                jnp.sum(losses.simpo(pc, pr, lengths, lengths)),
                jnp.sum(losses.orpo(mc, mr)),
                jnp.sum(losses.kto(pc, pr, desirable, 1e4)),
            ]
        )

    values, grads = jax.jit(lambda *xs: (totals(*xs), jax.jacrev(totals, (0, 1, 2, 3))(*xs)))(
        pairs[0], pairs[1], log_probs[0], log_probs[1]
    )
    assert np.all(np.isfinite(values))
    assert all(np.all(np.isfinite(g)) for g in grads)


def test_where_masks_to_zero_loss_and_gradient():
    """Padding with zero lengths, -inf and NaN log-probs gives 0 loss and 0 gradient; the rest
    match the NumPy references (masking equals slicing)."""
    where = np.array([True, False, True, True, False, True])
    pc, pr, lc, lr, mc, mr, pol, ref, z0 = _inputs(np.float64)
    pad = lambda x, bad: np.where(where, x, bad).astype(np.float32)

    @jax.jit
    def masked(pc, pr, lc, lr, mc, mr, pol, ref):
        return (
            losses.simpo(pc, pr, lc, lr, where=where),
            losses.orpo(mc, mr, where=where),
            losses.kto(pol, ref, DESIRABLE, z0, where=where),
        )

    args = (
        pad(pc, -np.inf),
        pad(pr, np.nan),
        pad(lc, 0.0),
        pad(lr, 0.0),
        pad(mc, 0.0),
        pad(mr, np.nan),
        pad(pol, -np.inf),
        pad(ref, np.nan),
    )
    want = (
        _np_simpo(pc, pr, lc, lr),
        _np_orpo(mc, mr),
        _np_kto(pol, ref, DESIRABLE, z0),
    )
    for name, g, w in zip(["simpo", "orpo", "kto"], masked(*args), want):
        np.testing.assert_allclose(g, np.where(where, w, 0.0), rtol=1e-5, atol=1e-6, err_msg=name)
    grads = jax.grad(lambda *a: sum(jnp.sum(x) for x in masked(*a)), argnums=range(8))(*args)
    for g in grads:
        assert np.isfinite(g).all()
        np.testing.assert_array_equal(np.asarray(g)[~where], 0.0)
