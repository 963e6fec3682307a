"""Test-time search throughput: PRM beam search (and ARGS) vs plain KV-cache sampling, tokens/s.

Run: `.venv/bin/python benchmarks/search_benchmark.py [--batch 2 --beams 4 --expand 4 --step 8
--steps 8 --prompt 16]`.

One random transformer (the sampler benchmark's tiny Llama shape: vocab 1024, width 128, 4
layers) and the same token budget on both sides: `rewardjax.search.beam_search` decodes
batch × beams × expand rows of steps × step tokens (scoring and re-ranking after every step, the
KV cache gathered to the kept beams), and `rewardjax.sampling.sample` draws beams × expand
samples of each prompt with the same number of new tokens (no scoring). The scorer is a cheap
table lookup (Σ_t w[t, y_t]) so the figure measures the search machinery, not a reward model.
ARGS (`args_decode`, top-k candidates, one scorer call per candidate per token) is timed on the
batch × beams × expand rows too. Each is timed after a warm-up call (compilation excluded), best
of a few repeats; the figure is generated tokens per second.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import search
from rewardjax.models import CausalLM, TransformerConfig
from rewardjax.sampling import sample


def table_score(params, prompt_tokens, prompt_mask, completion, completion_mask):
    """Σ_t w[t, y_t] over the scored prefix: a scorer of negligible cost."""
    del prompt_tokens, prompt_mask
    picked = params[jnp.arange(completion.shape[1]), completion]
    return jnp.sum(jnp.where(completion_mask > 0, picked, 0.0), axis=1)


def best_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # warm-up: compilation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--expand", type=int, default=4)
    parser.add_argument("--step", type=int, default=8, help="tokens per search step")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8, help="ARGS top-k")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    config = TransformerConfig(
        vocab_size=1024, d_model=128, n_layers=4, n_heads=4, n_kv_heads=2, d_ff=256
    )
    model = CausalLM(config)
    params = jax.jit(model.init)(jax.random.key(0), jnp.ones((1, 4), jnp.int32))
    rng = np.random.default_rng(0)
    prompts = jnp.asarray(rng.integers(1, config.vocab_size, (args.batch, args.prompt)))
    mask = jnp.ones_like(prompts)
    new = args.step * args.steps
    width = args.beams * args.expand
    table = jnp.asarray(rng.normal(size=(new, config.vocab_size)), jnp.float32)
    key = jax.random.key(1)

    def run_sample():
        return sample(model, params, prompts, mask, key, max_new_tokens=new, num_samples=width)

    def run_beam():
        return search.beam_search(
            model, params, prompts, mask, key, scorer=table_score, scorer_params=table,
            num_beams=args.beams, expand=args.expand, step_tokens=args.step,
            num_steps=args.steps,
        )  # fmt: skip

    rows = jnp.repeat(prompts, width, axis=0)
    rows_mask = jnp.ones_like(rows)

    def run_args():
        return search.args_decode(
            model, params, rows, rows_mask, key, scorer=table_score, scorer_params=table,
            weight=1.0, max_new_tokens=new, num_candidates=args.candidates,
        )  # fmt: skip

    tokens = args.batch * width * new
    print(f"devices: {jax.devices()}")
    print(
        f"budget: {args.batch} prompts x {width} rows x {new} new tokens = {tokens} tokens "
        f"(beam search: {args.beams} beams x {args.expand} expansions, {args.steps} steps of "
        f"{args.step} tokens; ARGS top-{args.candidates})"
    )
    results = {}
    for name, fn in (("sample", run_sample), ("beam_search", run_beam), ("args", run_args)):
        seconds = best_time(fn, args.repeats)
        results[name] = tokens / seconds
        print(f"{name:12s} {seconds * 1e3:9.1f} ms  {tokens / seconds:12,.0f} tokens/s")
    print(f"beam_search / sample: {results['beam_search'] / results['sample']:.2f}x")
    print(f"args / sample: {results['args'] / results['sample']:.2f}x")


if __name__ == "__main__":
    main()
