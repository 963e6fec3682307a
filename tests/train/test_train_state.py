"""TrainState and the optimiser built from a config, against hand-written NumPy updates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.train import defaults
from rewardjax.train.state import TrainState, make_optimizer, make_schedule


def _opt_config(**fields):
    c = defaults.base_config("sft").optimizer
    c.decay_steps = 20
    c.update(fields)
    return c


def test_schedule_warmup_then_cosine_matches_formula():
    c = _opt_config(learning_rate=0.5, warmup_steps=5, decay_steps=20, end_learning_rate_factor=0.1)
    schedule = jax.jit(make_schedule(c))
    for t in [0, 1, 4, 5, 6, 12, 24, 25, 40]:
        if t < 5:
            expected = 0.5 * t / 5
        else:
            s = min(t - 5, 20) / 20
            expected = 0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s)))
        np.testing.assert_allclose(float(schedule(t)), expected, rtol=1e-6, atol=1e-7)


def test_schedule_linear_and_constant():
    lin = make_schedule(
        _opt_config(
            schedule="linear",
            learning_rate=1.0,
            warmup_steps=0,
            decay_steps=10,
            end_learning_rate_factor=0.0,
        )
    )
    np.testing.assert_allclose(
        [float(lin(t)) for t in (0, 5, 10, 15)], [1.0, 0.5, 0.0, 0.0], atol=1e-7
    )
    const = make_schedule(_opt_config(schedule="constant", learning_rate=0.3, warmup_steps=0))
    assert float(const(123)) == pytest.approx(0.3)


def _sgd_state(**fields):
    c = _opt_config(name="sgd", schedule="constant", warmup_steps=0, grad_clip_norm=0.0, **fields)
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    return TrainState.create(params=params, tx=make_optimizer(c), rng=jax.random.PRNGKey(0))


def test_gradient_accumulation_equals_one_step_on_the_mean_gradient():
    state = _sgd_state(learning_rate=0.1, grad_accum_steps=3)
    grads = [np.array([1.0, 2.0, 3.0]), np.array([-1.0, 0.5, 0.0]), np.array([4.0, 0.0, -3.0])]
    w0 = np.array([1.0, -2.0, 3.0])
    for i, g in enumerate(grads):
        state = state.apply_gradients({"w": jnp.asarray(g)})
        # Parameters move only on the k-th micro-step.
        expected = w0 if i < 2 else w0 - 0.1 * np.mean(grads, axis=0)
        np.testing.assert_allclose(state.params["w"], expected, rtol=1e-6)
    assert int(state.step) == 3


def test_gradient_clipping_rescales_to_the_global_norm():
    c = _opt_config(
        name="sgd", schedule="constant", warmup_steps=0, learning_rate=1.0, grad_clip_norm=2.0
    )
    params = {"w": jnp.array([1.0, -2.0, 3.0])}
    state = TrainState.create(params=params, tx=make_optimizer(c), rng=jax.random.PRNGKey(0))
    g = np.array([3.0, 4.0, 0.0])  # norm 5 -> scaled to norm 2
    state = jax.jit(TrainState.apply_gradients)(state, {"w": jnp.asarray(g)})
    np.testing.assert_allclose(
        state.params["w"], np.array([1.0, -2.0, 3.0]) - g * 2.0 / 5.0, rtol=1e-6
    )


def test_adamw_first_step_matches_numpy():
    c = _opt_config(
        name="adamw",
        schedule="constant",
        warmup_steps=0,
        learning_rate=0.01,
        weight_decay=0.1,
        grad_clip_norm=0.0,
    )
    params = {"w": jnp.array([1.0, -2.0])}
    state = TrainState.create(params=params, tx=make_optimizer(c), rng=jax.random.PRNGKey(0))
    g = np.array([0.3, -0.7])
    state = state.apply_gradients({"w": jnp.asarray(g)})
    m, v = 0.1 * g / 0.1, 0.001 * g**2 / 0.001  # bias-corrected first and second moments
    expected = np.array([1.0, -2.0]) - 0.01 * (
        m / (np.sqrt(v) + 1e-8) + 0.1 * np.array([1.0, -2.0])
    )
    np.testing.assert_allclose(state.params["w"], expected, rtol=1e-5)


@pytest.mark.parametrize(
    ("field", "value"), [("name", "adagrad"), ("schedule", "step"), ("grad_accum_steps", 0)]
)
def test_bad_optimizer_fields_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"optimizer.{field}"):
        make_optimizer(_opt_config(**{field: value}))
