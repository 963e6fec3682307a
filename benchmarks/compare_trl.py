"""rewardjax vs TRL train steps, side by side: pairs/s of each, the ratio, padding and FLOPs.

    bash benchmarks/setup_trl_env.sh .venv-trl          # once: the separate TRL environment
    .venv/bin/python benchmarks/compare_trl.py [--rounds 3] [--cpus 0] [--layout packed] \\
        [--trl_python .venv-trl/bin/python] [--lengths fixed|realistic] \\
        [any flag of preference_pairs.add_arguments, e.g. --batch_size 16 --steps 20]

Runs `rewardjax_train_benchmark.py` with this Python (the project venv) and `trl_benchmark.py`
with the TRL venv's, one after the other (never at once: they would share the cores), with the same
model shape, data, length mix and batch flags; `--layout` goes to the rewardjax side only
(`packed`, the default: prefix-shared pairs packed into rows, `rewardjax.data.packing`;
`shared`: prefix sharing without packing; `padded`: neither). With `--rounds k` the two alternate
k times (the first side alternating too: rewardjax first in even rounds, TRL in odd ones), and the
summary gives the range over rounds of each side and of the per-round ratio (never the best round
alone), so a burst of load from other processes penalises neither side more than the other.
`--cpus 0` pins both to the listed cores (`taskset -c`) with that many threads: on a shared
machine, unpinned figures are artefacts of how each runtime's thread pool copes with
oversubscription.

Next to the time: each side's padding fraction (tokens computed that are padding, or, for the
prefix-shared layout, beyond the unique prompt + completion tokens), its model FLOPs per step
(PaLM's formula on the rows it actually computes, `preference_pairs.model_flops`) and the FLOPs
rewardjax saves against TRL's padded rows. Targets (issue 15): realistic mix, ratio >= 2 for the
reward-model and the DPO step; fixed mix, >= 1.2 and >= 1.1 (no regression).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

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


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    """`lo-hi` of the values (one value alone when they are equal or there is one)."""
    lo, hi = min(values), max(values)
    return fmt.format(lo) if lo == hi else f"{fmt.format(lo)}-{fmt.format(hi)}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Other flags (preference_pairs.add_arguments: --lengths, --batch_size, --steps, "
        "--warmup, --only, model dims ...) are passed to both benchmark scripts.",
    )
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds of both sides")
    parser.add_argument("--cpus", help="pin both sides to these cores, e.g. 0 (taskset -c)")
    parser.add_argument("--trl_python", default=os.path.join(".venv-trl", "bin", "python"))
    parser.add_argument(
        "--layout",
        choices=("packed", "shared", "padded"),
        default="packed",
        help="rewardjax's layout (rewardjax_train_benchmark.py --layout): packed = prefix-shared "
        "pairs packed into fixed-length rows (default, as config.train.packing), shared = "
        "prefix sharing alone, padded = chosen and rejected rows apart",
    )
    parser.add_argument(
        "--cpu_devices",
        type=int,
        help="rewardjax's XLA CPU devices, the batch split over them (default: one per core used, "
        "as torch runs one thread per core)",
    )
    args, flags = parser.parse_known_args()
    cores = len(parse_cpus(args.cpus)) if args.cpus else os.cpu_count()
    # Later rounds load the first round's compiled executables (compilation is never timed).
    cache = tempfile.mkdtemp(prefix="rewardjax_compare_trl_")
    ours_flags = [*flags, "--compilation_cache", cache, "--cpu_devices"]
    ours_flags += [str(args.cpu_devices or cores), "--layout", args.layout]
    if not os.path.exists(args.trl_python):
        sys.exit(
            f"--trl_python={args.trl_python} does not exist: create the TRL environment with "
            "`bash benchmarks/setup_trl_env.sh .venv-trl` or pass its python."
        )

    ours, theirs = [], []
    start = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for i in range(args.rounds):
        sides = [
            (ours, sys.executable, "rewardjax_train_benchmark.py", ours_flags),
            (theirs, args.trl_python, "trl_benchmark.py", flags),
        ]
        for results, python, script, side_flags in sides[:: 1 if i % 2 == 0 else -1]:
            results.append(run(python, script, side_flags, args.cpus))
            done = {k: round(results[-1][k]["pairs_per_s"], 3) for k in KINDS if k in results[-1]}
            print(f"round {i + 1}: {script} pairs/s {done}", file=sys.stderr, flush=True)
    end = time.strftime("%H:%M UTC", time.gmtime())

    loads = [r[k] for r in ours + theirs for k in ("load_average_before", "load_average_after")]
    lengths = ours[0]["lengths"]
    print(
        f"\n{start}-{end}: jax {ours[0]['versions']['jax']} vs TRL {theirs[0]['versions']['trl']} "
        f"(torch {theirs[0]['versions']['torch']}, {theirs[0]['torch_threads']} threads) on "
        f"{ours[0]['cpus']} CPUs (pinned to: {args.cpus or 'none'}); "
        f"load average {min(loads):.1f}-{max(loads):.1f}; {args.rounds} round(s); rewardjax on "
        f"{ours_flags[-3]} XLA CPU device(s), layout {args.layout}; {lengths} lengths; "
        f"flags: {' '.join(flags) or '(defaults)'}"
    )
    pad_ours, pad_theirs = ours[0]["padding"], theirs[0]["padding"]
    print(
        f"tokens a step: real {pad_ours['real_tokens']:.0f} (unique "
        f"{pad_ours['unique_tokens']:.0f}); rewardjax computes {pad_ours['computed_tokens']:.0f} "
        f"in {pad_ours['rows']:.0f} rows of <= {pad_ours['longest_row']} (padding "
        f"{pad_ours['padding_fraction']:.1%}), TRL {pad_theirs['computed_tokens']:.0f} in "
        f"{pad_theirs['rows']:.0f} rows of <= {pad_theirs['longest_row']} (padding "
        f"{pad_theirs['padding_fraction']:.1%})"
    )
    peaks = [r["matmul_peak_flops"] for r in ours]
    print(f"measured f32 matmul peak: {spread([p / 1e9 for p in peaks], '{:.1f}')} GFLOP/s")
    summary = {
        "start": start,
        "end": end,
        "rounds": args.rounds,
        "cpus": args.cpus,
        "layout": args.layout,
        "lengths": lengths,
        "flags": flags,
        "load_average": [min(loads), max(loads)],
        "matmul_peak_flops": peaks,
        "padding": {"rewardjax": pad_ours, "trl": pad_theirs},
    }
    target = {"fixed": {"reward_model": 1.2, "dpo": 1.1}}.get(lengths, {})
    for kind in KINDS:
        if not any(kind in r for r in ours):
            continue
        a = [r[kind]["pairs_per_s"] for r in ours]
        b = [r[kind]["pairs_per_s"] for r in theirs]
        ratios = [x / y for x, y in zip(a, b)]
        flops_a = ours[0][kind]["model_flops_per_step"]
        flops_b = theirs[0][kind]["model_flops_per_step"]
        mfu = [r[kind]["mfu"] for r in ours]
        compiles = ours[0][kind]["compilations"]
        print(
            f"{kind:>12}: rewardjax {spread(a, '{:.2f}')} pairs/s | TRL {spread(b, '{:.2f}')} "
            f"pairs/s | per-round ratio {spread(ratios)}x, median "
            f"{statistics.median(ratios):.2f}x (target >= {target.get(kind, 2.0)}x) | model "
            f"GFLOP/step rewardjax {flops_a / 1e9:.1f}, TRL {flops_b / 1e9:.1f} (saved "
            f"{1 - flops_a / flops_b:.1%}) | rewardjax MFU {spread(mfu, '{:.1%}')}, "
            f"{compiles} compilation(s) ({ours[0][kind]['compile_seconds']:.0f} s)"
        )
        summary[kind] = {
            "rewardjax_pairs_per_s": a,
            "trl_pairs_per_s": b,
            "ratios": ratios,
            "rewardjax_model_flops_per_step": flops_a,
            "trl_model_flops_per_step": flops_b,
            "flops_saved": 1 - flops_a / flops_b,
            "rewardjax_mfu": mfu,
            "compilations": compiles,
        }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
