"""Every config in configs/: loads with and without `smoke`, names things that exist, locks."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rewardjax import losses, models, train

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))
CONFIGS_BY_NAME = {p.stem: p for p in CONFIGS}
POLICY_LOSSES = {
    "dpo",
    "robust_dpo",
    "ipo",
    "slic_hinge",
    "nca",
    "bco",
    "sppo_hard",
    "apo_zero",
    "apo_down",
    "exo",
    "discopop",
}
PAIRWISE_LOSSES = {"bradley_terry", "hinge", "thurstone"}


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configs_exist():
    assert {p.stem for p in CONFIGS} >= {"reward_model", "dpo", "sft", "quickstart"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
@pytest.mark.parametrize("arg", [None, "smoke"])
def test_config_is_valid(path, arg):
    c = _load(path).get_config(arg)
    assert c.task in train.TASKS
    assert c.model.preset in models.PRESETS
    train.make_optimizer(train.experiment._resolved_optimizer(c))
    if "loss" in c:
        losses.get(c.loss.name)  # raises KeyError for an unknown name
    if c.task == "reward_model":
        assert c.head.name in models.HEADS
    if arg == "smoke":
        assert c.train.num_steps <= 10 and not c.train.progress_bar
    c.lock()
    with pytest.raises(AttributeError):
        c.train.num_stepz = 3


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_unknown_arg_is_an_error(path):
    with pytest.raises(ValueError, match="unknown"):
        _load(path).get_config("smokee")


@pytest.mark.parametrize(
    "head", ["scalar", "mlp", "ensemble", "multi_attribute", "ordinal", "mixture"]
)
def test_reward_model_head_variants_build(head):
    c = _load(CONFIGS_BY_NAME["reward_model"]).get_config(f"{head},smoke")
    config = models.RewardModelConfig(
        backbone=models.get_preset("tiny"), head=c.head.name, head_kwargs=c.head.kwargs.to_dict()
    )
    models.make_head(config.head, **dict(config.head_kwargs))


@pytest.mark.parametrize("name", sorted(POLICY_LOSSES | PAIRWISE_LOSSES))
def test_losses_take_the_calling_convention_of_the_steps(name):
    """`train.dpo_step` passes four summed log-probs [B] and `beta=`; `train.reward_model_step`
    passes (chosen, rejected) rewards [B]."""
    rng = np.random.default_rng(0)
    logps = [-rng.uniform(1, 5, 3) for _ in range(4)]
    fn = losses.get(name)
    if name in POLICY_LOSSES:
        out = fn(*logps, beta=0.1)
    else:
        out = fn(logps[0], logps[1])
    assert np.asarray(out).shape == (3,) and np.isfinite(out).all()


def test_decay_steps_default_to_the_updates_after_warmup():
    c = _load(CONFIGS[0]).get_config(None)
    c.train.num_steps, c.optimizer.grad_accum_steps, c.optimizer.warmup_steps = 1000, 4, 50
    assert train.experiment._resolved_optimizer(c).decay_steps == 1000 // 4 - 50


@pytest.mark.parametrize(
    "name, arg, kind",
    [
        ("reward_model", "listwise,smoke", "ranked"),
        ("reward_model", "rating,multi_attribute", "rating"),
        ("dpo", "kto,smoke", "unpaired"),
        ("dpo", "smoke", "pairwise"),
    ],
)
def test_layout_variants_pick_a_registered_loss_and_their_layout(name, arg, kind):
    c = _load(CONFIGS_BY_NAME[name]).get_config(arg)
    fn = losses.get(c.loss.name)
    assert train.layouts.train_kind(c.task, c.loss.name, "pairwise") == kind
    if kind == "unpaired":  # the kwargs the KTO step passes on are the loss's own
        out = fn(-np.ones(2), -np.ones(2), np.array([True, False]), 0.0, **c.loss.kwargs)
        assert np.isfinite(out).all()
