"""Task "rl": online KL-regularised RL of a policy against a reward function.

One step of the loop is one iteration:

1. sample N completions for each of the P prompts of the batch with the jitted KV-cache sampler
   (temperature, top-k, top-p), keeping each token's log-prob under the sampled distribution;
2. score them with the configured reward function (`rl_rewards`: the synthetic task's gold
   reward, a trained reward model, a bigram reward table, a rule on text, a verifiable answer, a
   rubric, or a weighted combination, optionally constrained: see below), and on the
   synthetic task with the gold reward too, for the metrics;
3. in one jitted update: the reference's log-probs, the KL (in the reward, or in the loss),
   advantages (`rl.advantages`), then `num_epochs` passes of `num_minibatches` updates of the
   policy loss (`rl.policy_losses`, aggregated by `rl.aggregation`) with importance ratios, and
   the KL coefficient's controller update.

Constrained rewards (`config.reward.constraints` on a `combined` reward; Moskovitz et al. 2023,
"Confronting Reward Model Overoptimization with Constrained RLHF", arXiv 2310.04373): the
iteration's reward is `rl.constraints.combine_rewards` of the K (transformed) component rewards
with the current multipliers λ_t, r = Σ_k c_k r_k (c_k = w_k - λ_k for 'at_most' and 'equal',
w_k + λ_k for 'at_least'); after scoring, the multipliers take one projected dual-ascent step on
the batch's component means v_k (`rl.constraints.constraints_update`):
λ_{t+1} = max(0, λ_t + lr (v_k - θ_k)) for 'at_most' (θ_k - v_k for 'at_least', no projection
for 'equal'). λ lives in `TrainState.extra["constraint_multipliers"]` (checkpointed, so a resumed
run continues exactly); the metrics `constraint/<name>/lambda` (the λ_t the iteration used) and
`constraint/<name>/mean` (v_k) are logged. Without constraints nothing of this runs.

The old log-probs are the sampler's: it draws from `softmax(filter(logits / temperature))`, and the
trainer's log-probs apply the same temperature and the same top-k / top-p filter to the policy's
logits, so the ratio starts at 1 (to float32 rounding of the cached and the full forward pass).
The KL (reference log-probs, k1 in the reward, estimators in the loss, the logged `kl`) is the
models' own, at temperature 1 without top-k / top-p (the sampler's `logprobs`): a truncated
reference gives the policy's tokens outside its support probability 0, an infinite KL.
The state's step counts iterations (the optimiser's own count counts updates); the iteration's
key is folded from the step, so a resumed run samples what the uninterrupted one would.
The reference is the initial policy (`config.init_from`: an SFT run, or a reward-model run whose
backbone the policy takes). PPO's critic (`rl.advantage=gae`) is a `ValueModel` trained beside the
policy, initialised from the same backbone.

Papers: see `rewardjax.rl` (PPO, GRPO, Dr. GRPO, DAPO, GSPO, CISPO, RLOO, REINFORCE++, ReMax).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from rewardjax import parallel, rewards, rl, sampling
from rewardjax.data import synthetic
from rewardjax.kl import KLControllerState, adaptive_kl_controller, fixed_kl_controller
from rewardjax.models import CausalLM, ValueModel
from rewardjax.train.state import TrainState
from rewardjax.train.tasks import reward_model, rl_rewards
from rewardjax.train.tasks.common import Context, Task, backbone_config

__all__ = ["build", "layouts", "token_logprobs", "token_range_of"]

CONTROLLERS = ("fixed", "adaptive", "lagrangian")


def layouts(config: ml_collections.ConfigDict, train_kind: str, eval_kind: str | None):
    """Prompts: the prompt part of SFT rows (pairs give their prompts)."""
    del config, train_kind, eval_kind
    return "sft", "sft"


def token_logprobs(
    logits: jax.Array,
    tokens: jax.Array,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    where: jax.Array | None = None,
) -> jax.Array:
    """`log softmax(filter(logits[:, t - 1] / temperature))[tokens[:, t]]`, `[B, T]` float32 (0 at
    t = 0, and where `where` `[B, T]` is 0): what the sampler's `sampling_logprobs` are for the
    same settings. A padding token can lie outside the top-k / top-p support (log-prob -inf, and
    NaN in any KL of two such): give the mask as `where` to read 0 there, as the sampler does."""
    b, t, v = logits.shape
    scaled = logits[:, :-1].astype(jnp.float32) / temperature
    if top_k or top_p < 1.0:
        scaled = sampling.filter_logits(scaled.reshape(-1, v), top_k=top_k, top_p=top_p)
        scaled = scaled.reshape(b, t - 1, v)
    logp = sampling.token_logprobs(scaled, tokens[:, 1:])
    if where is not None:
        logp = jnp.where(where[:, 1:] > 0, logp, 0.0)
    return jnp.pad(logp, ((0, 0), (1, 0)))


def token_range_of(data: Any) -> tuple[int, int]:
    """The ids the policy may emit, `[low, high)`: the synthetic task's tokens (id 0 pads) or the
    tokenizer's (`first_id`..`vocab_size`); the model's other rows get probability 0."""
    if data.task is not None:
        return 1, data.task.model_vocab_size
    return data.tokenizer.first_id, data.tokenizer.vocab_size


def _left_padded(tokens: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each row's real tokens moved to its end (the prompt then continues into the completion
    without a gap, as the sampler lays it out)."""
    order = jnp.argsort(mask > 0, axis=-1, stable=True)
    return jnp.take_along_axis(tokens, order, -1), jnp.take_along_axis(mask, order, -1)


def _check(config: ml_collections.ConfigDict, n_rows: int) -> None:
    r = config.rl
    kl_fields = f"config.rl.kl.placement={r.kl.placement!r}, estimator={r.kl.estimator!r}"
    checks = (  # each names the config field it reads
        (f"config.rl.advantage={r.advantage!r}", lambda: rl.advantages.spec(r.advantage)),
        (f"config.rl.policy_loss={r.policy_loss!r}", lambda: rl.policy_losses.spec(r.policy_loss)),
        (kl_fields, lambda: rl.kl_penalty.check_placement(r.kl.placement, r.kl.estimator)),
    )
    for fields, check in checks:
        try:
            check()
        except ValueError as e:
            raise ValueError(f"{fields}: {e}") from None
    adv = rl.advantages.spec(r.advantage)
    if r.kl.controller not in CONTROLLERS:
        raise ValueError(
            f"config.rl.kl.controller={r.kl.controller!r}: expected one of {CONTROLLERS}."
        )
    if r.temperature <= 0:
        raise ValueError(
            f"config.rl.temperature={r.temperature}: RL samples from the policy; use a "
            "temperature > 0 (1.0 samples the policy itself)."
        )
    if adv.group_level and r.num_samples < 2:
        raise ValueError(
            f"config.rl.advantage={r.advantage!r} compares the completions of a prompt: set "
            f"config.rl.num_samples >= 2 (it is {r.num_samples})."
        )
    if adv.multi_reward:
        raise ValueError(
            f"config.rl.advantage={r.advantage!r} takes several rewards per completion; the "
            "trainer scores one (combine rewards with config.reward.kind='combined')."
        )
    if n_rows % r.num_minibatches:
        raise ValueError(
            f"config.rl.num_minibatches={r.num_minibatches} must divide the rows of an "
            f"iteration, config.train.batch_size x config.rl.num_samples = {n_rows}."
        )
    if r.overlong not in ("none", "mask", "penalty"):
        raise ValueError(
            f"config.rl.overlong={r.overlong!r}: expected 'none', 'mask' or 'penalty'."
        )


def _controller(k: ml_collections.ConfigDict):
    if k.controller == "fixed":
        return fixed_kl_controller(k.beta)
    if k.controller == "adaptive":
        return adaptive_kl_controller(k.beta, k.target, k.horizon)
    return rl.kl_penalty.lagrangian_kl_controller(k.beta, k.target, k.lr)


def _init_policy(ctx: Context, policy: CausalLM, example) -> tuple[Any, Any]:
    """Fresh parameters, those of an SFT/DPO/RL run in `config.init_from`, or, for a reward-model
    run there, its backbone as the policy's transformer (a tied LM head reads its embeddings)."""
    init_from = ctx.config.init_from
    saved = os.path.join(init_from, "config.json")
    if not (init_from and os.path.exists(saved)):
        return ctx.init(policy, ctx.init_key, example)
    with open(saved, encoding="utf-8") as f:
        saved_config = ml_collections.ConfigDict(json.load(f))
    task = saved_config.get("task")
    if task == "rl":
        raise ValueError(
            f"config.init_from={init_from!r} is an RL run: resume it with its own --workdir, or "
            "start from the SFT or reward-model run it started from."
        )
    if task != "reward_model":
        return ctx.init(policy, ctx.init_key, example)
    # The policy takes the backbone whole: its shape must be this run's config.model.
    theirs, ours = backbone_config(saved_config), ctx.backbone
    shape = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "head_dim")
    differ = [k for k in shape if getattr(theirs, k) != getattr(ours, k)]
    if differ:
        raise ValueError(
            f"config.init_from={init_from!r} is a reward model whose backbone has "
            + ", ".join(f"model.{k}={getattr(theirs, k)}" for k in differ)
            + "; this run's config.model has "
            + ", ".join(f"{k}={getattr(ours, k)}" for k in differ)
            + ": set "
            + " ".join(f"--config.model.{k}={getattr(theirs, k)}" for k in differ)
            + " (or train the reward model with this run's config.model)."
        )
    params, shardings = parallel.sharded_init(
        policy.init, ctx.init_key, example, mesh=ctx.mesh, rules=ctx.rules
    )
    _, rm_params = reward_model.load_trained(
        init_from, ctx.mesh, ctx.rules, field="config.init_from"
    )
    return {
        "params": {**params["params"], "transformer": rm_params["params"]["backbone"]}
    }, shardings


@dataclasses.dataclass(frozen=True)
class _Shapes:
    prompts: int  # P
    samples: int  # N
    prompt_width: int  # W
    new_tokens: int  # L


def build(ctx: Context) -> Task:
    config = ctx.config
    r = config.rl
    dataset = ctx.data.train
    shapes = _Shapes(
        prompts=config.train.batch_size,
        samples=r.num_samples,
        prompt_width=max(e["prompt_len"] for e in dataset.examples),
        new_tokens=r.max_new_tokens or (ctx.data.task.length if ctx.data.task else 0),
    )
    if shapes.new_tokens < 1:
        raise ValueError("config.rl.max_new_tokens must be >= 1 (0 = the synthetic task's length).")
    _check(config, shapes.prompts * shapes.samples)
    adv_spec = rl.advantages.spec(r.advantage)
    policy = CausalLM(ctx.backbone)
    example = ctx.example_tokens(shapes.prompt_width + shapes.new_tokens)
    policy_params, policy_sh = _init_policy(ctx, policy, example)
    params, shardings = {"policy": policy_params}, {"policy": policy_sh}
    critic = ValueModel(ctx.backbone) if adv_spec.needs_values else None
    if critic is not None:
        value_params, value_sh = parallel.sharded_init(
            critic.init, ctx.init_key, example, mesh=ctx.mesh, rules=ctx.rules
        )
        # The critic starts from the policy's backbone, its head at zero.
        value_params = {
            "params": {
                **value_params["params"],
                "transformer": jax.tree.map(jnp.copy, policy_params["params"]["transformer"]),
            }
        }
        params["value"], shardings["value"] = value_params, value_sh
    # A copy: the state's buffers are donated to the update, the reference's must survive.
    reference = jax.tree.map(jnp.copy, policy_params)
    controller = _controller(r.kl)
    iteration = _Iteration(
        config=config,
        shapes=shapes,
        policy=policy,
        critic=critic,
        reference=reference,
        reward_fn=rl_rewards.reward_function(ctx),
        gold_fn=rewards.GoldReward(ctx.data.task) if ctx.data.task is not None else None,
        task=ctx.data.task,
        controller=controller,
        token_range=token_range_of(ctx.data),
        samples=SampleLog(
            os.path.join(ctx.workdir, "samples.jsonl"),
            every=config.train.log_every,
            rows=r.log_samples,
            tokenizer=ctx.data.tokenizer,
        ),
    )
    extra = {"kl_beta": controller.init().beta}
    constraints = rl_rewards.constraint_spec(config)
    if constraints is not None:
        extra["constraint_multipliers"] = constraints.init.multipliers
    iteration.constraints = constraints
    return Task(policy, params, shardings, iteration, dataset, extra=extra, jit=False)


class _Iteration:
    """The step `(state, batch, rng) -> (state, metrics)` of one RL iteration (see the module
    docstring); the loop calls it unjitted, its sampling and update are jitted once each."""

    def __init__(
        self,
        *,
        config,
        shapes,
        policy,
        critic,
        reference,
        reward_fn,
        gold_fn,
        task,
        controller,
        token_range,
        samples,
    ):
        self.config, self.shapes, self.task = config, shapes, task
        self.samples = samples
        self.reward_fn, self.gold_fn = reward_fn, gold_fn
        self.reference = reference
        self.constraints: rl_rewards.ConstraintSpec | None = None  # set by `build`
        r = config.rl
        self.sample = jax.jit(
            functools.partial(
                sampling.sample,
                policy,
                max_new_tokens=shapes.new_tokens,
                num_samples=shapes.samples,
                top_k=r.top_k,
                top_p=r.top_p,
                temperature=r.temperature,
                stop_tokens=tuple(r.stop_tokens),
                token_range=token_range,
            )
        )
        self.greedy = jax.jit(
            functools.partial(
                sampling.sample,
                policy,
                max_new_tokens=shapes.new_tokens,
                num_samples=1,
                temperature=0.0,
                stop_tokens=tuple(r.stop_tokens),
                token_range=token_range,
            )
        )
        self.update = jax.jit(
            functools.partial(
                _update,
                policy=policy,
                critic=critic,
                controller=controller,
                config=config,
                token_range=token_range,
            ),
            donate_argnums=0,
        )

    def __call__(self, state: TrainState, batch: dict, rng: jax.Array):
        s, step = self.shapes, int(state.step)  # the update donates the state
        sample_key, update_key = jax.random.split(rng)
        prompt_mask = (batch["mask"] * (1 - batch["completion_mask"]))[:, : s.prompt_width]
        prompts, prompt_mask = _left_padded(batch["tokens"][:, : s.prompt_width], prompt_mask)
        out = self.sample(state.params["policy"], prompts, prompt_mask, sample_key)
        rows = s.prompts * s.samples
        flat = lambda x: x.reshape(rows, *x.shape[2:])
        inputs = rewards.RewardInputs(
            jnp.repeat(prompts, s.samples, axis=0),
            jnp.repeat(prompt_mask, s.samples, axis=0),
            flat(out.tokens),
            flat(out.mask),
            group_size=s.samples,
        )
        reference = None
        if getattr(self.reward_fn, "needs_reference", False):
            # Per-prompt reference rewards (log-sigmoid centring, PAR) from N completions of the
            # reference policy to the same prompts, sampled in the same rollout.
            ref_key = jax.random.fold_in(sample_key, 1)
            ref_out = self.sample(self.reference, prompts, prompt_mask, ref_key)
            reference = inputs._replace(
                completion_tokens=flat(ref_out.tokens), completion_mask=flat(ref_out.mask)
            )
        scored = self.reward_fn(inputs, reference)
        scores, constraint_metrics = scored.rewards, {}
        if self.constraints is not None:
            multipliers = state.extra["constraint_multipliers"]
            scores, state, constraint_metrics = self._constrained(scored, state)
        baseline = None
        if rl.advantages.spec(self.config.rl.advantage).needs_baseline:
            greedy = self.greedy(state.params["policy"], prompts, prompt_mask, sample_key)
            greedy_inputs = rewards.RewardInputs(
                prompts, prompt_mask, greedy.tokens[:, 0], greedy.mask[:, 0]
            )
            greedy_scored = self.reward_fn(greedy_inputs)
            baseline = greedy_scored.rewards
            if self.constraints is not None:  # the same λ_t as the samples' rewards
                baseline = rl.constraints.combine_rewards(
                    self._components(greedy_scored),
                    self.constraints.init._replace(multipliers=multipliers),
                )
            baseline = jnp.repeat(baseline, s.samples)
        state, metrics = self.update(
            state,
            self.reference,
            inputs.prompt_tokens,
            inputs.prompt_mask,
            inputs.completion_tokens,
            inputs.completion_mask,
            flat(out.sampling_logprobs),
            flat(out.logprobs),
            scores,
            baseline,
            update_key,
        )
        self.samples.write(step, inputs, scores)
        metrics["reward"] = jnp.mean(scores)
        metrics.update(constraint_metrics)
        metrics["completion_length"] = jnp.mean(flat(out.lengths).astype(jnp.float32))
        if self.gold_fn is not None:
            gold = self.gold_fn(inputs)
            metrics["gold_reward"] = jnp.mean(gold.rewards)
            metrics["invalid_fraction"] = jnp.mean(gold.aux["invalid"])
            metrics["kl_base_chain"] = _chain_kl(
                self.task, inputs, flat(out.logprobs), gold.aux["invalid"]
            )
        return state, metrics

    def _components(self, scored: rewards.RewardOutput) -> jax.Array:
        """The combined reward's K (transformed) component rewards, [K, B]."""
        return jnp.stack([scored.aux[f"{n}/transformed"] for n in self.constraints.names])

    def _constrained(self, scored: rewards.RewardOutput, state: TrainState):
        """The Lagrangian's reward with the state's λ_t, the state with λ_{t+1} (one dual-ascent
        step on the batch's component means), and the constraint metrics."""
        c = self.constraints
        components = self._components(scored)
        current = c.init._replace(multipliers=state.extra["constraint_multipliers"])
        scores = rl.constraints.combine_rewards(components, current)
        means = jnp.mean(components, axis=-1)
        stepped = rl.constraints.constraints_update(
            current, means, thresholds=c.thresholds, lr=c.lr
        )
        state = state.replace(extra={**state.extra, "constraint_multipliers": stepped.multipliers})
        metrics = {}
        for i, name in enumerate(c.names):
            metrics[f"constraint/{name}/lambda"] = current.multipliers[i]
            metrics[f"constraint/{name}/mean"] = means[i]
        return scores, state, metrics


class SampleLog:
    """Appends the first `rows` completions of every `every`-th iteration, with their rewards, to
    a JSONL file (`{"step", "prompt", "completion", "reward"}`; text when there is a tokenizer,
    else the ids), so a run's behaviour can be read, not only its mean reward."""

    def __init__(self, path: str, *, every: int, rows: int, tokenizer: Any):
        self.path, self.every, self.rows, self.tokenizer = path, every, rows, tokenizer

    def write(self, step: int, inputs: rewards.RewardInputs, scores: jax.Array) -> None:
        """`step` is the iteration's index (the step it completes is `step + 1`)."""
        if not self.rows or (step + 1) % self.every or jax.process_index() != 0:
            return
        if not inputs.completion_tokens.is_fully_addressable:  # several processes: skip
            return
        n = self.rows
        parts = [
            (inputs.prompt_tokens[:n], inputs.prompt_mask[:n], False),
            (inputs.completion_tokens[:n], inputs.completion_mask[:n], True),
        ]
        if self.tokenizer is not None:
            prompts, completions = (
                rewards.decode_texts(self.tokenizer, t, m, strip_eos=eos) for t, m, eos in parts
            )
        else:
            prompts, completions = (
                [row[keep > 0].tolist() for row, keep in zip(np.asarray(t), np.asarray(m))]
                for t, m, _ in parts
            )
        with open(self.path, "a") as f:
            for p, c, r in zip(prompts, completions, np.asarray(scores[:n]).tolist()):
                record = {"step": step + 1, "prompt": p, "completion": c, "reward": r}
                f.write(json.dumps(record) + "\n")


def _chain_kl(task, inputs: rewards.RewardInputs, logprobs, invalid) -> jax.Array:
    """Monte-Carlo KL(π ‖ base chain) per sequence over the valid samples: the mean of
    log π(y|x) (the sampler's, temperature 1) minus the chain's exact log p_0(y|x)."""
    y0 = synthetic.to_tokens(inputs.prompt_tokens[:, -1])
    tokens = jnp.clip(synthetic.to_tokens(inputs.completion_tokens), 0, task.vocab_size - 1)
    base = synthetic.response_logprob(task, jnp.clip(y0, 0, task.vocab_size - 1), tokens)
    valid = 1.0 - invalid
    gap = jnp.where(valid > 0, jnp.sum(logprobs, -1) - base, 0.0)
    return jnp.sum(gap) / jnp.maximum(jnp.sum(valid), 1.0)


def _update(
    state: TrainState,
    reference: Any,
    prompt_tokens,
    prompt_mask,
    completion_tokens,
    completion_mask,
    old_logp,
    old_model_logp,
    scores,
    baseline,
    key,
    *,
    policy: CausalLM,
    critic: ValueModel | None,
    controller,
    config: ml_collections.ConfigDict,
    token_range: tuple[int, int],
):
    """Advantages and `num_epochs x num_minibatches` policy (and critic) updates on one rollout."""
    r = config.rl
    tokens = jnp.concatenate([prompt_tokens, completion_tokens], axis=1)
    mask = jnp.concatenate([prompt_mask, completion_mask], axis=1).astype(jnp.int32)
    w = prompt_tokens.shape[1]
    cmask = completion_mask.astype(jnp.float32)
    n_rows, length = completion_tokens.shape
    decode = dict(temperature=r.temperature, top_k=r.top_k, top_p=r.top_p)

    reshaped = r.temperature != 1.0 or r.top_k or r.top_p < 1.0  # sampled != the model's

    def logps(p, rows):
        """Log-probs of the completions under the distribution sampled (temperature, top-k and
        top-p applied: the ratio's) and under the model itself (the KL's), and the logits."""
        logits = policy.apply(p, tokens[rows], segment_ids=mask[rows])[0]
        logits = sampling.restrict_logits(logits, token_range)
        model = token_logprobs(logits, tokens[rows], temperature=1.0, where=mask[rows])
        sampled = model
        if reshaped:
            sampled = token_logprobs(logits, tokens[rows], where=mask[rows], **decode)
        return sampled[:, w:], model[:, w:], logits[:, w - 1 : -1]

    everything = jnp.arange(n_rows)
    # The KL is the models' own, temperature 1 and untruncated (the sampler's `logprobs`): a
    # token sampled by the policy may lie outside the reference's top-k / top-p support.
    ref_logp = jax.lax.stop_gradient(logps(reference, everything)[1])
    old_logp = old_logp.astype(jnp.float32)
    beta = state.extra["kl_beta"]
    kl_tokens = rl.kl_penalty.token_kl(
        old_model_logp.astype(jnp.float32), ref_logp, cmask, estimator="k1"
    )
    in_reward = r.kl.placement == "in_reward"
    scores = scores.astype(jnp.float32)
    if r.overlong == "penalty":
        lengths = jnp.sum(cmask, -1).astype(jnp.int32)
        scores = scores + r.overlong_coef * rl.filtering.overlong_penalty(
            lengths, max_length=length, cache_length=r.overlong_cache
        )
    token_rewards = rl.kl_penalty.reward_with_kl(
        scores, kl_tokens, cmask, beta=beta if in_reward else 0.0
    )
    values = None
    if critic is not None:
        values = jax.lax.stop_gradient(
            critic.apply(state.params["value"], tokens, segment_ids=mask)[:, w - 1 : -1]
        )
    adv = rl.advantages.get(r.advantage)(
        token_rewards,
        cmask,
        group_size=r.num_samples,
        values=values,
        baseline_rewards=baseline,
        **r.advantage_kwargs.to_dict(),
    )
    weights = jnp.ones((n_rows,), jnp.float32)
    metrics = {}
    if r.filter_groups:
        keep, filtered = rl.filtering.group_filter_mask(
            scores, group_size=r.num_samples, tol=r.filter_tol
        )
        weights = keep.astype(jnp.float32)
        metrics["filtered_groups"] = filtered.astype(jnp.float32) / (n_rows // r.num_samples)
    if r.overlong == "mask":
        truncated = (jnp.sum(cmask, -1) >= length) & ~_stopped(completion_tokens, cmask, r)
        weights = weights * (1.0 - truncated.astype(jnp.float32))
    loss_fn = rl.policy_losses.get(r.policy_loss)

    def objective(params, rows):
        logp, model_logp, logits = logps(params["policy"], rows)
        m = cmask[rows]
        loss, aux = loss_fn(
            logp, old_logp[rows], adv.advantages[rows], m, **r.policy_loss_kwargs.to_dict()
        )
        if not in_reward:
            k = rl.kl_penalty.token_kl(model_logp, ref_logp[rows], m, estimator=r.kl.estimator)
            loss = loss + beta * k
        total = rl.aggregation.aggregate(
            loss, m, r.aggregation, max_length=length, weights=weights[rows]
        )
        parts = {
            "policy_loss": total,
            "clip_fraction": rl.aggregation.aggregate(
                jnp.asarray(aux.clipped, jnp.float32), m, "token_mean", weights=weights[rows]
            ),
            "entropy": rl.aggregation.aggregate(
                rl.policy_losses.entropy_from_logits(logits / r.temperature, m), m, "token_mean"
            ),
        }
        if critic is not None:
            v = critic.apply(params["value"], tokens[rows], segment_ids=mask[rows])[:, w - 1 : -1]
            v_loss, _ = rl.policy_losses.value_loss(
                v, values[rows], adv.returns[rows], m, clip_range=r.value_clip
            )
            v_loss = rl.aggregation.aggregate(v_loss, m, "token_mean", weights=weights[rows])
            parts["value_loss"] = v_loss
            total = total + r.value_coef * v_loss
        return total, parts

    per_batch = n_rows // r.num_minibatches
    keys = jax.random.split(key, r.num_epochs)
    order = jnp.concatenate([jax.random.permutation(k, n_rows) for k in keys])
    order = order.reshape(r.num_epochs * r.num_minibatches, per_batch)

    def update(carry, rows):
        params, opt_state = carry
        (loss, parts), grads = jax.value_and_grad(objective, has_aux=True)(params, rows)
        updates, opt_state = state.tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return (params, opt_state), {"loss": loss, **parts, "grad_norm": optax.global_norm(grads)}

    (params, opt_state), history = jax.lax.scan(update, (state.params, state.opt_state), order)
    seq_kl = jnp.sum(kl_tokens, -1)
    observed_kl = jnp.mean(seq_kl)
    new_beta = controller.update(KLControllerState(beta=beta), observed_kl, n_rows).beta
    metrics.update({k: jnp.mean(v) for k, v in history.items()})
    metrics.update(
        kl=observed_kl,
        kl_beta=beta,
        param_norm=optax.global_norm(params["policy"]),
        advantage_std=jnp.std(adv.advantages, where=cmask > 0),
    )
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        extra={**state.extra, "kl_beta": new_beta},
    )
    return new_state, metrics


def _stopped(completion_tokens, cmask, r) -> jax.Array:
    """Rows that ended on a stop token (not cut off by max_new_tokens)."""
    if not r.stop_tokens:
        return jnp.zeros(completion_tokens.shape[0], bool)
    last = jnp.maximum(jnp.sum(cmask, -1).astype(jnp.int32) - 1, 0)
    final = jnp.take_along_axis(completion_tokens, last[:, None], -1)[:, 0]
    return jnp.isin(final, jnp.asarray(r.stop_tokens))
