"""Tests for rewardjax.rl.kl_penalty against NumPy references and exact enumeration written here."""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special

from rewardjax import kl
from rewardjax.rl import kl_penalty as kp

B, T = 3, 5
GRAD_TOL = dict(order=1, modes=("rev",), eps=1e-4, atol=1e-2, rtol=1e-2)


def _inputs(seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(B, T)).astype(np.float32) - 2
    logp = ref + rng.normal(scale=scale, size=(B, T)).astype(np.float32)
    mask = np.ones((B, T), bool)
    mask[1, 3:] = False
    mask[2, :] = False
    return logp, ref, mask


def _np_kl(logp, ref, estimator):
    x = logp.astype(np.float64) - ref
    k3 = np.exp(-x) - 1 + x
    return {"k1": x, "k2": x**2 / 2, "k3": k3, "k3+": k3}[estimator]


_JIT = {e: jax.jit(functools.partial(kp.token_kl, estimator=e)) for e in ("k1", "k2", "k3", "k3+")}


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3", "k3+"])
def test_token_kl_matches_numpy_and_masks(estimator):
    logp, ref, mask = _inputs()
    logp_pad = np.where(mask, logp, np.nan).astype(np.float32)
    out = _JIT[estimator](logp_pad, ref, mask)
    np.testing.assert_allclose(
        out, np.where(mask, _np_kl(logp, ref, estimator), 0.0), rtol=1e-5, atol=1e-6
    )
    grad = jax.jit(jax.grad(lambda lp: _JIT[estimator](lp, ref, mask).sum()))(logp_pad)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)
    assert out.dtype == jnp.float32
    unmasked = kp.token_kl(logp, ref, estimator=estimator)
    np.testing.assert_allclose(unmasked, _np_kl(logp, ref, estimator), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("estimator", ["k2", "k3", "k3+"])
def test_k2_k3_estimates_are_nonnegative(estimator):
    rng = np.random.default_rng(1)
    logp = rng.normal(scale=10.0, size=(64, 8)).astype(np.float32)
    ref = rng.normal(scale=10.0, size=(64, 8)).astype(np.float32)
    # tiny log-ratios, where exp(-x) - 1 + x cancels catastrophically without expm1
    logp[:4] = ref[:4] + np.float32(1e-6) * rng.normal(size=(4, 8)).astype(np.float32)
    out = np.asarray(kp.token_kl(logp, ref, estimator=estimator, log_ratio_clip=50.0))
    assert np.all(out >= 0) and np.all(np.isfinite(out))


def test_k3_plus_has_k3_value_and_k2_gradient():
    logp, ref, mask = _inputs(seed=2, scale=1.5)

    def total(est):
        return jax.jit(jax.grad(lambda lp: kp.token_kl(lp, ref, mask, estimator=est).sum()))

    x = np.where(mask, logp.astype(np.float64) - ref, 0.0)
    g_plus = total("k3+")(logp)
    np.testing.assert_allclose(g_plus, x, rtol=1e-5, atol=1e-6)  # ∂(x²/2)/∂logp = x
    np.testing.assert_allclose(total("k2")(logp), x, rtol=1e-5, atol=1e-6)
    g_k3 = total("k3")(logp)  # k3's own gradient 1 - e^{-x} differs
    np.testing.assert_allclose(g_k3, np.where(mask, 1 - np.exp(-x), 0.0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(g_plus, g_k3, atol=1e-2)
    v_plus = kp.token_kl(logp, ref, mask, estimator="k3+")
    np.testing.assert_allclose(v_plus, kp.token_kl(logp, ref, mask, estimator="k3"), rtol=1e-6)


def test_k2_and_k3_grads_check_against_finite_differences():
    logp, ref, _ = _inputs(seed=3)
    with jax.enable_x64(True):
        for est in ("k2", "k3"):
            check_grads(
                lambda lp, est=est: kp.token_kl(lp, ref.astype(np.float64), estimator=est),
                (logp.astype(np.float64),),
                **GRAD_TOL,
            )


def _expected_in_loss_gradient(theta, log_ref, estimator):
    """E_{y~π_θ}[∇_θ k(log π_θ(y), log π_ref(y))] by exact enumeration over y (in-loss use)."""

    def k_at(th, y):
        logp = jax.nn.log_softmax(th)
        return kp.token_kl(logp[y][None, None], log_ref[y][None, None], estimator=estimator)[0, 0]

    ys = jnp.arange(theta.shape[0])
    grads = jax.vmap(lambda y: jax.grad(k_at)(theta, y))(ys)
    probs = jax.nn.softmax(theta)
    return probs @ grads


def test_k1_in_loss_has_zero_expected_gradient_k2_and_k3plus_give_the_kl_gradient():
    rng = np.random.default_rng(4)
    theta = rng.normal(size=6)
    log_ref = np.log(rng.dirichlet(np.ones(6)))
    p = np.exp(theta - special.logsumexp(theta))
    x = np.log(p) - log_ref
    kl_value = np.sum(p * x)
    exact_grad = p * (x - kl_value)  # ∂/∂θ_j KL(softmax(θ) ‖ ref) = π_j (x_j - KL)
    with jax.enable_x64(True):
        g1 = _expected_in_loss_gradient(jnp.asarray(theta), jnp.asarray(log_ref), "k1")
        g2 = _expected_in_loss_gradient(jnp.asarray(theta), jnp.asarray(log_ref), "k2")
        g3p = _expected_in_loss_gradient(jnp.asarray(theta), jnp.asarray(log_ref), "k3+")
        g3 = _expected_in_loss_gradient(jnp.asarray(theta), jnp.asarray(log_ref), "k3")
    np.testing.assert_allclose(g1, 0.0, atol=1e-12)
    np.testing.assert_allclose(g2, exact_grad, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g3p, exact_grad, rtol=1e-9, atol=1e-12)
    assert not np.allclose(g3, exact_grad, atol=1e-3)  # k3 as a loss is biased


# ----------------------------------------------------------------------------- placement.


def test_k1_in_loss_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="expected gradient is zero") as err:
        kp.check_placement("in_loss", "k1")
    assert "in_reward" in str(err.value) and "k2" in str(err.value)


@pytest.mark.parametrize(
    "placement,estimator",
    [("in_reward", "k1"), ("in_reward", "k2"), ("in_reward", "k3")]
    + [("in_loss", e) for e in ("k2", "k3", "k3+")],
)
def test_valid_placements_pass(placement, estimator):
    assert kp.check_placement(placement, estimator) is None


@pytest.mark.parametrize(
    "placement,estimator,match",
    [
        ("in_reward", "k3+", "only in its gradient"),
        ("reward", "k1", "unknown KL placement"),
        ("in_loss", "k4", "unknown KL estimator"),
    ],
)
def test_invalid_placements_raise(placement, estimator, match):
    with pytest.raises(ValueError, match=match):
        kp.check_placement(placement, estimator)


def test_token_kl_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="k3\\+"):
        kp.token_kl(np.zeros((1, 1)), np.zeros((1, 1)), estimator="k5")


# ----------------------------------------------------------------------------- reward_with_kl.


def _np_reward_with_kl(scores, kl_tokens, mask, beta):
    out = np.where(mask, -beta * kl_tokens.astype(np.float64), 0.0)
    for i in range(mask.shape[0]):
        real = np.flatnonzero(mask[i])
        if real.size:
            out[i, real[-1]] += scores[i]
    return out


def test_reward_with_kl_matches_numpy_with_int_scores_and_empty_rows():
    rng = np.random.default_rng(5)
    kl_tokens = rng.normal(size=(4, 6)).astype(np.float32)
    mask = np.zeros((4, 6), bool)
    mask[0, :6] = True
    mask[1, :2] = True
    mask[3, [0, 2, 3]] = True  # non-contiguous: the score goes at the last real position
    scores = np.array([3, -1, 7, 2], np.int32)  # row 2 is empty: no score, no NaN
    kl_pad = np.where(mask, kl_tokens, np.nan).astype(np.float32)
    out = jax.jit(kp.reward_with_kl)(scores, kl_pad, mask, beta=0.1)
    assert out.dtype == jnp.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, _np_reward_with_kl(scores, kl_tokens, mask, 0.1), rtol=1e-6)
    np.testing.assert_array_equal(out[2], 0.0)
    # bool scores (a verifier) also become float32
    out_b = kp.reward_with_kl(np.array([True, False, True, True]), kl_tokens, mask, beta=0.0)
    assert out_b.dtype == jnp.float32
    assert float(out_b[0, 5]) == 1.0 and float(out_b[3, 3]) == 1.0


def test_reward_with_kl_carries_no_gradient_and_checks_inputs():
    # The functions' own errors, which a user meets without the runtime type checker (the
    # tests run it, and it would reject these shapes first): inspect.unwrap strips it.
    rng = np.random.default_rng(6)
    kl_tokens = rng.normal(size=(2, 3)).astype(np.float32)
    mask = np.ones((2, 3), bool)
    g = jax.grad(lambda k: kp.reward_with_kl(np.ones(2), k, mask, beta=0.5).sum())(kl_tokens)
    np.testing.assert_array_equal(g, 0.0)
    with pytest.raises(ValueError, match="beta"):
        inspect.unwrap(kp.reward_with_kl)(np.ones(2), kl_tokens, mask, beta=-1.0)
    with pytest.raises(ValueError, match="scores must be"):
        inspect.unwrap(kp.reward_with_kl)(np.ones(3), kl_tokens, mask, beta=0.1)


# ----------------------------------------------------------------------------- Lagrangian.


def test_lagrangian_update_is_projected_dual_ascent():
    state = kp.lagrangian_init(0.5)
    assert isinstance(state, kl.KLControllerState) and state.beta.dtype == jnp.float32
    kls = [3.0, 2.5, 0.0, 0.0, 0.0, 0.0, 4.0]
    update = jax.jit(functools.partial(kp.lagrangian_update, target_kl=1.0, lr=0.2))
    beta, ref = state, 0.5
    for k in kls:
        beta = update(beta, k)
        ref = max(0.0, ref + 0.2 * (k - 1.0))
        np.testing.assert_allclose(beta.beta, ref, rtol=1e-6, atol=1e-7)
        assert float(beta.beta) >= 0
    controller = kp.lagrangian_kl_controller(0.5, target=1.0, lr=0.2)
    s = controller.init()
    for k in kls:
        s = controller.update(s, k, 64)
    np.testing.assert_allclose(s.beta, beta.beta, rtol=1e-6)
    for bad in (dict(target_kl=0.0, lr=0.1), dict(target_kl=1.0, lr=-0.1)):
        with pytest.raises(ValueError):
            kp.lagrangian_update(state, 1.0, **bad)
    with pytest.raises(ValueError, match="beta0"):
        kp.lagrangian_init(-1.0)


def _np_tilt(p, r, beta):
    logits = np.log(p) + r / beta
    q = np.exp(logits - logits.max())
    q /= q.sum()
    return q, float(np.sum(q * np.log(q / p)))


def test_lagrangian_reaches_the_kl_target_on_the_exact_optimum():
    # Each dual step the policy is the exact optimum for the current β (a tilted bandit); projected
    # dual ascent on β must converge to the β* whose optimum spends exactly the KL budget.
    rng = np.random.default_rng(7)
    p = rng.dirichlet(np.ones(8))
    r = rng.normal(size=8)
    target = 0.3
    lo, hi = 1e-3, 1e3  # NumPy bisection for β*: KL(q_β) decreases in β
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if _np_tilt(p, r, mid)[1] > target else (lo, mid)
    beta_star = np.sqrt(lo * hi)

    pj, rj = jnp.asarray(p, jnp.float32), jnp.asarray(r, jnp.float32)

    def step(state, _):
        beta = jnp.maximum(state.beta, 1e-3)
        logits = jnp.log(pj) + rj / beta
        q = jax.nn.softmax(logits)
        kl_q = jnp.sum(q * (jnp.log(q) - jnp.log(pj)))
        return kp.lagrangian_update(state, kl_q, target_kl=target, lr=0.5), kl_q

    final, kls = jax.jit(lambda s: jax.lax.scan(step, s, None, length=3000))(
        kp.lagrangian_init(2.0)
    )
    np.testing.assert_allclose(final.beta, beta_star, rtol=2e-2)
    np.testing.assert_allclose(kls[-1], target, rtol=2e-2)
