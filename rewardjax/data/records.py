"""Record schemas for preference data, and their validation at the boundary.

Five record kinds, each with a prompt and responses given as plain text or as chat messages:

- `PairwiseRecord`  prompt, chosen, rejected, optional margin and subset (Bradley–Terry, DPO),
  optional precomputed reference log-probs `ref_chosen_logps` / `ref_rejected_logps` (DPO);
- `RankedRecord`    prompt, K responses, their ranks (0 = best; Plackett–Luce);
- `RatingRecord`    prompt, response, named attribute ratings (HelpSteer-style regression);
- `UnpairedRecord`  prompt, response, desirable flag (KTO);
- `SFTRecord`       prompt, response (supervised fine-tuning).

A text is a `str` or a tuple of `Message(role, content)`. `parse_record` turns one raw mapping (a
JSON line, a Parquet row, ...) into a record or raises `RecordError`, whose message names the
source file, the line or row, the field and how to fix it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    "RECORD_KINDS",
    "FieldError",
    "Message",
    "PairwiseRecord",
    "RankedRecord",
    "RatingRecord",
    "Record",
    "RecordError",
    "SFTRecord",
    "Text",
    "UnpairedRecord",
    "parse_record",
]

ROLES = ("system", "user", "assistant", "tool")


class Message(NamedTuple):
    role: str
    content: str


Text = str | tuple[Message, ...]


@dataclasses.dataclass(frozen=True)
class PairwiseRecord:
    prompt: Text
    chosen: Text
    rejected: Text
    margin: float = 0.0
    subset: str | None = None
    # Summed log-probs of the two completions under a DPO reference model, when precomputed.
    ref_chosen_logps: float | None = None
    ref_rejected_logps: float | None = None


@dataclasses.dataclass(frozen=True)
class RankedRecord:
    prompt: Text
    responses: tuple[Text, ...]
    ranks: tuple[int, ...]  # 0 = best; ties share a rank.


@dataclasses.dataclass(frozen=True)
class RatingRecord:
    prompt: Text
    response: Text
    ratings: tuple[tuple[str, float], ...]  # (attribute, value), sorted by attribute name.


@dataclasses.dataclass(frozen=True)
class UnpairedRecord:
    prompt: Text
    response: Text
    desirable: bool


@dataclasses.dataclass(frozen=True)
class SFTRecord:
    prompt: Text
    response: Text


Record = PairwiseRecord | RankedRecord | RatingRecord | UnpairedRecord | SFTRecord


class RecordError(ValueError):
    """A malformed record: names the source, the line/row, the field, and how to fix it."""

    def __init__(self, source: str, location: str, field: str, problem: str, fix: str):
        self.source, self.location, self.field, self.problem = source, location, field, problem
        super().__init__(f"{source}: {location}: field '{field}': {problem}. Fix: {fix}.")


class FieldError(ValueError):
    """Raised by an adapter on a bad field; the reader adds the source and location."""

    def __init__(self, field: str, problem: str, fix: str):
        self.field, self.problem, self.fix = field, problem, fix
        super().__init__(f"field '{field}': {problem}. Fix: {fix}.")


class _Checker:
    """Reads fields of one raw record, raising `RecordError` with its source and location."""

    def __init__(self, raw: Any, source: str, location: str):
        self.source, self.location = source, location
        if not isinstance(raw, Mapping):
            self.fail(
                "<record>", f"expected an object, got {type(raw).__name__}", "one object per record"
            )
        self.raw = raw

    def fail(self, field: str, problem: str, fix: str):
        raise RecordError(self.source, self.location, field, problem, fix)

    def get(self, field: str, *, required: bool = True) -> Any:
        if field not in self.raw or self.raw[field] is None:
            if required:
                present = ", ".join(sorted(map(str, self.raw))) or "none"
                self.fail(field, f"missing (fields present: {present})", f"add '{field}'")
            return None
        return self.raw[field]

    def text(self, field: str, value: Any = None, *, allow_empty: bool = False) -> Text:
        value = self.get(field) if value is None else value
        if isinstance(value, str):
            if not allow_empty and not value.strip():
                self.fail(field, "empty text", "give a non-empty response or remove the record")
            return value
        if isinstance(value, list | tuple) and all(isinstance(m, Mapping) for m in value):
            return self._messages(field, value, allow_empty)
        self.fail(
            field,
            f"wrong type {type(value).__name__}",
            "use a string or a list of {'role': ..., 'content': ...} messages",
        )

    def _messages(self, field: str, value: Any, allow_empty: bool) -> tuple[Message, ...]:
        if not value and not allow_empty:
            self.fail(field, "empty message list", "give at least one message")
        messages = []
        for i, m in enumerate(value):
            role, content = m.get("role"), m.get("content")
            if role not in ROLES:
                self.fail(f"{field}[{i}].role", f"unknown role {role!r}", f"use one of {ROLES}")
            if not isinstance(content, str):
                self.fail(f"{field}[{i}].content", "missing or not a string", "give text content")
            messages.append(Message(role, content))
        if not allow_empty and not any(m.content.strip() for m in messages):
            self.fail(field, "all messages are empty", "give a non-empty response")
        return tuple(messages)

    def number(self, field: str, value: Any = None, *, required: bool = True) -> float | None:
        value = self.get(field, required=required) if value is None else value
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.fail(field, f"expected a finite number, got {value!r}", "give a number")
        return float(value)


def _pairwise(c: _Checker) -> PairwiseRecord:
    prompt = c.text("prompt", allow_empty=True)
    chosen, rejected = c.text("chosen"), c.text("rejected")
    if chosen == rejected:
        c.fail("rejected", "identical to 'chosen'", "remove the pair or fix one of the responses")
    margin = c.number("margin", required=False)
    subset = c.get("subset", required=False)
    if subset is not None and not isinstance(subset, str):
        c.fail("subset", f"wrong type {type(subset).__name__}", "give the subset name as a string")
    refs = [c.number(f, required=False) for f in ("ref_chosen_logps", "ref_rejected_logps")]
    if (refs[0] is None) != (refs[1] is None):
        missing = "ref_rejected_logps" if refs[1] is None else "ref_chosen_logps"
        c.fail(missing, "missing while its pair is given", "give both reference log-probs or none")
    return PairwiseRecord(
        prompt, chosen, rejected, 0.0 if margin is None else margin, subset, *refs
    )


def _ranked(c: _Checker) -> RankedRecord:
    prompt = c.text("prompt", allow_empty=True)
    responses, ranks = c.get("responses"), c.get("ranks")
    if not isinstance(responses, list | tuple) or len(responses) < 2:
        c.fail("responses", "expected a list of at least 2 responses", "give K >= 2 responses")
    if not isinstance(ranks, list | tuple) or len(ranks) != len(responses):
        c.fail("ranks", f"expected a list of {len(responses)} ranks", "give one rank per response")
    texts = tuple(c.text(f"responses[{i}]", r) for i, r in enumerate(responses))
    for i, r in enumerate(ranks):
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            c.fail(f"ranks[{i}]", f"expected an integer >= 0, got {r!r}", "0 is the best response")
    if len(set(texts)) < len(texts):
        c.fail("responses", "contains duplicate responses", "remove the duplicates")
    return RankedRecord(prompt, texts, tuple(ranks))


def _rating(c: _Checker) -> RatingRecord:
    prompt, response = c.text("prompt", allow_empty=True), c.text("response")
    ratings = c.get("ratings")
    if not isinstance(ratings, Mapping) or not ratings:
        c.fail("ratings", "expected a non-empty {attribute: number} object", "give the ratings")
    values = tuple(sorted((str(k), c.number(f"ratings.{k}", v)) for k, v in ratings.items()))
    return RatingRecord(prompt, response, values)


def _unpaired(c: _Checker) -> UnpairedRecord:
    prompt, response = c.text("prompt", allow_empty=True), c.text("response")
    desirable = c.get("desirable")
    if not isinstance(desirable, bool):
        c.fail("desirable", f"expected true/false, got {desirable!r}", "give a boolean label")
    return UnpairedRecord(prompt, response, desirable)


def _sft(c: _Checker) -> SFTRecord:
    return SFTRecord(c.text("prompt", allow_empty=True), c.text("response"))


_PARSERS = {
    "pairwise": _pairwise,
    "ranked": _ranked,
    "rating": _rating,
    "unpaired": _unpaired,
    "sft": _sft,
}
RECORD_KINDS = tuple(_PARSERS)


def parse_record(kind: str, raw: Any, *, source: str = "<memory>", location: str = "?") -> Record:
    """Validates one raw record of `kind` (see `RECORD_KINDS`) and returns it as a typed record.

    Args:
      kind: "pairwise", "ranked", "rating", "unpaired" or "sft".
      raw: a mapping with the fields of that kind (a response is a non-empty string or a list of
        {"role", "content"} messages; the prompt may be empty).
      source: the file it came from, for error messages.
      location: where in the file, e.g. "line 3" or "row 7".

    Raises:
      RecordError: naming source, location and field, on a missing field, a wrong type, an empty
        response, or a pair whose chosen and rejected responses are identical.
    """
    if kind not in _PARSERS:
        raise ValueError(f"unknown record kind {kind!r}; use one of {RECORD_KINDS}")
    return _PARSERS[kind](_Checker(raw, source, location))
