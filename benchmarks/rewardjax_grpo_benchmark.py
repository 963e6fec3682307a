"""rewardjax GRPO iterations/s: the RL trainer's iteration (task "rl", `configs/rl.py:grpo`), CPU.

    .venv/bin/python benchmarks/rewardjax_grpo_benchmark.py [--prompts 8 --generations 8 ...]

Runs the step that `rewardjax.train.fit` runs for `configs/rl.py:grpo` (the iteration of
`rewardjax.train.tasks.rl`): sample `generations` completions of each of `prompts` prompts with the
jitted KV-cache sampler (temperature 1, no top-k / top-p, no stop token: exactly `new_tokens`
tokens), score them with the rule reward "fraction of even token ids" (`EvenFraction`, a
`rewards.RewardFunction`; the same rule as `preference_pairs.even_fraction`, checked against it on
the first rollout), then the jitted update: the reference's log-probs (a frozen copy of the initial
policy), group-normalised advantages, one epoch of one minibatch of the clipped loss (token mean
per sequence, then the mean over sequences) plus `beta` times the k3 KL in the loss, AdamW with
clipping 1.0 and a linear decay (TRL's defaults, `rewardjax.train.make_optimizer`), float32. The
old log-probs are the sampler's (no extra forward pass). The prompts are
`preference_pairs.make_prompts`, the same as `trl_grpo_benchmark.py` sees, in the same order.

iterations/s is measured over `--steps` iterations after `--warmup` (compilation excluded), each
iteration's key folded from its number as the loop does. `--breakdown` then times the parts of
more iterations one by one, blocking after each (sampling, scoring, update, and the host work
between them), to show where an iteration's time goes.

Prints a human summary on stderr and one JSON object on stdout (read by `compare_trl_grpo.py`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import preference_pairs

from rewardjax import kl, rewards
from rewardjax.models import CausalLM, TransformerConfig
from rewardjax.train import TrainState, make_optimizer
from rewardjax.train.tasks import rl as rl_task

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class EvenFraction:
    """The benchmark's rule reward as a `rewards.RewardFunction`: the fraction of even ids among
    each completion's real tokens, `r_b = Σ_t m_bt·[y_bt even] / max(Σ_t m_bt, 1)`, float32 [B]."""

    needs_reference = False

    def __call__(
        self, inputs: rewards.RewardInputs, reference: rewards.RewardInputs | None = None
    ) -> rewards.RewardOutput:
        mask = inputs.completion_mask.astype(jnp.float32)
        even = (inputs.completion_tokens % 2 == 0).astype(jnp.float32)
        score = jnp.sum(even * mask, -1) / jnp.maximum(jnp.sum(mask, -1), 1.0)
        return rewards.RewardOutput(score, None, {})


def grpo_config(args):
    """`configs/rl.py:grpo` with the benchmark's rollout shape, KL coefficient and optimiser."""
    spec = importlib.util.spec_from_file_location("rl_config", os.path.join(REPO, "configs/rl.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config("grpo")
    config.train.batch_size = args.prompts
    r = config.rl
    r.num_samples, r.max_new_tokens = args.generations, args.new_tokens
    r.temperature, r.top_k, r.top_p, r.stop_tokens = 1.0, 0, 1.0, ()
    r.num_epochs, r.num_minibatches = 1, 1
    r.kl.placement, r.kl.estimator, r.kl.beta, r.kl.controller = "in_loss", "k3", args.beta, "fixed"
    config.optimizer.update(
        learning_rate=args.learning_rate,
        schedule="linear",
        warmup_steps=0,
        decay_steps=args.warmup + args.steps,
        end_learning_rate_factor=0.0,
        weight_decay=0.0,
        grad_clip_norm=1.0,
    )
    return config


def build(args):
    """(iteration, state, batches): the RL task's iteration on a fresh tiny Llama."""
    config = grpo_config(args)
    backbone = TransformerConfig(
        vocab_size=args.vocab_size,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        n_kv_heads=args.n_kv_heads,
        d_ff=args.d_ff,
        norm_eps=args.norm_eps,
    )
    policy = CausalLM(backbone)
    example = jnp.ones((args.prompts, args.prompt_len + args.new_tokens), jnp.int32)
    params = nn.unbox(policy.init(jax.random.key(args.seed), example))
    controller = kl.fixed_kl_controller(args.beta)
    shapes = rl_task._Shapes(
        prompts=args.prompts,
        samples=args.generations,
        prompt_width=args.prompt_len,
        new_tokens=args.new_tokens,
    )
    iteration = rl_task._Iteration(
        config=config,
        shapes=shapes,
        policy=policy,
        critic=None,
        reference=jax.tree.map(jnp.copy, params),  # the state's buffers are donated
        reward_fn=EvenFraction(),
        gold_fn=None,
        task=None,
        controller=controller,
    )
    state = TrainState.create(
        params={"policy": params},
        tx=make_optimizer(config.optimizer),
        rng=jax.random.key(args.seed),
    )
    state = state.replace(extra={"kl_beta": controller.init().beta})
    prompts = np.asarray(preference_pairs.make_prompts(args), np.int32)
    batches = [
        {
            "tokens": chunk,
            "mask": np.ones_like(chunk),
            "completion_mask": np.zeros_like(chunk),
        }
        for chunk in np.split(prompts, args.warmup + args.steps)
    ]
    return iteration, state, batches


def check_reward(iteration, state, batch, key) -> None:
    """The jnp rule equals `preference_pairs.even_fraction` (TRL's) on one rollout."""
    out = iteration.sample(
        state.params["policy"], jnp.asarray(batch["tokens"]), jnp.asarray(batch["mask"]), key
    )
    tokens = np.asarray(out.tokens).reshape(-1, out.tokens.shape[-1])
    lengths = np.asarray(out.lengths).reshape(-1)
    mask = np.asarray(out.mask).reshape(tokens.shape)
    inputs = rewards.RewardInputs(tokens, mask, tokens, mask)
    ours = np.asarray(EvenFraction()(inputs).rewards)
    theirs = [preference_pairs.even_fraction(row[:n].tolist()) for row, n in zip(tokens, lengths)]
    if not np.allclose(ours, theirs, atol=1e-6) or set(lengths.tolist()) != {tokens.shape[1]}:
        raise RuntimeError("EvenFraction differs from preference_pairs.even_fraction")


def breakdown(iteration, state, batches, key, repeats: int) -> dict[str, float]:
    """Seconds of each part of an iteration (best of `repeats` iterations): the iteration's jitted
    sampler, its reward function and its jitted update are wrapped to block and time each call;
    "host" is the rest of the iteration (the Python and the small array ops between them)."""
    parts = {"sample": iteration.sample, "reward": iteration.reward_fn, "update": iteration.update}
    spent: dict[str, float] = {}

    def timed(name, fn):
        def call(*a, **k):
            start = time.perf_counter()
            out = jax.block_until_ready(fn(*a, **k))
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - start
            return out

        return call

    for name, fn in parts.items():
        setattr(iteration, name if name != "reward" else "reward_fn", timed(name, fn))
    times: dict[str, list[float]] = {name: [] for name in (*parts, "host")}
    try:
        for i in range(repeats):
            spent.clear()
            batch = batches[i % len(batches)]
            start = time.perf_counter()
            state, metrics = iteration(state, batch, jax.random.fold_in(key, 1000 + i))
            jax.block_until_ready((state, metrics))
            total = time.perf_counter() - start
            for name in parts:
                times[name].append(spent.get(name, 0.0))
            times["host"].append(total - sum(spent.values()))
    finally:
        iteration.sample, iteration.reward_fn, iteration.update = parts.values()
    return {k: min(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preference_pairs.add_grpo_arguments(parser)
    parser.add_argument(
        "--breakdown", type=int, default=0, help="also time the parts of this many iterations"
    )
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    iteration, state, batches = build(args)
    key = jax.random.key(args.seed)
    check_reward(iteration, state, batches[0], key)
    for i, batch in enumerate(batches[: args.warmup]):
        state, metrics = iteration(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready((state, metrics))
    start = time.perf_counter()
    for i, batch in enumerate(batches[args.warmup :], start=args.warmup):
        state, metrics = iteration(state, batch, jax.random.fold_in(key, i))
    jax.block_until_ready((state, metrics))
    seconds = (time.perf_counter() - start) / args.steps
    results: dict[str, object] = {
        "library": "rewardjax",
        "versions": {"jax": jax.__version__},
        "device": jax.devices()[0].device_kind,
        "cpus": os.cpu_count(),
        "seconds_per_iteration": seconds,
        "iterations_per_s": 1.0 / seconds,
        "last_metrics": {k: float(v) for k, v in metrics.items()},
        "load_average_before": load_before,
    }
    if args.breakdown:
        results["breakdown_s"] = breakdown(iteration, state, batches, key, args.breakdown)
    results["load_average_after"] = os.getloadavg()[0]
    print(
        f"rewardjax (jax {jax.__version__}) RL iteration, load average {load_before:.1f}; "
        f"{args.prompts} prompts x {args.generations} completions x {args.new_tokens} new tokens, "
        f"beta {args.beta}: {1 / seconds:.3f} iterations/s ({1e3 * seconds:.0f} ms/iteration)",
        file=sys.stderr,
    )
    if args.breakdown:
        parts = ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in results["breakdown_s"].items())
        print(f"parts (best of {args.breakdown}): {parts}", file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
