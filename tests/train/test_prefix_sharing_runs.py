"""config.train.prefix_sharing and config.train.packing end to end: a smoke reward-model run (with
its evaluation) and a smoke DPO run give the same metrics with the switches on (pairs as one row
[prompt | chosen | rejected], arXiv 2410.20305; packed training batches) and off, and the shared
path is the one actually taken; ranked lists give the same loss and gradient as one shared row
per list. (The SFT smoke run with packing on and off: tests/train/test_packed_steps.py.)"""

import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import train
from rewardjax.models import RewardModel, RewardModelConfig, get_preset, prefix
from rewardjax.models import reward_model as reward_model_module
from rewardjax.train import defaults
from rewardjax.train.steps import policy as policy_module
from rewardjax.train.steps import ranked_loss


def _config(task, sharing, packing=False):
    c = defaults.reward_model_config() if task == "reward_model" else _dpo_config()
    defaults.smoke_overrides(c)
    c.train.num_steps, c.train.log_every, c.train.checkpoint_every = 1, 1, 1
    c.data.synthetic.num_train_pairs, c.data.synthetic.num_eval_pairs = 16, 16
    c.train.prefix_sharing = sharing
    c.train.packing = packing
    c.train.packing_length = 40  # two smoke pairs (4 + 8 + 8 tokens) per row
    c.eval.enabled = task == "reward_model"
    return c


def _dpo_config():
    path = Path(__file__).resolve().parents[2] / "configs" / "dpo.py"
    spec = importlib.util.spec_from_file_location("dpo", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("task", ["reward_model", "dpo"])
def test_smoke_run_metrics_are_the_same_with_and_without_prefix_sharing_and_packing(
    task, tmp_path, monkeypatch
):
    """Off (padded rows apart) against packed training batches (the defaults; the reward model's
    evaluation shares prefixes on device) and, for DPO, padded batches shared on device."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs["length"])
        return prefix.share_prefix(*args, **kwargs)

    module = reward_model_module if task == "reward_model" else policy_module
    monkeypatch.setattr(module, "share_prefix", spy)
    off = train.run(_config(task, False), str(tmp_path / "off"))
    assert not calls
    variants = {"packed": (True, True)}
    if task == "dpo":
        variants["shared"] = (True, False)
    for name, (sharing, packing) in variants.items():
        calls.clear()
        on = train.run(_config(task, sharing, packing), str(tmp_path / name))
        # Synthetic smoke pairs: prompt 4 + two responses of 8 = 20 tokens per shared row
        # instead of 2 rows of 12; packed DPO training never shares on device.
        assert set(calls) == (set() if (task, name) == ("dpo", "packed") else {20})
        assert ("padding_fraction" in on["train"]) == packing
        sections = ("train", "eval") if task == "reward_model" else ("train",)
        skip = ("step", "time", "steps_per_sec", "padding_fraction")
        for section in sections:
            a, b = off[section], on[section]
            keys = sorted(k for k in a if k not in skip)
            assert keys and keys == sorted(k for k in b if k not in skip)
            for k in keys:
                if isinstance(a[k], float | int):
                    assert b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-5), (name, section, k)


def test_ranked_list_loss_and_gradient_are_the_same_with_one_shared_row_per_list():
    """Ranked lists of K = 3 (Plackett-Luce): each list as one row [prompt | y_1 | y_2 | y_3]."""
    backbone = get_preset("tiny", n_layers=1, d_model=32, d_ff=64, vocab_size=40)
    rng = np.random.default_rng(0)
    b, k, t = 3, 3, 9
    tokens = np.zeros((b, k, t), np.int32)
    mask, completion = np.zeros_like(tokens), np.zeros_like(tokens)
    for i, (p, cs) in enumerate([(2, (3, 7, 1)), (4, (5, 2, 4)), (1, (8, 6, 2))]):
        prompt = rng.integers(1, 40, p)
        for j, c in enumerate(cs):
            tokens[i, j, : p + c] = np.concatenate([prompt, rng.integers(1, 40, c)])
            mask[i, j, : p + c], completion[i, j, p : p + c] = 1, 1
    batch = {
        "tokens": tokens,
        "mask": mask,
        "completion_mask": completion,
        "ranks": np.array([[0, 1, 2], [2, 0, 1], [1, 1, 0]], np.int32),
        "weight": np.ones(b, np.float32),
    }
    model = RewardModel(RewardModelConfig(backbone=backbone, head="scalar", max_responses=k))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), tokens[:, 0], mask[:, 0])

    def loss(p, prefix_length):
        return ranked_loss(p, batch, model=model, prefix_length=prefix_length)[0]

    # Longest list: 1 + 8 + 6 + 2 = 17 tokens instead of 3 rows of 9.
    both = jax.jit(lambda p: jax.value_and_grad(loss)(p, None) + jax.value_and_grad(loss)(p, 17))
    l_apart, g_apart, l_shared, g_shared = both(params)
    np.testing.assert_allclose(l_shared, l_apart, rtol=1e-5)
    for x, y in zip(jax.tree.leaves(g_apart), jax.tree.leaves(g_shared), strict=True):
        np.testing.assert_allclose(y, x, atol=1e-5, rtol=1e-4)
    assert float(jnp.abs(l_apart)) > 0
