"""RL with the KL in the reward converges to the exact KL-regularised optimum (issue 11, section 4).

The world is a Markov chain: a prompt token y_0 ~ `START`, a base model p(y_t | y_{t-1}) =
`TRANS`, a gold bigram reward Σ_t `BIGRAM`[y_{t-1}, y_t], and T = 3 response tokens over V = 3
(27 responses per prompt). `rewardjax.theory.markov_optimal_policy` gives the exact optimum
π* ∝ p e^{r/β} as a time-dependent Markov table [T, V, V]. The policy trained here is a tabular
softmax over that same table shape, initialised at the base model (the reference), and trained
by REINFORCE: per-token rewards from `kl_penalty.reward_with_kl` (the gold score at the last
token minus β·k1 per token), advantages = total return minus a baseline, and the gradient taken
through `policy_losses.ppo_clip` at ratio 1 (one on-policy step per batch, so the clipped
surrogate is exactly REINFORCE). Plain gradient descent on the logits, the whole loop in one
jitted `lax.scan`.

Variants:
- exact: the expectation over the 81 (prompt, response) sequences by enumeration instead of
  sampling, with the exact per-prompt expected return as the baseline (no sampling noise);
- sampled: P = 16 prompts drawn from START × N = 8 sampled responses each, the baseline the
  group mean of returns; the reported policy is the average of the iterates' tables over the
  second half of training (Polyak averaging damps the SGD noise);
- rloo and grpo: the same sampled loop with `rewardjax.rl.advantages.rloo` / `grpo` (group
  std scaling) in place of the group-mean baseline;
- ppo: each rollout (P = 16 x N = 8, group-mean advantages, k1 against the base model computed
  with the sampling policy's log-probs, as a trainer does) is reused for 4 epochs x 4 shuffled
  minibatches of `policy_losses.ppo_clip` (ε = 0.2) against the rollout's old log-probs, so the
  ratio moves away from 1 within a rollout and the clip is active (checked: mean clip fraction
  > 1%, and the median over rollouts of max |ρ - 1| > ε).

Checks: total variation between the trained and the optimal sequence laws (NumPy enumeration,
averaged over the prompt) < 0.05, against 0.52 from the base model to the optimum; and the
sampled variants (PPO included) reach the optimum's gold reward and KL (exact, from
`theory.markov_policy_kl_reward`) within 0.03 nats / 0.03 reward units each.
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import theory
from rewardjax.rl import advantages, kl_penalty, policy_losses

V, T, BETA = 3, 3, 0.5
_RNG = np.random.default_rng(0)
START = _RNG.dirichlet(np.ones(V) * 2).astype(np.float32)
TRANS = _RNG.dirichlet(np.ones(V) * 2, size=V).astype(np.float32)
BIGRAM = _RNG.normal(size=(V, V)).astype(np.float32)
SEQS = np.array(list(itertools.product(range(V), repeat=T + 1)))  # [V^(T+1), T+1], y_0 first
TV_TOL = 0.05
METRIC_TOL = 0.03


def _sequence_law(policy):
    """P(y_0, y_1..y_T) under a Markov table policy[t-1, a, b], by NumPy enumeration."""
    pol = np.asarray(policy, np.float64)
    prob = START[SEQS[:, 0]].astype(np.float64)
    for t in range(T):
        prob = prob * pol[t, SEQS[:, t], SEQS[:, t + 1]]
    return prob


def _tv(policy_a, policy_b):
    return 0.5 * np.abs(_sequence_law(policy_a) - _sequence_law(policy_b)).sum()


@functools.cache
def _optimum():
    return np.asarray(theory.markov_optimal_policy(TRANS, BIGRAM, BETA, length=T))


def _gather(table, ys):
    """table[t, y_{t-1}, y_t] for each row of ys [B, T+1] -> [B, T]."""
    return table[jnp.arange(T)[None, :], ys[:, :-1], ys[:, 1:]]


def _token_rewards(lp, ys, mask):
    """Gold score at the last token minus β·k1 per token (k1 against the base model)."""
    ref_lp = _gather(jnp.log(jnp.broadcast_to(TRANS, (T, V, V))), ys)
    kl_tokens = kl_penalty.token_kl(jax.lax.stop_gradient(lp), ref_lp, mask, estimator="k1")
    scores = jnp.sum(jnp.asarray(BIGRAM)[ys[:, :-1], ys[:, 1:]], axis=-1)
    return kl_penalty.reward_with_kl(scores, kl_tokens, mask, beta=BETA)


def _reinforce_loss(lp, advantage_rows, mask):
    """Σ_t of the per-token clipped surrogate at ratio 1: its gradient is -A Σ_t ∇log π."""
    adv = jnp.broadcast_to(advantage_rows[:, None], lp.shape)
    loss, _ = policy_losses.ppo_clip(lp, jax.lax.stop_gradient(lp), adv, mask)
    return loss.sum(-1)


@functools.partial(jax.jit, static_argnames="steps")
def _train_exact(steps, lr):
    ys = jnp.asarray(SEQS)
    mask = jnp.ones((ys.shape[0], T), bool)
    prompt = jax.nn.one_hot(ys[:, 0], V)

    def loss_fn(logits):
        lp = _gather(jax.nn.log_softmax(logits, -1), ys)
        weight = jax.lax.stop_gradient(jnp.asarray(START)[ys[:, 0]] * jnp.exp(lp.sum(-1)))
        returns = _token_rewards(lp, ys, mask).sum(-1)
        baseline = (prompt.T @ (weight * returns)) / (prompt.T @ weight)  # E[R | y_0]
        return jnp.sum(weight * _reinforce_loss(lp, returns - baseline[ys[:, 0]], mask))

    def step(logits, _):
        return logits - lr * jax.grad(loss_fn)(logits), None

    init = jnp.log(jnp.broadcast_to(TRANS, (T, V, V)))
    logits, _ = jax.lax.scan(step, init, None, length=steps)
    return jax.nn.softmax(logits, -1)


def _sample(key, logits, *, prompts, group):
    """`prompts` prompt tokens y_0 ~ START, each repeated `group` times, then y_1..y_T drawn from
    the table policy softmax(logits) -> [prompts * group, T + 1]."""
    keys = jax.random.split(key, T + 1)
    y = jnp.repeat(jax.random.choice(keys[0], V, (prompts,), p=jnp.asarray(START)), group)
    ys = [y]
    for t in range(T):
        y = jax.random.categorical(keys[t + 1], logits[t, y])
        ys.append(y)
    return jnp.stack(ys, axis=1)


@functools.partial(jax.jit, static_argnames=("estimator", "steps", "prompts", "group"))
def _train_sampled(key, *, estimator, steps, lr, prompts=16, group=8):
    mask = jnp.ones((prompts * group, T), bool)
    sample = functools.partial(_sample, prompts=prompts, group=group)

    def loss_fn(logits, ys):
        lp = _gather(jax.nn.log_softmax(logits, -1), ys)
        token_rewards = _token_rewards(lp, ys, mask)
        if estimator == "group_mean":
            returns = token_rewards.sum(-1).reshape(prompts, group)
            adv = (returns - returns.mean(-1, keepdims=True)).reshape(-1)
        else:
            adv = advantages.get(estimator)(token_rewards, mask, group_size=group).advantages
            adv = adv[:, 0]  # sequence-level: the same at every token
        return jnp.mean(_reinforce_loss(lp, adv, mask))

    def step(carry, key):
        logits, average, i = carry
        ys = sample(key, logits)
        logits = logits - lr * jax.grad(loss_fn)(logits, ys)
        average = average + (i >= steps // 2) * jax.nn.softmax(logits, -1)
        return (logits, average, i + 1), None

    init = jnp.log(jnp.broadcast_to(TRANS, (T, V, V)))
    carry = (init, jnp.zeros_like(init), 0)
    (_, average, _), _ = jax.lax.scan(step, carry, jax.random.split(key, steps))
    return average / (steps - steps // 2)


@functools.partial(jax.jit, static_argnames=("steps", "epochs", "minibatches", "prompts", "group"))
def _train_ppo(key, *, steps, lr, epochs, minibatches, epsilon=0.2, prompts=16, group=8):
    """PPO: each rollout is reused for `epochs` x `minibatches` clipped updates (module docstring).

    Returns the Polyak-averaged table [T, V, V] (second half of training), and per rollout the
    mean clip fraction of its updates [steps] and the largest |ρ - 1| over its updates [steps].
    """
    rows = prompts * group
    per_batch = rows // minibatches
    mask = jnp.ones((per_batch, T), bool)

    def loss_fn(logits, ys, old_lp, adv):
        lp = _gather(jax.nn.log_softmax(logits, -1), ys)
        adv = jnp.broadcast_to(adv[:, None], lp.shape)
        loss, aux = policy_losses.ppo_clip(lp, old_lp, adv, mask, epsilon_low=epsilon)
        return jnp.mean(loss.sum(-1)), aux

    def rollout(carry, key):
        logits, average, i = carry
        sample_key, order_key = jax.random.split(key)
        ys = _sample(sample_key, logits, prompts=prompts, group=group)
        old_lp = _gather(jax.nn.log_softmax(logits, -1), ys)  # the sampler's log-probs
        returns = _token_rewards(old_lp, ys, jnp.ones((rows, T), bool)).sum(-1)
        returns = returns.reshape(prompts, group)
        adv = (returns - returns.mean(-1, keepdims=True)).reshape(-1)
        keys = jax.random.split(order_key, epochs)
        order = jnp.concatenate([jax.random.permutation(k, rows) for k in keys])

        def update(logits, idx):
            grad, aux = jax.grad(loss_fn, has_aux=True)(logits, ys[idx], old_lp[idx], adv[idx])
            return logits - lr * grad, (jnp.mean(aux.clipped), jnp.max(jnp.abs(aux.ratio - 1)))

        logits, (clipped, deviation) = jax.lax.scan(
            update, logits, order.reshape(epochs * minibatches, per_batch)
        )
        average = average + (i >= steps // 2) * jax.nn.softmax(logits, -1)
        return (logits, average, i + 1), (jnp.mean(clipped), jnp.max(deviation))

    init = jnp.log(jnp.broadcast_to(TRANS, (T, V, V)))
    carry = (init, jnp.zeros_like(init), 0)
    (_, average, _), (clip_fraction, deviation) = jax.lax.scan(
        rollout, carry, jax.random.split(key, steps)
    )
    return average / (steps - steps // 2), clip_fraction, deviation


def test_the_task_is_not_trivial():
    base = np.broadcast_to(TRANS, (T, V, V))
    assert _tv(base, _optimum()) > 0.4  # the base model is far from the optimum


def test_exact_reinforce_with_kl_in_reward_reaches_the_exact_optimum():
    policy = np.asarray(_train_exact(1500, 2.0))
    assert _tv(policy, _optimum()) < TV_TOL
    kl, gold = theory.markov_policy_kl_reward(START, policy, TRANS, BIGRAM)
    kl_opt, gold_opt = theory.markov_policy_kl_reward(START, _optimum(), TRANS, BIGRAM)
    np.testing.assert_allclose([kl, gold], [kl_opt, gold_opt], atol=METRIC_TOL)


@pytest.mark.parametrize("estimator,lr", [("group_mean", 0.5), ("rloo", 0.5), ("grpo", 0.1)])
def test_sampled_reinforce_rloo_grpo_reach_the_optimum_gold_reward_at_its_kl(estimator, lr):
    policy = np.asarray(_train_sampled(jax.random.key(0), estimator=estimator, steps=1500, lr=lr))
    assert _tv(policy, _optimum()) < TV_TOL
    kl, gold = theory.markov_policy_kl_reward(START, policy, TRANS, BIGRAM)
    kl_opt, gold_opt = theory.markov_policy_kl_reward(START, _optimum(), TRANS, BIGRAM)
    np.testing.assert_allclose(kl, kl_opt, atol=METRIC_TOL)
    np.testing.assert_allclose(gold, gold_opt, atol=METRIC_TOL)


def test_ppo_epochs_with_clipping_reach_the_optimum_gold_reward_at_its_kl():
    epsilon = 0.2
    policy, clip_fraction, deviation = _train_ppo(
        jax.random.key(0), steps=400, lr=3.0, epochs=4, minibatches=4, epsilon=epsilon
    )
    # The updates leave the trust region: the ratio moves away from 1 and the clip binds.
    assert np.mean(np.asarray(clip_fraction)) > 0.01
    assert np.median(np.asarray(deviation)) > epsilon
    policy = np.asarray(policy)
    assert _tv(policy, _optimum()) < TV_TOL
    kl, gold = theory.markov_policy_kl_reward(START, policy, TRANS, BIGRAM)
    kl_opt, gold_opt = theory.markov_policy_kl_reward(START, _optimum(), TRANS, BIGRAM)
    np.testing.assert_allclose(kl, kl_opt, atol=METRIC_TOL)
    np.testing.assert_allclose(gold, gold_opt, atol=METRIC_TOL)
