"""The quickstart's synthetic world, enumerated: what every lab study starts from."""

from __future__ import annotations

import importlib.util
import json
import os

import jax
import ml_collections

from rewardjax.evaluate import overoptimization as overopt
from rewardjax.train import data as train_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def quickstart_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`configs/quickstart.py`'s config (the world, its pairs' noise and count, its seed)."""
    path = os.path.join(REPO, "configs", "quickstart.py")
    spec = importlib.util.spec_from_file_location("quickstart_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def quickstart_world(num_prompts: int):
    """(config, task, law): the quickstart's world and every response to `num_prompts` prompts
    (the report's prompt key, seed + 1), unscored."""
    config = quickstart_config()
    task = train_data.markov_task(config.data.synthetic)
    key = jax.random.PRNGKey(config.seed + 1)
    return (
        config,
        task,
        overopt.synthetic_response_law(task, None, None, key, num_prompts=num_prompts),
    )


def saved_config(workdir: str) -> ml_collections.ConfigDict:
    """The config.json a run saved in `workdir`."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file; give the work directory of a quickstart run.")
    with open(path, encoding="utf-8") as f:
        return ml_collections.ConfigDict(json.load(f))
