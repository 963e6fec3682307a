"""Train steps on the real tiny models against losses recomputed in NumPy from separate forwards."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewardjax.models import CausalLM, RewardModel, RewardModelConfig, get_preset
from rewardjax.train.state import TrainState
from rewardjax.train.steps import dpo_step, reference_logps, reward_model_step, sft_step

BACKBONE = get_preset("tiny", n_layers=1, d_model=32, d_ff=64, vocab_size=32)
B, T, LR = 3, 8, 0.05


def _log_sigmoid(x):
    return -np.logaddexp(0.0, -x)


def _pair_batch(seed):
    """Right-padded pairs with a 2-token prompt; the last example is a weight-0 filler."""
    rng = np.random.default_rng(seed)
    batch = {
        "margin": np.array([0.5, -0.2, 1.0], np.float32),
        "weight": np.array([1.0, 1.0, 0.0], np.float32),
    }
    for name, lengths in (("chosen", [8, 5, 6]), ("rejected", [6, 7, 4])):
        tokens = rng.integers(1, BACKBONE.vocab_size, (B, T)).astype(np.int32)
        mask = (np.arange(T)[None] < np.array(lengths)[:, None]).astype(np.int32)
        completion = mask * (np.arange(T)[None] >= 2)
        batch.update(
            {
                f"{name}_tokens": tokens * mask,
                f"{name}_mask": mask,
                f"{name}_completion_mask": completion.astype(np.int32),
            }
        )
    return batch


def _sgd_state(params):
    return TrainState.create(params=params, tx=optax.sgd(LR), rng=jax.random.PRNGKey(0))


def _check_update_is_gradient_of(numpy_loss, old, new, seed=0, eps=1e-3):
    """SGD moved params by -LR * grad: <grad, v> must match a central difference of numpy_loss
    along a random unit direction v."""
    leaves_old, treedef = jax.tree.flatten(old)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves_old))
    v = [jax.random.normal(k, x.shape) for k, x in zip(keys, leaves_old)]
    norm = np.sqrt(sum(float(jnp.vdot(d, d)) for d in v))
    v = [d / norm for d in v]
    grad_dot_v = sum(
        float(jnp.vdot((o - n) / LR, d)) for o, n, d in zip(leaves_old, jax.tree.leaves(new), v)
    )
    shifted = lambda s: jax.tree.unflatten(treedef, [o + s * d for o, d in zip(leaves_old, v)])
    fd = (numpy_loss(shifted(eps)) - numpy_loss(shifted(-eps))) / (2 * eps)
    np.testing.assert_allclose(grad_dot_v, fd, rtol=2e-2, atol=2e-4)


def test_reward_model_step_with_margin_and_centring_matches_numpy_bradley_terry():
    center_coef = 0.3
    model = RewardModel(RewardModelConfig(backbone=BACKBONE, head="scalar"))
    batch = _pair_batch(0)
    params = nn.unbox(
        jax.jit(model.init)(jax.random.PRNGKey(1), batch["chosen_tokens"], batch["chosen_mask"])
    )

    apply = jax.jit(model.apply)

    def numpy_loss(p):
        r_c = np.asarray(apply(p, batch["chosen_tokens"], batch["chosen_mask"]).reward)
        r_r = np.asarray(apply(p, batch["rejected_tokens"], batch["rejected_mask"]).reward)
        z = r_c - r_r - batch["margin"]
        per = -_log_sigmoid(z) + center_coef * (r_c + r_r) ** 2
        return float(np.sum(per * batch["weight"]) / np.sum(batch["weight"])), r_c, r_r

    step = jax.jit(
        lambda s, b: reward_model_step(
            s, b, jax.random.PRNGKey(0), model=model, use_margin=True, center_coef=center_coef
        )
    )
    new_state, metrics = step(_sgd_state(params), batch)
    want, r_c, r_r = numpy_loss(params)
    np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
    real = batch["weight"] > 0
    np.testing.assert_allclose(metrics["accuracy"], np.mean(r_c[real] > r_r[real]))
    np.testing.assert_allclose(metrics["reward_margin"], np.mean((r_c - r_r)[real]), rtol=1e-5)
    assert int(new_state.step) == 1
    _check_update_is_gradient_of(lambda p: numpy_loss(p)[0], params, new_state.params)


def test_reward_model_step_ensemble_trains_every_member_on_the_pair():
    model = RewardModel(
        RewardModelConfig(backbone=BACKBONE, head="ensemble", head_kwargs={"num_members": 3})
    )
    batch = _pair_batch(1)
    params = nn.unbox(
        jax.jit(model.init)(jax.random.PRNGKey(2), batch["chosen_tokens"], batch["chosen_mask"])
    )
    _, metrics = jax.jit(lambda s, b: reward_model_step(s, b, None, model=model))(
        _sgd_state(params), batch
    )
    apply = jax.jit(model.apply)
    r_c = np.asarray(apply(params, batch["chosen_tokens"], batch["chosen_mask"]).reward)
    r_r = np.asarray(apply(params, batch["rejected_tokens"], batch["rejected_mask"]).reward)
    assert r_c.shape == (3, B)
    per = -_log_sigmoid(r_c - r_r).mean(axis=0)
    np.testing.assert_allclose(metrics["loss"], np.sum(per * batch["weight"]) / 2.0, rtol=1e-5)


def _pair_logps(logits_fn, params, batch, name):
    return _numpy_completion_logps(
        logits_fn, params, *(batch[f"{name}_{k}"] for k in ("tokens", "mask", "completion_mask"))
    )


def _numpy_completion_logps(logits_fn, params, tokens, mask, completion):
    """Summed completion log-probs and token counts in float64 from the model's logits."""
    logits = np.asarray(logits_fn(params, tokens, mask), np.float64)
    logp = (
        logits
        - np.log(np.sum(np.exp(logits - logits.max(-1, keepdims=True)), -1, keepdims=True))
        - logits.max(-1, keepdims=True)
    )
    picked = np.take_along_axis(logp[:, :-1], tokens[:, 1:, None], axis=-1)[..., 0]
    return np.sum(picked * completion[:, 1:], axis=-1), completion[:, 1:].sum(-1)


@functools.cache
def _lm_and_params():
    lm = CausalLM(BACKBONE)
    init = jax.jit(lambda k: nn.unbox(lm.init(k, jnp.ones((1, T), jnp.int32))))
    logits_fn = jax.jit(lambda p, t, m: lm.apply(p, t, segment_ids=m)[0])
    return logits_fn, init(jax.random.PRNGKey(3)), init(jax.random.PRNGKey(4))


def test_dpo_step_with_on_the_fly_reference_matches_numpy():
    logits_fn, params, ref_params = _lm_and_params()
    batch = _pair_batch(2)
    with_ref = jax.jit(lambda p, b: reference_logps(p, b, logits_fn=logits_fn))(ref_params, batch)
    beta = 0.3

    def numpy_loss(p):
        lp = {n: _pair_logps(logits_fn, p, batch, n)[0] for n in ("chosen", "rejected")}
        ref = {n: _pair_logps(logits_fn, ref_params, batch, n)[0] for n in ("chosen", "rejected")}
        z = beta * ((lp["chosen"] - ref["chosen"]) - (lp["rejected"] - ref["rejected"]))
        return float(np.sum(-_log_sigmoid(z) * batch["weight"]) / 2.0), ref

    want, ref = numpy_loss(params)
    np.testing.assert_allclose(with_ref["ref_chosen_logps"], ref["chosen"], rtol=1e-5)
    np.testing.assert_allclose(with_ref["ref_rejected_logps"], ref["rejected"], rtol=1e-5)
    step = jax.jit(lambda s, b: dpo_step(s, b, None, logits_fn=logits_fn, beta=beta))
    new_state, metrics = step(_sgd_state(params), with_ref)
    np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
    _check_update_is_gradient_of(lambda p: numpy_loss(p)[0], params, new_state.params)


def test_simpo_and_orpo_steps_are_reference_free_and_match_numpy():
    logits_fn, params, _ = _lm_and_params()
    batch = _pair_batch(3)  # no reference log-probs in the batch
    (lc, nc), (lr, nr) = (_pair_logps(logits_fn, params, batch, n) for n in ("chosen", "rejected"))
    w = batch["weight"]
    _, m = jax.jit(
        lambda s, b: dpo_step(
            s, b, None, logits_fn=logits_fn, loss_name="simpo", beta=2.0, loss_kwargs={"gamma": 0.5}
        )
    )(_sgd_state(params), batch)
    simpo = -_log_sigmoid(2.0 * (lc / nc - lr / nr) - 0.5)
    np.testing.assert_allclose(m["loss"], np.sum(simpo * w) / 2.0, rtol=1e-5)

    _, m = jax.jit(
        lambda s, b: dpo_step(
            s, b, None, logits_fn=logits_fn, loss_name="orpo", loss_weight=0.1, nll_weight=1.0
        )
    )(_sgd_state(params), batch)
    log_odds = lambda lp: lp - np.log1p(-np.exp(lp))
    orpo = -lc / nc + 0.1 * -_log_sigmoid(log_odds(lc / nc) - log_odds(lr / nr))
    np.testing.assert_allclose(m["loss"], np.sum(orpo * w) / 2.0, rtol=1e-5)


def test_dpo_step_without_reference_names_the_missing_field():
    logits_fn, params, _ = _lm_and_params()
    with pytest.raises(KeyError, match="ref_chosen_logps"):
        dpo_step(_sgd_state(params), _pair_batch(0), None, logits_fn=logits_fn)


def test_sft_step_is_mean_token_nll():
    logits_fn, params, _ = _lm_and_params()
    pairs = _pair_batch(4)
    batch = {
        "tokens": pairs["chosen_tokens"],
        "mask": pairs["chosen_mask"],
        "completion_mask": pairs["chosen_completion_mask"],
        "weight": pairs["weight"],
    }

    def numpy_loss(p):
        lp, n = _numpy_completion_logps(
            logits_fn, p, batch["tokens"], batch["mask"], batch["completion_mask"]
        )
        return float(-np.sum(lp * batch["weight"]) / np.sum(n * batch["weight"]))

    new_state, metrics = jax.jit(lambda s, b: sft_step(s, b, None, logits_fn=logits_fn))(
        _sgd_state(params), batch
    )
    np.testing.assert_allclose(metrics["loss"], numpy_loss(params), rtol=1e-5)
    _check_update_is_gradient_of(numpy_loss, params, new_state.params)
