"""Process reward models: step ends (separator, step ids, fixed k) and the gather at them against
NumPy loops; the head equals a NumPy dot product with the backbone's hidden states; a prefix's
score depends on nothing after it; Hugging Face-imported weights plug in; the implicit PRM's
prefix scores are β times NumPy cumulative log-ratios."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import models
from rewardjax.models import (
    CausalLM,
    ImplicitPRM,
    ProcessRewardModel,
    Transformer,
    fixed_step_ends,
    gather_steps,
    last_step,
    score_prefixes,
    separator_step_ends,
    step_ids_step_ends,
    with_lm_backbone,
)

CFG = models.get_preset("tiny", vocab_size=16, d_model=32, n_layers=1, d_ff=64)
SEP = 15
# Jitted once (model static): every test scores through the compiled function.
score = jax.jit(score_prefixes, static_argnums=0, static_argnames=("separator", "num_steps"))


def _rows(seed=0, b=4, t=12):
    """Right-padded random rows with separators inside; lengths vary."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, SEP, size=(b, t)).astype(np.int32)
    tokens[rng.random((b, t)) < 0.25] = SEP
    lengths = np.array([t, t - 3, t - 5, 4][:b])
    mask = (np.arange(t)[None] < lengths[:, None]).astype(np.int32)
    return tokens * mask, mask


@pytest.fixture(scope="module")
def prm():
    model = ProcessRewardModel(CFG)
    tokens, mask = _rows()
    params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), tokens, mask))
    # A nonzero head (its kernel starts at 0), so that scores depend on the hidden states.
    head = params["params"]["process_head"]
    rng = np.random.default_rng(1)
    head["kernel"] = jnp.asarray(rng.normal(size=head["kernel"].shape), jnp.float32)
    head["bias"] = jnp.asarray([0.3], jnp.float32)
    return model, params, jax.jit(model.apply)


def test_separator_step_ends_match_a_numpy_scan():
    tokens, mask = _rows(3, b=4, t=20)
    s = 5
    ends, valid = jax.device_get(separator_step_ends(tokens, mask, separator=SEP, num_steps=s))
    for b in range(tokens.shape[0]):
        where = [t for t in range(tokens.shape[1]) if tokens[b, t] == SEP and mask[b, t]]
        for k in range(s):
            assert valid[b, k] == (k < len(where))
            if k < len(where):
                assert ends[b, k] == where[k]


def test_step_ids_step_ends_match_a_numpy_scan():
    rng = np.random.default_rng(0)
    step_ids = rng.integers(-1, 4, size=(5, 10))
    ends, valid = jax.device_get(step_ids_step_ends(jnp.asarray(step_ids), num_steps=5))
    for b in range(5):
        for k in range(5):
            hits = np.flatnonzero(step_ids[b] == k)
            assert valid[b, k] == (len(hits) > 0)
            if len(hits):
                assert ends[b, k] == hits[-1]


def test_fixed_step_ends_count_only_complete_steps():
    mask = np.zeros((3, 12), np.int32)
    for b, n in enumerate([12, 9, 4]):
        mask[b, :n] = 1
    ends, valid = jax.device_get(fixed_step_ends(4, jnp.asarray(mask), step_size=3, num_steps=3))
    np.testing.assert_array_equal(ends[0], [6, 9, 0])  # 4 - 1 + 3 (s + 1); 12 is outside
    np.testing.assert_array_equal(valid, [[1, 1, 0], [1, 0, 0], [0, 0, 0]])


def test_gather_and_last_step_match_numpy_indexing():
    rng = np.random.default_rng(0)
    positions = rng.normal(size=(4, 9)).astype(np.float32)
    ends = rng.integers(0, 9, size=(4, 3))
    valid = rng.random((4, 3)) < 0.6
    got = np.asarray(gather_steps(positions, ends, valid))
    last = np.asarray(last_step(jnp.asarray(got), jnp.asarray(valid)))
    for b in range(4):
        for s in range(3):
            assert got[b, s] == (positions[b, ends[b, s]] if valid[b, s] else 0.0)
        kept = np.flatnonzero(valid[b])
        assert last[b] == (positions[b, ends[b, kept[-1]]] if len(kept) else 0.0)


def test_head_is_a_dot_product_with_the_hidden_states_at_step_ends(prm):
    model, params, _apply = prm
    tokens, mask = _rows()
    p = params["params"]
    backbone = jax.jit(lambda q: Transformer(CFG).apply(q, tokens, segment_ids=mask)[0])
    hidden = backbone({"params": p["transformer"]})
    hidden = np.asarray(hidden, np.float64)
    w = np.asarray(p["process_head"]["kernel"], np.float64)[:, 0]
    bias = float(p["process_head"]["bias"][0])
    out = jax.device_get(score(model, params, tokens, mask, separator=SEP, num_steps=4))
    ends, valid = jax.device_get(separator_step_ends(tokens, mask, separator=SEP, num_steps=4))
    for b in range(tokens.shape[0]):
        expected = [hidden[b, e] @ w + bias if v else 0.0 for e, v in zip(ends[b], valid[b])]
        np.testing.assert_allclose(out.steps[b], expected, rtol=1e-4, atol=1e-4)
        kept = [x for x, v in zip(expected, valid[b]) if v]
        np.testing.assert_allclose(out.last[b], kept[-1] if kept else 0.0, atol=1e-4)
    # No step ends given: the last real token is the only step.
    plain = jax.device_get(score(model, params, tokens, mask))
    last = mask.sum(1) - 1
    np.testing.assert_allclose(plain.last, hidden[np.arange(4), last] @ w + bias, atol=1e-4)


def test_a_prefix_score_does_not_depend_on_later_tokens(prm):
    _, params, apply = prm
    tokens, mask = _rows()
    full = np.asarray(apply(params, tokens, mask))
    t = 6
    changed = tokens.copy()
    changed[:, t + 1 :] = (changed[:, t + 1 :] % 13) + 1  # other tokens after t
    again = np.asarray(apply(params, changed * mask, mask))
    np.testing.assert_allclose(again[:, : t + 1], full[:, : t + 1], atol=1e-5)


def test_hf_imported_weights_are_the_backbone(tmp_path, prm):
    _model, params, _ = prm
    lm = CausalLM(CFG)
    tokens, mask = _rows()
    lm_params = nn.unbox(jax.jit(lm.init)(jax.random.PRNGKey(7), tokens, segment_ids=mask))
    models.save_hf(str(tmp_path), CFG, lm_params)
    cfg, imported = models.load_hf(str(tmp_path))
    prm_params = with_lm_backbone(params, imported)
    hidden, _, _ = jax.jit(
        lambda p: lm.apply(p, tokens, segment_ids=mask, method=CausalLM.hidden_and_logits)
    )(lm_params)
    p = prm_params["params"]
    w, bias = np.asarray(p["process_head"]["kernel"])[:, 0], float(p["process_head"]["bias"][0])
    got = np.asarray(jax.jit(ProcessRewardModel(cfg).apply)(prm_params, tokens, mask))
    np.testing.assert_allclose(got, np.asarray(hidden) @ w + bias, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no 'transformer' tree"):
        with_lm_backbone(params, {"params": {"lm_head": 0}})


def _np_log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_implicit_prm_scores_are_cumulative_log_ratios():
    tokens, mask = _rows(2)
    completion = mask.copy()
    completion[:, :3] = 0
    beta = 0.3
    model = ImplicitPRM(CFG, beta=beta)
    params = nn.unbox(jax.jit(model.init)(jax.random.PRNGKey(0), tokens, mask))
    params["policy"] = jax.tree.map(
        lambda x: x + 0.05 * jnp.cos(jnp.arange(x.size).reshape(x.shape)), params["policy"]
    )
    out = jax.device_get(score(model, params, tokens, mask, completion, separator=SEP, num_steps=3))
    got = out.positions
    lm_logits = jax.jit(lambda p: CausalLM(CFG).apply(p, tokens, segment_ids=mask)[0])

    def logps(p):
        logits = np.asarray(lm_logits(p), np.float64)
        lp = np.take_along_axis(_np_log_softmax(logits[:, :-1]), tokens[:, 1:, None], -1)[..., 0]
        return np.pad(lp, ((0, 0), (1, 0)))

    ratio = np.where(completion > 0, logps(params["policy"]) - logps(params["reference"]), 0.0)
    np.testing.assert_allclose(got, beta * np.cumsum(ratio, -1), rtol=1e-4, atol=1e-5)
    # Step rewards are differences of the prefix scores at consecutive step ends.
    ends, valid = jax.device_get(separator_step_ends(tokens, mask, separator=SEP, num_steps=3))
    for b in range(tokens.shape[0]):
        for s in range(3):
            if valid[b, s]:
                expected = beta * ratio[b, : ends[b, s] + 1].sum()
                np.testing.assert_allclose(out.steps[b, s], expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="completion_mask"):
        model.apply(params, tokens, mask)
