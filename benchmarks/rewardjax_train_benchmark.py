"""rewardjax train-step throughput (pairs/s) and model FLOP utilisation, for the TRL comparison.

    .venv/bin/python benchmarks/rewardjax_train_benchmark.py [--batch_size 16 --d_model 128 ...]

Runs `rewardjax.train.reward_model_step` (Llama backbone + scalar head, Bradley-Terry loss) and
`rewardjax.train.dpo_step` (causal LM, sigmoid DPO loss, reference log-probs of a frozen copy
computed on the fly by `reference_logps`, as TRL's DPOTrainer does by default) as the train loop
runs them: each jitted, the state donated, the batch split over one XLA CPU device per core
(`--cpu_devices`; `main.py --cpu_devices` and the config's data mesh do the same), AdamW with
global-norm clipping 1.0 and a linear decay (TRL's defaults), float32 on CPU. The shapes and the
batches come from `preference_pairs.py` (the same as `trl_benchmark.py`), right-padded to
prompt_len + completion_len tokens. pairs/s is
measured over `--steps` steps after `--warmup` (compilation excluded); the host-to-device copy of
each batch is inside the timed loop.

MFU: model FLOPs per step divided by the step time and by this machine's measured float32 matmul
peak (a jitted square `jnp.dot`, best of several runs). Model FLOPs are counted as in PaLM
(Chowdhery et al., arXiv:2204.02311, appendix B), over the padded tokens: per token,
`6N + 12·L·H·Q·T` for a forward and backward pass and a third of that for a forward pass (the
DPO reference), N the matmul parameters (all but the embedding table), L layers, H query heads
of width Q, T tokens per row. XLA's `cost_analysis()` is printed beside it but undercounts: it
counts the body of the scanned layer stack once, not once per layer.

Prints a human summary on stderr and one JSON object on stdout (read by `compare_trl.py`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import preference_pairs
from jax.sharding import NamedSharding, PartitionSpec

from rewardjax import parallel
from rewardjax.models import CausalLM, RewardModel, RewardModelConfig, TransformerConfig
from rewardjax.train import TrainState, dpo_step, make_optimizer, reference_logps, reward_model_step
from rewardjax.train.defaults import base_config


def to_batches(pairs: list[dict[str, list[int]]], args) -> list[dict[str, np.ndarray]]:
    """Pairwise batches of the rewardjax layout, right-padded to prompt_len + completion_len."""
    length = args.prompt_len + args.completion_len
    batches = []
    for start in range(0, len(pairs), args.batch_size):
        chunk = pairs[start : start + args.batch_size]
        batch = {"weight": np.ones(len(chunk), np.float32)}
        for side in ("chosen", "rejected"):
            tokens = np.full((len(chunk), length), preference_pairs.PAD_ID, np.int32)
            mask = np.zeros((len(chunk), length), np.int32)
            completion = np.zeros((len(chunk), length), np.int32)
            for i, pair in enumerate(chunk):
                p, c = len(pair["prompt"]), len(pair[side])
                tokens[i, : p + c] = pair["prompt"] + pair[side]
                mask[i, : p + c] = 1
                completion[i, p : p + c] = 1
            batch[f"{side}_tokens"], batch[f"{side}_mask"] = tokens, mask
            batch[f"{side}_completion_mask"] = completion
        batches.append(batch)
    return batches


def backbone_config(args) -> TransformerConfig:
    """The Llama backbone of the model-shape flags (`preference_pairs.add_arguments`)."""
    return TransformerConfig(
        vocab_size=args.vocab_size,
        d_model=args.d_model,
        n_layers=args.n_layers,
        n_heads=args.n_heads,
        n_kv_heads=args.n_kv_heads,
        d_ff=args.d_ff,
        norm_eps=args.norm_eps,
    )


def optimizer(args) -> optax.GradientTransformation:
    """AdamW, no weight decay, clip 1.0, linear decay to 0 over the run (TRL's defaults)."""
    config = base_config("reward_model").optimizer
    config.update(
        learning_rate=args.learning_rate,
        schedule="linear",
        warmup_steps=0,
        decay_steps=args.warmup + args.steps,
        end_learning_rate_factor=0.0,
        weight_decay=0.0,
        grad_clip_norm=1.0,
    )
    return make_optimizer(config)


def matmul_peak_flops(n: int = 2048, repeats: int = 10) -> float:
    """Float32 FLOP/s of a jitted [n, n] @ [n, n] on this machine, the fastest of `repeats`."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    matmul = jax.jit(jnp.dot)
    matmul(a, a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def train_flops_per_token(params, backbone: TransformerConfig, length: int) -> float:
    """PaLM's model FLOPs per token of a forward and backward pass: `6N + 12·L·H·Q·T`."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    n = sum(x.size for path, x in leaves if "embed" not in jax.tree_util.keystr(path))
    attention = 12 * backbone.n_layers * backbone.n_heads * backbone.head_dim * length
    return 6.0 * n + attention


def run_steps(step, state, batches, mesh, args) -> tuple[float, float, object]:
    """(seconds per step over the timed steps, first step's loss, final state)."""
    key = jax.random.key(args.seed)
    state, metrics = step(state, parallel.shard_batch(batches[0], mesh), key)
    first_loss = float(metrics["loss"])
    for batch in batches[1 : args.warmup]:
        state, metrics = step(state, parallel.shard_batch(batch, mesh), key)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for batch in batches[args.warmup :]:
        state, metrics = step(state, parallel.shard_batch(batch, mesh), key)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / args.steps, first_loss, state


def replicate(tree, mesh):
    """A copy of `tree` on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def xla_flops(jitted, *example) -> float:
    cost = jitted.lower(*example).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost.get("flops", float("nan")))


def bench_reward_model(backbone, batches, mesh, args) -> dict[str, float]:
    model = RewardModel(RewardModelConfig(backbone=backbone, head="scalar"))
    example = jnp.asarray(batches[0]["chosen_tokens"])
    params = nn.unbox(model.init(jax.random.key(args.seed), example, example))
    state = replicate(
        TrainState.create(params=params, tx=optimizer(args), rng=jax.random.key(args.seed)), mesh
    )
    step = jax.jit(functools.partial(reward_model_step, model=model), donate_argnums=0)
    key = jax.random.key(args.seed)
    xla = xla_flops(step, state, parallel.shard_batch(batches[0], mesh), key)
    tokens = 2 * example.size  # chosen and rejected rows, padded
    flops = tokens * train_flops_per_token(params, backbone, example.shape[1])
    seconds, first_loss, _ = run_steps(step, state, batches, mesh, args)
    return {
        "seconds_per_step": seconds,
        "pairs_per_s": args.batch_size / seconds,
        "first_loss": first_loss,
        "model_flops_per_step": flops,
        "xla_cost_analysis_flops": xla,
    }


def bench_dpo(backbone, batches, mesh, args) -> dict[str, float]:
    model = CausalLM(backbone)
    example = jnp.asarray(batches[0]["chosen_tokens"])
    params = nn.unbox(model.init(jax.random.key(args.seed), example))
    ref_params = replicate(jax.tree.map(jnp.copy, params), mesh)  # the state is donated
    logits_fn = lambda p, tokens, mask: model.apply(p, tokens, segment_ids=mask)[0]
    ref_fn = jax.jit(functools.partial(reference_logps, logits_fn=logits_fn))
    policy_step = jax.jit(
        functools.partial(dpo_step, logits_fn=logits_fn, beta=args.beta), donate_argnums=0
    )
    # As the train loop runs them: the jitted reference pass, then the jitted step.
    step = lambda state, batch, key: policy_step(state, ref_fn(ref_params, batch), key)
    state = replicate(
        TrainState.create(params=params, tx=optimizer(args), rng=jax.random.key(args.seed)), mesh
    )
    key = jax.random.key(args.seed)
    device_batch = parallel.shard_batch(batches[0], mesh)
    xla = xla_flops(ref_fn, ref_params, device_batch) + xla_flops(
        policy_step, state, ref_fn(ref_params, device_batch), key
    )
    tokens = 2 * example.size
    # The policy's forward and backward, plus the reference's forward (a third of it).
    flops = tokens * train_flops_per_token(params, backbone, example.shape[1]) * 4 / 3
    seconds, first_loss, _ = run_steps(step, state, batches, mesh, args)
    return {
        "seconds_per_step": seconds,
        "pairs_per_s": args.batch_size / seconds,
        "first_loss": first_loss,
        "model_flops_per_step": flops,
        "xla_cost_analysis_flops": xla,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preference_pairs.add_arguments(parser)
    parser.add_argument("--peak_size", type=int, default=2048, help="matmul size for the peak")
    parser.add_argument(
        "--cpu_devices",
        type=int,
        default=os.cpu_count(),
        help="XLA CPU devices (jax_num_cpu_devices), the batch split over them (data parallel); "
        "default one per core, as torch runs one thread per core",
    )
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    mesh = parallel.make_mesh()

    backbone = backbone_config(args)
    batches = to_batches(preference_pairs.make_pairs(args), args)
    results: dict[str, object] = {
        "library": "rewardjax",
        "versions": {"jax": jax.__version__, "optax": optax.__version__},
        "device": jax.devices()[0].device_kind,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg()[0],
    }
    kinds = {"reward_model": bench_reward_model, "dpo": bench_dpo}
    for name, bench in kinds.items():
        if args.only in (None, name):
            results[name] = bench(backbone, batches, mesh, args)
    peak = matmul_peak_flops(args.peak_size)
    results["matmul_peak_flops"] = peak
    results["load_average_after"] = os.getloadavg()[0]

    print(
        f"rewardjax: jax {jax.__version__} on {results['device']}, {os.cpu_count()} CPUs, "
        f"load average {results['load_average_before']:.1f}; Llama d_model={args.d_model} "
        f"layers={args.n_layers} vocab={args.vocab_size}; {args.batch_size} pairs x "
        f"{args.prompt_len + args.completion_len} tokens",
        file=sys.stderr,
    )
    print(f"measured f32 matmul peak: {peak / 1e9:.1f} GFLOP/s", file=sys.stderr)
    for name in kinds:
        if name not in results:
            continue
        r = results[name]
        achieved = r["model_flops_per_step"] / r["seconds_per_step"]
        r["achieved_flops"], r["mfu"] = achieved, achieved / peak
        print(
            f"{name:>12}: {r['pairs_per_s']:8.1f} pairs/s ({1e3 * r['seconds_per_step']:.1f} ms"
            f"/step), {r['model_flops_per_step'] / 1e9:.2f} model GFLOP/step (XLA cost analysis: "
            f"{r['xla_cost_analysis_flops'] / 1e9:.2f}), {achieved / 1e9:.1f} GFLOP/s, "
            f"MFU {r['mfu']:.1%}",
            file=sys.stderr,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
