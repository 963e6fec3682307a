"""rewardjax vs TRL, one GRPO iteration side by side: iterations/s of each and the ratio.

    bash benchmarks/setup_trl_env.sh .venv-trl          # once: the separate TRL environment
    .venv/bin/python benchmarks/compare_trl_grpo.py [--rounds 3] [--cpus 0] \\
        [--trl_python .venv-trl/bin/python] [any flag of preference_pairs.add_grpo_arguments]

One iteration (issue 11, section 5): P = 8 prompts of 16 tokens x N = 8 completions of exactly 64
new tokens (no early stop on either side), the tiny Llama of `compare_trl.py` (vocab 1024, d_model
128, 4 layers, 4/2 heads, d_ff 256, float32, CPU), the rule reward "fraction of even token ids",
group-normalised advantages, one epoch of one minibatch (one optimiser step) of the clipped loss
with the k3 KL to the initial policy in the loss (beta 0.04, a reference forward pass on both
sides; `--beta 0` drops TRL's reference, rewardjax still computes it). rewardjax runs the RL
trainer's iteration (`rewardjax_grpo_benchmark.py`), TRL its `GRPOTrainer.train()` with HF
`generate` (`trl_grpo_benchmark.py`). The two run one after the other (never at once), `--rounds`
times alternately; the summary gives each round's figures, the range and the best of each side.
`--cpus 0` pins both to the listed cores (`taskset -c`) with that many threads: on a shared,
oversubscribed machine PyTorch's OpenMP threads stall far more than XLA's pool (see README.md),
so pin when others are running. Target (issue 11): ratio >= 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from compare_trl import parse_cpus, run


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags are passed to both benchmark scripts.",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cpus", help="pin both sides to these cores, e.g. 0 (taskset -c)")
    parser.add_argument("--trl_python", default=os.path.join(".venv-trl", "bin", "python"))
    args, flags = parser.parse_known_args()
    if not os.path.exists(args.trl_python):
        sys.exit(
            f"--trl_python={args.trl_python} does not exist: create the TRL environment with "
            "`bash benchmarks/setup_trl_env.sh .venv-trl` or pass its python."
        )

    ours, theirs = [], []
    for i in range(args.rounds):
        ours.append(run(sys.executable, "rewardjax_grpo_benchmark.py", flags, args.cpus))
        theirs.append(run(args.trl_python, "trl_grpo_benchmark.py", flags, args.cpus))
        a, b = ours[-1]["iterations_per_s"], theirs[-1]["iterations_per_s"]
        loads = [
            r[k]
            for r in (ours[-1], theirs[-1])
            for k in ("load_average_before", "load_average_after")
        ]
        print(
            f"round {i + 1}: rewardjax {a:.3f} it/s | TRL {b:.3f} it/s | ratio {a / b:.2f}x | "
            f"load average {min(loads):.1f}-{max(loads):.1f}",
            flush=True,
        )

    loads = [r[k] for r in ours + theirs for k in ("load_average_before", "load_average_after")]
    a = [r["iterations_per_s"] for r in ours]
    b = [r["iterations_per_s"] for r in theirs]
    ratios = [x / y for x, y in zip(a, b)]
    cores = len(parse_cpus(args.cpus)) if args.cpus else os.cpu_count()
    print(
        f"\njax {ours[0]['versions']['jax']} vs TRL {theirs[0]['versions']['trl']} (torch "
        f"{theirs[0]['versions']['torch']}, {theirs[0]['torch_threads']} threads) on "
        f"{ours[0]['cpus']} CPUs (pinned to: {args.cpus or 'none'}, {cores} core(s)); "
        f"load average {min(loads):.1f}-{max(loads):.1f}; {args.rounds} alternating round(s); "
        f"TRL reference model: {theirs[0]['reference_model']}; "
        f"flags: {' '.join(flags) or '(defaults)'}"
    )
    print(
        f"rewardjax {min(a):.3f}-{max(a):.3f} it/s | TRL {min(b):.3f}-{max(b):.3f} it/s | "
        f"per-round ratio {min(ratios):.2f}-{max(ratios):.2f}x | best vs best "
        f"{max(a) / max(b):.2f}x (target >= 3x)"
    )
    summary = {
        "rounds": args.rounds,
        "cpus": args.cpus,
        "flags": flags,
        "rewardjax_iterations_per_s": a,
        "trl_iterations_per_s": b,
        "ratios": ratios,
        "best_ratio": max(a) / max(b),
        "load_average": [min(loads), max(loads)],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
