"""Tests for rewardjax.rl.filtering against NumPy loops and DAPO's piecewise formula."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rewardjax.rl import filtering

P, N = 5, 4
HYPOTHESIS = settings(max_examples=25, deadline=None)
_group_filter = jax.jit(filtering.group_filter_mask, static_argnames="group_size")
_truncated = jax.jit(filtering.truncated_mask)
_penalty = jax.jit(filtering.overlong_penalty, static_argnames=("max_length", "cache_length"))


def _np_group_filter(rewards, group_size, tol):
    keep, dropped = [], 0
    for g in range(len(rewards) // group_size):
        group = np.asarray(rewards[g * group_size : (g + 1) * group_size], np.float64)
        drop = np.std(group) <= tol
        dropped += int(drop)
        keep += [not drop] * group_size
    return np.array(keep), dropped


def _np_overlong(length, max_length, cache_length):
    """DAPO eq. 13, one length at a time."""
    if length <= max_length - cache_length:
        return 0.0
    if length <= max_length:
        return ((max_length - cache_length) - length) / cache_length
    return -1.0


def test_group_filter_binary_rewards():
    """All-wrong, all-right and mixed groups of 0/1 rewards (DAPO's accuracy reward)."""
    rewards = np.array([0, 0, 0, 0, 1, 1, 1, 1, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0, 0, 0], np.int32)
    got = _group_filter(rewards, group_size=N)
    assert got.keep.dtype == jnp.bool_ and got.num_filtered_groups.dtype == jnp.int32
    np.testing.assert_array_equal(got.keep, np.repeat([False, False, True, True, False], N))
    assert int(got.num_filtered_groups) == 3


def test_group_filter_matches_reference_and_tol():
    rng = np.random.default_rng(0)
    rewards = rng.normal(size=P * N).astype(np.float32)
    rewards[:N] = 0.1  # not exactly representable: a naive mean could give std > 0
    rewards[N : 2 * N] = 2.5 + rng.normal(size=N) * 1e-3  # nearly constant
    for tol in (0.0, 1e-2, 0.5, 10.0):
        got = _group_filter(rewards, group_size=N, tol=tol)
        keep, dropped = _np_group_filter(rewards, N, tol)
        np.testing.assert_array_equal(got.keep, keep)
        assert int(got.num_filtered_groups) == dropped
    assert int(_group_filter(rewards, group_size=N, tol=0.0).num_filtered_groups) == 1


def test_constant_groups_of_awkward_floats_are_always_dropped():
    values = np.array([0.1, 1 / 3, -7.3, 1e7 + 1, 2.0**-20], np.float32)
    rewards = np.repeat(values, 7)
    got = _group_filter(rewards, group_size=7)
    assert not np.any(got.keep) and int(got.num_filtered_groups) == len(values)


@HYPOTHESIS
@given(
    rewards=hnp.arrays(np.float32, (P * N,), elements=st.sampled_from([0.0, 0.5, 1.0, -2.0])),
    shifts=hnp.arrays(np.float32, (P,), elements=st.sampled_from([0.0, 1.0, -3.0, 8.0])),
    seed=st.integers(0, 2**16),
)
def test_group_filter_invariant_to_shift_and_order(rewards, shifts, seed):
    keep, dropped = _np_group_filter(rewards, N, 0.0)
    got = _group_filter(rewards, group_size=N)
    np.testing.assert_array_equal(got.keep, keep)
    assert int(got.num_filtered_groups) == dropped
    moved = rewards + np.repeat(shifts, N)
    perm = np.random.default_rng(seed).permuted(moved.reshape(P, N), axis=1).reshape(-1)
    again = _group_filter(perm, group_size=N)
    np.testing.assert_array_equal(again.keep, got.keep)
    assert int(again.num_filtered_groups) == dropped


def test_truncated_mask_zeroes_unfinished_rows_and_counts_them():
    lengths = np.array([3, 6, 0, 6, 2])
    mask = (np.arange(6)[None, :] < lengths[:, None]).astype(np.int32)
    finished = np.array([True, True, True, False, False])  # row 1 stopped on the last position
    got = _truncated(mask, finished)
    assert got.mask.dtype == mask.dtype and got.num_truncated.dtype == jnp.int32
    want = mask.copy()
    for b in range(len(mask)):
        if not finished[b]:
            want[b, :] = 0
    np.testing.assert_array_equal(got.mask, want)
    assert int(got.num_truncated) == 2
    as_bool = _truncated(mask.astype(bool), finished)
    assert as_bool.mask.dtype == jnp.bool_
    np.testing.assert_array_equal(as_bool.mask, want.astype(bool))


@pytest.mark.parametrize(("max_length", "cache_length"), [(16, 4), (10, 10), (8, 0), (5, 1)])
def test_overlong_penalty_matches_piecewise_formula(max_length, cache_length):
    lengths = np.arange(0, max_length + 6, dtype=np.int32)
    got = _penalty(lengths, max_length=max_length, cache_length=cache_length)
    assert got.dtype == jnp.float32 and got.shape == lengths.shape
    want = [_np_overlong(n, max_length, cache_length) for n in lengths]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # The boundaries: 0 at L - C, -1 at L (C > 0; a hard step at L when C = 0), -1 beyond.
    assert got[max_length - cache_length] == 0
    assert got[max_length] == (-1 if cache_length else 0)
    assert np.all(np.asarray(got)[max_length + 1 :] == -1)


@HYPOTHESIS
@given(
    lengths=hnp.arrays(np.int32, (12,), elements=st.integers(0, 40)),
    max_length=st.integers(1, 32),
    frac=st.floats(0, 1),
)
def test_overlong_penalty_bounded_and_non_increasing(lengths, max_length, frac):
    cache_length = round(frac * max_length)
    got = np.asarray(
        filtering.overlong_penalty(lengths, max_length=max_length, cache_length=cache_length)
    )
    assert np.all((got <= 0) & (got >= -1))
    order = np.argsort(lengths, kind="stable")
    assert np.all(np.diff(got[order]) <= 1e-7)
    want = [_np_overlong(n, max_length, cache_length) for n in lengths]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_errors_name_the_fix():
    # The functions' own errors, which a user meets without the runtime type checker (the
    # tests run it, and it would reject these shapes first): inspect.unwrap strips it.
    with pytest.raises(ValueError, match="multiple of group_size"):
        inspect.unwrap(filtering.group_filter_mask)(np.zeros(7), group_size=4)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        inspect.unwrap(filtering.group_filter_mask)(np.zeros((2, 4)), group_size=4)
    with pytest.raises(ValueError, match="finished"):
        inspect.unwrap(filtering.truncated_mask)(np.ones((3, 4)), np.ones(2, bool))
    with pytest.raises(ValueError, match="cache_length"):
        inspect.unwrap(filtering.overlong_penalty)(np.arange(3), max_length=4, cache_length=5)
    with pytest.raises(ValueError, match="max_length"):
        inspect.unwrap(filtering.overlong_penalty)(np.arange(3), max_length=0, cache_length=0)
    with pytest.raises(ValueError, match="not characters"):
        inspect.unwrap(filtering.overlong_penalty)(np.arange(3.0), max_length=4, cache_length=2)
