"""Tests for rewardjax.rl.policy_losses against NumPy references and analytic gradients."""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import special

from rewardjax.rl import policy_losses as pl

B, T, V = 4, 6, 5
GRAD_TOL = dict(order=1, modes=("rev",), eps=1e-4, atol=2e-2, rtol=2e-2)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _inputs(seed=0, spread=0.5):
    rng = _rng(seed)
    old = rng.normal(size=(B, T)).astype(np.float32) - 2.0
    logp = old + rng.normal(scale=spread, size=(B, T)).astype(np.float32)
    adv = rng.normal(size=(B, T)).astype(np.float32)
    mask = np.ones((B, T), bool)
    mask[1, 4:] = False
    mask[3, 2:] = False
    return logp, old, adv, mask


# ----------------------------------------------------------------------------- NumPy references.


def _np_ppo(logp, old, adv, mask, el, eh, c=None):
    ratio = np.exp(logp.astype(np.float64) - old)
    unclipped = -ratio * adv
    clipped = -np.clip(ratio, 1 - el, 1 + eh) * adv
    loss = np.maximum(unclipped, clipped)
    if c is not None:
        loss = np.where(adv < 0, np.minimum(loss, -c * adv), loss)
    return np.where(mask, loss, 0.0)


def _np_ppo_grad(logp, old, adv, mask, el, eh, c=None):
    """∂ℓ/∂logp: -ρA unless the clip (or the dual clip) is the active branch, where it is 0."""
    ratio = np.exp(logp.astype(np.float64) - old)
    cut = ((adv > 0) & (ratio > 1 + eh)) | ((adv < 0) & (ratio < 1 - el))
    if c is not None:
        cut |= (adv < 0) & (ratio > c)
    return np.where(mask & ~cut, -ratio * adv, 0.0)


def _np_gspo(logp, old, adv, mask, el, eh):
    x = np.where(mask, logp.astype(np.float64) - old, 0.0)
    n = mask.sum(-1)
    s = np.exp(x.sum(-1) / np.maximum(n, 1))[:, None]
    loss = np.maximum(-s * adv, -np.clip(s, 1 - el, 1 + eh) * adv)
    cut = ((adv > 0) & (s > 1 + eh)) | ((adv < 0) & (s < 1 - el))
    grad = np.where(mask & ~cut, -s * adv, 0.0)
    return np.where(mask, loss, 0.0), grad


def _np_cispo(logp, old, adv, mask, el, eh):
    w = np.clip(np.exp(logp.astype(np.float64) - old), 1 - el, 1 + eh)
    return np.where(mask, -w * adv * logp, 0.0), np.where(mask, -w * adv, 0.0)


def _value_and_grad(fn, logp, *rest):
    """fn's loss and the gradient of its sum in logp, jitted."""

    def total(lp):
        return jnp.sum(fn(lp, *rest)[0])

    return jax.jit(lambda lp: (fn(lp, *rest), jax.grad(total)(lp)))(logp)


# ----------------------------------------------------------------------------- registry.


def test_registry_names_get_spec():
    assert pl.names() == ("cispo", "gspo", "ppo_clip")
    assert pl.get("ppo_clip") is pl.ppo_clip
    assert pl.spec("gspo").sequence_level and not pl.spec("ppo_clip").sequence_level
    assert not pl.spec("cispo").sequence_level
    with pytest.raises(ValueError, match="cispo, gspo, ppo_clip"):
        pl.get("ppo")
    for name in pl.__all__:
        assert getattr(pl, name) is not None


@pytest.mark.parametrize(
    "hp,match",
    [
        (dict(epsilon_low=-0.1), "epsilon_low"),
        (dict(epsilon_high=-1.0), "epsilon_high"),
        (dict(dual_clip_c=0.5), "dual_clip_c"),
    ],
)
def test_ppo_rejects_bad_hparams(hp, match):
    logp, old, adv, mask = _inputs()
    with pytest.raises(ValueError, match=match):
        pl.ppo_clip(logp, old, adv, mask, **hp)


def test_shape_errors_name_the_fix():
    # The functions' own errors, which a user meets without the runtime type checker (the
    # tests run it, and it would reject these shapes first): inspect.unwrap strips it.
    logp, old, adv, mask = _inputs()
    with pytest.raises(ValueError, match="mask"):
        inspect.unwrap(pl.ppo_clip)(logp, old, adv, mask[:, :3])
    with pytest.raises(ValueError, match="one shape"):
        inspect.unwrap(pl.gspo)(logp, old[:, :3], adv, mask)


# ----------------------------------------------------------------------------- PPO clip.


@pytest.mark.parametrize(
    "el,eh,c", [(0.2, 0.2, None), (0.2, 0.28, None), (0.1, 0.3, 3.0), (0.2, 0.2, 1.5)]
)
def test_ppo_clip_matches_numpy_value_and_gradient(el, eh, c):
    logp, old, adv, mask = _inputs(spread=0.6)
    fn = functools.partial(pl.ppo_clip, epsilon_low=el, epsilon_high=eh, dual_clip_c=c)
    (loss, aux), grad = _value_and_grad(fn, logp, old, adv, mask)
    np.testing.assert_allclose(loss, _np_ppo(logp, old, adv, mask, el, eh, c), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        grad, _np_ppo_grad(logp, old, adv, mask, el, eh, c), rtol=1e-5, atol=1e-6
    )
    ratio = np.exp(logp.astype(np.float64) - old)
    np.testing.assert_allclose(aux.ratio, np.where(mask, ratio, 1.0), rtol=1e-5)
    expect_clip = ((adv > 0) & (ratio > 1 + eh)) | ((adv < 0) & (ratio < 1 - el))
    np.testing.assert_array_equal(aux.clipped, (expect_clip & mask).astype(np.float32))
    expect_dual = (adv < 0) & (ratio > c) & mask if c else np.zeros_like(mask)
    np.testing.assert_array_equal(aux.dual_clipped, expect_dual.astype(np.float32))
    assert loss.dtype == jnp.float32


def test_ppo_epsilon_high_defaults_to_epsilon_low():
    logp, old, adv, mask = _inputs(spread=0.6)
    a = pl.ppo_clip(logp, old, adv, mask, epsilon_low=0.15)[0]
    np.testing.assert_allclose(a, _np_ppo(logp, old, adv, mask, 0.15, 0.15), rtol=1e-5, atol=1e-6)


def _ppo_grad_at(ratio, adv, **hp):
    logp = jnp.log(jnp.asarray([[ratio]], jnp.float32))
    return jax.grad(
        lambda lp: pl.ppo_clip(
            lp, jnp.zeros((1, 1)), adv * jnp.ones((1, 1)), jnp.ones((1, 1), bool), **hp
        )[0].sum()
    )(logp)[0, 0]


@pytest.mark.parametrize("ratio", [0.3, 0.7, 0.79])
def test_negative_advantage_below_one_minus_eps_has_zero_gradient(ratio):
    # A < 0 and ρ < 1 - ε: the policy already lowered this token's probability enough; PPO's
    # clip stops pushing it further (a peer shipped the inverted sign: clipping above instead).
    assert float(_ppo_grad_at(ratio, -1.0, epsilon_low=0.2)) == 0.0


@pytest.mark.parametrize("ratio", [0.81, 1.0, 1.5, 4.0])
def test_negative_advantage_above_one_minus_eps_pushes_down(ratio):
    # ∂ℓ/∂logp = -ρA > 0: gradient descent lowers log π of a bad token (no upper clip for A < 0).
    g = float(_ppo_grad_at(ratio, -1.0, epsilon_low=0.2))
    np.testing.assert_allclose(g, ratio, rtol=1e-5)


@pytest.mark.parametrize("ratio", [1.21, 1.5, 3.0])
def test_positive_advantage_above_one_plus_eps_has_zero_gradient(ratio):
    assert float(_ppo_grad_at(ratio, 2.0, epsilon_low=0.2)) == 0.0
    # clip-higher: with ε_high = 0.28 a ratio of 1.21 still learns.
    g = float(_ppo_grad_at(ratio, 2.0, epsilon_low=0.2, epsilon_high=0.28))
    np.testing.assert_allclose(g, -2.0 * ratio if ratio < 1.28 else 0.0, rtol=1e-5)


@pytest.mark.parametrize("ratio", [0.2, 0.9, 1.19])
def test_positive_advantage_below_one_plus_eps_pushes_up(ratio):
    g = float(_ppo_grad_at(ratio, 2.0, epsilon_low=0.2))
    np.testing.assert_allclose(g, -2.0 * ratio, rtol=1e-5)
    assert g < 0


def test_dual_clip_bounds_negative_advantage_loss():
    c = 3.0
    ratios = np.array([[0.5, 1.0, 2.9, 3.1, 10.0, 1e3]], np.float32)
    adv = -np.ones_like(ratios) * 1.5
    ones = np.ones_like(ratios, bool)
    loss, aux = pl.ppo_clip(np.log(ratios), np.zeros_like(ratios), adv, ones, dual_clip_c=c)
    assert np.all(np.asarray(loss) <= -c * adv + 1e-6)
    np.testing.assert_allclose(loss[0, 3:], -c * adv[0, 3:], rtol=1e-6)
    np.testing.assert_array_equal(aux.dual_clipped[0], [0, 0, 0, 1, 1, 1])
    plain = pl.ppo_clip(np.log(ratios), np.zeros_like(ratios), adv, ones)[0]
    assert float(plain[0, -1]) > -c * adv[0, -1]  # without it the loss is unbounded
    # positive advantages are untouched by the dual clip
    pos = pl.ppo_clip(np.log(ratios), np.zeros_like(ratios), -adv, ones, dual_clip_c=c)[0]
    np.testing.assert_allclose(
        pos, pl.ppo_clip(np.log(ratios), np.zeros_like(ratios), -adv, ones)[0]
    )
    g = _ppo_grad_at(10.0, -1.0, dual_clip_c=c)
    assert float(g) == 0.0


def test_old_logp_gets_no_gradient():
    logp, old, adv, mask = _inputs()
    for name in pl.names():
        fn = pl.get(name)
        g = jax.grad(lambda o, fn=fn: fn(logp, o, adv, mask)[0].sum())(old)
        np.testing.assert_array_equal(g, 0.0)


# ----------------------------------------------------------------------------- masking, extremes.


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo"])
def test_masking_equals_slicing_and_pads_never_leak(name):
    fn = jax.jit(pl.get(name))
    logp, old, adv, _ = _inputs(seed=3)
    lengths = np.array([6, 4, 0, 2])
    mask = np.arange(T)[None] < lengths[:, None]
    garbage_logp = np.where(mask, logp, np.nan).astype(np.float32)
    garbage_adv = np.where(mask, adv, 1e30).astype(np.float32)
    loss, aux = fn(garbage_logp, old, garbage_adv, mask)
    grad = jax.grad(lambda lp: fn(lp, old, garbage_adv, mask)[0].sum())(garbage_logp)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    np.testing.assert_array_equal(np.asarray(loss)[~mask], 0.0)
    np.testing.assert_array_equal(np.asarray(grad)[~mask], 0.0)
    np.testing.assert_array_equal(np.asarray(aux.clipped)[~mask], 0.0)
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        row, row_aux = fn(
            logp[i : i + 1, :n], old[i : i + 1, :n], adv[i : i + 1, :n], np.ones((1, n), bool)
        )
        np.testing.assert_allclose(loss[i, :n], row[0], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(aux.ratio[i, :n], row_aux.ratio[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["ppo_clip", "gspo", "cispo"])
def test_finite_at_extreme_log_probs(name):
    fn = pl.get(name)
    logp = np.array([[-1e4, 0.0, -1e4], [0.0, -1e4, -30.0]], np.float32)
    old = np.array([[0.0, -1e4, -1e4], [-1e4, 0.0, 0.0]], np.float32)
    adv = np.array([[1.0, -1.0, 2.0], [-3.0, 1.0, -1.0]], np.float32)
    mask = np.ones_like(logp, bool)
    loss, aux = fn(logp, old, adv, mask)
    grad = jax.grad(lambda lp: fn(lp, old, adv, mask)[0].sum())(logp)
    assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad))
    assert np.all(np.isfinite(aux.ratio))


def test_check_grads_away_from_kinks():
    # ppo_clip is an ordinary function of logp. GSPO-token's per-token value is not (its gradient
    # is built with stop-gradients), but its per-row token mean is sequence-level GSPO, a plain
    # function of logp, so finite differences check it. CISPO's value is a surrogate whose
    # gradient is checked analytically in test_cispo_matches_numpy_and_never_drops_a_gradient.
    rng = _rng(7)
    old = rng.normal(size=(2, 3)).astype(np.float64) - 1
    # ratios well inside or well outside every clip range, so finite differences see no kink
    logp = old + np.array([[0.05, -0.5, 0.6], [-0.03, 0.4, -0.7]])
    adv = rng.normal(size=(2, 3))
    row_adv = np.broadcast_to(adv[:, :1], (2, 3))
    mask = np.ones((2, 3), bool)
    with jax.enable_x64(True):
        check_grads(lambda lp: pl.ppo_clip(lp, old, adv, mask)[0], (logp,), **GRAD_TOL)
        check_grads(
            lambda lp: pl.gspo(lp, old, row_adv, mask, epsilon_low=0.2, epsilon_high=0.2)[0].mean(
                -1
            ),
            (logp,),
            **GRAD_TOL,
        )


# ----------------------------------------------------------------------------- GSPO, CISPO.


@pytest.mark.parametrize("el,eh", [(3e-4, 4e-4), (0.2, 0.2)])
def test_gspo_matches_numpy(el, eh):
    logp, old, adv, mask = _inputs(seed=1, spread=0.2)
    fn = functools.partial(pl.gspo, epsilon_low=el, epsilon_high=eh)
    (loss, aux), grad = _value_and_grad(fn, logp, old, adv, mask)
    ref_loss, ref_grad = _np_gspo(logp, old, adv, mask, el, eh)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)
    x = np.where(mask, logp.astype(np.float64) - old, 0).sum(-1) / mask.sum(-1)
    np.testing.assert_allclose(aux.ratio, np.where(mask, np.exp(x)[:, None], 1.0), rtol=1e-5)


def test_gspo_token_mean_equals_sequence_level_gspo():
    # With one advantage per row, the per-row token mean of GSPO-token has the value and the
    # gradient of sequence-level GSPO: ℓ_i = -min(s_i A_i, clip(s_i) A_i), ∂s_i/∂logp_t = s_i/|y_i|.
    logp, old, _, mask = _inputs(seed=2, spread=0.1)
    a_row = np.array([1.0, -2.0, 0.5, -0.3], np.float32)
    adv = np.broadcast_to(a_row[:, None], (B, T)).astype(np.float32)
    n = mask.sum(-1)

    def row_mean(lp):
        loss = pl.gspo(lp, old, adv, mask, epsilon_low=0.2, epsilon_high=0.2)[0]
        return loss.sum(-1) / n

    value = row_mean(logp)
    grad = jax.jit(jax.grad(lambda lp: row_mean(lp).sum()))(logp)
    x = np.where(mask, logp.astype(np.float64) - old, 0).sum(-1) / n
    s = np.exp(x)
    seq = np.maximum(-s * a_row, -np.clip(s, 0.8, 1.2) * a_row)
    np.testing.assert_allclose(value, seq, rtol=1e-5)
    cut = ((a_row > 0) & (s > 1.2)) | ((a_row < 0) & (s < 0.8))
    expect = np.where(mask, np.where(cut, 0.0, -s * a_row)[:, None] / n[:, None], 0.0)
    np.testing.assert_allclose(grad, expect, rtol=1e-5, atol=1e-7)


def test_gspo_empty_row_has_ratio_one_and_no_nan():
    logp, old, adv, _ = _inputs()
    mask = np.zeros((B, T), bool)
    mask[0, :3] = True
    loss, aux = pl.gspo(logp, old, adv, mask)
    assert np.all(np.isfinite(loss))
    np.testing.assert_array_equal(loss[1:], 0.0)
    np.testing.assert_array_equal(aux.ratio[1:], 1.0)


@pytest.mark.parametrize("el,eh", [(1.0, 0.2), (0.1, 0.5)])
def test_cispo_matches_numpy_and_never_drops_a_gradient(el, eh):
    logp, old, adv, mask = _inputs(seed=4, spread=0.8)
    fn = functools.partial(pl.cispo, epsilon_low=el, epsilon_high=eh)
    (loss, aux), grad = _value_and_grad(fn, logp, old, adv, mask)
    ref_loss, ref_grad = _np_cispo(logp, old, adv, mask, el, eh)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)
    ratio = np.exp(logp.astype(np.float64) - old)
    truncated = ((ratio > 1 + eh) | (ratio < 1 - el)) & mask
    assert truncated.any()
    np.testing.assert_array_equal(aux.clipped, truncated.astype(np.float32))
    # where PPO would zero the gradient (A > 0, ρ > 1 + ε), CISPO keeps -(1 + ε)·A
    np.testing.assert_array_less(0.0, np.abs(np.asarray(grad))[mask & (adv != 0)])


# ----------------------------------------------------------------------------- value, entropy.


def _np_value_loss(v, old, ret, mask, c):
    err = (v.astype(np.float64) - ret) ** 2
    if c is None:
        return np.where(mask, 0.5 * err, 0.0), np.where(mask, v - ret, 0.0)
    vc = old + np.clip(v - old, -c, c)
    errc = (vc - ret) ** 2
    loss = 0.5 * np.maximum(err, errc)
    inside = np.abs(v - old) < c
    grad = np.where(errc > err, np.where(inside, vc - ret, 0.0), v - ret)
    return np.where(mask, loss, 0.0), np.where(mask, grad, 0.0)


@pytest.mark.parametrize("c", [None, 0.2, 1.0])
def test_value_loss_matches_numpy(c):
    rng = _rng(5)
    old = rng.normal(size=(B, T)).astype(np.float32)
    v = old + rng.normal(scale=0.5, size=(B, T)).astype(np.float32)
    ret = rng.normal(size=(B, T)).astype(np.float32)
    _, _, _, mask = _inputs()
    fn = jax.jit(functools.partial(pl.value_loss, clip_range=c))
    loss, aux = fn(v, old, ret, mask)
    grad = jax.grad(lambda x: fn(x, old, ret, mask)[0].sum())(v)
    ref_loss, ref_grad = _np_value_loss(v, old, ret, mask, c)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-5, atol=1e-6)
    if c is not None:
        vc = old + np.clip(v - old, -c, c)
        expect = (((vc - ret) ** 2 > (v - ret) ** 2) & mask).astype(np.float32)
        np.testing.assert_array_equal(aux.clipped, expect)


def test_value_loss_rejects_bad_clip_range():
    with pytest.raises(ValueError, match="clip_range"):
        pl.value_loss(
            np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.ones((1, 1)), clip_range=0.0
        )


def test_entropy_matches_scipy_with_truncated_support_and_mask():
    rng = _rng(6)
    logits = rng.normal(scale=3.0, size=(B, T, V)).astype(np.float32)
    logits[0, 0, :2] = -np.inf  # top-k style truncated support
    logits[1, 1] = 1e4 * np.array([1, -1, 0, 1, -1])
    _, _, _, mask = _inputs()
    logits_masked = logits.copy()
    logits_masked[~mask] = np.nan  # pads never leak
    ent = jax.jit(pl.entropy_from_logits)(logits_masked, mask)
    ref = special.entr(special.softmax(logits.astype(np.float64), axis=-1)).sum(-1)
    np.testing.assert_allclose(ent, np.where(mask, ref, 0.0), rtol=1e-5, atol=1e-5)
    grad = jax.jit(jax.grad(lambda z: pl.entropy_from_logits(z, mask).sum()))(logits_masked)
    assert np.all(np.isfinite(grad))
    bf16 = pl.entropy_from_logits(jnp.asarray(logits[2:], jnp.bfloat16), mask[2:])
    assert bf16.dtype == jnp.float32
    with jax.enable_x64(True):
        check_grads(
            lambda z: pl.entropy_from_logits(z, np.ones((1, 2), bool)),
            (rng.normal(size=(1, 2, 3)),),
            **GRAD_TOL,
        )
