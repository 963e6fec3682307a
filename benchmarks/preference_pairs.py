"""Shapes and data shared by the rewardjax-vs-TRL train-step benchmarks (NumPy only).

Both `rewardjax_train_benchmark.py` (project venv) and `trl_benchmark.py` (TRL venv) import this
module, so the two sides see the same model dimensions, the same token ids and the same batches.
Token ids: 0 is padding, 1 is end-of-sequence (the last token of every completion), real tokens
are drawn uniformly from [2, vocab).
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
    parser.add_argument("--prompt_len", type=int, default=64, help="max prompt tokens")
    parser.add_argument("--completion_len", type=int, default=64, help="max completion tokens")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--learning_rate", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1, help="DPO beta")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=("reward_model", "dpo"), help="run one step kind")


def make_pairs(args: argparse.Namespace) -> list[dict[str, list[int]]]:
    """`(warmup + steps) * batch_size` pairs of token-id lists: prompt, chosen, rejected.

    Prompt lengths are uniform in [prompt_len/2, prompt_len], completion lengths in
    [completion_len/2, completion_len]; every completion ends with `EOS_ID`.
    """
    rng = np.random.default_rng(args.seed)
    n = (args.warmup + args.steps) * args.batch_size

    def tokens(max_len: int) -> list[int]:
        length = int(rng.integers(max_len // 2, max_len + 1))
        return rng.integers(2, args.vocab_size, length).tolist()

    return [
        {
            "prompt": tokens(args.prompt_len),
            "chosen": [*tokens(args.completion_len - 1), EOS_ID],
            "rejected": [*tokens(args.completion_len - 1), EOS_ID],
        }
        for _ in range(n)
    ]


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
