"""Gao et al. overoptimization forms and their closed-form least-squares fit vs np.linalg.lstsq."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rewardjax import theory


def test_forms_match_formulas_and_grads():
    d = np.array([0.0, 0.5, 1.0, 3.0])
    np.testing.assert_allclose(jax.jit(theory.gao_bon)(d, 1.2, 0.3), d * (1.2 - 0.3 * d))
    with np.errstate(divide="ignore", invalid="ignore"):
        ref_rl = np.where(d > 0, d * (1.2 - 0.3 * np.log(d)), 0.0)
    np.testing.assert_allclose(jax.jit(theory.gao_rl)(d, 1.2, 0.3), ref_rl, rtol=1e-6)
    for fn in (theory.gao_bon, theory.gao_rl):
        check_grads(fn, (jnp.array([0.5, 2.0]), 1.2, 0.3), 1, modes=["rev"], atol=1e-2, rtol=1e-2)
    assert np.isfinite(jax.grad(lambda a: theory.gao_rl(0.0, a, 0.3))(1.0))


def _features(kl, form):
    d = np.sqrt(kl)
    return np.stack([d, -(d**2 if form == "bon" else d * np.log(d))], axis=-1)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    st.floats(0.1, 3.0), st.floats(0.01, 1.0), st.sampled_from(["bon", "rl"]), st.integers(0, 99)
)
def test_fit_recovers_noiseless_coefficients(alpha, beta, form, seed):
    kl = np.sort(np.random.default_rng(seed).uniform(0.05, 25.0, size=16))
    law = theory.gao_bon if form == "bon" else theory.gao_rl
    gold = np.asarray(law(np.sqrt(kl), alpha, beta))
    fit = theory.fit_overoptimization(kl, gold, form)
    np.testing.assert_allclose([fit.alpha, fit.beta], [alpha, beta], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(fit.r_squared, 1.0, atol=1e-4)


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_noisy_fit_matches_lstsq_batched_and_masked(form):
    rng = np.random.default_rng(0)
    kl = rng.uniform(0.1, 20.0, size=(3, 12))
    gold = np.sqrt(kl) * (1.0 - 0.2 * np.sqrt(kl)) + 0.3 * rng.normal(size=kl.shape)
    fit = jax.jit(theory.fit_overoptimization, static_argnames="form")(kl, gold, form=form)
    for b in range(3):
        x = _features(kl[b], form)
        coef, *_ = np.linalg.lstsq(x, gold[b], rcond=None)
        resid = gold[b] - x @ coef
        r2 = 1 - resid @ resid / np.sum((gold[b] - gold[b].mean()) ** 2)
        np.testing.assert_allclose(
            [fit.alpha[b], fit.beta[b], fit.r_squared[b]], [*coef, r2], rtol=1e-4, atol=1e-5
        )
    # A mask equals slicing the curve.
    where = np.arange(12) < 7
    masked = theory.fit_overoptimization(kl, gold, form, where=where)
    sliced = theory.fit_overoptimization(kl[:, :7], gold[:, :7], form)
    np.testing.assert_allclose(np.array(masked), np.array(sliced), rtol=1e-5)


def test_bad_form():
    with pytest.raises(ValueError, match="form"):
        theory.fit_overoptimization(np.ones(3), np.ones(3), "ppo")
