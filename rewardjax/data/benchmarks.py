"""Readers of the public file layouts of three reward-model benchmarks, validated at the boundary.

Each reader returns one typed record per benchmark item and raises `RecordError` naming the file,
the line (JSON lines, or a JSON array's element) or row (Parquet, `datasets` folders), the field
and the fix. Layouts (the fields the benchmarks' public files hold; unknown fields are ignored):

- RewardBench 2 (Malik et al. 2025, "RewardBench 2: Advancing Reward Model Evaluation",
  arXiv 2506.01937; allenai/reward-bench `scripts/run_v2.py`): {"id", "prompt", "chosen" [list of
  str], "rejected" [list of str], "subset", optional "num_correct"}. Outside the "Ties" subset an
  item has one chosen and (usually three) rejected responses; a "Ties" item has an id
  "ref:<n>" (one correct answer) or "tied:<n>" (several equally correct answers) for prompt n.
- RM-Bench (Liu et al. 2024, "RM-Bench: Benchmarking Reward Models of Language Models with
  Subtlety and Style", arXiv 2410.16184; THU-KEG/RM-Bench): {"id", "prompt", "chosen" [3 str],
  "rejected" [3 str], "domain"}; the three responses are in the styles (concise, detailed plain
  text, detailed markdown) and the domain starts with chat, math, code or safety
  ("safety-refuse", "safety-response"). The repository's files are JSON arrays (`*.json`).
- JudgeBench (Tan et al. 2024, "JudgeBench: A Benchmark for Evaluating LLM-Based Judges",
  arXiv 2410.12784; ScalerLab/JudgeBench): {"pair_id", "source", "question", "response_A",
  "response_B", "label" ("A>B" or "B>A")}, optional "original_id", "response_model".

Files: JSON lines (`*.jsonl`), a JSON array (`*.json` whose first character is "["; a record's
location is the line its element starts on), or anything `data.read_rows` reads (Parquet, a
`datasets.save_to_disk` folder, TFDS, array_record). Responses may be empty strings (a benchmark's
data is scored as it is), but must be strings.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

from rewardjax.data.readers import read_rows
from rewardjax.data.records import RecordError, _Checker

__all__ = [
    "BENCHMARKS",
    "RMBENCH_DOMAINS",
    "RMBENCH_STYLES",
    "JudgeBenchRecord",
    "RMBenchRecord",
    "RewardBench2Record",
    "read_benchmark",
    "read_judgebench",
    "read_rewardbench2",
    "read_rmbench",
]

BENCHMARKS = ("rewardbench2", "rmbench", "judgebench")
# RM-Bench: the domains its score averages over (a record's domain starts with one of them) and
# the styles of the three responses of each side, in file order.
RMBENCH_DOMAINS = ("chat", "math", "code", "safety")
RMBENCH_STYLES = ("concise", "detailed", "detailed markdown")
_TIES_ID = re.compile(r"^(ref|tied):(\d+)$")


@dataclasses.dataclass(frozen=True)
class RewardBench2Record:
    """One RewardBench 2 item: the chosen (correct) responses first, then the rejected ones.

    For the Ties subset `ties_kind` is "ref" or "tied" and `ties_prompt` the prompt number.
    """

    id: str
    prompt: str
    chosen: tuple[str, ...]
    rejected: tuple[str, ...]
    subset: str
    ties_kind: str | None = None
    ties_prompt: int | None = None

    @property
    def responses(self) -> tuple[str, ...]:
        return self.chosen + self.rejected


@dataclasses.dataclass(frozen=True)
class RMBenchRecord:
    """One RM-Bench item: 3 chosen and 3 rejected responses in the styles `RMBENCH_STYLES`."""

    id: str
    prompt: str
    chosen: tuple[str, str, str]
    rejected: tuple[str, str, str]
    domain: str  # as in the file, e.g. "safety-refuse"

    @property
    def domain_group(self) -> str:
        """The domain the score averages over: the one of `RMBENCH_DOMAINS` `domain` starts with."""
        return next(d for d in RMBENCH_DOMAINS if self.domain.startswith(d))


@dataclasses.dataclass(frozen=True)
class JudgeBenchRecord:
    """One JudgeBench pair; `label` is "A>B" or "B>A" (the objectively correct response wins)."""

    pair_id: str
    source: str
    question: str
    response_a: str
    response_b: str
    label: str


class _Row(_Checker):
    """Field access on one benchmark row (the record readers' checker, plus benchmark types),
    raising `RecordError` with the file and location."""

    def string(self, field: str, *, non_empty: bool = False) -> str:
        value = self.get(field)
        if not isinstance(value, str):
            self.fail(field, f"expected a string, got {type(value).__name__}", "give text")
        if non_empty and not value.strip():
            self.fail(field, "empty", f"give a non-empty '{field}'")
        return value

    def ident(self, field: str) -> str:
        value = self.get(field)
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.fail(field, f"expected a string or integer id, got {value!r}", "give an id")
        return str(value)

    def strings(self, field: str, *, length: int | None = None) -> tuple[str, ...]:
        value = self.get(field)
        if isinstance(value, str) or not isinstance(value, list | tuple):
            problem = f"expected a list of strings, got {type(value).__name__}"
            self.fail(field, problem, "use a list")
        if length is not None and len(value) != length:
            self.fail(
                field,
                f"expected {length} responses, got {len(value)}",
                f"give {length} responses in the order {RMBENCH_STYLES}",
            )
        if not value:
            self.fail(field, "empty list", "give at least one response")
        for i, v in enumerate(value):
            if not isinstance(v, str):
                problem = f"expected a string, got {type(v).__name__}"
                self.fail(f"{field}[{i}]", problem, "give text")
        return tuple(value)


def _rewardbench2(r: _Row) -> RewardBench2Record:
    rid, prompt = r.ident("id"), r.string("prompt", non_empty=True)
    chosen, rejected, subset = r.strings("chosen"), r.strings("rejected"), r.string("subset")
    if "num_correct" in r.raw and r.raw["num_correct"] is not None:
        n = r.raw["num_correct"]
        if isinstance(n, bool) or not isinstance(n, int) or n != len(chosen):
            r.fail(
                "num_correct",
                f"{n!r} but 'chosen' holds {len(chosen)} responses",
                "give num_correct = len(chosen) (the correct answers come first)",
            )
    if subset.lower() != "ties":
        if len(chosen) != 1:
            r.fail(
                "chosen",
                f"{len(chosen)} chosen responses in subset {subset!r}",
                "best-of-n subsets have exactly one chosen response (only 'Ties' has several)",
            )
        return RewardBench2Record(rid, prompt, chosen, rejected, subset)
    match = _TIES_ID.match(rid)
    if match is None:
        r.fail(
            "id",
            f"{rid!r} in the Ties subset is not 'ref:<n>' or 'tied:<n>'",
            "give the Ties id as in the released data, e.g. 'tied:12' with its reference 'ref:12'",
        )
    kind, number = match.group(1), int(match.group(2))
    if kind == "tied" and len(chosen) < 2:
        r.fail("chosen", "a 'tied:' item with one correct answer", "give >= 2 correct answers")
    return RewardBench2Record(rid, prompt, chosen, rejected, subset, kind, number)


def _rmbench(r: _Row) -> RMBenchRecord:
    rid, prompt = r.ident("id"), r.string("prompt", non_empty=True)
    chosen, rejected = r.strings("chosen", length=3), r.strings("rejected", length=3)
    domain = r.string("domain")
    if not domain.startswith(RMBENCH_DOMAINS):
        r.fail("domain", f"unknown domain {domain!r}", f"use one starting with {RMBENCH_DOMAINS}")
    return RMBenchRecord(rid, prompt, chosen, rejected, domain)  # type: ignore[arg-type]


def _judgebench(r: _Row) -> JudgeBenchRecord:
    pair_id, source = r.ident("pair_id"), r.string("source")
    question = r.string("question", non_empty=True)
    a, b, label = r.string("response_A"), r.string("response_B"), r.string("label")
    if label not in ("A>B", "B>A"):
        r.fail("label", f"{label!r} is not 'A>B' or 'B>A'", "give the objective label")
    return JudgeBenchRecord(pair_id, source, question, a, b, label)


_PARSERS: dict[str, Callable[[_Row], Any]] = {
    "rewardbench2": _rewardbench2,
    "rmbench": _rmbench,
    "judgebench": _judgebench,
}


def _json_array(path: str, text: str) -> Iterator[tuple[str, Any]]:
    """(location "line n", element) for each element of a JSON array, n its first line."""
    decoder, pos = json.JSONDecoder(), text.index("[") + 1
    line_of = lambda p: text.count("\n", 0, p) + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text):
            raise RecordError(path, f"line {line_of(pos)}", "<json>", "unterminated array", "add ]")
        if text[pos] == "]":
            return
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            location = f"line {line_of(e.pos)}"
            problem = f"invalid JSON ({e.msg})"
            raise RecordError(path, location, "<json>", problem, "fix the JSON") from None
        yield f"line {line_of(pos)}", value
        pos = end


def _rows(path: str) -> Iterator[tuple[str, Any]]:
    if path.endswith(".json"):
        with open(path, "rb") as f:
            data = f.read()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            line = "line " + str(data.count(b"\n", 0, e.start) + 1)
            problem = f"not valid UTF-8 (byte 0x{data[e.start]:02x})"
            raise RecordError(path, line, "<utf-8>", problem, "save the file as UTF-8") from None
        if text.lstrip().startswith("["):
            return _json_array(path, text)
    return read_rows(path)


def read_benchmark(benchmark: str, path: str) -> list[Any]:
    """Reads and validates every item of a benchmark file (see the module docstring).

    Args:
      benchmark: one of `BENCHMARKS`: "rewardbench2", "rmbench", "judgebench".
      path: a local file or folder.

    Returns:
      the records (`RewardBench2Record`, `RMBenchRecord` or `JudgeBenchRecord`), in file order.

    Raises:
      RecordError: at the first malformed item, naming file, line/row, field and the fix.
      ValueError: for an unknown benchmark or a file without items.
    """
    if benchmark not in _PARSERS:
        raise ValueError(f"unknown benchmark {benchmark!r}; use one of {BENCHMARKS}")
    parse = _PARSERS[benchmark]
    records = [parse(_Row(raw, path, location)) for location, raw in _rows(path)]
    if not records:
        raise ValueError(f"{path}: no {benchmark} items; give a file in the {benchmark} layout")
    return records


def read_rewardbench2(path: str) -> list[RewardBench2Record]:
    """`read_benchmark("rewardbench2", path)`."""
    return read_benchmark("rewardbench2", path)


def read_rmbench(path: str) -> list[RMBenchRecord]:
    """`read_benchmark("rmbench", path)`."""
    return read_benchmark("rmbench", path)


def read_judgebench(path: str) -> list[JudgeBenchRecord]:
    """`read_benchmark("judgebench", path)`."""
    return read_benchmark("judgebench", path)
