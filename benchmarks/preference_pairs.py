"""Shapes and data shared by the rewardjax-vs-TRL train-step benchmarks (NumPy only).

Both `rewardjax_train_benchmark.py` (project venv) and `trl_benchmark.py` (TRL venv) import this
module, so the two sides see the same model dimensions, the same token ids and the same batches.
Token ids: 0 is padding, 1 is end-of-sequence (the last token of every completion), real tokens
are drawn uniformly from [2, vocab).

Two length mixes (`--lengths`):

- `fixed` (the default, today's benchmark): prompt lengths uniform in [prompt_len/2, prompt_len],
  completion lengths in [completion_len/2, completion_len] (32-64 and 32-64 tokens by default);
- `realistic`: long-tailed lengths modelled on public preference data: log-normal with medians
  `--prompt_median` 100 and `--completion_median` 200 tokens and log-scale `--length_sigma` 1.0,
  rounded and clipped to [4, `--prompt_cap` 512] and [4, `--completion_cap` 1024]. The chosen and
  rejected completions of a pair have independent lengths.

`padding_stats` counts, per batch, the real tokens and the tokens each layout computes (TRL's
collators pad the 2B rows of a batch to its longest row; rewardjax pads to a length bucket, or
shares the prompt, or packs), and `model_flops` turns a layout's rows into PaLM model FLOPs
(arXiv:2204.02311, appendix B), so both sides' FLOPs are counted by one formula.
"""

from __future__ import annotations

import argparse

import numpy as np

PAD_ID, EOS_ID = 0, 1

# The tiny Llama of the sampler benchmark (sampler_benchmark.py).
MODEL_DEFAULTS = {
    "vocab_size": 1024,
    "d_model": 128,
    "n_layers": 4,
    "n_heads": 4,
    "n_kv_heads": 2,
    "d_ff": 256,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of both sides: model shape, batch, lengths, step counts, optimiser."""
    for name, value in MODEL_DEFAULTS.items():
        parser.add_argument(f"--{name}", type=int, default=value)
    parser.add_argument("--norm_eps", type=float, default=1e-6)
    parser.add_argument("--batch_size", type=int, default=16, help="preference pairs per step")
    parser.add_argument(
        "--lengths",
        choices=("fixed", "realistic"),
        default="fixed",
        help="length mix: fixed = uniform in [max/2, max] of --prompt_len/--completion_len (the "
        "original benchmark); realistic = log-normal, long-tailed, capped (--prompt_median ...)",
    )
    parser.add_argument(
        "--prompt_len", type=int, default=64, help="max prompt tokens (--lengths fixed)"
    )
    parser.add_argument(
        "--completion_len", type=int, default=64, help="max completion tokens (--lengths fixed)"
    )
    parser.add_argument("--prompt_median", type=float, default=100.0, help="(realistic) tokens")
    parser.add_argument("--completion_median", type=float, default=200.0, help="(realistic)")
    parser.add_argument(
        "--length_sigma", type=float, default=1.0, help="(realistic) log-normal sigma of lengths"
    )
    parser.add_argument("--prompt_cap", type=int, default=512, help="(realistic) max prompt")
    parser.add_argument("--completion_cap", type=int, default=1024, help="(realistic) max reply")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("reward_model", "dpo"), help="run one step kind")


def max_lengths(args: argparse.Namespace) -> tuple[int, int]:
    """(longest prompt, longest completion) the length mix can draw."""
    if getattr(args, "lengths", "fixed") == "realistic":
        return args.prompt_cap, args.completion_cap
    return args.prompt_len, args.completion_len


def make_pairs(args: argparse.Namespace) -> list[dict[str, list[int]]]:
    """`(warmup + steps) * batch_size` pairs of token-id lists: prompt, chosen, rejected.

    `--lengths fixed`: prompt lengths uniform in [prompt_len/2, prompt_len], completion lengths
    in [completion_len/2, completion_len]. `--lengths realistic`: `round(median * exp(sigma * z))`,
    z standard normal, clipped to [4, cap]. Every completion ends with `EOS_ID` (counted in its
    length). Seeded by `--seed`: the same ids on both sides.
    """
    rng = np.random.default_rng(args.seed)
    n = (args.warmup + args.steps) * args.batch_size

    def ids(length: int) -> list[int]:
        return rng.integers(2, args.vocab_size, length).tolist()

    if getattr(args, "lengths", "fixed") == "realistic":

        def draw(median: float, cap: int) -> int:
            length = round(median * np.exp(args.length_sigma * rng.standard_normal()))
            return int(np.clip(length, 4, cap))

        def prompt() -> list[int]:
            return ids(draw(args.prompt_median, args.prompt_cap))

        def completion() -> list[int]:
            return [*ids(draw(args.completion_median, args.completion_cap) - 1), EOS_ID]

    else:

        def prompt() -> list[int]:
            return ids(int(rng.integers(args.prompt_len // 2, args.prompt_len + 1)))

        def completion() -> list[int]:
            m = args.completion_len - 1
            return [*ids(int(rng.integers(m // 2, m + 1))), EOS_ID]

    pairs = []
    for _ in range(n):
        pairs.append({"prompt": prompt(), "chosen": completion(), "rejected": completion()})
    return pairs


def bucket(n: int, minimum: int = 64) -> int:
    """The smallest length of the ladder 64, 96, 128, 192, 256, 384, ... (2^k and 1.5 * 2^k) that
    holds `n` tokens: padding to it wastes under a third, and a run compiles one shape per rung."""
    size = minimum
    while True:
        for length in (size, size * 3 // 2):
            if length >= n:
                return length
        size *= 2


def batches_of(pairs: list[dict], batch_size: int) -> list[list[dict]]:
    return [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]


def row_lengths(batch: list[dict], layout: str, fixed_length: int | None = None) -> list[int]:
    """The padded length of every row a layout computes for one batch of B pairs.

    - `trl`: 2B rows (chosen and rejected), each padded to the batch's longest `P + C`
      (TRL's `DataCollatorForPreference`, right padding, no `pad_to_multiple_of`);
    - `padded`: the same 2B rows padded to `fixed_length` when given, else to `bucket(longest)`;
    - `shared`: B prefix-shared rows `[prompt | chosen | rejected]` padded to
      `bucket(longest P + C_c + C_r)` (rewardjax's prefix sharing).
    """
    if layout == "trl":
        longest = max(len(p["prompt"]) + len(p[s]) for p in batch for s in ("chosen", "rejected"))
        return [longest] * (2 * len(batch))
    if layout == "padded":
        longest = max(len(p["prompt"]) + len(p[s]) for p in batch for s in ("chosen", "rejected"))
        return [fixed_length or bucket(longest)] * (2 * len(batch))
    if layout == "shared":
        longest = max(len(p["prompt"]) + len(p["chosen"]) + len(p["rejected"]) for p in batch)
        return [bucket(longest)] * len(batch)
    raise ValueError(f"row_lengths: unknown layout {layout!r}; use trl, padded or shared")


def matmul_params(args: argparse.Namespace, kind: str) -> int:
    """N of PaLM's formula: the matmul parameters (no embedding table, no norms) of the model,
    with the scalar reward head (`reward_model`) or the untied LM head (`dpo`)."""
    d, f, layers = args.d_model, args.d_ff, args.n_layers
    q = d // args.n_heads
    per_layer = 2 * d * args.n_heads * q + 2 * d * args.n_kv_heads * q + 3 * d * f
    head = d * args.vocab_size if kind == "dpo" else d
    return layers * per_layer + head


def model_flops(args: argparse.Namespace, kind: str, rows: list[int]) -> float:
    """PaLM model FLOPs (Chowdhery et al., arXiv:2204.02311, appendix B) of one train step on
    rows of these padded lengths: `sum_rows T * (6N + 12 * L * H * Q * T)` for the forward and
    backward pass, times 4/3 for DPO (the reference's forward pass, a third of it)."""
    n = matmul_params(args, kind)
    per_head = 12 * args.n_layers * args.n_heads * (args.d_model // args.n_heads)
    flops = sum(t * (6.0 * n + per_head * t) for t in rows)
    return flops * 4 / 3 if kind == "dpo" else flops


def padding_stats(
    args: argparse.Namespace,
    pairs: list[dict],
    layout: str,
    *,
    fixed_length: int | None = None,
    rows_fn=None,
) -> dict[str, float]:
    """Tokens and FLOPs of the timed batches (after `--warmup`) under one layout.

    Returns, per timed step: `real_tokens` (`P + C` over the 2B unshared rows), `unique_tokens`
    (`P + C_c + C_r`: what a prefix-shared layout must compute at least), `computed_tokens` (the
    padded rows' tokens), `rows`, and `model_flops` per kind; `padding_fraction` (`1 - real /
    computed` for unshared layouts, `1 - unique / computed` for shared or packed ones) and the
    `longest_row`. `rows_fn(batch)` overrides `row_lengths` (a packed layout's rows).
    """
    timed = batches_of(pairs, args.batch_size)[args.warmup :]
    rows = [rows_fn(b) if rows_fn else row_lengths(b, layout, fixed_length) for b in timed]
    unique = sum(len(p["prompt"]) + len(p["chosen"]) + len(p["rejected"]) for b in timed for p in b)
    real = unique + sum(len(p["prompt"]) for b in timed for p in b)
    computed = sum(sum(r) for r in rows)
    shared = layout in ("shared", "packed")
    steps = len(rows)
    return {
        "layout": layout,
        "real_tokens": real / steps,
        "unique_tokens": unique / steps,
        "computed_tokens": computed / steps,
        "padding_fraction": 1.0 - (unique if shared else real) / computed,
        "rows": sum(len(r) for r in rows) / steps,
        "longest_row": max(max(r) for r in rows),
        "model_flops_per_step": {
            kind: sum(model_flops(args, kind, r) for r in rows) / steps
            for kind in ("reward_model", "dpo")
        },
    }


# The GRPO iteration benchmarks (compare_trl_grpo.py): prompts and a rule reward on token ids.


def add_grpo_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of both sides of the GRPO comparison: model shape, rollout shape, iterations, KL."""
    for name, value in MODEL_DEFAULTS.items():
        parser.add_argument(f"--{name}", type=int, default=value)
    parser.add_argument("--norm_eps", type=float, default=1e-6)
    parser.add_argument("--prompts", type=int, default=8, help="P prompts per iteration")
    parser.add_argument("--generations", type=int, default=8, help="N completions per prompt")
    parser.add_argument("--prompt_len", type=int, default=16, help="tokens of every prompt")
    parser.add_argument(
        "--new_tokens", type=int, default=64, help="tokens of every completion (no early stop)"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations (compilation)")
    parser.add_argument("--steps", type=int, default=5, help="timed iterations")
    parser.add_argument("--learning_rate", type=float, default=1e-6, help="AdamW (TRL's GRPO)")
    parser.add_argument(
        "--beta",
        type=float,
        default=0.04,
        help="k3 KL coefficient in the loss against the initial policy, computed by a reference "
        "forward pass on both sides (0: TRL loads no reference; rewardjax still runs it)",
    )
    parser.add_argument("--seed", type=int, default=0)


def make_prompts(args: argparse.Namespace) -> list[list[int]]:
    """`(warmup + steps) * prompts` prompts of exactly `prompt_len` ids uniform in [2, vocab):
    every iteration's prompts have one length, so neither side pads them."""
    rng = np.random.default_rng(args.seed)
    n = (args.warmup + args.steps) * args.prompts
    return rng.integers(2, args.vocab_size, (n, args.prompt_len)).tolist()


def even_fraction(completion: list[int]) -> float:
    """The benchmark's rule reward: the fraction of even token ids in a completion."""
    return sum(i % 2 == 0 for i in completion) / max(len(completion), 1)
