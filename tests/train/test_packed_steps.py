"""Packed batches (rewardjax.data.packing) in the train steps: the reward-model pairwise step
(rewards of every head), the ranked-list step, the DPO step (with its reference log-probs) and the
SFT step give the rewards, losses, metrics and gradients (parameters after one SGD step) of the
unpacked, unshared computation on the padded batch of the same examples; and a smoke SFT run gives
the same metrics with config.train.packing on and off (the reward-model and DPO smoke runs:
tests/train/test_prefix_sharing_runs.py)."""

import functools
import importlib.util
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewardjax import data, train
from rewardjax.data import packing
from rewardjax.models import (
    HEADS,
    CausalLM,
    RewardModel,
    RewardModelConfig,
    get_preset,
    score_packed,
    score_pairs,
)
from rewardjax.train.state import TrainState
from rewardjax.train.steps import (
    dpo_step,
    ranked_reward_model_step,
    reference_logps,
    reward_model_step,
    sft_step,
)

BACKBONE = get_preset("tiny", n_layers=1, d_model=32, d_ff=64, vocab_size=40)
T = 12
# Per example: prompt length, then the response lengths (unequal; an empty prompt and an empty
# response included). The last example is a weight-0 filler, as the pipeline adds.
LENGTHS = [
    (3, (4, 2, 5)),
    (1, (5, 6, 1)),
    (4, (1, 3, 0)),
    (2, (8, 7, 3)),
    (0, (3, 2, 4)),
    (5, (2, 4, 1)),
]
WEIGHTS = [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
HEAD_KWARGS = {
    "scalar": {},
    "multi_attribute": {"num_attributes": 3},
    "ensemble": {"num_members": 2},
    "ordinal": {"num_bins": 3, "bin_values": [0.0, 1.0, 2.0]},
    "mixture": {"num_components": 2},
}


def _examples(kind, k):
    rng = np.random.default_rng(0)
    out = []
    for i, (p, cs) in enumerate(LENGTHS):
        if kind == "sft" and p == 0:
            p = 1  # an SFT row's first token is never predicted: the prompt holds it
        prompt = rng.integers(1, BACKBONE.vocab_size, p)
        seqs = tuple(
            np.concatenate([prompt, rng.integers(1, BACKBONE.vocab_size, c)]).astype(np.int32)
            for c in cs[:k]
        )
        e = {"seqs": seqs, "prompt_len": p}
        if kind == "pairwise":
            e.update(margin=float(i), subset=0)
        if kind == "ranked":
            e["ranks"] = np.asarray(rng.permutation(k), np.int32)
        out.append(e)
    return out


def _batches(kind, k):
    """The padded batch and the packed batch (rows of 18 or 24 tokens, one empty row more than
    first-fit decreasing needs) of the same examples."""
    examples = _examples(kind, k)
    padded = {key: jnp.asarray(v) for key, v in data.collate(kind, examples, WEIGHTS, T).items()}
    lengths = packing.example_lengths(examples)
    length = 24 if k == 3 else 18
    bins = packing.first_fit_decreasing(lengths, length=length, slots=3)
    packed = packing.pack_examples(
        kind, examples, WEIGHTS, length=length, slots=3, rows=len(bins) + 1
    )
    assert packed["tokens"].shape[0] < len(examples)  # some rows hold several examples
    return padded, {key: jnp.asarray(v) for key, v in packed.items()}


def _unpack(packed, x, axis=0):
    """Per-slot values `[..., R, S, ...]` (R, S at `axis`) back in batch order `[..., B, ...]`."""
    index = np.asarray(packed["example"]).reshape(-1)
    x = np.asarray(x)
    x = x.reshape(*x.shape[:axis], -1, *x.shape[axis + 2 :])
    order = np.argsort(np.where(index < 0, len(index) + 1, index), kind="stable")
    return np.take(x, order[: (index >= 0).sum()], axis=axis)


def _state(params):
    return TrainState.create(params=params, tx=optax.sgd(1.0), rng=jax.random.PRNGKey(0))


def _assert_same_step(a, b):
    """Metrics and the parameters after one SGD step (lr 1: the gradients) agree."""
    (state_a, metrics_a), (state_b, metrics_b) = a, b
    for key in metrics_a:
        np.testing.assert_allclose(
            metrics_b[key], metrics_a[key], rtol=1e-5, atol=1e-5, err_msg=key
        )
    assert float(metrics_b["padding_fraction"]) > 0
    for x, y in zip(jax.tree.leaves(state_a.params), jax.tree.leaves(state_b.params)):
        np.testing.assert_allclose(y, x, rtol=1e-5, atol=1e-6)


def test_packed_rewards_equal_the_unshared_rows_for_every_head():
    padded, packed = _batches("pairwise", 2)
    models = {
        head: RewardModel(
            RewardModelConfig(backbone=BACKBONE, head=head, head_kwargs=HEAD_KWARGS[head])
        )
        for head in sorted(HEADS)
    }
    init = lambda m: m.init(jax.random.PRNGKey(1), padded["chosen_tokens"], padded["chosen_mask"])
    params = {head: init(m) for head, m in models.items()}

    @jax.jit  # one compilation for every head
    def scores(params):
        return {
            head: (score_pairs(m, params[head], padded), score_packed(m, params[head], packed))
            for head, m in models.items()
        }

    # Example 4 has an empty prompt: no context token (the padded row reads its last padding
    # position, the packed one the example's first token); heads without context agree on it.
    real = np.asarray([p > 0 for p, _ in LENGTHS])
    for head, ((chosen, rejected), out) in jax.device_get(scores(params)).items():
        keep = np.ones_like(real) if head == "scalar" else real
        axis = out.reward.ndim - 3  # [*E, R, S, K]
        reward = _unpack(packed, out.reward, axis)[..., keep, :]
        for k, side in enumerate((chosen, rejected)):
            np.testing.assert_allclose(
                reward[..., k], side.reward[..., keep], rtol=1e-5, atol=1e-5, err_msg=head
            )
        for key, value in chosen.aux.items():
            got = np.take(_unpack(packed, out.aux[key], axis), 0, axis=axis + 1)
            np.testing.assert_allclose(
                np.take(got, np.flatnonzero(keep), axis=axis),
                np.take(value, np.flatnonzero(keep), axis=axis),
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"{head}: {key}",
            )


def test_reward_model_step_on_a_packed_batch_equals_the_padded_step():
    padded, packed = _batches("pairwise", 2)
    model = RewardModel(RewardModelConfig(backbone=BACKBONE, head="scalar"))
    params = model.init(jax.random.PRNGKey(1), padded["chosen_tokens"], padded["chosen_mask"])
    step = jax.jit(
        functools.partial(reward_model_step, model=model, use_margin=True, center_coef=0.1)
    )
    rng = jax.random.PRNGKey(0)
    _assert_same_step(step(_state(params), padded, rng), step(_state(params), packed, rng))


def test_ranked_step_on_a_packed_batch_equals_the_padded_step():
    padded, packed = _batches("ranked", 3)
    model = RewardModel(RewardModelConfig(backbone=BACKBONE, head="scalar", max_responses=3))
    tokens = padded["tokens"][:, 0]
    params = model.init(jax.random.PRNGKey(1), tokens, padded["mask"][:, 0])
    step = jax.jit(
        functools.partial(ranked_reward_model_step, model=model, loss_name="plackett_luce")
    )
    rng = jax.random.PRNGKey(0)
    _assert_same_step(step(_state(params), padded, rng), step(_state(params), packed, rng))


def _policy():
    model = CausalLM(BACKBONE)
    params = model.init(jax.random.PRNGKey(2), jnp.ones((2, T), jnp.int32))
    logits_fn = lambda p, tokens, mask, branch_ids=None: model.apply(
        p, tokens, segment_ids=mask, branch_ids=branch_ids
    )[0]
    return params, logits_fn


def test_dpo_step_and_reference_logps_on_a_packed_batch_equal_the_padded_ones():
    padded, packed = _batches("pairwise", 2)
    params, logits_fn = _policy()
    ref_params = jax.tree.map(lambda x: x * 1.5, params)
    ref = jax.jit(functools.partial(reference_logps, logits_fn=logits_fn))
    padded, packed = ref(ref_params, padded), ref(ref_params, packed)
    for key in ("ref_chosen_logps", "ref_rejected_logps"):
        assert packed[key].shape == packed["weight"].shape
        np.testing.assert_allclose(_unpack(packed, packed[key]), padded[key], rtol=1e-5)
    step = jax.jit(functools.partial(dpo_step, logits_fn=logits_fn, beta=0.5, nll_weight=0.3))
    rng = jax.random.PRNGKey(0)
    _assert_same_step(step(_state(params), padded, rng), step(_state(params), packed, rng))


def test_sft_step_on_a_packed_batch_equals_the_padded_step():
    padded, packed = _batches("sft", 1)
    params, logits_fn = _policy()
    step = jax.jit(functools.partial(sft_step, logits_fn=lambda p, t, m: logits_fn(p, t, m)))
    rng = jax.random.PRNGKey(0)
    _assert_same_step(step(_state(params), padded, rng), step(_state(params), packed, rng))


def _sft_config(packed):
    path = Path(__file__).resolve().parents[2] / "configs" / "sft.py"
    spec = importlib.util.spec_from_file_location("sft", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = module.get_config("smoke")
    c.train.num_steps, c.train.log_every, c.train.checkpoint_every = 2, 1, 2
    c.data.synthetic.num_train_pairs, c.data.synthetic.num_eval_pairs = 16, 16
    c.train.packing = packed
    c.train.packing_length = 24  # two smoke examples (prompt 4 + response 8) per row
    c.eval.enabled = False
    return c


def test_sft_smoke_run_metrics_are_the_same_with_packing_on_and_off(tmp_path):
    off = train.run(_sft_config(False), str(tmp_path / "off"))["train"]
    on = train.run(_sft_config(True), str(tmp_path / "on"))["train"]
    # Synthetic examples all have one length: two per row exactly, no padding.
    assert on["padding_fraction"] == 0 and "padding_fraction" not in off
    keys = sorted(k for k in off if k not in ("step", "time", "steps_per_sec"))
    assert keys
    for k in keys:
        if isinstance(off[k], float | int):
            assert on[k] == pytest.approx(off[k], rel=1e-5, abs=1e-5), k
