"""orbax checkpoints of a train state and its grain data iterator.

One checkpoint per saved step under `<workdir>/checkpoints/<step>/`, with two items:
`state` (params, opt_state, step, rng as a pytree) and `data` (the grain iterator state, so a
resumed run reads the same batches an uninterrupted one would).
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Any

import grain
import jax
import orbax.checkpoint as ocp

from rewardjax.train.state import TrainState

__all__ = ["CheckpointError", "Checkpointer"]


def _state_tree(state: TrainState) -> dict[str, Any]:
    tree = {
        "step": state.step,
        "params": state.params,
        "opt_state": state.opt_state,
        "rng": state.rng,
    }
    return {**tree, "extra": state.extra} if state.extra else tree


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot be read (truncated, corrupted, written by another
    version): names the step folder and the fix."""


class Checkpointer:
    """Saves and restores `(TrainState, data iterator)` pairs in a directory.

    Args:
      directory: where step folders go (created if missing).
      max_to_keep: how many most recent checkpoints to keep.
      async_save: write in a background thread (call `wait()` before reading them back).
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, async_save: bool = False):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
        )
        # Handlers named up front, so a checkpoint's metadata can be read before any restore.
        handlers = {
            "state": ocp.StandardCheckpointHandler(),
            "data": grain.checkpoint.CheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )

    @contextlib.contextmanager
    def _reading(self, step: int):
        """Turns a library's error while reading step `step` into a `CheckpointError`."""
        where = os.path.join(self.directory, str(step))
        try:
            yield
        except CheckpointError:
            raise
        except Exception as e:
            message = " ".join(str(e).split()) or type(e).__name__
            raise CheckpointError(
                f"cannot read the checkpoint {where} ({type(e).__name__}: {message[:500]}). "
                f"Fix: delete {where} to fall back to the checkpoint before it, or start a new "
                "--workdir (--traceback shows where reading it failed)."
            ) from e

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, state: TrainState, data_iterator: Any = None) -> None:
        """Saves `state` (and the iterator's position, if given) at step `int(state.step)`."""
        step = int(jax.device_get(state.step))
        items = {"state": ocp.args.StandardSave(_state_tree(state))}
        if data_iterator is not None:
            items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
        self._manager.save(step, args=ocp.args.Composite(**items), force=True)

    def restore(self, state: TrainState, data_iterator: Any = None, step: int | None = None):
        """Restores into the structure, dtypes and shardings of `state` (a freshly initialised one).

        The data iterator, if given, is moved in place to the saved position.

        Returns:
          The restored `TrainState`.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint to restore in {self.directory}.")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state_tree(state))
        items = {"state": ocp.args.StandardRestore(target)}
        if data_iterator is not None:
            self._check_process_count(step)
            items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
        with self._reading(step):
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))["state"]
        return state.replace(**restored)

    def _check_process_count(self, step: int) -> None:
        """grain saves one iterator position per process (`process_<i>-of-<n>.json`): a run with
        another process count cannot continue that data order."""
        folder = os.path.join(self.directory, str(step), "data")
        with self._reading(step):
            listed = os.listdir(folder)
        names = (re.fullmatch(r"process_\d+-of-(\d+)\.json", name) for name in listed)
        saved = {match[1] for match in names if match}
        if saved and saved != {str(jax.process_count())}:
            raise ValueError(
                f"checkpoint step {step} in {self.directory} holds the data-iterator positions of "
                f"{'/'.join(sorted(saved))} processes, but this run has {jax.process_count()}. "
                "Resume with the same --num_processes, or start a new --workdir with "
                "--config.init_from=<this run's workdir> (parameters load across process counts)."
            )

    def restore_params(self, params: Any, step: int | None = None) -> Any:
        """Only the parameters of a checkpoint (e.g. an SFT run's, to start DPO from), placed with
        the shardings of `params` (which fixes the expected structure, shapes and dtypes).

        The checkpoint may come from another topology (device or process count): each shard is
        read straight into its place, and nothing but the parameters is read.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"No checkpoint to load parameters from in {self.directory}.")
        with self._reading(step):
            saved = self._manager.item_metadata(step)["state"].tree
        want, got = jax.tree.structure(params), jax.tree.structure(saved["params"])
        shapes = lambda t: [tuple(x.shape) for x in jax.tree.leaves(t)]
        if want != got or shapes(params) != shapes(saved["params"]):
            raise ValueError(
                f"The parameters in {self.directory} (step {step}) do not fit this model: "
                f"expected {want} with shapes {shapes(params)}, found {got} with "
                f"{shapes(saved['params'])}. Use the same config.model as the run that wrote them."
            )
        target = {"params": jax.tree.map(ocp.utils.to_shape_dtype_struct, params)}
        restore_args = ocp.checkpoint_utils.construct_restore_args(target)
        # The step's `state` item read as a plain pytree, so that all but the params is skipped.
        with self._reading(step), ocp.PyTreeCheckpointer() as reader:
            restored = reader.restore(
                os.path.join(self.directory, str(step), "state"),
                args=ocp.args.PyTreeRestore(target, restore_args, partial_restore=True),
            )
        return restored["params"]

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
