"""Sampler throughput: rewardjax's jitted KV-cache sampler vs Hugging Face ``generate`` (PyTorch).

Run: `.venv/bin/python benchmarks/sampler_benchmark.py [--batch 8 --prompt 16 --new 64]`.
One tiny random Llama is built with transformers, saved to a temporary folder and loaded into
rewardjax (the same weights in both); both sample ``batch`` left-padded prompts for exactly
``new`` tokens each (temperature 1, no top-k/top-p, no stop token) and report generated tokens per
second, after a warm-up call (so compilation is excluded), best of a few repeats.
Target (issue 4): rewardjax at least 3x the tokens/s of HF generate on this CPU.
"""

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers

from rewardjax.models import CausalLM, load_hf
from rewardjax.sampling import sample


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
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    hf_config = transformers.LlamaConfig(
        vocab_size=1024,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=256,
        max_position_embeddings=512,
    )
    torch.manual_seed(0)
    hf_model = transformers.LlamaForCausalLM(hf_config).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf_model.save_pretrained(folder)
        config, params = load_hf(folder)
    model = CausalLM(config)

    rng = np.random.default_rng(0)
    tokens = rng.integers(3, hf_config.vocab_size, (args.batch, args.prompt))
    mask = np.ones_like(tokens)
    for b in range(args.batch):  # left padding of varying length
        mask[b, : b % (args.prompt // 2)] = 0
    tokens = tokens * mask
    n_tokens = args.batch * args.new

    keys = iter(jax.random.split(jax.random.key(0), args.repeats + 1))

    def run_jax():
        out = sample(
            model,
            params,
            jnp.asarray(tokens, jnp.int32),
            jnp.asarray(mask, jnp.int32),
            next(keys),
            max_new_tokens=args.new,
            temperature=1.0,
        )
        jax.block_until_ready(out)
        assert int(out.lengths.min()) == args.new

    def run_hf():
        with torch.no_grad():
            out = hf_model.generate(
                input_ids=torch.tensor(tokens),
                attention_mask=torch.tensor(mask),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=args.new,
                min_new_tokens=args.new,
                pad_token_id=0,
            )
        assert out.shape == (args.batch, args.prompt + args.new)

    print(
        f"jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), transformers {transformers.__version__}"
    )
    print(
        f"Llama d_model={config.d_model} layers={config.n_layers} heads={config.n_heads}/"
        f"{config.n_kv_heads} vocab={config.vocab_size}; batch={args.batch}, prompt={args.prompt}, "
        f"new tokens={args.new}"
    )
    jax_s = best_time(run_jax, args.repeats)
    hf_s = best_time(run_hf, args.repeats)
    jax_tps, hf_tps = n_tokens / jax_s, n_tokens / hf_s
    print(f"rewardjax sample : {jax_tps:10.0f} tokens/s ({jax_s * 1e3:.1f} ms per call)")
    print(f"HF generate      : {hf_tps:10.0f} tokens/s ({hf_s * 1e3:.1f} ms per call)")
    print(f"ratio rewardjax / HF: {jax_tps / hf_tps:.1f}x (target >= 3x)")


if __name__ == "__main__":
    main()
