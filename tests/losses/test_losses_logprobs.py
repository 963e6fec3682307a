"""Tests for sequence_logprobs and implicit_reward against an explicit NumPy log-softmax loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.special import logsumexp

from rewardjax import losses

B, T, V = 3, 7, 11


def _np_sequence_logprobs(logits, tokens, mask, average=False):
    """Loops over batch and positions; logits in float64."""
    out = np.zeros(logits.shape[0])
    for b in range(logits.shape[0]):
        positions = [t for t in range(logits.shape[1]) if mask[b, t]]
        total = sum(logits[b, t, tokens[b, t]] - logsumexp(logits[b, t]) for t in positions)
        out[b] = total / max(len(positions), 1) if average else total
    return out


def _example(seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(B, T, V)) * 4
    tokens = rng.integers(0, V, size=(B, T))
    lengths = np.array([T, 4, 0])  # full, padded, empty
    mask = np.arange(T)[None, :] < lengths[:, None]
    tokens = np.where(mask, tokens, -100)  # padding ids outside the vocabulary
    return logits, tokens, mask


_sequence_logprobs = jax.jit(losses.sequence_logprobs, static_argnames="average")


@pytest.mark.parametrize("average", [False, True])
def test_matches_reference_jitted(average):
    logits, tokens, mask = _example()
    got = _sequence_logprobs(logits.astype(np.float32), tokens, mask, average=average)
    assert got.shape == (B,) and got.dtype == jnp.float32
    want = _np_sequence_logprobs(logits, tokens, mask, average)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_bfloat16_logits_give_float32_logprobs():
    logits, tokens, mask = _example(1)
    low = jnp.asarray(logits, jnp.bfloat16)
    got = _sequence_logprobs(low, tokens, mask)
    assert got.dtype == jnp.float32
    # Same bfloat16 values, reduced exactly in float64: only float32 rounding separates them.
    want = _np_sequence_logprobs(np.asarray(low, np.float64), tokens, mask)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_masking_equals_slicing():
    logits, tokens, _ = _example(2)
    tokens = np.abs(tokens) % V
    for length in (1, 4, T):
        mask = np.broadcast_to(np.arange(T) < length, (B, T))
        masked = _sequence_logprobs(logits, tokens, mask)
        sliced = _sequence_logprobs(logits[:, :length], tokens[:, :length])
        np.testing.assert_allclose(masked, sliced, rtol=1e-6, atol=1e-6)


def test_grads_in_logits():
    logits, tokens, mask = _example(3)
    with jax.enable_x64(True):
        f = jax.jit(lambda x: losses.sequence_logprobs(x, tokens, mask, average=True))
        check_grads(f, (logits,), order=1, modes=("rev",))
        # Masked positions get no gradient.
        assert np.all(jax.grad(lambda x: jnp.sum(f(x)))(logits)[~mask] == 0.0)


def test_finite_values_and_grads_at_extremes():
    logits, tokens, mask = _example(4)
    extreme = np.where(logits > 0, 1e4, -1e4).astype(np.float32)
    f = lambda x: jnp.sum(losses.sequence_logprobs(x, tokens, mask))
    value, grad = jax.jit(jax.value_and_grad(f))(extreme)
    assert np.isfinite(value) and np.all(np.isfinite(grad))


def test_implicit_reward():
    rng = np.random.default_rng(5)
    policy, reference = -np.abs(rng.normal(30, 10, size=(2, 4)))
    got = jax.jit(losses.implicit_reward)(policy.astype(np.float32), reference, beta=0.2)
    np.testing.assert_allclose(got, 0.2 * (policy - reference), rtol=1e-5)
    with jax.enable_x64(True):
        f = jax.jit(lambda p, r: losses.implicit_reward(p, r, beta=0.2))
        check_grads(f, (policy, reference), order=1, modes=("rev",))
    value, grads = jax.jit(
        jax.value_and_grad(lambda p, r: jnp.sum(losses.implicit_reward(p, r, beta=0.2)), (0, 1))
    )(np.float32([1e4, -1e4]), np.float32([-1e4, 1e4]))
    assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
