"""Best-of-n throughput: exact laws for many n at once, and order-statistic curves from samples.

Run: `.venv/bin/python benchmarks/bon_benchmark.py`. Times are after compilation, best of a few
repeats, with `block_until_ready`. Targets (issue 3): each under 1 s on a 2-core CPU.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import bon


def best_time(fn, *args, repeats: int = 5) -> tuple[float, float]:
    """(compile + first run, best of `repeats` later runs) in seconds."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return first, min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    print(
        f"jax {jax.__version__} on {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs,"
        f" load average {os.getloadavg()[0]:.1f} (wall times grow with contention)"
    )

    num_outcomes, num_n = 100_000, 1_000
    probs = jnp.asarray(rng.dirichlet(np.ones(num_outcomes)), jnp.float32)
    rewards = jnp.asarray(rng.integers(0, 20_000, num_outcomes), jnp.float32)  # with ties
    ns = jnp.geomspace(1.0, 1e4, num_n, dtype=jnp.float32)
    first, best = best_time(bon.bon_distribution, probs, rewards, ns)
    print(
        f"bon_distribution  Y={num_outcomes:,} x {num_n:,} n values -> [{num_n}, {num_outcomes}]:"
        f" {best:.3f} s (first call incl. compile {first:.2f} s)"
    )
    first, best = best_time(bon.bon_kl, probs, rewards, ns)
    print(
        f"bon_kl            Y={num_outcomes:,} x {num_n:,} n values:"
        f" {best:.3f} s (first call incl. compile {first:.2f} s)"
    )

    num_samples, max_n = 1_000_000, 10_000
    samples = jnp.asarray(rng.normal(size=num_samples), jnp.float32)
    ns_int = np.arange(1, max_n + 1)
    curves = jax.jit(lambda r: bon.empirical_bon_curves(r, ns_int))
    first, best = best_time(curves, samples)
    print(
        f"empirical_bon_curves M={num_samples:,}, n=1..{max_n:,}:"
        f" {best:.3f} s (first call incl. compile {first:.2f} s)"
    )


if __name__ == "__main__":
    main()
