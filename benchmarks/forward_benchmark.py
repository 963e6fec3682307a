"""Reward-model forward+backward throughput: rewardjax vs the same model in PyTorch transformers.

Run: `.venv/bin/python benchmarks/forward_benchmark.py [--pairs 8 --length 128]`.
One tiny Llama shape on both sides: rewardjax's ``RewardModel`` (scalar head at the last real
token) and ``LlamaForSequenceClassification`` (num_labels=1, same pooling). A step is the
Bradley-Terry loss ``-log sigmoid(r_chosen - r_rejected)`` over ``pairs`` right-padded pairs and
its gradient with respect to every parameter (no optimizer update). Reports pairs per second after
a warm-up step (compilation excluded), best of a few repeats.
Target (issue 4): rewardjax at least as fast as PyTorch on this CPU.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from rewardjax.models import RewardModel, RewardModelConfig, config_from_hf


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: compilation / lazy initialisation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    hf_config = transformers.LlamaConfig(
        vocab_size=1024,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        num_labels=1,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    hf_model = transformers.LlamaForSequenceClassification(hf_config).train()
    model = RewardModel(RewardModelConfig(backbone=config_from_hf(hf_config.to_dict())))

    rng = np.random.default_rng(0)
    rows = 2 * args.pairs  # chosen rows, then rejected rows
    tokens = rng.integers(1, hf_config.vocab_size, (rows, args.length))
    lengths = rng.integers(args.length // 2, args.length + 1, rows)
    mask = (np.arange(args.length) < lengths[:, None]).astype(np.int32)
    tokens = tokens * mask

    params = jax.jit(model.init)(jax.random.key(0), jnp.asarray(tokens[:1]), jnp.asarray(mask[:1]))

    @jax.jit
    def jax_step(params, tokens, mask):
        def loss(p):
            reward = model.apply(p, tokens, mask).reward
            return -jnp.mean(jax.nn.log_sigmoid(reward[: args.pairs] - reward[args.pairs :]))

        return jax.value_and_grad(loss)(params)

    jt, jm = jnp.asarray(tokens, jnp.int32), jnp.asarray(mask, jnp.int32)
    tt, tm = torch.tensor(tokens), torch.tensor(mask)

    def run_jax():
        jax.block_until_ready(jax_step(params, jt, jm))

    def run_torch():
        hf_model.zero_grad(set_to_none=True)
        reward = hf_model(input_ids=tt, attention_mask=tm).logits[:, 0]
        loss = -torch.nn.functional.logsigmoid(reward[: args.pairs] - reward[args.pairs :]).mean()
        loss.backward()

    print(
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
    print(
        f"Llama d_model={hf_config.hidden_size} layers={hf_config.num_hidden_layers} "
        f"vocab={hf_config.vocab_size}; {args.pairs} pairs x {args.length} tokens, scalar head"
    )
    jax_s = best_time(run_jax, args.repeats)
    torch_s = best_time(run_torch, args.repeats)
    print(f"rewardjax fwd+bwd: {args.pairs / jax_s:10.1f} pairs/s ({jax_s * 1e3:.1f} ms per step)")
    print(
        f"PyTorch fwd+bwd  : {args.pairs / torch_s:10.1f} pairs/s ({torch_s * 1e3:.1f} ms per step)"
    )
    print(f"ratio rewardjax / PyTorch: {torch_s / jax_s:.2f}x (target >= 1x)")


if __name__ == "__main__":
    main()
