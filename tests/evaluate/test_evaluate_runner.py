"""Scoring a reward model over batches, the bundled pair report, and synthetic best-of-n curves."""

import jax
import numpy as np
import pytest

from rewardjax import evaluate
from rewardjax.data import make_markov_task, synthetic
from rewardjax.models import RewardModel, RewardModelConfig, RewardOutput, get_preset


@pytest.fixture(scope="module")
def world():
    """A tiny world (prompt = y_0 only, 3^3 responses per prompt) and a small random model."""
    task = make_markov_task(7, vocab_size=3, length=3, prompt_length=1)
    config = RewardModelConfig(
        get_preset("tiny", vocab_size=task.model_vocab_size, d_model=32, d_ff=64, n_layers=1)
    )
    model = RewardModel(config)
    pairs = synthetic.sample_preference_pairs(task, jax.random.key(1), 21)
    batch = synthetic.pairs_to_batch(pairs)
    params = jax.jit(model.init)(jax.random.key(0), batch["chosen_tokens"], batch["chosen_mask"])
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
    correct = (c > r) + 0.5 * (c == r)  # identical responses tie in this tiny world
    assert np.any(c == r)
    np.testing.assert_allclose(report.accuracy, np.mean(correct), rtol=1e-6)
    metrics = report.as_dict()
    np.testing.assert_allclose(metrics["margin_mean"], np.mean(c - r), rtol=1e-4, atol=1e-6)
    gold_margin = (arrays["chosen_gold"] - arrays["rejected_gold"])[keep]
    agree = np.where(c == r, 0.5, np.sign(c - r) == np.sign(gold_margin))[gold_margin != 0]
    np.testing.assert_allclose(metrics["gold_pair_accuracy"], np.mean(agree), rtol=1e-6)
    sub = arrays["subset"][keep]
    for k, name in enumerate(names):
        np.testing.assert_allclose(metrics[f"accuracy/{name}"], np.mean(correct[sub == k]))
    assert set(report.sections) == {"Chat", "Chat Hard", "Score"}
    assert all(isinstance(v, float) for v in metrics.values())
    with pytest.raises(ValueError, match="subset_names"):
        evaluate.evaluate_pairs(c, r, subset=np.full(c.shape, 3), subset_names=names)


class _GoldOracle:
    """A ScoringModel that returns the task's gold reward of the token ids it is given."""

    def __init__(self, task):
        self.task = task

    def apply(self, params, tokens, mask, completion_mask=None):
        tokens = synthetic.to_tokens(tokens)
        p = self.task.prompt_length
        return RewardOutput(synthetic.gold_reward(self.task, tokens[:, p - 1], tokens[:, p:]), {})


def test_synthetic_bon_curves_match_exact_enumeration(world):
    """Monte Carlo vs the exact curves over all V^T responses of the tiny world, for the gold
    reward itself as the proxy (an oracle) and for a (random) reward model.

    Tolerance 0.2 ≈ 4 standard errors of the prompt-averaged estimate (300 prompts x 16 samples,
    gold reward standard deviation ≈ √T)."""
    task, model, params, _ = world
    responses = np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3)
    y0 = np.repeat(np.arange(3), len(responses))
    resp = np.tile(responses, (3, 1))
    probs = np.exp(synthetic.response_logprob(task, y0, resp)).reshape(3, -1)
    gold = np.asarray(synthetic.gold_reward(task, y0, resp)).reshape(3, -1)
    tokens = synthetic.to_ids(np.concatenate([y0[:, None], resp], 1)).astype(np.int32)
    completion = np.ones_like(tokens)
    completion[:, 0] = 0
    proxy = jax.jit(model.apply)(params, tokens, np.ones_like(tokens), completion).reward
    ns = [1, 2, 4, 8, 16]
    exact = evaluate.exact_bon_gold_curves(probs, np.asarray(proxy).reshape(3, -1), gold, ns)
    exact = exact._replace(**{k: task.start_probs @ np.asarray(exact[i]) for i, k in
                              enumerate(exact._fields) if i >= 1})  # fmt: skip
    key = jax.random.key(1)
    run = lambda fn, **kw: evaluate.synthetic_bon_curves(
        task, fn, params, key, num_prompts=300, num_samples=16, **kw
    )

    oracle = run(_GoldOracle(task))
    np.testing.assert_array_equal(oracle.n, ns)  # the default grid: powers of 2 up to M
    np.testing.assert_allclose(oracle.gold_best, exact.gold_best, atol=0.2)
    # Selecting by the gold reward itself: proxy = gold, and the proxy's BoN is the gold ceiling.
    np.testing.assert_allclose(oracle.gold_reward, oracle.gold_best, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(oracle.proxy_reward, oracle.gold_reward, rtol=1e-5, atol=1e-5)
    # n = 1 is the mean gold reward of the base samples (same key -> same samples).
    k_prompt, k_resp = jax.random.split(key)
    prompts = np.repeat(np.asarray(synthetic.sample_prompts(task, k_prompt, 300)), 16, axis=0)
    samples = synthetic.sample_responses(task, k_resp, prompts[:, -1])
    mean_gold = np.mean(synthetic.gold_reward(task, prompts[:, -1], samples))
    np.testing.assert_allclose(oracle.gold_reward[0], mean_gold, rtol=1e-5, atol=1e-5)

    curves = run(model, ns=[1, 4, 16], batch_size=1000)
    np.testing.assert_allclose(curves.gold_best, oracle.gold_best[[0, 2, 4]], rtol=1e-5)
    # On every n-subset the gold-best sample has at least the proxy-best's gold reward.
    assert np.all(curves.gold_best >= curves.gold_reward - 1e-5)
    np.testing.assert_allclose(curves.gold_reward, exact.gold_reward[[0, 2, 4]], atol=0.2)
    # The proxy's reward scale is arbitrary at init: compare its gain over n = 1.
    gain = exact.proxy_reward[[0, 2, 4]] - exact.proxy_reward[0]
    np.testing.assert_allclose(curves.proxy_reward - curves.proxy_reward[0], gain, atol=0.2)
