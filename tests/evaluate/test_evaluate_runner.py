"""Scoring a reward model over batches, the bundled pair report, and synthetic best-of-n curves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import evaluate
from rewardjax.data import make_markov_task, synthetic
from rewardjax.models import RewardModel, RewardModelConfig, RewardOutput, get_preset


@pytest.fixture(scope="module")
def world():
    task = make_markov_task(0, vocab_size=6, length=5, prompt_length=3)
    config = RewardModelConfig(
        get_preset("tiny", vocab_size=task.model_vocab_size, d_model=32, d_ff=64, n_layers=1)
    )
    model = RewardModel(config)
    pairs = synthetic.sample_preference_pairs(task, jax.random.key(1), 21)
    batch = synthetic.pairs_to_batch(pairs)
    params = jax.jit(model.init)(
        jax.random.key(2), batch["chosen_tokens"][:2], batch["chosen_mask"][:2]
    )
    return task, model, params, batch


def _split(batch, size):
    """Batches of `size`, the last one filled with weight-0 copies (as the data pipeline does)."""
    n = batch["weight"].shape[0]
    pad = -n % size
    idx = np.concatenate([np.arange(n), np.zeros(pad, int)])
    full = {k: v[idx] for k, v in batch.items()}
    full["weight"] = np.where(np.arange(n + pad) < n, full["weight"], 0.0).astype(np.float32)
    full["subset"] = (np.arange(n + pad) % 3).astype(np.int32)
    return [{k: v[i : i + size] for k, v in full.items()} for i in range(0, n + pad, size)]


def test_score_pair_batches_matches_direct_forward(world):
    _, model, params, batch = world
    batches = _split(batch, 8)
    arrays = evaluate.score_pair_batches(model, params, iter(batches))
    assert arrays["chosen"].shape == (24,)
    apply = jax.jit(model.apply)
    for side in ("chosen", "rejected"):
        direct = apply(
            params, batch[f"{side}_tokens"], batch[f"{side}_mask"], batch[f"{side}_completion_mask"]
        ).reward
        np.testing.assert_allclose(arrays[side][:21], direct, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(arrays[f"{side}_gold"][:21], batch[f"{side}_gold"])
    np.testing.assert_array_equal(arrays["weight"], (np.arange(24) < 21).astype(np.float32))
    first = evaluate.score_pair_batches(model, params, batches, max_batches=1)
    assert first["chosen"].shape == (8,)
    with pytest.raises(KeyError, match="rejected_tokens"):
        evaluate.score_pair_batches(model, params, [{"chosen_tokens": 0, "chosen_mask": 0}])


def test_evaluate_reward_model_report(world):
    _, model, params, batch = world
    batches = _split(batch, 8)
    names = ("alpacaeval-easy", "mt-bench-hard", "other")
    report = evaluate.evaluate_reward_model(model, params, batches, subset_names=names)
    arrays = evaluate.score_pair_batches(model, params, batches)
    keep = arrays["weight"] > 0
    c, r = arrays["chosen"][keep], arrays["rejected"][keep]
    assert report.count == 21
    np.testing.assert_allclose(report.accuracy, np.mean(c > r), rtol=1e-6)
    metrics = report.as_dict()
    np.testing.assert_allclose(metrics["margin_mean"], np.mean(c - r), rtol=1e-4, atol=1e-6)
    gold_ok = np.sign(c - r) == np.sign(arrays["chosen_gold"] - arrays["rejected_gold"])[keep]
    np.testing.assert_allclose(metrics["gold_pair_accuracy"], np.mean(gold_ok), rtol=1e-6)
    sub = arrays["subset"][keep]
    for k, name in enumerate(names):
        np.testing.assert_allclose(metrics[f"accuracy/{name}"], np.mean((c > r)[sub == k]))
    assert set(report.sections) == {"Chat", "Chat Hard", "Score"}
    assert all(isinstance(v, float) for v in metrics.values())
    with pytest.raises(ValueError, match="subset_names"):
        evaluate.evaluate_pairs(c, r, subset=np.full(c.shape, 3), subset_names=names)


class _GoldOracle:
    """A RewardFunction that returns the task's gold reward of the token ids it is given."""

    def __init__(self, task):
        self.task = task

    def apply(self, params, tokens, mask, completion_mask=None):
        tokens = synthetic.to_tokens(tokens)
        p = self.task.prompt_length
        return RewardOutput(synthetic.gold_reward(self.task, tokens[:, p - 1], tokens[:, p:]), {})


def test_synthetic_bon_curves_with_gold_oracle_and_model(world):
    task, model, params, _ = world
    key = jax.random.key(3)
    oracle = evaluate.synthetic_bon_curves(
        task, _GoldOracle(task), None, key, num_prompts=4, num_samples=32, batch_size=50
    )
    np.testing.assert_array_equal(oracle.n, [1, 2, 4, 8, 16, 32])
    # Selecting by the gold reward itself: proxy = gold, and the proxy's BoN is the gold ceiling.
    np.testing.assert_allclose(oracle.gold_reward, oracle.gold_best, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(oracle.proxy_reward, oracle.gold_reward, rtol=1e-5, atol=1e-5)
    assert np.all(np.diff(oracle.gold_best) > 0)
    # n = 1 is the mean gold reward of base samples (same key -> same samples).
    k_prompt, k_resp = jax.random.split(key)
    prompts = np.repeat(np.asarray(synthetic.sample_prompts(task, k_prompt, 4)), 32, axis=0)
    resp = synthetic.sample_responses(task, k_resp, prompts[:, -1])
    mean_gold = np.mean(synthetic.gold_reward(task, prompts[:, -1], resp))
    np.testing.assert_allclose(oracle.gold_reward[0], mean_gold, rtol=1e-5, atol=1e-5)

    curves = evaluate.synthetic_bon_curves(
        task, model, params, key, num_prompts=4, num_samples=32, ns=[1, 4, 32]
    )
    np.testing.assert_allclose(curves.gold_reward[0], mean_gold, rtol=1e-5, atol=1e-5)
    # On every n-subset the gold-best sample has at least the proxy-best's gold reward.
    assert np.all(curves.gold_best >= curves.gold_reward - 1e-5)
    np.testing.assert_allclose(curves.gold_best, oracle.gold_best[[0, 2, 5]], rtol=1e-5)
    assert np.all(np.isfinite(jnp.asarray(curves.proxy_reward)))


def test_synthetic_bon_curves_match_exact_enumeration():
    """Monte Carlo vs the exact curves over all V^T responses of a tiny world (prompt = y_0 only).

    Tolerance 0.2 ≈ 4 standard errors of the prompt-averaged estimate (300 prompts x 16 samples,
    gold reward standard deviation ≈ √T)."""
    task = make_markov_task(7, vocab_size=3, length=3, prompt_length=1)
    config = RewardModelConfig(
        get_preset("tiny", vocab_size=task.model_vocab_size, d_model=32, d_ff=64, n_layers=1)
    )
    model = RewardModel(config)
    ids = np.ones((1, 4), np.int32)
    params = jax.jit(model.init)(jax.random.key(0), ids, ids)
    ns = [1, 2, 4, 16]
    responses = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    y0 = np.repeat(np.arange(3), len(responses))
    resp = np.tile(responses, (3, 1))
    probs = np.exp(synthetic.response_logprob(task, y0, resp)).reshape(3, -1)
    gold = np.asarray(synthetic.gold_reward(task, y0, resp)).reshape(3, -1)
    tokens = synthetic.to_ids(np.concatenate([y0[:, None], resp], 1)).astype(np.int32)
    completion = np.ones_like(tokens)
    completion[:, 0] = 0
    proxy = jax.jit(model.apply)(params, tokens, np.ones_like(tokens), completion).reward
    exact = evaluate.exact_bon_gold_curves(probs, np.asarray(proxy).reshape(3, -1), gold, ns)
    start = task.start_probs
    for oracle, reward_fn in ((True, _GoldOracle(task)), (False, model)):
        mc = evaluate.synthetic_bon_curves(
            task, reward_fn, params, jax.random.key(1), num_prompts=300, num_samples=16, ns=ns
        )
        np.testing.assert_allclose(mc.gold_best, start @ np.asarray(exact.gold_best), atol=0.2)
        if not oracle:
            np.testing.assert_allclose(
                mc.gold_reward, start @ np.asarray(exact.gold_reward), atol=0.2
            )
            # The proxy's reward scale is arbitrary at init: compare its gain over n = 1.
            gain = start @ np.asarray(exact.proxy_reward - exact.proxy_reward[:, :1])
            np.testing.assert_allclose(mc.proxy_reward - mc.proxy_reward[0], gain, atol=0.2)
