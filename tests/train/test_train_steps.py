"""Train steps on the real tiny models against losses recomputed in NumPy from separate forwards
(pairs, ranked lists, ratings, DPO family, KTO, SFT)."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rewardjax.models import CausalLM, RewardModel, RewardModelConfig, get_preset
from rewardjax.train.state import TrainState
from rewardjax.train.steps import (
    dpo_step,
    kto_loss,
    kto_reference_logps,
    kto_step,
    mismatched_rows,
    multi_response_rows,
    ranked_reward_model_step,
    rating_reward_model_step,
    reference_logps,
    reward_model_step,
    sft_step,
)

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
    # The metrics report SimPO's own implicit reward, beta * log-prob / length.
    np.testing.assert_allclose(m["reward_chosen"], np.sum(2.0 * lc / nc * w) / 2.0, rtol=1e-5)

    _, m = jax.jit(
        lambda s, b: dpo_step(
            s, b, None, logits_fn=logits_fn, loss_name="orpo", loss_weight=0.1, nll_weight=1.0
        )
    )(_sgd_state(params), batch)
    log_odds = lambda lp: lp - np.log1p(-np.exp(lp))
    orpo = -lc / nc + 0.1 * -_log_sigmoid(log_odds(lc / nc) - log_odds(lr / nr))
    np.testing.assert_allclose(m["loss"], np.sum(orpo * w) / 2.0, rtol=1e-5)
    margin = log_odds(lc / nc) - log_odds(lr / nr)
    np.testing.assert_allclose(m["reward_margin"], np.sum(margin * w) / 2.0, rtol=1e-4)


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


def _list_batch(seed, k=3):
    """B lists of K right-padded responses to a 2-token prompt; ties in row 1; row 2 is a filler."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, T + 1, (B, k))
    mask = (np.arange(T)[None, None] < lengths[..., None]).astype(np.int32)
    tokens = rng.integers(1, BACKBONE.vocab_size, (B, k, T)).astype(np.int32) * mask
    return {
        "tokens": tokens,
        "mask": mask,
        "completion_mask": (mask * (np.arange(T) >= 2)).astype(np.int32),
        "ranks": np.array([[2, 0, 1], [0, 1, 1], [1, 0, 2]], np.int32)[:, :k],
        "weight": np.array([1.0, 1.0, 0.0], np.float32),
    }


def _rm_and_params(head="scalar", **head_kwargs):
    model = RewardModel(RewardModelConfig(backbone=BACKBONE, head=head, head_kwargs=head_kwargs))
    tokens = jnp.ones((1, T), jnp.int32)
    params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(5), tokens, tokens))
    return model, params, jax.jit(model.apply)


def _numpy_list_loss(scores, ranks, loss_name):
    """Per-list losses by plain enumeration over the responses (float64)."""
    out = []
    for s, r in zip(scores.astype(np.float64), ranks):
        if loss_name == "plackett_luce":
            ordered = s[sorted(range(len(r)), key=lambda i: (r[i], i))]
            out.append(-sum(ordered[k] - np.logaddexp.reduce(ordered[k:]) for k in range(len(s))))
        elif loss_name == "listwise_softmax":
            out.append(np.logaddexp.reduce(s) - s[list(r).index(min(r))])
        else:  # bradley_terry over the strictly ordered pairs
            pairs = [(i, j) for i in range(len(r)) for j in range(len(r)) if r[i] < r[j]]
            out.append(np.mean([-_log_sigmoid(s[i] - s[j]) for i, j in pairs]))
    return np.array(out)


@pytest.mark.parametrize("loss_name", ["plackett_luce", "listwise_softmax", "bradley_terry"])
def test_ranked_step_matches_numpy_enumeration(loss_name):
    model, params, apply = _rm_and_params()
    batch = _list_batch(5)
    w = batch["weight"]

    def scores_of(p):  # one forward per response slot, independent of the step's flattening
        return np.stack(
            [
                np.asarray(
                    apply(
                        p, *(batch[n][:, k] for n in ("tokens", "mask", "completion_mask"))
                    ).reward
                )
                for k in range(3)
            ],
            axis=1,
        )

    def numpy_loss(p):
        per = _numpy_list_loss(scores_of(p), batch["ranks"], loss_name)
        return float(np.sum(per * w) / np.sum(w))

    step = jax.jit(
        lambda s, b: ranked_reward_model_step(s, b, None, model=model, loss_name=loss_name)
    )
    new_state, metrics = step(_sgd_state(params), batch)
    np.testing.assert_allclose(metrics["loss"], numpy_loss(params), rtol=1e-5)
    s, r = scores_of(params), batch["ranks"]
    pairs = [
        [s[b, i] > s[b, j] for i in range(3) for j in range(3) if r[b, i] < r[b, j]] for b in (0, 1)
    ]
    np.testing.assert_allclose(metrics["accuracy"], np.mean([np.mean(p) for p in pairs]), rtol=1e-6)
    top1 = [r[b, np.argmax(s[b])] == 0 for b in (0, 1)]
    np.testing.assert_allclose(metrics["top1_accuracy"], np.mean(top1))
    _check_update_is_gradient_of(numpy_loss, params, new_state.params)


def test_ranked_pairwise_loss_of_two_responses_is_the_pairwise_step():
    """A list of K = 2 with ranks (0, 1) is a preference pair: same loss, same update."""
    model, params, _ = _rm_and_params()
    pairs = _pair_batch(6)
    lists = {
        key: np.stack([pairs[f"chosen_{key}"], pairs[f"rejected_{key}"]], axis=1)
        for key in ("tokens", "mask", "completion_mask")
    }
    lists.update(ranks=np.tile(np.array([[0, 1]], np.int32), (B, 1)), weight=pairs["weight"])
    got = jax.jit(lambda s, b: ranked_reward_model_step(s, b, None, model=model))(
        _sgd_state(params), lists
    )
    want = jax.jit(lambda s, b: reward_model_step(s, b, None, model=model))(
        _sgd_state(params), pairs
    )
    np.testing.assert_allclose(got[1]["loss"], want[1]["loss"], rtol=1e-6)
    np.testing.assert_allclose(got[1]["accuracy"], want[1]["accuracy"])
    for a, b in zip(jax.tree.leaves(got[0].params), jax.tree.leaves(want[0].params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _rating_batch(seed, num_attributes):
    pairs = _pair_batch(seed)
    rng = np.random.default_rng(seed)
    return {
        "tokens": pairs["chosen_tokens"],
        "mask": pairs["chosen_mask"],
        "completion_mask": pairs["chosen_completion_mask"],
        "ratings": rng.uniform(0, 4, (B, num_attributes)).astype(np.float32),
        "weight": pairs["weight"],
    }


def test_rating_step_regresses_every_attribute_of_a_multi_attribute_head():
    model, params, apply = _rm_and_params("multi_attribute", num_attributes=2)
    batch = _rating_batch(7, 2)
    w = batch["weight"]

    def errors(p):
        out = apply(p, batch["tokens"], batch["mask"], batch["completion_mask"])
        return (np.asarray(out.aux["attributes"], np.float64) - batch["ratings"]) ** 2

    numpy_loss = lambda p: float(np.sum(errors(p).mean(-1) * w) / np.sum(w))
    step = jax.jit(
        lambda s, b: rating_reward_model_step(
            s, b, None, model=model, attribute_names=("helpful", "safe")
        )
    )
    new_state, metrics = step(_sgd_state(params), batch)
    np.testing.assert_allclose(metrics["loss"], numpy_loss(params), rtol=1e-5)
    e = errors(params)
    np.testing.assert_allclose(metrics["mse/safe"], np.sum(e[:, 1] * w) / 2.0, rtol=1e-5)
    _check_update_is_gradient_of(numpy_loss, params, new_state.params)


def test_rating_step_fits_one_attribute_with_a_scalar_head_and_names_missing_outputs():
    model, params, apply = _rm_and_params()
    batch = _rating_batch(8, 3)
    r = np.asarray(apply(params, batch["tokens"], batch["mask"], batch["completion_mask"]).reward)
    _, metrics = jax.jit(
        lambda s, b: rating_reward_model_step(s, b, None, model=model, attribute=2)
    )(_sgd_state(params), batch)
    want = np.sum((r - batch["ratings"][:, 2]) ** 2 * batch["weight"]) / 2.0
    np.testing.assert_allclose(metrics["loss"], want, rtol=1e-5)
    assert set(metrics) >= {"mse/2"}
    with pytest.raises(ValueError, match="multi_attribute"):
        rating_reward_model_step(_sgd_state(params), batch, None, model=model)


def _unpaired_batch(seed):
    """Right-padded rows with prompts of different lengths (so mismatched rows re-align)."""
    rng = np.random.default_rng(seed)
    lengths, prompt = np.array([8, 5, 7, 6]), np.array([3, 2, 4, 2])
    mask = (np.arange(T)[None] < lengths[:, None]).astype(np.int32)
    tokens = rng.integers(1, BACKBONE.vocab_size, (4, T)).astype(np.int32) * mask
    completion = mask * (np.arange(T)[None] >= prompt[:, None])
    return {
        "tokens": tokens,
        "mask": mask,
        "completion_mask": completion.astype(np.int32),
        "desirable": np.array([True, False, True, False]),
        "weight": np.array([1.0, 1.0, 1.0, 0.0], np.float32),
    }


def _numpy_mismatched(batch):
    """Row i = prompt of row i + completion of row i-1, built with Python lists, cut to T."""
    tokens, mask, comp = (batch[k] for k in ("tokens", "mask", "completion_mask"))
    rows = []
    for i in range(len(tokens)):
        j = (i - 1) % len(tokens)
        prompt = [t for t, m, c in zip(tokens[i], mask[i], comp[i]) if m and not c]
        completion = [t for t, m, c in zip(tokens[j], mask[j], comp[j]) if m and c]
        rows.append(((prompt + completion)[:T], len(prompt)))
    out_tokens = np.zeros_like(tokens)
    out_mask, out_comp = np.zeros_like(tokens), np.zeros_like(tokens)
    for i, (row, p) in enumerate(rows):
        out_tokens[i, : len(row)], out_mask[i, : len(row)], out_comp[i, p : len(row)] = row, 1, 1
    return out_tokens, out_mask, out_comp


def test_mismatched_rows_pair_each_prompt_with_the_previous_completion():
    batch = _unpaired_batch(9)
    got = jax.jit(mismatched_rows)(batch["tokens"], batch["mask"], batch["completion_mask"])
    for g, w in zip(got, _numpy_mismatched(batch)):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("shift_kl", [False, True])
def test_kto_step_matches_numpy(shift_kl):
    """shift_kl: a reference far below the policy on the mismatched rows makes z0 > 0."""
    logits_fn, params, ref_params = _lm_and_params()
    batch = _unpaired_batch(10)
    beta, w_d, w_u = 0.5, 1.0, 1.5
    w = batch["weight"]
    mism = _numpy_mismatched(batch)
    lp = lambda p, rows: _numpy_completion_logps(logits_fn, p, *rows)[0]
    rows = (batch["tokens"], batch["mask"], batch["completion_mask"])
    with_ref = jax.jit(lambda p, b: kto_reference_logps(p, b, logits_fn=logits_fn))(
        ref_params, batch
    )
    np.testing.assert_allclose(with_ref["ref_logps"], lp(ref_params, rows), rtol=1e-5)
    np.testing.assert_allclose(with_ref["ref_kl_logps"], lp(ref_params, mism), rtol=1e-5)
    if shift_kl:
        with_ref = {**with_ref, "ref_kl_logps": with_ref["ref_kl_logps"] - 20.0}
    ref, ref_kl = (np.asarray(with_ref[k], np.float64) for k in ("ref_logps", "ref_kl_logps"))
    kl_w = w * np.roll(w, 1)
    z0 = max(0.0, float(np.sum((lp(params, mism) - ref_kl) * kl_w) / np.sum(kl_w)))
    assert (z0 > 0) == shift_kl

    def numpy_loss(p):  # z0 is held fixed: no gradient flows into the reference point
        rho = lp(p, rows) - ref
        sig = lambda x: 1 / (1 + np.exp(-x))
        per = np.where(
            batch["desirable"],
            w_d * (1 - sig(beta * (rho - z0))),
            w_u * (1 - sig(beta * (z0 - rho))),
        )
        return float(np.sum(per * w) / np.sum(w))

    step = jax.jit(
        lambda s, b: kto_step(
            s,
            b,
            None,
            logits_fn=logits_fn,
            beta=beta,
            desirable_weight=w_d,
            undesirable_weight=w_u,
        )
    )
    new_state, metrics = step(_sgd_state(params), with_ref)
    np.testing.assert_allclose(metrics["kl"], z0, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["loss"], numpy_loss(params), rtol=1e-5)
    reward = beta * (lp(params, rows) - ref)
    np.testing.assert_allclose(metrics["reward_undesirable"], reward[1], rtol=1e-5)
    _check_update_is_gradient_of(numpy_loss, params, new_state.params)


@pytest.mark.parametrize("dtype", [np.int32, np.float32])
def test_kto_loss_takes_desirable_as_0_1_numbers_like_bools(dtype):
    """`~desirable` on 0/1 numbers is -1/-2: the undesirable reward mean must still be row 1's."""
    logits_fn, params, ref_params = _lm_and_params()
    batch = jax.jit(lambda p, b: kto_reference_logps(p, b, logits_fn=logits_fn))(
        ref_params, _unpaired_batch(11)
    )
    loss = jax.jit(lambda p, b: kto_loss(p, b, logits_fn=logits_fn, beta=0.5))
    want_loss, want = loss(params, batch)
    as_numbers = {**batch, "desirable": batch["desirable"].astype(dtype)}
    got_loss, got = loss(params, as_numbers)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    for key in ("reward_desirable", "reward_undesirable"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-6, err_msg=key)


def test_kto_loss_rejects_desirable_values_other_than_0_1():
    logits_fn, params, ref_params = _lm_and_params()
    batch = kto_reference_logps(ref_params, _unpaired_batch(11), logits_fn=logits_fn)
    with pytest.raises(ValueError, match=r"desirable.*\[-1, 0, 2\].*1/0"):
        kto_loss(params, {**batch, "desirable": np.array([2, 0, -1, 0])}, logits_fn=logits_fn)


def test_kto_step_without_reference_names_the_missing_field():
    logits_fn, params, _ = _lm_and_params()
    with pytest.raises(KeyError, match="ref_logps"):
        kto_step(_sgd_state(params), _unpaired_batch(0), None, logits_fn=logits_fn)


SEP = BACKBONE.vocab_size - 1


def _numpy_multi_response_rows(batch):
    """`prompt, r_1, SEP, ..., r_K, SEP` per list, built with Python lists, and the prefix of the
    row that ends at each response's SEP."""
    rows, prefixes = [], []
    for toks, mask, comp in zip(batch["tokens"], batch["mask"], batch["completion_mask"]):
        row = [t for t, m, c in zip(toks[0], mask[0], comp[0]) if m and not c]
        ids = [0] * len(row)
        for k in range(toks.shape[0]):
            response = [t for t, m, c in zip(toks[k], mask[k], comp[k]) if m and c] + [SEP]
            row, ids = row + response, ids + [k + 1] * len(response)
            prefixes.append((list(row), ids.count(0)))
        rows.append((row, ids))
    return rows, prefixes


def test_multi_response_rows_put_a_list_in_one_row():
    batch = _list_batch(11)
    tokens, mask, ids = jax.jit(functools.partial(multi_response_rows, separator=SEP))(
        batch["tokens"], batch["mask"], batch["completion_mask"]
    )
    assert tokens.shape == (B, 3 * (T + 1))
    for i, (row, row_ids) in enumerate(_numpy_multi_response_rows(batch)[0]):
        n = len(row)
        np.testing.assert_array_equal(tokens[i, :n], row)
        np.testing.assert_array_equal(ids[i, :n], row_ids)
        assert mask[i, :n].all() and not mask[i, n:].any() and not tokens[i, n:].any()


def test_multi_response_ranked_step_scores_each_response_on_its_causal_prefix():
    """Response k of the row scores as the row cut after its SEP, scored alone (the comparative
    layout of the model); the Plackett-Luce loss is then recomputed from those scores."""
    model = RewardModel(RewardModelConfig(backbone=BACKBONE, max_responses=3))
    tokens = jnp.ones((1, T), jnp.int32)
    params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(5), tokens, tokens))
    batch = _list_batch(12)
    _, prefixes = _numpy_multi_response_rows(batch)
    width = max(len(r) for r, _ in prefixes)
    alone = np.zeros((len(prefixes), width), np.int32)
    mask, completion = np.zeros_like(alone), np.zeros_like(alone)
    for j, (row, p) in enumerate(prefixes):
        alone[j, : len(row)], mask[j, : len(row)], completion[j, p : len(row)] = row, 1, 1
    scores = np.asarray(jax.jit(model.apply)(params, alone, mask, completion).reward).reshape(B, 3)
    per = _numpy_list_loss(scores, batch["ranks"], "plackett_luce")
    w = batch["weight"]
    _, metrics = jax.jit(
        lambda s, b: ranked_reward_model_step(s, b, None, model=model, separator=SEP)
    )(_sgd_state(params), batch)
    np.testing.assert_allclose(metrics["loss"], np.sum(per * w) / np.sum(w), rtol=1e-5)
