"""orbax checkpoints of (TrainState, grain iterator): exact round trips and data position."""

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.state import TrainState


def _dataset():
    return (
        grain.MapDataset.range(64)
        .shuffle(seed=3)
        .map(lambda i: {"x": np.array([i, 2 * i])})
        .batch(4)
        .to_iter_dataset()
    )


def _state(seed):
    params = {"a": jax.random.normal(jax.random.PRNGKey(seed), (3, 2)), "b": jnp.zeros((2,))}
    return TrainState.create(params=params, tx=optax.adam(1e-2), rng=jax.random.PRNGKey(seed))


def test_round_trip_restores_state_and_data_position(tmp_path):
    state = _state(0)
    for _ in range(3):
        state = state.apply_gradients(jax.tree.map(jnp.ones_like, state.params))
    batches = iter(_dataset())
    for _ in range(5):
        next(batches)
    ckpt = Checkpointer(str(tmp_path), max_to_keep=2)
    ckpt.save(state, batches)
    expected_next = [next(batches)["x"] for _ in range(3)]

    fresh_batches = iter(_dataset())
    restored = ckpt.restore(_state(1), fresh_batches)
    ckpt.close()
    assert int(restored.step) == 3
    for got, want in zip(jax.tree.leaves(restored), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert jax.tree.structure(restored.opt_state) == jax.tree.structure(state.opt_state)
    for want in expected_next:
        np.testing.assert_array_equal(next(fresh_batches)["x"], want)


def test_resume_with_another_process_count_names_the_counts_and_the_fix(tmp_path):
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(_state(0), iter(_dataset()))
    ckpt.close()
    data = tmp_path / "0" / "data"
    for i in range(2):  # as a 2-process run writes it
        (data / f"process_{i}-of-2.json").write_text((data / "process_0-of-1.json").read_text())
    (data / "process_0-of-1.json").unlink()
    with pytest.raises(ValueError, match=r"positions of 2 processes, but this run has 1\. Resume"):
        Checkpointer(str(tmp_path)).restore(_state(1), iter(_dataset()))


def test_keeps_the_latest_checkpoints(tmp_path):
    ckpt = Checkpointer(str(tmp_path), max_to_keep=2)
    state = _state(0)
    for _ in range(4):
        state = state.apply_gradients(jax.tree.map(jnp.ones_like, state.params))
        ckpt.save(state)
    assert ckpt.all_steps() == [3, 4]
    assert ckpt.latest_step() == 4
    ckpt.close()


def test_restore_without_checkpoint_names_the_directory(tmp_path):
    ckpt = Checkpointer(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="empty"):
        ckpt.restore(_state(0))


def test_restore_params_reads_only_the_params_into_the_given_dtypes(tmp_path):
    state = _state(0).apply_gradients({"a": jnp.ones((3, 2)), "b": jnp.ones((2,))})
    ckpt = Checkpointer(str(tmp_path))
    ckpt.save(state)
    like = {"a": jnp.zeros((3, 2), jnp.bfloat16), "b": jnp.zeros((2,), jnp.float32)}
    params = ckpt.restore_params(like)
    assert params["a"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(params["a"], np.asarray(state.params["a"]).astype(jnp.bfloat16))
    np.testing.assert_array_equal(params["b"], state.params["b"])
    with pytest.raises(ValueError, match=r"do not fit this model.*config\.model"):
        ckpt.restore_params({"a": jnp.zeros((2, 3)), "b": jnp.zeros((2,))})
    with pytest.raises(ValueError, match="do not fit this model"):
        ckpt.restore_params({"a": jnp.zeros((3, 2))})
    ckpt.close()
