"""`config.init_from`: a reward model starts from a policy run's transformer (SFT before RM)."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp

from rewardjax import train
from rewardjax.train import defaults


def _smoke(config):
    defaults.smoke_overrides(config)
    config.data.synthetic.num_train_pairs, config.eval.enabled = 16, False
    config.train.num_steps = config.train.checkpoint_every = 2
    return config


def _params(workdir, step=2):
    path = os.path.join(workdir, "checkpoints", str(step), "state")
    return ocp.StandardCheckpointer().restore(path)["params"]["params"]


def test_reward_model_takes_the_sft_transformer_as_its_backbone(tmp_path):
    sft = _smoke(defaults.base_config("sft"))
    train.run(sft, str(tmp_path / "sft"))
    rm = _smoke(defaults.reward_model_config())
    rm.init_from, rm.optimizer.learning_rate = str(tmp_path / "sft"), 0.0  # keep what was loaded
    train.run(rm, str(tmp_path / "rm"))
    lm, reward_model = _params(tmp_path / "sft"), _params(tmp_path / "rm")
    assert set(reward_model) == {"backbone", "head"}
    flat = lambda tree: {
        "/".join(str(k.key) for k in path): np.asarray(x)
        for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]
    }
    want, got = flat(lm["transformer"]), flat(reward_model["backbone"])
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)
