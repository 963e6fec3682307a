"""The quickstart's synthetic world, enumerated: what every lab study starts from.

- `quickstart_world`: the world and every response to P prompts (exact base law and gold reward).
- `world_config`: any `configs/<name>.py` (sft, reward_model, dpo, rl) on that world with the lab's
  small model, for runs of the real trainer (`train.run`, which resumes a finished stage).
- `proxy_reward_model`: the quickstart's weak transformer proxy (its 512 pairs, 20 % flipped)
  trained with the lab's small model; `lab.score_reward_model_run` scores it on every response.
- `cache_compilations`: a study's entry point caches XLA compilations in `<workdir>/jax_cache`.
- `sft_reference`: the SFT policy of the world's base chain, the reference DPO and RL runs start
  from and are regularised to, and the law `law` with its exact probabilities in place of the base
  chain's (so the exact optimum, best-of-n and every trained policy share one reference).
"""

from __future__ import annotations

import importlib.util
import json
import os

import jax
import ml_collections
import numpy as np

from rewardjax import lab, train
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.train import data as train_data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`configs/<name>.py`'s get_config(arg)."""
    path = os.path.join(REPO, "configs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def cache_compilations(workdir: str) -> None:
    """Persistent XLA cache in `<workdir>/jax_cache` (unless one is set, e.g. by
    JAX_COMPILATION_CACHE_DIR): a study's trainer stages compile the same programs again."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.join(workdir, "jax_cache"))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def quickstart_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`configs/quickstart.py`'s config (the world, its pairs' noise and count, its seed)."""
    return load_config("quickstart", arg)


def world_config(name: str, arg: str | None = None) -> ml_collections.ConfigDict:
    """`configs/<name>.py` on the quickstart's world with the lab's small model.

    The synthetic task (vocabulary, lengths, pairs, label noise) and seed are the quickstart's;
    the backbone is 1 layer of width 32 (`train.smoke_overrides`' model); logging is quiet and the
    periodic evaluation off. Set the steps, batch size and learning rate for the stage.
    """
    c = load_config(name, arg)
    q = quickstart_config()
    for key, value in q.data.synthetic.items():
        c.data.synthetic[key] = value
    c.seed = q.seed
    c.model.preset, c.model.n_layers, c.model.d_model, c.model.d_ff = "tiny", 1, 32, 64
    c.model.vocab_size = q.model.vocab_size
    c.train.progress_bar = False
    c.train.log_every = 25
    c.eval.enabled = False
    if "report" in c:
        c.report.enabled = False
    return c


def sft_reference(
    workdir: str, law: overopt.SyntheticResponseLaw, *, steps: int = 300, pairs: int = 4096
) -> tuple[str, overopt.SyntheticResponseLaw]:
    """Trains (or finds) the SFT policy of the world's base chain in `workdir`; returns the
    workdir and `law` with `probs` = that policy's exact law over the enumerated responses.

    SFT on coin-flip-labelled pairs (`synthetic.beta = 0`): the "chosen" responses are plain
    samples of the base chain, so the policy learns π_0. DPO and RL runs start from it
    (`config.init_from`) and are regularised to it, so the KLs of every family are to this law.
    """
    c = world_config("sft")
    c.data.synthetic.beta = 0.0
    c.data.synthetic.flip_rate = 0.0
    c.data.synthetic.num_train_pairs = pairs
    c.train.batch_size = 64
    c.train.num_steps = c.train.checkpoint_every = steps
    c.optimizer.learning_rate, c.optimizer.warmup_steps = 3e-3, 10
    train.run(c, workdir)
    model, params, _ = lab.load_policy(workdir)
    logprobs = lab.response_logprobs(model, params, law)
    return workdir, law._replace(probs=np.exp(logprobs))


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


def proxy_reward_model(workdir: str, *, steps: int = 400) -> str:
    """Trains (or finds) the quickstart's proxy with the lab's small model in `workdir`:
    `configs/reward_model.py` on the quickstart's noisy pairs, its batch and learning rate."""
    c = world_config("reward_model")
    c.train.batch_size = 64
    c.train.num_steps = c.train.checkpoint_every = steps
    c.optimizer.learning_rate, c.optimizer.warmup_steps = 1e-3, 50
    train.run(c, workdir)
    return workdir
