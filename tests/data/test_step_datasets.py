"""Step datasets: the synthetic task's step values against brute-force enumeration of every
continuation, Monte-Carlo labels unbiased, binary labels thresholded, the reward range by
enumeration; step records tokenised with their step numbers and targets; batches read back."""

import itertools

import jax
import numpy as np
import pytest

from rewardjax import data
from rewardjax.data import steps, synthetic

TASK = synthetic.make_markov_task(3, vocab_size=3, length=4, prompt_length=2)


def _brute_value(y0, prefix):
    """E[r | prefix] by enumerating every continuation with its base-chain probability."""
    t, p, r = TASK.length, np.asarray(TASK.transition), np.asarray(TASK.bigram_reward)
    total = 0.0
    for rest in itertools.product(range(3), repeat=t - len(prefix)):
        seq = [y0, *prefix, *rest]
        prob = np.prod([p[a, b] for a, b in zip(seq[len(prefix) :], seq[len(prefix) + 1 :])])
        total += prob * sum(r[a, b] for a, b in itertools.pairwise(seq))
    return total


def test_reward_range_is_the_extreme_gold_reward_over_all_responses():
    r = np.asarray(TASK.bigram_reward)
    golds = [
        sum(r[a, b] for a, b in itertools.pairwise(seq))
        for seq in itertools.product(range(3), repeat=TASK.length + 1)
    ]
    np.testing.assert_allclose(steps.reward_range(TASK), (min(golds), max(golds)), rtol=1e-6)


@pytest.fixture(scope="module")
def exact():
    return steps.synthetic_step_data(TASK, jax.random.PRNGKey(0), 64, step_size=3)


def test_exact_step_values_equal_enumeration(exact):
    lo, hi = steps.reward_range(TASK)
    np.testing.assert_array_equal(exact["step_ends"], [3, 4])  # steps of 3, the last shorter
    for i in range(8):
        y0, resp = int(exact["prompt"][i, -1]), exact["response"][i]
        for s, end in enumerate(exact["step_ends"]):
            v = (_brute_value(y0, list(resp[:end])) - lo) / (hi - lo)
            np.testing.assert_allclose(exact["values"][i, s], v, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(exact["targets"], exact["values"])
    gold = np.asarray(synthetic.gold_reward(TASK, exact["prompt"][:, -1], exact["response"]))
    np.testing.assert_allclose(exact["outcome"], (gold - lo) / (hi - lo), rtol=1e-5, atol=1e-6)


def test_mc_labels_are_unbiased_and_binary_labels_thresholded(exact):
    key = jax.random.PRNGKey(0)  # same key: the same responses
    mc = steps.synthetic_step_data(TASK, key, 64, step_size=3, labels="mc", num_rollouts=4)
    np.testing.assert_array_equal(mc["response"], exact["response"])
    err = mc["targets"] - exact["values"]
    # The last step is the whole response: no rollout, no error.
    np.testing.assert_allclose(err[:, -1], 0.0, atol=1e-5)
    # Mean error over 64 prefixes: 4 sd of the mean would be ~0.08 at most on [0, 1].
    assert abs(err[:, 0].mean()) < 0.08 and err[:, 0].std() > 0
    binary = steps.synthetic_step_data(TASK, key, 64, step_size=3, labels="binary", threshold=0.6)
    np.testing.assert_array_equal(binary["targets"], exact["values"] >= 0.6)
    with pytest.raises(ValueError, match="labels='rank'"):
        steps.synthetic_step_data(TASK, key, 4, step_size=3, labels="rank")


def test_synthetic_dataset_batches_carry_step_numbers_and_targets(exact):
    ds = steps.synthetic_step_dataset(exact)
    batch = next(
        iter(data.batches(ds, global_batch_size=5, seed=None, shard_index=0, shard_count=1))
    )
    p = exact["prompt"].shape[1]
    np.testing.assert_array_equal(batch["completion_mask"][0], [0] * p + [1, 1, 1, 2])
    np.testing.assert_array_equal(
        batch["tokens"][0], np.r_[exact["prompt"][0], exact["response"][0]] + 1
    )
    arrays = jax.device_get(steps.step_batch_arrays(batch))
    np.testing.assert_array_equal(arrays["step_ids"][0], [-1] * p + [0, 0, 0, 1])
    np.testing.assert_allclose(arrays["targets"], exact["targets"][:5])
    assert arrays["step_mask"].all()


def test_encode_step_records_numbers_steps_and_pads_targets():
    records = [
        steps.parse_step_record({"prompt": "Q", "steps": ["ab", "c"], "labels": [1, 0]}),
        steps.parse_step_record(
            {"prompt": "Q", "steps": ["a", "b", "cdefgh"], "labels": [1, 1, 0]}
        ),
    ]
    ds = steps.encode_step_records(records, data.ByteTokenizer(), max_length=8)
    first, second = ds.examples
    # "Q" then "ab\n" (step 1), "c\n" (step 2); ids are bytes.
    np.testing.assert_array_equal(first["seqs"][0], list(b"Qab\nc\n"))
    np.testing.assert_array_equal(first["completion"], [0, 1, 1, 1, 2, 2])
    np.testing.assert_array_equal(first["ratings"], [1.0, 0.0])  # 2 slots: the most kept
    # The third step does not fit in 8 tokens: cut, counted as truncated, its slot NaN.
    np.testing.assert_array_equal(second["completion"], [0, 1, 1, 2, 2])
    assert ds.stats.num_truncated == 1
    ds3 = steps.encode_step_records(records, data.ByteTokenizer(), max_length=16, max_steps=3)
    assert np.isnan(ds3.examples[0]["ratings"][2]) and ds3.examples[1]["ratings"][2] == 0.0
    with pytest.raises(ValueError, match="max_length=2"):
        steps.encode_step_records(records, data.ByteTokenizer(), max_length=2)
