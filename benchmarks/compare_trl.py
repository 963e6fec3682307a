"""rewardjax vs TRL train steps, side by side: pairs/s of each, the ratio, and rewardjax's MFU.

    bash benchmarks/setup_trl_env.sh .venv-trl          # once: the separate TRL environment
    .venv/bin/python benchmarks/compare_trl.py [--rounds 2] [--trl_python .venv-trl/bin/python] \\
        [any flag of preference_pairs.add_arguments, e.g. --batch_size 16 --d_model 128]

Runs `rewardjax_train_benchmark.py` with this Python (the project venv) and `trl_benchmark.py`
with the TRL venv's, one after the other (never at once: they would share the cores), with the same
model shape, data and batch flags. With `--rounds k` the two alternate k times and the fastest
round of each side counts, so a burst of load from other processes on a shared machine penalises
neither side more than the other. `--cpus 0` pins both to the listed cores (`taskset -c`) with
that many threads: a check that the ratio is not an artefact of how each runtime's thread pool
copes with an oversubscribed machine. Target (issue 5): ratio >= 1.5 for both the reward-model and
the DPO step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ("reward_model", "dpo")


def run(python: str, script: str, flags: list[str], cpus: str | None) -> dict:
    """Runs a benchmark script and returns the JSON object it prints last on stdout."""
    cmd = [python, os.path.join(HERE, script), *flags]
    env = dict(os.environ)
    if cpus:
        cmd = ["taskset", "-c", cpus, *cmd]
        # torch sizes its pool by the machine's cores, XLA by the affinity mask: set both.
        env["OMP_NUM_THREADS"] = str(len(parse_cpus(cpus)))
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def parse_cpus(cpus: str) -> list[int]:
    """`taskset -c` list syntax ("0", "0,1", "0-3") as core ids."""
    out = []
    for part in cpus.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def best(results: list[dict], kind: str) -> dict:
    return max((r[kind] for r in results if kind in r), key=lambda r: r["pairs_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags are passed to both benchmark scripts.",
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--cpus", help="pin both sides to these cores, e.g. 0 (taskset -c)")
    parser.add_argument("--trl_python", default=os.path.join(".venv-trl", "bin", "python"))
    parser.add_argument(
        "--cpu_devices",
        type=int,
        help="rewardjax's XLA CPU devices, the batch split over them (default: one per core used, "
        "as torch runs one thread per core)",
    )
    args, flags = parser.parse_known_args()
    cores = len(parse_cpus(args.cpus)) if args.cpus else os.cpu_count()
    devices = ["--cpu_devices", str(args.cpu_devices or cores)]
    if not os.path.exists(args.trl_python):
        sys.exit(
            f"--trl_python={args.trl_python} does not exist: create the TRL environment with "
            "`bash benchmarks/setup_trl_env.sh .venv-trl` or pass its python."
        )

    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(run(sys.executable, "rewardjax_train_benchmark.py", flags + devices, args.cpus))
        theirs.append(run(args.trl_python, "trl_benchmark.py", flags, args.cpus))

    loads = [r[k] for r in ours + theirs for k in ("load_average_before", "load_average_after")]
    print(
        f"\njax {ours[0]['versions']['jax']} vs TRL {theirs[0]['versions']['trl']} (torch "
        f"{theirs[0]['versions']['torch']}, {theirs[0]['torch_threads']} threads) on "
        f"{ours[0]['cpus']} CPUs (pinned to: {args.cpus or 'none'}); "
        f"load average {min(loads):.1f}-{max(loads):.1f}; "
        f"best of {args.rounds} round(s); rewardjax on {devices[1]} XLA CPU device(s); "
        f"flags: {' '.join(flags) or '(defaults)'}"
    )
    peak = max(r["matmul_peak_flops"] for r in ours)
    print(f"measured f32 matmul peak: {peak / 1e9:.1f} GFLOP/s")
    summary = {
        "rounds": args.rounds,
        "cpus": args.cpus,
        "cpu_devices": int(devices[1]),
        "flags": flags,
        "matmul_peak_flops": peak,
    }
    for kind in KINDS:
        if not any(kind in r for r in ours):
            continue
        a, b = best(ours, kind), best(theirs, kind)
        ratio = a["pairs_per_s"] / b["pairs_per_s"]
        mfu = a["model_flops_per_step"] / a["seconds_per_step"] / peak
        print(
            f"{kind:>12}: rewardjax {a['pairs_per_s']:7.1f} pairs/s | TRL {b['pairs_per_s']:7.1f}"
            f" pairs/s | ratio {ratio:.2f}x (target >= 1.5x) | rewardjax MFU {mfu:.1%}"
        )
        summary[kind] = {
            "rewardjax_pairs_per_s": a["pairs_per_s"],
            "trl_pairs_per_s": b["pairs_per_s"],
            "ratio": ratio,
            "rewardjax_mfu": mfu,
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
