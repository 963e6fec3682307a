"""`lab.policies`: a policy's exact law over the enumerated responses, against a per-response
NumPy computation from its logits, and an SFT run's checkpoint loaded back."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import lab, train
from rewardjax.data import synthetic
from rewardjax.evaluate import overoptimization as overopt
from rewardjax.lab import policies
from rewardjax.train import data as train_data
from rewardjax.train import defaults


def _world(vocab=3, length=2, prompts=2):
    c = defaults.base_config("sft")
    defaults.smoke_overrides(c)
    s = c.data.synthetic
    s.vocab_size, s.length, s.prompt_length = vocab, length, 2
    c.model.vocab_size = vocab + 1
    task = train_data.markov_task(s)
    law = overopt.synthetic_response_law(
        task, None, None, jax.random.PRNGKey(3), num_prompts=prompts
    )
    return c, law


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    c, law = _world()
    workdir = str(tmp_path_factory.mktemp("sft"))
    train.run(c, workdir)
    return workdir, law


def _numpy_logprob(model, params, prompt, response, vocab):
    """log π(response | prompt) token by token: softmax over ids 1..V of the logits at t-1."""
    ids = np.concatenate([prompt, response]) + synthetic.ID_OFFSET
    logits, _ = model.apply(
        params, jnp.asarray(ids[None]), segment_ids=jnp.ones((1, len(ids)), jnp.int32)
    )
    logits = np.asarray(logits[0], np.float64)
    total = 0.0
    for t in range(len(prompt), len(ids)):
        row = logits[t - 1, 1 : vocab + 1]
        total += row[ids[t] - 1] - np.log(np.exp(row - row.max()).sum()) - row.max()
    return total


def test_loaded_sft_policy_law_matches_numpy_and_its_point(sft_run):
    workdir, law = sft_run
    model, params, config = policies.load_policy(workdir)
    assert config.task == "sft"
    logp = policies.response_logprobs(model, params, law, batch_size=8)
    assert logp.shape == law.probs.shape
    np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, atol=1e-5)
    vocab = config.data.synthetic.vocab_size
    for p in range(len(law.prompts)):
        for y in (0, 4, len(law.responses) - 1):
            want = _numpy_logprob(model, params, law.prompts[p], law.responses[y], vocab)
            np.testing.assert_allclose(logp[p, y], want, atol=1e-4)
    # The point against the base law, by hand.
    proxy = np.arange(logp.size, dtype=np.float64).reshape(logp.shape)
    point = lab.policy_point(logp, law, proxy=proxy)
    q = np.exp(logp)
    np.testing.assert_allclose(point.kl, np.mean(np.sum(q * np.log(q / law.probs), -1)), rtol=1e-9)
    np.testing.assert_allclose(point.gold, np.mean(np.sum(q * law.gold, -1)), rtol=1e-9)
    np.testing.assert_allclose(point.proxy, np.mean(np.sum(q * proxy, -1)), rtol=1e-9)
    # Against itself as the reference the KL is 0; no proxy gives NaN.
    same = lab.policy_point(logp, law, reference_logprobs=logp)
    assert same.kl == 0.0 and np.isnan(same.proxy)


def test_load_policy_refuses_a_reward_model_run(tmp_path):
    (tmp_path / "config.json").write_text('{"task": "reward_model"}')
    with pytest.raises(ValueError, match="reward_model"):
        policies.load_policy(str(tmp_path))
    with pytest.raises(ValueError, match="no such file"):
        policies.load_policy(str(tmp_path / "missing"))


def test_checkpoint_path_has_each_saved_policys_exact_point(sft_run):
    """The smoke SFT run keeps steps 3 and 6: the path is the reference (step 0, KL 0) and one
    exact point per kept step, the last the final policy's."""
    workdir, law = sft_run
    proxy = np.arange(law.probs.size, dtype=np.float64).reshape(law.probs.shape)
    path = lab.checkpoint_path(workdir, law, proxy=proxy)
    assert path.step.tolist() == [0, 3, 6]
    model, params, _ = policies.load_policy(workdir)
    final = lab.policy_point(policies.response_logprobs(model, params, law), law, proxy=proxy)
    np.testing.assert_allclose([path.kl[-1], path.gold[-1], path.proxy[-1]], final, rtol=1e-6)
    assert abs(path.kl[0]) < 1e-12 and path.kl[1] > 0 and path.kl[1] != path.kl[2]
    np.testing.assert_allclose(path.gold[0], np.mean(np.sum(law.probs * law.gold, -1)))
