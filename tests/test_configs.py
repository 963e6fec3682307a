"""Every config in configs/: loads with and without `smoke`, names things that exist, locks; parses
its argument with `defaults.parse_arg`; the reward model's head variants score a batch."""

import importlib.util
import re
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

from rewardjax import losses, models, train
from rewardjax.train import defaults

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
    """Every config rejects an unknown option and an unknown key through `parse_arg`: the message
    names the config file, the bad item and the allowed options."""
    module = _load(path)
    with pytest.raises(ValueError, match="unknown option") as info:
        module.get_config("smoke,smokee")
    message = str(info.value)
    assert f"configs/{path.stem}.py" in message and "'smokee'" in message
    assert re.search(r"allowed options: [^()]*\bsmoke\b", message), message
    with pytest.raises(ValueError, match=rf"configs/{path.stem}\.py.*unknown key 'bogus'"):
        module.get_config("bogus=1")


# The documented arguments of each config (its module docstring) and what each must set.
DOCUMENTED = {
    "dpo": {
        "kto": {"loss.name": "kto", "train.num_steps": 1000},
        "smoke": {"loss.name": "dpo", "train.num_steps": 6},
        "kto,smoke": {"loss.name": "kto", "train.num_steps": 6},
        "beta=0.5": {"loss.beta": 0.5},
        " kto , beta=2 ,": {"loss.name": "kto", "loss.beta": 2.0},
    },
    "quickstart": {
        "smoke": {"train.num_steps": 6, "report.bon_prompts": 4},
        "vocab=16": {"data.synthetic.vocab_size": 16, "model.vocab_size": 17},
        "smoke,vocab=5": {"data.synthetic.vocab_size": 5, "model.vocab_size": 6},
    },
    "reward_model": {
        "smoke": {"head.name": "scalar", "train.num_steps": 6},
        "ensemble,smoke": {"head.name": "ensemble", "head.kwargs.num_members": 4},
        "ensemble,size=8": {"head.name": "ensemble", "head.kwargs.num_members": 8},
        "mlp,size=16": {"head.name": "scalar", "head.kwargs.hidden_dim": 16},
        "multi_attribute,size=5": {"head.kwargs.num_attributes": 5},
        "ordinal,size=3": {"head.name": "ordinal", "head.kwargs.num_bins": 3},
        "mixture,size=2": {"head.name": "mixture", "head.kwargs.num_components": 2},
        "listwise,smoke": {"loss.name": "plackett_luce", "data.layout": "ranked"},
        "rating,multi_attribute": {"loss.name": "rating_regression", "data.layout": "rating"},
    },
    "sft": {"smoke": {"train.num_steps": 6}},
    "judge": {
        "smoke": {"task": "sft", "train.num_steps": 6, "data.judge.enabled": True},
        "dpo": {"task": "dpo", "loss.name": "dpo", "model.vocab_size": 12},
        "dpo,smoke": {"task": "dpo", "loss.name": "dpo", "train.num_steps": 6},
    },
    "prm": {
        "smoke": {"loss.name": "step_cross_entropy", "train.num_steps": 10},
        "implicit,smoke": {"loss.name": "implicit_prm_outcome_loss", "train.num_steps": 10},
        "mc,rollouts=4": {"prm.labels": "mc", "prm.num_rollouts": 4},
        "binary,step=4": {"prm.labels": "binary", "prm.step_size": 4},
        "exact": {"prm.labels": "exact"},
    },
    "rl": {
        "smoke": {"rl.advantage": "grpo", "train.num_steps": 4},
        "grpo": {"rl.advantage": "grpo", "rl.kl.placement": "in_loss", "rl.kl.estimator": "k3"},
        "ppo,smoke": {"rl.advantage": "gae", "rl.kl.controller": "adaptive", "train.num_steps": 4},
        "dr_grpo": {"rl.kl.beta": 0.0, "rl.aggregation": "seq_mean_token_sum_norm"},
        "dapo": {"rl.filter_groups": True, "rl.overlong": "penalty"},
        "gspo": {"rl.policy_loss": "gspo"},
        "rloo": {"rl.advantage": "rloo"},
        "reinforce_pp": {"rl.advantage": "reinforce_pp"},
        "remax": {"rl.advantage": "remax"},
    },
}


def test_every_config_documents_its_arguments():
    """A new config file adds its documented arguments to DOCUMENTED."""
    assert set(CONFIGS_BY_NAME) <= set(DOCUMENTED)


@pytest.mark.parametrize(
    "name, arg",
    [(n, a) for n, args in DOCUMENTED.items() if n in CONFIGS_BY_NAME for a in args],
    ids=str,
)
def test_documented_arguments_parse_and_set_their_fields(name, arg):
    c = _load(CONFIGS_BY_NAME[name]).get_config(arg)
    for field, expected in DOCUMENTED[name][arg].items():
        value = c
        for part in field.split("."):
            value = value[part]
        assert value == expected and type(value) is type(expected), (field, value)
    doc = _load(CONFIGS_BY_NAME[name]).__doc__
    for item in arg.split(","):
        key = item.strip().partition("=")[0]
        assert not key or f"`{key}`" in doc or f"`{key}=<" in doc, f"{key} undocumented"


BAD_ARGUMENTS = [
    ("rl", "ppo,grpo,smoke", r"\['grpo', 'ppo'\] exclude each other"),
    ("reward_model", "ensemble,mixture", r"\['ensemble', 'mixture'\] exclude each other"),
    ("reward_model", "listwise,rating", r"\['listwise', 'rating'\] exclude each other"),
    ("reward_model", "scalar,size=3", r"size= needs a head with a size"),
    ("reward_model", "ensemble,size=four", r"size='four' is not a valid int; write e.g. size=8"),
    ("dpo", "beta", r"'beta' needs a value: beta=<float>"),
    ("dpo", "beta=", r"'beta=' needs a value"),
    ("dpo", "beta=0.1,beta=0.2", r"beta= is given twice"),
    ("quickstart", "vocab=1.5", r"vocab='1.5' is not a valid int"),
]


@pytest.mark.parametrize(
    "name, arg, match", [b for b in BAD_ARGUMENTS if b[0] in CONFIGS_BY_NAME], ids=str
)
def test_bad_arguments_name_the_file_and_the_fix(name, arg, match):
    with pytest.raises(ValueError, match=rf"configs/{name}\.py.*{match}"):
        _load(CONFIGS_BY_NAME[name]).get_config(arg)


def test_parse_arg_types_values_and_checks_exclusive_groups():
    algorithms = {"ppo", "grpo", "dr_grpo", "dapo", "gspo", "rloo", "reinforce_pp", "remax"}
    kw = dict(
        options={*algorithms, "smoke"},
        values={"n": int, "kl": float, "reward": str, "whiten": bool},
        exclusive=[algorithms],
        config_file="configs/rl.py",
    )
    parsed = defaults.parse_arg("grpo,smoke,n=8,kl=1e-3,reward=gold,whiten=False", **kw)
    assert parsed.options == {"grpo", "smoke"}
    assert parsed.values == {"n": 8, "kl": 0.001, "reward": "gold", "whiten": False}
    assert [type(v) for v in parsed.values.values()] == [int, float, str, bool]
    options, values = defaults.parse_arg("whiten=yes", **kw)
    assert options == frozenset() and values == {"whiten": True}
    assert defaults.parse_arg(None, **kw) == defaults.parse_arg("", **kw) == (frozenset(), {})
    with pytest.raises(ValueError, match=r"configs/rl\.py.*\['grpo', 'ppo'\] exclude each other"):
        defaults.parse_arg("ppo,grpo", **kw)
    with pytest.raises(
        ValueError, match=r"whiten='maybe' is not a valid bool; write e.g. whiten=true"
    ):
        defaults.parse_arg("whiten=maybe", **kw)
    with pytest.raises(ValueError, match=r"n='2.5' is not a valid int"):
        defaults.parse_arg("n=2.5", **kw)
    with pytest.raises(ValueError, match=r"unknown option 'trpo'; allowed options: dapo, dr_grpo"):
        defaults.parse_arg("trpo", **kw)
    with pytest.raises(ValueError, match=r"unknown key 'm'.*allowed keys: kl=<float>, n=<int>"):
        defaults.parse_arg("m=3", **kw)


# Head variant of configs/reward_model.py -> (module class, reward shape for a batch of B=3, the
# path and shape of the parameter that shows the variant's size on the smoke backbone, D=32).
HEAD_VARIANTS = {
    "scalar": (models.heads.ScalarHead, (3,), ("out", "kernel", (32, 1))),
    "mlp": (models.heads.ScalarHead, (3,), ("hidden", "kernel", (32, 128))),
    "ensemble": (models.heads.EnsembleHead, (4, 3), ("members", "out", "kernel", (4, 32, 1))),
    "multi_attribute": (models.heads.MultiAttributeHead, (3,), ("attributes", "kernel", (32, 4))),
    "ordinal": (models.heads.OrdinalHead, (3,), ("logits", "kernel", (32, 9))),
    "mixture": (models.heads.MixtureHead, (3,), ("components", "kernel", (32, 4))),
}


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("head", sorted(HEAD_VARIANTS))
def test_reward_model_head_variants_build(head):
    """Each head variant of the config builds the head class it names; the reward model on the
    smoke backbone initialises (shapes traced by `jax.eval_shape`, no compile) with the variant's
    size and scores a batch as [B] ([E, B] for the ensemble); the head itself scores features as a
    NumPy reference written here says (linear, MLP, members, gated attributes, bins, mixture)."""
    c = _load(CONFIGS_BY_NAME["reward_model"]).get_config(f"{head},smoke")
    kwargs = c.head.kwargs.to_dict()
    cls, shape, (*path, param_shape) = HEAD_VARIANTS[head]
    assert type(models.make_head(c.head.name, **kwargs)) is cls

    backbone = models.get_preset(
        c.model.preset, n_layers=c.model.n_layers, d_model=c.model.d_model, d_ff=c.model.d_ff
    )
    model = models.RewardModel(models.RewardModelConfig(backbone, c.head.name, kwargs))
    tokens = np.array([[5, 6, 7, 8, 0], [9, 10, 11, 0, 0], [5, 6, 7, 9, 12]], np.int32)
    mask = (tokens > 0).astype(np.int32)
    completion = np.array([[0, 0, 1, 1, 0], [0, 1, 1, 0, 0], [0, 0, 1, 1, 1]], np.int32)
    params = nn.unbox(jax.eval_shape(model.init, jax.random.key(0), tokens, mask, completion))
    leaf = params["params"]["head"]
    for key in path:
        leaf = leaf[key]
    assert leaf.shape == param_shape
    out = jax.eval_shape(model.apply, params, tokens, mask, completion)
    assert out.reward.shape == shape and out.reward.dtype == np.float32

    rng = np.random.default_rng(0)
    h, ctx = (rng.normal(size=(3, c.model.d_model)).astype(np.float32) for _ in range(2))
    module = models.make_head(c.head.name, **kwargs)
    p = nn.unbox(jax.jit(module.init)(jax.random.key(1), h, ctx))
    p = jax.tree.map(np.asarray, p)["params"]
    out = jax.jit(module.apply)({"params": p}, h, ctx)
    reward = np.asarray(out.reward)
    assert reward.shape == shape and np.ptp(reward, axis=-1).min() > 0

    def dense(x, q):
        return x @ q["kernel"] + q["bias"]

    if head == "scalar":
        expected = dense(h, p["out"])[:, 0]
    elif head == "mlp":
        hidden = dense(h, p["hidden"])
        expected = dense(hidden / (1 + np.exp(-hidden)), p["out"])[:, 0]  # SiLU
    elif head == "ensemble":
        q = p["members"]["out"]
        expected = np.einsum("bd,edk->ebk", h, q["kernel"])[..., 0] + q["bias"][:, None, 0]
    elif head == "multi_attribute":  # attributes weighted by a softmax gate on the context
        expected = (_softmax(dense(ctx, p["gate"]["logits"])) * dense(h, p["attributes"])).sum(-1)
    elif head == "ordinal":  # the mean of the bins 1..9 under the softmax over them
        expected = _softmax(dense(h, p["logits"])) @ np.arange(1, 10)
    else:  # components weighted by a softmax router on the context
        router = _softmax(dense(ctx, p["router"]["logits"]))
        expected = (router * dense(h, p["components"])).sum(-1)
    np.testing.assert_allclose(reward, expected, rtol=1e-4, atol=1e-5)


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
    assert train.tasks.get(c.task).layouts(c, "pairwise", None)[0] == kind
    if kind == "unpaired":  # the kwargs the KTO step passes on are the loss's own
        out = fn(-np.ones(2), -np.ones(2), np.array([True, False]), 0.0, **c.loss.kwargs)
        assert np.isfinite(out).all()
