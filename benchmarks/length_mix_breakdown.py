"""Where a length-mix train step's time goes: long rows' attention vs the token-linear matmuls,
rewardjax's layouts vs PyTorch's padded rows, on one batch of `preference_pairs.make_pairs`.

    taskset -c 0 .venv/bin/python benchmarks/length_mix_breakdown.py --lengths realistic \\
        --batch_size 8 [--layouts packed,shared] [--repeats 3]

For the first timed batch (index `--warmup`) of the mix, each line times one reward-model train
step (forward, backward, AdamW; jitted, median of `--repeats` after one untimed call):

- rewardjax on each layout's rows (`rewardjax_train_benchmark.py --layout`: `packed` [R, L],
  `shared` [B, L], `padded` [2B, T]), and on a control: the same number of tokens as full rows of
  `--control_length` real tokens (chosen and rejected apart), whose attention is small;
- PyTorch (`LlamaForSequenceClassification`, SDPA attention, the model TRL trains; one step of
  AdamW) on TRL's rows (2B rows padded to the batch's longest, with the attention mask), and on
  the same control.

A layout's time minus its control's is what its long rows cost beyond the token-linear work
(attention over `[L, L]` per row and its masks). Beside each: PaLM's model FLOPs (arXiv:2204.02311,
appendix B) split into the token-linear part `6N` and the attention part `12·L·H·Q·T` per token.
`--host` also times the host-side packing of one batch (`rewardjax.data.packing`). Not a test.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import preference_pairs
import rewardjax_train_benchmark as rb
import torch
import transformers

from rewardjax.models import RewardModel, RewardModelConfig
from rewardjax.train import TrainState, reward_model_step


def median_seconds(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def flops(args, rows: list[int]) -> tuple[float, float]:
    """(token-linear, attention) PaLM FLOPs of a reward-model step on rows of these lengths."""
    n = preference_pairs.matmul_params(args, "reward_model")
    per_head = 12 * args.n_layers * args.n_heads * (args.d_model // args.n_heads)
    return sum(6.0 * n * t for t in rows), sum(per_head * t * t for t in rows)


def control_pairs(args, tokens: int, rng) -> list[dict[str, list[int]]]:
    """Pairs whose chosen and rejected rows are exactly `--control_length` real tokens, enough
    of them for `tokens` tokens (a prompt of half the row, completions of the other half)."""
    half = args.control_length // 2
    n = max(1, round(tokens / (2 * args.control_length)))
    ids = lambda k: rng.integers(2, args.vocab_size, k).tolist()
    return [
        {"prompt": ids(half), "chosen": ids(args.control_length - half), "rejected": ids(half)}
        for _ in range(n)
    ]


def time_rewardjax(args, batch, prefix_length, model, state) -> float:
    step = jax.jit(functools.partial(reward_model_step, model=model, prefix_length=prefix_length))
    device = jax.tree.map(jnp.asarray, batch)
    key = jax.random.key(0)
    return median_seconds(lambda: jax.block_until_ready(step(state, device, key)), args.repeats)


def time_torch(args, rows: list[list[int]], width: int) -> float:
    """One step of `LlamaForSequenceClassification` on these rows right-padded to `width` (the
    first half chosen, the second rejected, as TRL's collator stacks them)."""
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=args.vocab_size,
        hidden_size=args.d_model,
        num_hidden_layers=args.n_layers,
        num_attention_heads=args.n_heads,
        num_key_value_heads=args.n_kv_heads,
        intermediate_size=args.d_ff,
        rms_norm_eps=args.norm_eps,
        max_position_embeddings=max(width, 8),
        pad_token_id=preference_pairs.PAD_ID,
        num_labels=1,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForSequenceClassification(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.0)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    half = len(rows) // 2

    def step():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, 0]
        loss = -torch.nn.functional.logsigmoid(logits[:half] - logits[half:]).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    return median_seconds(step, args.repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="Prints one line per measurement."
    )
    preference_pairs.add_arguments(parser)
    parser.add_argument("--layouts", default="packed,shared", help="rewardjax layouts to time")
    parser.add_argument("--pack_length", type=int, help="(packed) tokens per row, as the benchmark")
    parser.add_argument("--control_length", type=int, default=128, help="control rows' tokens")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--host", action="store_true", help="also time the host-side packing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    jax.config.update("jax_num_cpu_devices", 1)

    pairs = preference_pairs.make_pairs(args)
    chunk = preference_pairs.batches_of(pairs, args.batch_size)[args.warmup]
    rng = np.random.default_rng(args.seed + 1)
    model = RewardModel(RewardModelConfig(backbone=rb.backbone_config(args), head="scalar"))
    ones = jnp.ones((2, 8), jnp.int32)
    params = nn.unbox(model.init(jax.random.key(0), ones, ones))
    state = TrainState.create(params=params, tx=rb.optimizer(args), rng=jax.random.key(0))

    def report(name, rows, seconds):
        linear, attention = flops(args, rows)
        print(
            f"{name:<44} {len(rows):>3} rows x <= {max(rows):>5} = {sum(rows):>6} tokens | "
            f"GFLOP 6N {linear / 1e9:6.1f} + attention {attention / 1e9:6.1f} | "
            f"{1e3 * seconds:8.1f} ms ({(linear + attention) / seconds / 1e9:5.1f} GFLOP/s)",
            flush=True,
        )

    for layout in args.layouts.split(","):
        args.layout = layout
        one = argparse.Namespace(**{**vars(args), "warmup": 0, "steps": 1})
        if layout == "packed":
            length, _, n_rows = rb.pack_plan(pairs, args)
            # As the benchmark packs it: L and the row count planned over the whole run.
            batch = rb.packed_batches(pairs, args)[args.warmup]
            rows, prefix_length = [length] * n_rows, None
            if args.host:
                pack = functools.partial(rb.packed_batches, chunk, one)
                host = median_seconds(pack, args.repeats)
                print(f"host packing of one batch (plan + pack_examples): {1e3 * host:.1f} ms")
        else:
            batch = rb.to_batches(chunk, one, length=0)[0]
            prefix_length = rb.prefix_lengths(chunk, one)[0]
            rows = preference_pairs.row_lengths(chunk, layout)
        seconds = time_rewardjax(args, batch, prefix_length, model, state)
        report(f"rewardjax {layout}", rows, seconds)
        control = control_pairs(args, sum(rows), rng)
        one_batch = argparse.Namespace(**{**vars(one), "batch_size": len(control)})
        batch = rb.to_batches(control, one_batch, length=args.control_length)[0]
        report(
            f"rewardjax control ({layout}'s tokens, padded)",
            [args.control_length] * (2 * len(control)),
            time_rewardjax(args, batch, None, model, state),
        )

    trl_rows = [p["prompt"] + p[s] for s in ("chosen", "rejected") for p in chunk]
    width = max(map(len, trl_rows))
    report("torch, TRL's padded rows", [width] * len(trl_rows), time_torch(args, trl_rows, width))
    control = control_pairs(args, width * len(trl_rows), rng)
    rows = [p["prompt"] + p[s] for s in ("chosen", "rejected") for p in control]
    report(
        "torch control (TRL's tokens)",
        [args.control_length] * len(rows),
        time_torch(args, rows, args.control_length),
    )


if __name__ == "__main__":
    main()
