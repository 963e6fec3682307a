"""A diverging run keeps only a checkpoint with finite parameters, and the advised rerun (a sane
learning rate, the same work directory) resumes from it and completes."""

import importlib.util
import os
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rewardjax import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _smoke_config():
    spec = importlib.util.spec_from_file_location("reward_model", CONFIGS / "reward_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("smoke")
    c.eval.enabled = False
    c.train.checkpoint_every = 1
    c.train.log_every = 1
    return c


def test_diverged_run_keeps_finite_parameters_and_the_rerun_completes(tmp_path):
    c = _smoke_config()
    # Warm-up from 0: step 1 changes nothing, step 2's update (lr 5e29) makes the parameters inf
    # while its loss and gradient, computed before the update, are still finite.
    c.optimizer.learning_rate = 1e30
    workdir = str(tmp_path / "run")
    with pytest.raises(train.NonFiniteLossError, match="param_norm"):
        train.run(c, workdir)
    checkpointer = train.Checkpointer(f"{workdir}/checkpoints")
    kept = checkpointer.latest_step()
    assert kept is not None and kept >= 1
    checkpointer.close()
    # Read back by orbax itself, without a target: every saved parameter as a NumPy array.
    with ocp.PyTreeCheckpointer() as reader:
        saved = reader.restore(os.path.join(workdir, "checkpoints", str(kept), "state"))
    leaves = jax.tree.leaves(saved["params"])
    assert leaves and all(np.all(np.isfinite(np.asarray(x))) for x in leaves)

    c.optimizer.learning_rate = 1e-3
    summary = train.run(c, workdir)
    assert summary["step"] == c.train.num_steps
    assert np.isfinite(summary["train"]["loss"])
