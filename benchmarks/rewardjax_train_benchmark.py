"""rewardjax train-step throughput (pairs/s) and model FLOP utilisation, for the TRL comparison.

    .venv/bin/python benchmarks/rewardjax_train_benchmark.py [--batch_size 16 --d_model 128 ...]

Runs `rewardjax.train.reward_model_step` (Llama backbone + scalar head, Bradley-Terry loss) and
`rewardjax.train.dpo_step` (causal LM, sigmoid DPO loss, reference log-probs of a frozen copy
computed on the fly by `reference_logps`, as TRL's DPOTrainer does by default) as the train loop
runs them: each jitted, the state donated, the batch split over one XLA CPU device per core
(`--cpu_devices`; `main.py --cpu_devices` and the config's data mesh do the same), AdamW with
global-norm clipping 1.0 and a linear decay (TRL's defaults), float32 on CPU. The shapes and the
batches come from `preference_pairs.py` (the same as `trl_benchmark.py`, either length mix).

Layouts (`--layout`):

- `packed` (default, as `config.train.packing` trains): host-side packing
  (`rewardjax.data.packing.pack_examples`): each pair laid out prefix-shared, the pairs of a batch
  packed first-fit decreasing into rows of `--pack_length` tokens (default: the longest pair of
  the run, rounded up to 8), the row count of every batch padded to the largest any batch needs
  (one shape);
- `shared` (`config.train.prefix_sharing` without packing): each pair is one prefix-shared row
  `[prompt | chosen | rejected]` (`prefix_length=` of the steps, `models.share_prefix`; Wang et
  al., arXiv 2410.20305), the rows of a batch padded to `preference_pairs.bucket` of the batch's
  longest `P + C_c + C_r`;
- `padded`: chosen and rejected as 2B rows right-padded to the bucket of the batch's longest row
  (128 tokens for every batch of the fixed mix, as the original benchmark).

Every distinct shape is compiled ahead of time (`jit(...).lower(...).compile()`, counted and timed
in `compilations` / `compile_seconds`) before the first step, so no step waits on a compilation.
pairs/s is measured over `--steps` steps after `--warmup`; the host-to-device copy of each batch
is inside the timed loop.

MFU: model FLOPs per step divided by the step time and by this machine's measured float32 matmul
peak (a jitted square `jnp.dot`, best of several runs). Model FLOPs are counted as in PaLM
(Chowdhery et al., arXiv:2204.02311, appendix B), over the tokens this side computes (its padded
rows, `preference_pairs.model_flops`): per token, `6N + 12·L·H·Q·T` for a forward and backward
pass and a third of that for a forward pass (the DPO reference), N the matmul parameters (all but
the embedding table and the norms), L layers, H query heads of width Q, T tokens per row. The
padding statistics of the layout (`preference_pairs.padding_stats`: real tokens, tokens computed,
padding fraction) are printed beside it.

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


def to_batches(
    pairs: list[dict[str, list[int]]], args, length: int | None = None
) -> list[dict[str, np.ndarray]]:
    """Pairwise batches of the rewardjax layout, right-padded to `length` tokens (default
    prompt_len + completion_len), or each batch to the bucket of its longest row with
    `length=0`."""
    batches = []
    for chunk in preference_pairs.batches_of(pairs, args.batch_size):
        width = length
        if width is None:
            width = args.prompt_len + args.completion_len
        elif width == 0:
            width = preference_pairs.row_lengths(chunk, "padded")[0]
        batch = {"weight": np.ones(len(chunk), np.float32)}
        for side in ("chosen", "rejected"):
            tokens = np.full((len(chunk), width), preference_pairs.PAD_ID, np.int32)
            mask = np.zeros((len(chunk), width), np.int32)
            completion = np.zeros((len(chunk), width), np.int32)
            for i, pair in enumerate(chunk):
                p, c = len(pair["prompt"]), len(pair[side])
                tokens[i, : p + c] = pair["prompt"] + pair[side]
                mask[i, : p + c] = 1
                completion[i, p : p + c] = 1
            batch[f"{side}_tokens"], batch[f"{side}_mask"] = tokens, mask
            batch[f"{side}_completion_mask"] = completion
        batches.append(batch)
    return batches


def pack_plan(pairs, args) -> tuple[int, int, int]:
    """(L, S, R) of `--layout packed`: row length, example slots per row, rows per batch, so that
    every batch of the run packs to one shape (`rewardjax.data.packing`)."""
    from rewardjax.data import packing

    sizes = [len(p["prompt"]) + len(p["chosen"]) + len(p["rejected"]) for p in pairs]
    length = args.pack_length or 8 * -(-max(sizes) // 8)
    rows = slots = 1
    for start in range(0, len(pairs), args.batch_size):
        bins = packing.first_fit_decreasing(sizes[start : start + args.batch_size], length=length)
        rows, slots = max(rows, len(bins)), max([slots, *map(len, bins)])
    return length, slots, rows


def packed_batches(pairs, args) -> list[dict[str, np.ndarray]]:
    """The batches of `--layout packed` (`packing.pack_examples`, pairwise), one shape."""
    from rewardjax.data import packing

    length, slots, rows = pack_plan(pairs, args)
    out = []
    for chunk in preference_pairs.batches_of(pairs, args.batch_size):
        examples = [
            {
                "seqs": [np.asarray(p["prompt"] + p[s], np.int32) for s in ("chosen", "rejected")],
                "prompt_len": len(p["prompt"]),
                "subset": 0,
            }
            for p in chunk
        ]
        out.append(
            packing.pack_examples(
                "pairwise", examples, [1.0] * len(chunk), length=length, slots=slots, rows=rows
            )
        )
    return out


def prefix_lengths(pairs, args) -> list[int | None]:
    """Each batch's prefix-shared row length (`--layout shared`), or None (`padded`)."""
    if args.layout != "shared":
        return [None] * len(preference_pairs.batches_of(pairs, args.batch_size))
    return [
        preference_pairs.row_lengths(chunk, "shared")[0]
        for chunk in preference_pairs.batches_of(pairs, args.batch_size)
    ]


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


class Compiled:
    """Ahead-of-time compiled executables of `make(L)` (the step jitted for prefix length L), one
    per (L, argument shapes); `compile` adds one (counted in `count`, timed in `seconds`),
    `__call__` runs it (compiling first if a shape was not prepared, which is counted too)."""

    def __init__(self, make):
        self.make, self.cache, self.count, self.seconds = make, {}, 0, 0.0

    def compile(self, length, *args):
        key = (length, *(x.shape for x in jax.tree.leaves(args)))
        if key not in self.cache:
            start = time.perf_counter()
            self.cache[key] = self.make(length).lower(*args).compile()
            self.seconds += time.perf_counter() - start
            self.count += 1
        return self.cache[key]

    def __call__(self, length, *args):
        return self.compile(length, *args)(*args)


def run_steps(step, prepare, state, batches, lengths, mesh, args) -> tuple[float, float, object]:
    """(seconds per step over the timed steps, first step's loss, final state). Every batch's
    shape is compiled first (`prepare`), so that no step compiles."""
    key = jax.random.key(args.seed)
    for batch, length in zip(batches, lengths):
        prepare(length, state, parallel.shard_batch(batch, mesh), key)
    for i in range(args.warmup):
        state, metrics = step(lengths[i], state, parallel.shard_batch(batches[i], mesh), key)
        if i == 0:
            first_loss = float(metrics["loss"])
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for i in range(args.warmup, len(batches)):
        state, metrics = step(lengths[i], state, parallel.shard_batch(batches[i], mesh), key)
    jax.block_until_ready(metrics)
    return (time.perf_counter() - start) / args.steps, first_loss, state


def replicate(tree, mesh):
    """A copy of `tree` on every device of `mesh`."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def result(seconds, first_loss, compiled, args, kind, stats) -> dict[str, float]:
    return {
        "seconds_per_step": seconds,
        "pairs_per_s": args.batch_size / seconds,
        "first_loss": first_loss,
        "model_flops_per_step": stats["model_flops_per_step"][kind],
        "compilations": sum(c.count for c in compiled),
        "compile_seconds": sum(c.seconds for c in compiled),
    }


def bench_reward_model(backbone, batches, lengths, mesh, args, stats) -> dict[str, float]:
    model = RewardModel(RewardModelConfig(backbone=backbone, head="scalar"))
    example = jnp.ones((2, 8), jnp.int32)
    params = nn.unbox(model.init(jax.random.key(args.seed), example, example))
    state = TrainState.create(params=params, tx=optimizer(args), rng=jax.random.key(args.seed))
    step = Compiled(
        lambda length: jax.jit(
            functools.partial(reward_model_step, model=model, prefix_length=length),
            donate_argnums=0,
        )
    )
    seconds, first_loss, _ = run_steps(
        step, step.compile, replicate(state, mesh), batches, lengths, mesh, args
    )
    return result(seconds, first_loss, [step], args, "reward_model", stats)


def bench_dpo(backbone, batches, lengths, mesh, args, stats) -> dict[str, float]:
    model = CausalLM(backbone)
    params = nn.unbox(model.init(jax.random.key(args.seed), jnp.ones((2, 8), jnp.int32)))
    ref_params = replicate(jax.tree.map(jnp.copy, params), mesh)  # the state is donated
    logits_fn = lambda p, tokens, mask, branch_ids=None: model.apply(
        p, tokens, segment_ids=mask, branch_ids=branch_ids
    )[0]
    ref = Compiled(
        lambda length: jax.jit(
            functools.partial(reference_logps, logits_fn=logits_fn, prefix_length=length)
        )
    )
    policy = Compiled(
        lambda length: jax.jit(
            functools.partial(dpo_step, logits_fn=logits_fn, beta=args.beta, prefix_length=length),
            donate_argnums=0,
        )
    )

    def prepare(length, state, batch, key):
        policy.compile(length, state, ref(length, ref_params, batch), key)

    # As the train loop runs them: the jitted reference pass, then the jitted step.
    def step(length, state, batch, key):
        return policy(length, state, ref(length, ref_params, batch), key)

    state = TrainState.create(params=params, tx=optimizer(args), rng=jax.random.key(args.seed))
    seconds, first_loss, _ = run_steps(
        step, prepare, replicate(state, mesh), batches, lengths, mesh, args
    )
    return result(seconds, first_loss, [ref, policy], args, "dpo", stats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Prints a human summary on stderr and one JSON object on stdout.",
    )
    preference_pairs.add_arguments(parser)
    parser.add_argument(
        "--layout",
        choices=("packed", "shared", "padded"),
        default="packed",
        help="packed (default, as config.train.packing): prefix-shared pairs packed into rows of "
        "--pack_length (rewardjax.data.packing); shared: one prefix-shared row [prompt | chosen "
        "| rejected] per pair; padded: chosen and rejected rows apart, no sharing",
    )
    parser.add_argument(
        "--pack_length",
        type=int,
        help="(--layout packed) tokens per packed row; default the longest pair (P + C_c + C_r) "
        "of the run rounded up to 8, so that every pair fits one row",
    )
    parser.add_argument("--peak_size", type=int, default=2048, help="matmul size for the peak")
    parser.add_argument(
        "--cpu_devices",
        type=int,
        default=os.cpu_count(),
        help="XLA CPU devices (jax_num_cpu_devices), the batch split over them (data parallel); "
        "default one per core, as torch runs one thread per core",
    )
    parser.add_argument(
        "--compilation_cache",
        help="a directory for JAX's persistent compilation cache (compare_trl.py passes one per "
        "comparison, so later rounds load the first round's executables)",
    )
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    if args.compilation_cache:
        jax.config.update("jax_compilation_cache_dir", args.compilation_cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    mesh = parallel.make_mesh()

    backbone = backbone_config(args)
    pairs = preference_pairs.make_pairs(args)
    if args.layout == "packed":
        batches = packed_batches(pairs, args)
        lengths = [None] * len(batches)
        length, _, rows = pack_plan(pairs, args)
        stats = preference_pairs.padding_stats(
            args, pairs, "packed", rows_fn=lambda _: [length] * rows
        )
    else:
        batches = to_batches(pairs, args, length=0)
        lengths = prefix_lengths(pairs, args)
        stats = preference_pairs.padding_stats(args, pairs, args.layout)
    results: dict[str, object] = {
        "library": "rewardjax",
        "versions": {"jax": jax.__version__, "optax": optax.__version__},
        "device": jax.devices()[0].device_kind,
        "cpus": os.cpu_count(),
        "layout": args.layout,
        "lengths": args.lengths,
        "padding": stats,
        "load_average_before": os.getloadavg()[0],
    }
    kinds = {"reward_model": bench_reward_model, "dpo": bench_dpo}
    for name, bench in kinds.items():
        if args.only in (None, name):
            results[name] = bench(backbone, batches, lengths, mesh, args, stats)
    peak = matmul_peak_flops(args.peak_size)
    results["matmul_peak_flops"] = peak
    results["load_average_after"] = os.getloadavg()[0]

    print(
        f"rewardjax: jax {jax.__version__} on {results['device']}, {os.cpu_count()} CPUs, "
        f"load average {results['load_average_before']:.1f}; Llama d_model={args.d_model} "
        f"layers={args.n_layers} vocab={args.vocab_size}; {args.batch_size} pairs a step, "
        f"{args.lengths} lengths, layout {args.layout}: {stats['rows']:.0f} rows a step, "
        f"longest {stats['longest_row']}, padding {stats['padding_fraction']:.1%}",
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
            f"/step), {r['model_flops_per_step'] / 1e9:.2f} model GFLOP/step, "
            f"{achieved / 1e9:.1f} GFLOP/s, MFU {r['mfu']:.1%}; {r['compilations']} "
            f"compilation(s), {r['compile_seconds']:.1f} s",
            file=sys.stderr,
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
