"""What every lab study shares: curves compared at matched KL, and the files a study writes.

A study (`experiments/<study>.py`) writes into its work directory `report.md` (with PNGs),
`points.jsonl` and `points.csv` (every plotted point), `command.txt` (the command line) and
`config.json` (the settings that made it).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from jaxtyping import Float

from rewardjax.evaluate import overoptimization as overopt

__all__ = ["at_kl", "write_study"]


def at_kl(
    kl: Float[np.ndarray, " M"], value: Float[np.ndarray, " M"], grid: Float[np.ndarray, " G"]
) -> Float[np.ndarray, " G"]:
    """A curve's value at given KLs: linear interpolation in KL, NaN outside the curve's KL range.

    The points are sorted by KL first (a tilted optimum's KL falls as β grows); a curve must be a
    function of KL (best-of-n's and the optimum's KL are strictly monotone in n and β).

    Args:
      kl: the curve's KL, [M].
      value: its reward (or any value), [M].
      grid: the KLs to read it at, [G].

    Returns:
      [G].
    """
    kl, value, grid = (np.asarray(x, np.float64) for x in (kl, value, grid))
    order = np.argsort(kl)
    kl, value = kl[order], value[order]
    out = np.interp(grid, kl, value)
    return np.where((grid < kl[0]) | (grid > kl[-1]), np.nan, out)


def write_study(
    workdir: str | os.PathLike,
    *,
    title: str,
    sections: Sequence[str],
    points: Sequence[Mapping[str, Any]],
    config: Mapping[str, Any],
    command: Sequence[str] | None = None,
) -> str:
    """Writes `report.md` (title, the command, `sections` in order, the settings), `points.jsonl`,
    `points.csv` (columns: the union of the points' keys), `command.txt` and `config.json`.

    Args:
      workdir: the study's folder (created if needed); PNGs named in `sections` go there too.
      title: the report's heading.
      sections: Markdown blocks.
      points: one dict per plotted point.
      config: the study's settings (JSON-able).
      command: the command line (default `sys.argv`, run as `python -m`).

    Returns:
      The path of `report.md`.
    """
    os.makedirs(workdir, exist_ok=True)
    join = lambda name: os.path.join(workdir, name)
    line = " ".join(command if command is not None else ["python", "-m", *_module_argv()])
    with open(join("command.txt"), "w", encoding="utf-8") as f:
        f.write(line + "\n")
    with open(join("config.json"), "w", encoding="utf-8") as f:
        json.dump(dict(config), f, indent=2, sort_keys=True, default=str)
    overopt.write_points(join("points.jsonl"), list(points))
    columns = list(dict.fromkeys(k for p in points for k in p))
    with open(join("points.csv"), "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, columns)
        writer.writeheader()
        for p in points:
            writer.writerow({k: p.get(k, "") for k in columns})
    text = [f"# {title}\n", f"Command: `{line}`\n", *sections]
    settings = "\n".join(f"| {k} | {v} |" for k, v in sorted(config.items()))
    text.append(f"\n## Settings\n\n| setting | value |\n|---|---|\n{settings}\n")
    text.append("\nEvery point: `points.jsonl` / `points.csv`.\n")
    with open(join("report.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(text))
    return join("report.md")


def _module_argv() -> list[str]:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = spec.name if spec is not None else os.path.basename(sys.argv[0])
    return [name, *sys.argv[1:]]
