"""Tests for rewardjax.rl.advantages against NumPy loops written here (float64, row by row)."""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rewardjax.rl import advantages

P, N, T = 3, 4, 7
B = P * N
HYPOTHESIS = settings(max_examples=20, deadline=None)
STATIC = ("group_size", "scale", "ddof")


@functools.cache
def _jit(name):
    fn = advantages.get(name)
    params = inspect.signature(fn).parameters
    return jax.jit(fn, static_argnames=[a for a in STATIC if a in params])


# ---------------------------------------------------------------------------------------------
# NumPy references: explicit loops over rows, groups and the real tokens of each row.


def _real(mask, i):
    return [t for t in range(mask.shape[1]) if mask[i, t]]


def _np_seq(rewards, mask):
    return np.array([sum(float(rewards[i, t]) for t in _real(mask, i)) for i in range(len(mask))])


def _spread(per_row, mask):
    out = np.zeros(mask.shape)
    for i in range(len(mask)):
        for t in _real(mask, i):
            out[i, t] = per_row[i]
    return out


def _np_whiten_tokens(x, mask, eps):
    real = [x[i, t] for i in range(len(mask)) for t in _real(mask, i)]
    mean, var = np.mean(real), np.var(real)
    out = np.zeros(mask.shape)
    for i in range(len(mask)):
        for t in _real(mask, i):
            out[i, t] = (x[i, t] - mean) / np.sqrt(var + eps)
    return out


def _np_gae(rewards, values, mask, gamma, lam):
    adv, ret = np.zeros(mask.shape), np.zeros(mask.shape)
    for i in range(len(mask)):
        idx = _real(mask, i)
        next_v, next_a = 0.0, 0.0
        for t in reversed(idx):
            delta = rewards[i, t] + gamma * next_v - values[i, t]
            adv[i, t] = delta + gamma * lam * next_a
            ret[i, t] = adv[i, t] + values[i, t]
            next_v, next_a = values[i, t], adv[i, t]
    return adv, ret


def _np_grpo(s, group_size, scale, eps, ddof):
    out = np.zeros_like(s)
    batch_std = np.std(s, ddof=ddof)
    for g in range(len(s) // group_size):
        rows = list(range(g * group_size, (g + 1) * group_size))
        mean = np.mean(s[rows])
        for i in rows:
            if scale == "group":
                out[i] = (s[i] - mean) / (np.std(s[rows], ddof=ddof) + eps)
            elif scale == "batch":
                out[i] = (s[i] - mean) / (batch_std + eps)
            else:
                out[i] = s[i] - mean
    return out


def _np_rloo(s, group_size):
    out = np.zeros_like(s)
    for g in range(len(s) // group_size):
        rows = range(g * group_size, (g + 1) * group_size)
        for i in rows:
            others = [s[j] for j in rows if j != i]
            out[i] = s[i] - sum(others) / len(others)
    return out


def _np_discounted(rewards, mask, gamma):
    out = np.zeros(mask.shape)
    for i in range(len(mask)):
        running = 0.0
        for t in reversed(_real(mask, i)):
            running = rewards[i, t] + gamma * running
            out[i, t] = running
    return out


def _np_reference(name, rewards, mask, values, baseline, **hp):
    """(advantages, returns) of estimator `name`, from the loops above."""
    if name == "gae":
        return _np_gae(rewards, values, mask, hp.get("gamma", 1.0), hp.get("lam", 0.95))
    if name == "reinforce_pp":
        g = _np_discounted(rewards, mask, hp.get("gamma", 1.0))
        return _np_whiten_tokens(g, mask, 1e-8), g
    if name == "gdpo":
        w = hp.get("weights", np.ones(len(rewards)))
        per_k = [_np_grpo(_np_seq(r, mask), N, "group", 1e-6, 1) for r in rewards]
        combined = sum(wk * a for wk, a in zip(w, per_k, strict=True))
        whitened = (combined - combined.mean()) / np.sqrt(combined.var() + 1e-8)
        total = sum(wk * _np_seq(r, mask) for wk, r in zip(w, rewards, strict=True))
        return _spread(whitened, mask), _spread(total, mask)
    s = _np_seq(rewards, mask)
    if name == "grpo":
        a = _np_grpo(s, N, hp.get("scale", "group"), hp.get("eps", 1e-6), hp.get("ddof", 1))
    elif name == "rloo":
        a = _np_rloo(s, N)
    elif name == "remax":
        a = s - baseline
    elif name == "reinforce_pp_baseline":
        centred = s - np.repeat(s.reshape(-1, N).mean(axis=1), N)
        return _np_whiten_tokens(_spread(centred, mask), mask, 1e-8), _spread(s, mask)
    return _spread(a, mask), _spread(s, mask)


# ---------------------------------------------------------------------------------------------
# Example batches.


def _mask(lengths, width=T, offsets=None):
    offsets = np.zeros(len(lengths), int) if offsets is None else np.asarray(offsets)
    pos = np.arange(width)[None, :]
    return (pos >= offsets[:, None]) & (pos < offsets[:, None] + np.asarray(lengths)[:, None])


def _example(seed=0, garbage=np.nan):
    """Scores at each row's last real token, small per-token terms, garbage at every pad.

    Row 0 of each group is empty (length 0); one row starts after an offset (left padding) and one
    has a hole in its mask, so masked positions in the middle of a row are skipped as well.
    """
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, T + 1, size=B)
    lengths[::N] = 0
    offsets = np.zeros(B, int)
    offsets[1] = 2
    lengths[1] = min(lengths[1], T - 2)
    mask = _mask(lengths, offsets=offsets)
    mask[5] = [1, 1, 0, 1, 0, 1, 0]
    rewards = -0.1 * rng.random((B, T))  # e.g. -beta * KL per token
    for i in range(B):
        idx = _real(mask, i)
        if idx:
            rewards[i, idx[-1]] += rng.normal() * 2  # the final score
    rewards = np.where(mask, rewards, garbage)
    values = np.where(mask, rng.normal(size=(B, T)), garbage)
    baseline = rng.normal(size=B)
    return rewards, mask, values, baseline


def _call(name, rewards, mask, values, baseline, **hp):
    spec = advantages.spec(name)
    kwargs = dict(hp)
    if spec.needs_values:
        kwargs["values"] = values
    if spec.needs_baseline:
        kwargs["baseline_rewards"] = baseline
    return _jit(name)(rewards, mask, group_size=N, **kwargs)


def _multi(rewards, seed=1):
    """K = 3 rewards sharing the mask: the example's, a scaled copy plus noise, a 0/1 reward."""
    rng = np.random.default_rng(seed)
    second = 5 * rewards + rng.normal(size=rewards.shape)
    third = (rng.random(rewards.shape) < 0.5).astype(np.float64)
    return np.stack([rewards, second, third])


def _inputs(name, seed=0, garbage=np.nan):
    rewards, mask, values, baseline = _example(seed, garbage)
    if advantages.spec(name).multi_reward:
        rewards = np.where(mask, _multi(np.where(mask, rewards, 0.0)), garbage)
    return rewards, mask, values, baseline


def _clean(x, mask):
    """The batch with zeros at the pads (the references never read them anyway)."""
    return np.where(mask, x, 0.0)


# ---------------------------------------------------------------------------------------------
# Tests.


def test_registry_names_spec_and_unknown_name():
    assert advantages.names() == (
        "gae",
        "gdpo",
        "grpo",
        "reinforce_pp",
        "reinforce_pp_baseline",
        "remax",
        "rloo",
    )
    for name in advantages.names():
        assert advantages.get(name) is getattr(advantages, name)
        assert advantages.spec(name).fn is advantages.get(name)
    assert advantages.spec("gae").needs_values and not advantages.spec("grpo").needs_values
    assert advantages.spec("remax").needs_baseline
    assert not advantages.spec("remax").group_level
    assert {n for n in advantages.names() if advantages.spec(n).group_level} == {
        "gdpo",
        "grpo",
        "reinforce_pp_baseline",
        "rloo",
    }
    assert [n for n in advantages.names() if advantages.spec(n).multi_reward] == ["gdpo"]
    with pytest.raises(ValueError, match=r"'ppo'.*gae.*rloo"):
        advantages.get("ppo")


@pytest.mark.parametrize("name", advantages.names())
def test_matches_numpy_reference_with_garbage_at_pads(name):
    rewards, mask, values, baseline = _inputs(name)
    got = _call(name, rewards.astype(np.float32), mask, values.astype(np.float32), baseline)
    assert isinstance(got, advantages.Advantages)
    want_adv, want_ret = _np_reference(
        name, _clean(rewards, mask), mask, _clean(values, mask), baseline
    )
    for x, want in zip(got, (want_adv, want_ret), strict=True):
        assert x.shape == (B, T) and x.dtype == jnp.float32
        assert np.all(np.isfinite(x))
        assert np.all(np.asarray(x)[~mask] == 0)
        np.testing.assert_allclose(x, want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", advantages.names())
def test_integer_rewards_give_float32(name):
    rewards, mask, values, baseline = _inputs(name, seed=3, garbage=7)
    ints = np.round(_clean(rewards, mask) * 3).astype(np.int32)
    ints = np.where(mask, ints, 99)  # integer garbage at the pads
    got = _call(name, ints, mask.astype(np.int32), values.astype(np.float32), baseline)
    assert got.advantages.dtype == jnp.float32 and got.returns.dtype == jnp.float32
    want_adv, want_ret = _np_reference(
        name, _clean(ints, mask), mask, _clean(values, mask), baseline
    )
    np.testing.assert_allclose(got.advantages, want_adv, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got.returns, want_ret, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("name", advantages.names())
def test_masking_equals_slicing(name):
    """Extra padding columns (masked, holding garbage) change nothing on the original columns."""
    rewards, mask, values, baseline = _inputs(name, seed=4)
    narrow = _call(name, rewards, mask, values, baseline)
    extra = 5

    def widen(x, fill):
        pad = [(0, 0)] * (x.ndim - 1) + [(0, extra)]
        return np.pad(x, pad, constant_values=fill)

    wide = _call(name, widen(rewards, 1e6), widen(mask, False), widen(values, -1e6), baseline)
    for a, b in zip(narrow, wide, strict=True):
        np.testing.assert_allclose(np.asarray(b)[:, :T], a, rtol=1e-6, atol=1e-6)
        assert np.all(np.asarray(b)[:, T:] == 0)


@pytest.mark.parametrize("name", advantages.names())
def test_reward_read_at_last_real_token_not_at_pads(name):
    """The same batch with different garbage at the pads gives identical results."""
    clean = _inputs(name, seed=5, garbage=0.0)
    dirty = _inputs(name, seed=5, garbage=-1e9)
    a, b = _call(name, *clean), _call(name, *dirty)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("name", advantages.names())
def test_empty_completions_are_finite_and_zero(name):
    """All rows empty: every advantage and return is 0 (no NaN from empty means or variances)."""
    rewards, _, values, baseline = _inputs(name, seed=6)
    empty = np.zeros((B, T), bool)
    got = _call(name, rewards, empty, values, baseline)
    for x in got:
        np.testing.assert_array_equal(x, np.zeros((B, T)))


def test_empty_completion_counts_in_its_group_with_reward_zero():
    """An empty row is a sample with s = 0: its group mean includes it, its advantages are 0 at
    its (nonexistent) tokens, and it pulls the others' advantages exactly as a 0 reward would."""
    lengths = np.array([0, 3, 2, 4])
    mask = _mask(lengths, width=5)
    scores = np.array([123.0, 1.0, 2.0, 3.0])  # row 0's score has nowhere to sit: never read
    rewards = np.full((4, 5), 55.0)
    for i, n in enumerate(lengths):
        rewards[i, :n] = 0.0
        if n:
            rewards[i, n - 1] = scores[i]
    got = _jit("rloo")(rewards, mask, group_size=4)
    s = np.array([0.0, 1.0, 2.0, 3.0])
    want = [s[i] - (s.sum() - s[i]) / 3 for i in range(4)]
    for i, n in enumerate(lengths):
        np.testing.assert_allclose(np.asarray(got.advantages)[i, :n], want[i], rtol=1e-6)
    assert np.all(np.asarray(got.advantages)[0] == 0)
    grpo = _jit("grpo")(rewards, mask, group_size=4)
    centred = s - s.mean()
    np.testing.assert_allclose(
        np.asarray(grpo.advantages)[3, :4], centred[3] / (s.std(ddof=1) + 1e-6), rtol=1e-5
    )


def test_gae_against_backward_loop_for_several_gamma_lambda():
    rewards, mask, values, _ = _example(seed=7)
    fn = functools.partial(_jit("gae"), group_size=N)
    for gamma, lam in [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0), (0.5, 0.7)]:
        got = fn(rewards, mask, values=values, gamma=gamma, lam=lam)
        want = _np_gae(_clean(rewards, mask), _clean(values, mask), mask, gamma, lam)
        np.testing.assert_allclose(got.advantages, want[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.returns, want[1], rtol=1e-5, atol=1e-5)


def test_gae_special_cases():
    """λ = 1 and γ = 1: A_t = (reward to go) − V_t; λ = 0: the one-step TD error."""
    rewards, mask, values, _ = _example(seed=8)
    r, v = _clean(rewards, mask), _clean(values, mask)
    fn = functools.partial(_jit("gae"), group_size=N)
    mc = fn(rewards, mask, values=values, gamma=1.0, lam=1.0)
    to_go = _np_discounted(r, mask, 1.0)
    np.testing.assert_allclose(mc.advantages, np.where(mask, to_go - v, 0), atol=1e-5)
    np.testing.assert_allclose(mc.returns, to_go, atol=1e-5)
    td = fn(rewards, mask, values=values, gamma=0.9, lam=0.0)
    for i in range(B):
        idx = _real(mask, i)
        for k, t in enumerate(idx):
            next_v = v[i, idx[k + 1]] if k + 1 < len(idx) else 0.0
            assert np.isclose(td.advantages[i, t], r[i, t] + 0.9 * next_v - v[i, t], atol=1e-5)


@pytest.mark.parametrize(("scale", "ddof"), [("group", 1), ("group", 0), ("batch", 1), ("none", 1)])
def test_grpo_scale_modes(scale, ddof):
    rewards, mask, _, _ = _example(seed=9)
    got = _jit("grpo")(rewards, mask, group_size=N, scale=scale, ddof=ddof)
    s = _np_seq(_clean(rewards, mask), mask)
    want = _spread(_np_grpo(s, N, scale, 1e-6, ddof), mask)
    np.testing.assert_allclose(got.advantages, want, rtol=2e-5, atol=2e-5)
    if scale == "none":  # Dr. GRPO: plain centring, no std division
        centred = s - np.repeat(s.reshape(P, N).mean(1), N)
        np.testing.assert_allclose(got.advantages, _spread(centred, mask), atol=2e-5)


@pytest.mark.parametrize("name", ["grpo", "rloo", "reinforce_pp_baseline", "gdpo"])
def test_constant_groups_give_exactly_zero(name):
    """Equal rewards in a group give advantage 0, also for values whose float32 mean is inexact
    (seven 0.1s; 1e7 + 1, where a naive sum rounds) and would be divided by a std of ~0."""
    group = 3
    scores = np.repeat(np.array([0.1, 1e7 + 1, -7.3, 0.0], np.float32), group)
    rewards = np.zeros((len(scores), 3), np.float32)
    rewards[:, -1] = scores
    if name == "gdpo":
        rewards = np.stack([rewards, rewards * 3])
    mask = np.ones((len(scores), 3), bool)
    for scale in ("group", "batch", "none") if name == "grpo" else ("group",):
        hp = {"scale": scale} if name == "grpo" else {}
        got = _jit(name)(rewards, mask, group_size=group, **hp)
        np.testing.assert_array_equal(got.advantages, 0.0)


def test_rloo_equals_explicit_leave_one_out_and_scaled_centring():
    rewards, mask, _, _ = _example(seed=10)
    got = _jit("rloo")(rewards, mask, group_size=N)
    s = _np_seq(_clean(rewards, mask), mask)
    np.testing.assert_allclose(got.advantages, _spread(_np_rloo(s, N), mask), atol=2e-5)
    centred = s - np.repeat(s.reshape(P, N).mean(1), N)
    np.testing.assert_allclose(got.advantages, _spread(centred * N / (N - 1), mask), atol=2e-5)


@pytest.mark.parametrize("name", ["reinforce_pp", "reinforce_pp_baseline"])
def test_whitening_uses_only_real_tokens(name):
    rewards, mask, values, baseline = _example(seed=11, garbage=1e6)
    got = np.asarray(_call(name, rewards, mask, values, baseline).advantages, np.float64)
    real = got[mask]
    assert abs(real.mean()) < 1e-5 and abs(real.var() - 1) < 1e-4
    assert np.all(got[~mask] == 0)


def test_reinforce_pp_discounting():
    rewards, mask, _, _ = _example(seed=12)
    got = _jit("reinforce_pp")(rewards, mask, group_size=1, gamma=0.9)
    g = _np_discounted(_clean(rewards, mask), mask, 0.9)
    np.testing.assert_allclose(got.returns, g, atol=1e-5)
    np.testing.assert_allclose(got.advantages, _np_whiten_tokens(g, mask, 1e-8), atol=1e-4)


def test_remax_needs_no_group():
    rewards, mask, _, baseline = _example(seed=13)
    got = _jit("remax")(rewards, mask, group_size=1, baseline_rewards=baseline)
    s = _np_seq(_clean(rewards, mask), mask)
    np.testing.assert_allclose(got.advantages, _spread(s - baseline, mask), atol=1e-5)


def test_gdpo_weights_and_decoupled_normalisation():
    """With weights, against the reference; and two reward combinations that GRPO on the summed
    reward maps to one advantage stay apart under GDPO (the paper's motivating example)."""
    rewards, mask, _, _ = _inputs("gdpo", seed=14)
    w = np.array([1.0, 0.5, 2.0])
    got = _jit("gdpo")(rewards, mask, group_size=N, weights=w)
    want = _np_reference("gdpo", _clean(rewards, mask), mask, None, None, weights=w)
    np.testing.assert_allclose(got.advantages, want[0], rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(got.returns, want[1], rtol=2e-5, atol=2e-5)
    # Two binary rewards, groups of 2: (1,0) vs (0,0) and (1,1) vs (0,0) give the same GRPO
    # advantages on the sum (±0.707) but different GDPO ones.
    two = np.zeros((2, 4, 1))
    two[0, 0, 0] = 1.0
    two[:, 2, 0] = 1.0
    one_col = np.ones((4, 1), bool)
    grpo_sum = _jit("grpo")(two.sum(0), one_col, group_size=2).advantages[:, 0]
    assert np.isclose(grpo_sum[0], grpo_sum[2])
    gd = _jit("gdpo")(two, one_col, group_size=2).advantages[:, 0]
    assert not np.isclose(gd[0], gd[2]) and gd[2] > gd[0] > 0


def test_errors_name_the_problem():
    # The functions' own errors, which a user meets without the runtime type checker (the
    # tests run it, and it would reject these shapes first): inspect.unwrap strips it.
    rewards, mask, _, _ = _example(seed=15)
    with pytest.raises(ValueError, match="values"):
        inspect.unwrap(advantages.gae)(rewards, mask, group_size=N)
    with pytest.raises(ValueError, match="baseline_rewards"):
        inspect.unwrap(advantages.remax)(rewards, mask, group_size=N)
    with pytest.raises(ValueError, match="multiple of group_size"):
        inspect.unwrap(advantages.grpo)(rewards, mask, group_size=5)
    with pytest.raises(ValueError, match="group_size must be an int >= 2"):
        inspect.unwrap(advantages.rloo)(rewards, mask, group_size=1)
    with pytest.raises(ValueError, match="scale"):
        inspect.unwrap(advantages.grpo)(rewards, mask, group_size=N, scale="std")
    with pytest.raises(ValueError, match="mask has shape"):
        inspect.unwrap(advantages.grpo)(rewards, mask[:, :3], group_size=N)
    with pytest.raises(ValueError, match=r"\[K, B, T\]"):
        inspect.unwrap(advantages.gdpo)(rewards, mask, group_size=N)
    with pytest.raises(ValueError, match="weights"):
        inspect.unwrap(advantages.gdpo)(
            np.stack([rewards] * 2), mask, group_size=N, weights=[1.0, 2.0, 3.0]
        )


_scores = hnp.arrays(np.float32, (B,), elements=st.floats(-50, 50, width=32))


def _at_last_token(scores):
    rewards = np.zeros((B, T), np.float32)
    rewards[:, -1] = scores
    return rewards


def _on_grid(size):
    """Multiples of 1/64 in [-50, 50]: a score plus a shift is then exact in float32, so the
    invariance holds in the arithmetic (a spread of 1e-7 around 0 vanishes when 1.0 is added)."""
    ints = hnp.arrays(np.int32, (size,), elements=st.integers(-3200, 3200))
    return ints.map(lambda v: v.astype(np.float32) / 64)


@HYPOTHESIS
@given(scores=_on_grid(B), shifts=_on_grid(P), scale=st.sampled_from(["group", "none"]))
def test_grpo_invariant_to_a_constant_per_group(scores, shifts, scale):
    mask = np.ones((B, T), bool)
    base = _jit("grpo")(_at_last_token(scores), mask, group_size=N, scale=scale, ddof=1)
    moved = _jit("grpo")(
        _at_last_token(scores + np.repeat(shifts, N)), mask, group_size=N, scale=scale, ddof=1
    )
    # Float32 centring of values up to 100 loses ~1e-5 absolute; divided by a tiny std it grows.
    np.testing.assert_allclose(moved.advantages, base.advantages, atol=2e-3, rtol=2e-3)


@HYPOTHESIS
@given(scores=_scores, lengths=hnp.arrays(np.int64, (B,), elements=st.integers(1, T)))
def test_rloo_advantages_sum_to_zero_per_group(scores, lengths):
    mask = _mask(lengths)
    rewards = np.zeros((B, T), np.float32)
    rewards[np.arange(B), lengths - 1] = scores  # the score at each row's last real token
    adv = np.asarray(_jit("rloo")(rewards, mask, group_size=N).advantages, np.float64)
    per_row = adv[np.arange(B), lengths - 1]
    np.testing.assert_allclose(adv, np.where(mask, per_row[:, None], 0.0))  # constant along a row
    np.testing.assert_allclose(per_row.reshape(P, N).sum(axis=1), 0.0, atol=1e-3)
