"""Tests for rewardjax.rl.constraints against NumPy references and the KKT conditions of an exactly
solved constrained bandit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.rl import constraints as cs


def test_init_state_shapes_senses_and_default_weights():
    s = cs.constraints_init(3, sense=["at_most", "at_least", "equal"], init=[0.5, 0.0, -1.0])
    np.testing.assert_array_equal(s.sense, [1, -1, 0])
    np.testing.assert_array_equal(s.objective_weights, [1.0, 0.0, 0.0])
    np.testing.assert_allclose(s.multipliers, [0.5, 0.0, -1.0])
    assert s.multipliers.dtype == jnp.float32 and s.sense.dtype == jnp.int32
    d = cs.constraints_init(2)
    np.testing.assert_array_equal(d.sense, [1, 1])
    np.testing.assert_array_equal(d.multipliers, [0.0, 0.0])
    np.testing.assert_array_equal(d.objective_weights, [1.0, 1.0])
    w = cs.constraints_init(2, objective_weights=[0.3, 0.7])
    np.testing.assert_allclose(w.objective_weights, [0.3, 0.7])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(num_rewards=0), "num_rewards"),
        (dict(num_rewards=2, sense="below"), "unknown sense"),
        (dict(num_rewards=2, sense=["at_most"]), "1 entries"),
        (dict(num_rewards=2, init=-0.1), "negative multiplier"),
        (dict(num_rewards=2, objective_weights=[1.0]), "objective_weights"),
    ],
)
def test_init_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        cs.constraints_init(**kwargs)


def _np_update(lam, sense, v, theta, lr):
    g = np.where(sense == -1, theta - v, v - theta)
    out = lam + lr * g
    return np.where(sense == 0, out, np.maximum(out, 0.0))


def test_update_is_projected_dual_ascent_per_sense():
    senses = ["at_most", "at_least", "equal", "at_most"]
    state = cs.constraints_init(4, sense=senses, init=[0.1, 0.2, 0.0, 0.0])
    sense = np.array([1, -1, 0, 1])
    thresholds = np.array([1.0, 0.5, 0.0, 2.0], np.float32)
    update = jax.jit(functools.partial(cs.constraints_update, thresholds=thresholds, lr=0.3))
    lam = np.array([0.1, 0.2, 0.0, 0.0])
    rng = np.random.default_rng(0)
    for _ in range(6):
        v = rng.normal(scale=2.0, size=4).astype(np.float32)
        state = update(state, v)
        lam = _np_update(lam, sense, v, thresholds, 0.3)
        np.testing.assert_allclose(state.multipliers, lam, rtol=1e-5, atol=1e-6)
        assert np.all(np.asarray(state.multipliers)[sense != 0] >= 0)
    np.testing.assert_array_equal(state.sense, sense)
    # a violated 'at_most' raises λ; a violated 'at_least' raises λ; slack ones lower it
    s0 = cs.constraints_init(2, sense=["at_most", "at_least"], init=1.0)
    up = cs.constraints_update(s0, jnp.array([2.0, 0.0]), thresholds=jnp.array([1.0, 1.0]), lr=1)
    np.testing.assert_allclose(up.multipliers, [2.0, 2.0])
    down = cs.constraints_update(s0, jnp.array([0.0, 2.0]), thresholds=1.0, lr=1)
    np.testing.assert_allclose(down.multipliers, [0.0, 0.0])
    with pytest.raises(ValueError, match="reward_means"):
        cs.constraints_update(s0, jnp.zeros(3), thresholds=1.0, lr=1)
    with pytest.raises(ValueError, match="lr"):
        cs.constraints_update(s0, jnp.zeros(2), thresholds=1.0, lr=0.0)


def test_combine_rewards_matches_numpy_and_is_float32_for_int_rewards():
    state = cs.constraints_init(3, sense=["at_most", "at_least", "equal"], init=[0.25, 0.5, -0.75])
    rewards = np.array([[1, 2, 3, 4], [0, 1, 0, 1], [5, 5, -5, 0]], np.int32)
    # at_most: w - λ = 0.75; at_least: w + λ = 0.5; equal: w - λ = 0.75
    expected = 0.75 * rewards[0] + 0.5 * rewards[1] + 0.75 * rewards[2]
    out = jax.jit(cs.combine_rewards)(rewards, state)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(cs.reward_weights(state), [0.75, 0.5, 0.75])
    per_token = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    np.testing.assert_allclose(
        cs.combine_rewards(per_token, state),
        np.tensordot([0.75, 0.5, 0.75], per_token, axes=1),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="K=3"):
        cs.combine_rewards(rewards[:2], state)


# ----------------------------------------------------------------------------- exact bandit.

BETA = 1.0


def _np_policy(p, rewards, weights):
    """The exact maximiser of E_q[Σ_k c_k r_k] - β KL(q ‖ p): q ∝ p exp(Σ_k c_k r_k / β)."""
    logits = np.log(p) + weights @ rewards / BETA
    q = np.exp(logits - logits.max())
    return q / q.sum()


def _run_dual(p, rewards, state, thresholds, steps=4000, lr=0.2):
    pj, rj = jnp.asarray(p, jnp.float32), jnp.asarray(rewards, jnp.float32)

    def step(s, _):
        # the primal best response to the current multipliers: RL on the combined reward, exact
        combined = cs.combine_rewards(rj, s)
        q = jax.nn.softmax(jnp.log(pj) + combined / BETA)
        means = rj @ q
        return cs.constraints_update(s, means, thresholds=thresholds, lr=lr), None

    final, _ = jax.jit(lambda s: jax.lax.scan(step, s, None, length=steps))(state)
    return final


def _world():
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6))
    rewards = rng.normal(size=(2, 6))
    return p, rewards


def test_at_most_caps_an_overoptimised_reward_kkt():
    # Objective r1 + r2 (w = 1) with r1 capped below its unconstrained optimum: the dual must find
    # λ1 > 0 with E[r1] = θ1 (active), λ2 = 0 with E[r2] ≤ θ2 (slack) — the KKT conditions.
    p, rewards = _world()
    free = _np_policy(p, rewards, np.ones(2))
    v_free = rewards @ free
    thresholds = np.array([v_free[0] - 0.3, rewards[1].max() + 1.0], np.float32)
    final = _run_dual(p, rewards, cs.constraints_init(2), thresholds)
    lam = np.asarray(final.multipliers, np.float64)
    q = _np_policy(p, rewards, 1.0 - lam)
    v = rewards @ q
    assert lam[0] > 0.05 and lam[1] == 0.0
    np.testing.assert_allclose(v[0], thresholds[0], atol=5e-3)  # active: binds
    assert v[1] <= thresholds[1]
    # and it is the constrained optimum: a NumPy bisection on λ1 (λ2 = 0) gives the same policy
    lo, hi = 0.0, 50.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (
            (mid, hi)
            if rewards[0] @ _np_policy(p, rewards, np.array([1 - mid, 1])) > (thresholds[0])
            else (lo, mid)
        )
    np.testing.assert_allclose(lam[0], lo, rtol=2e-2)


def test_at_least_reaches_thresholds_with_least_kl():
    # Objective: the KL alone (w = 0); each reward must reach θ_k. The active constraint binds.
    p, rewards = _world()
    base = rewards @ p
    thresholds = np.array([base[0] + 0.4, base[1] - 5.0], np.float32)  # second is slack
    state = cs.constraints_init(2, sense="at_least")
    final = _run_dual(p, rewards, state, thresholds)
    lam = np.asarray(final.multipliers, np.float64)
    v = rewards @ _np_policy(p, rewards, lam)
    assert lam[0] > 0 and lam[1] == 0.0
    np.testing.assert_allclose(v[0], thresholds[0], atol=5e-3)
    assert v[1] >= thresholds[1]


def test_equal_pins_each_reward_at_its_threshold():
    # Thresholds that an exactly known tilt attains (so they are feasible): the dual must
    # recover that tilt's multipliers (the dual is strictly concave here, so they are unique).
    p, rewards = _world()
    lam_true = np.array([0.3, -0.8])
    thresholds = (rewards @ _np_policy(p, rewards, -lam_true)).astype(np.float32)
    state = cs.constraints_init(2, sense="equal")
    final = _run_dual(p, rewards, state, thresholds, lr=0.5)
    lam = np.asarray(final.multipliers, np.float64)
    v = rewards @ _np_policy(p, rewards, -lam)
    np.testing.assert_allclose(v, thresholds, atol=5e-3)
    np.testing.assert_allclose(lam, lam_true, atol=5e-2)
