"""The test-time search study (experiments/search.py --smoke) end to end, in a subprocess with the
suite's cheap-compile environment: its files, and the qualitative finding (exact-PRM beam search
beats best-of-n on the exact outcome score at an equal number of generated tokens)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_search_study_smoke(tmp_path, env):
    subprocess.run(
        [sys.executable, "-m", "experiments.search", f"--workdir={tmp_path}", "--smoke"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=600,
    )
    for name in ("report.md", "points.jsonl", "compute.png", "kl.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    points = [json.loads(line) for line in (tmp_path / "points.jsonl").read_text().splitlines()]
    bon = {p["tokens"]: p for p in points if p["method"] == "best-of-n" and p["prm"] == "exact"}
    beams = [p for p in points if p["method"] == "beam search" and p["prm"] == "exact"]
    assert beams and all(p["tokens"] in bon for p in beams)
    for p in beams:  # by more than 3 standard errors of the difference
        q = bon[p["tokens"]]
        assert p["gold"] - q["gold"] > 3 * (p["gold_se"] ** 2 + q["gold_se"] ** 2) ** 0.5
    # Best-of-n's empirical gold within 4 standard errors of its exact law's, KL = 0 at n = 1.
    for q in bon.values():
        assert abs(q["gold"] - q["exact_gold"]) < 4 * q["gold_se"] + 1e-6
    assert bon[min(bon)]["kl"] == 0.0
    # No method beats the exact KL-regularised optimum at its own KL: the frontier is concave
    # and increasing, so sampled ARGS (exact KL and gold) lies on or below it.
    front = sorted((p["kl"], p["exact_gold"]) for p in points if p["method"].startswith("KL-reg"))
    for p in points:
        if p["method"] == "ARGS sampled":
            above = [g for kl, g in front if kl >= p["kl"]]
            assert above and p["exact_gold"] <= min(above) + 1e-4
    assert "Beam search wins at every budget" in (tmp_path / "report.md").read_text()
