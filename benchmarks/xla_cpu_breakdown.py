"""Where the reward-model train step's time goes on XLA:CPU: its matmuls vs PyTorch's, and the
backward pass vs the forward pass.

    .venv/bin/python benchmarks/xla_cpu_breakdown.py [--batch_size 16 --d_model 128 ...]
    taskset -c 0 .venv/bin/python benchmarks/xla_cpu_breakdown.py   # one core

1. Each matmul shape of one layer of the step (the TRL comparison's model and batch, chosen and
   rejected rows together; forward projections, weight gradients, attention's batched products),
   timed alone through a jitted `jnp.einsum` and through `torch.einsum` on the same arrays.
2. The Bradley-Terry loss of `score_pairs` jitted alone and with its gradient (one device), on one
   of the benchmark's batches. A backward pass needs about twice the forward's FLOPs, so
   forward+backward should take about 3x the forward.

Prints medians; not a test.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import preference_pairs
import torch
from flax import linen as nn
from reward_model_benchmark import time_steps
from rewardjax_train_benchmark import backbone_config, to_batches

from rewardjax import losses
from rewardjax.models import RewardModel, RewardModelConfig, score_pairs


def median_seconds(fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls after two untimed ones."""
    fn()
    fn()
    return time_steps(fn, repeats)


def matmul_shapes(args) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], str]]:
    """One layer's matmuls: name -> (lhs shape, rhs shape, einsum)."""
    n = 2 * args.batch_size * (args.prompt_len + args.completion_len)  # tokens, both sides
    d, f, length = args.d_model, args.d_ff, args.prompt_len + args.completion_len
    head_dim = d // args.n_heads
    qkv = (args.n_heads + 2 * args.n_kv_heads) * head_dim
    heads = 2 * args.batch_size * args.n_heads
    return {
        f"q/k/v fwd [{n},{d}]x[{d},{qkv}]": ((n, d), (d, qkv), "ik,kj->ij"),
        f"gate+up fwd [{n},{d}]x[{d},{2 * f}]": ((n, d), (d, 2 * f), "ik,kj->ij"),
        f"down fwd [{n},{f}]x[{f},{d}]": ((n, f), (f, d), "ik,kj->ij"),
        f"gate+up weight grad [{n},{d}]^T[{n},{2 * f}]": ((n, d), (n, 2 * f), "ki,kj->ij"),
        f"down weight grad [{n},{f}]^T[{n},{d}]": ((n, f), (n, d), "ki,kj->ij"),
        f"attention q k^T {heads} x [{length},{head_dim}]": (
            (heads, length, head_dim),
            (heads, length, head_dim),
            "bid,bjd->bij",
        ),
        f"attention p v {heads} x [{length},{length}]": (
            (heads, length, length),
            (heads, length, head_dim),
            "bij,bjd->bid",
        ),
    }


def time_einsum(equation: str, a: np.ndarray, b: np.ndarray, repeats: int) -> tuple[float, float]:
    """Median seconds of `einsum(equation, a, b)`: (jitted XLA, torch)."""
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    xla = jax.jit(lambda x, y: jnp.einsum(equation, x, y))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return (
        median_seconds(lambda: xla(ja, jb).block_until_ready(), repeats),
        median_seconds(lambda: torch.einsum(equation, ta, tb), repeats),
    )


def compare_matmuls(args) -> None:
    rng = np.random.default_rng(0)
    total_xla = total_torch = 0.0
    threads = torch.get_num_threads()
    print(f"matmuls of one layer, median of {args.repeats} (torch: {threads} threads)")
    for name, (lhs, rhs, equation) in matmul_shapes(args).items():
        a, b = rng.standard_normal(lhs, np.float32), rng.standard_normal(rhs, np.float32)
        xla_s, torch_s = time_einsum(equation, a, b, args.repeats)
        total_xla, total_torch = total_xla + xla_s, total_torch + torch_s
        print(f"  {name:48s} XLA {1e3 * xla_s:6.2f} ms | torch {1e3 * torch_s:6.2f} ms")
    print(f"  {'sum':48s} XLA {1e3 * total_xla:6.2f} ms | torch {1e3 * total_torch:6.2f} ms")


def compare_passes(args) -> None:
    backbone = backbone_config(args)
    model = RewardModel(RewardModelConfig(backbone=backbone, head="scalar"))
    batch = jax.device_put(to_batches(preference_pairs.make_pairs(args), args)[0])
    tokens = batch["chosen_tokens"]
    params = nn.unbox(model.init(jax.random.key(args.seed), tokens, tokens))

    def loss_fn(p, b):
        chosen, rejected = score_pairs(model, p, b)
        return jnp.mean(losses.bradley_terry(chosen.reward, rejected.reward))

    forward = jax.jit(loss_fn)
    both = jax.jit(jax.value_and_grad(loss_fn))
    fwd_s = median_seconds(lambda: forward(params, batch).block_until_ready(), args.repeats)
    both_s = median_seconds(lambda: jax.block_until_ready(both(params, batch)), args.repeats)
    print(
        f"reward-model loss, {args.batch_size} pairs x {tokens.shape[1]} tokens, one device: "
        f"forward {1e3 * fwd_s:.1f} ms, forward+backward {1e3 * both_s:.1f} ms "
        f"({both_s / fwd_s:.1f}x the forward; about 3x expected from FLOPs)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preference_pairs.add_arguments(parser)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per measurement")
    args = parser.parse_args()
    print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__}")
    compare_matmuls(args)
    compare_passes(args)


if __name__ == "__main__":
    main()
