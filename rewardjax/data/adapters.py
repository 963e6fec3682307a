"""Named adapters from public preference-data layouts to the canonical records of `records.py`.

Each adapter maps one raw row (a JSON line, a Parquet or `datasets` row) to the canonical raw
mapping of its record kind; `parse_record` then validates it. Layouts:

- "hh": Anthropic HH-RLHF, {"chosen", "rejected"} full "\\n\\nHuman: ... \\n\\nAssistant: ..."
  transcripts that share every turn but the last (Bai et al., 2022, "Training a Helpful and
  Harmless Assistant with Reinforcement Learning from Human Feedback", arXiv:2204.05862).
- "ultrafeedback_binarized": {"prompt", "chosen", "rejected" (message lists ending with the
  assistant reply), "score_chosen", "score_rejected"}; margin = score_chosen - score_rejected (Cui
  et al., 2023, "UltraFeedback", arXiv:2310.01377; Tunstall et al., 2023, "Zephyr",
  arXiv:2310.16944).
- "helpsteer2": {"prompt", "response", "helpfulness", "correctness", "coherence", "complexity",
  "verbosity"} (Wang et al., 2024, "HelpSteer2", arXiv:2406.08673).
- "rewardbench": {"prompt", "chosen", "rejected", "subset"} (Lambert et al., 2024, "RewardBench",
  arXiv:2403.13787).
- "pairwise", "ranked", "rating", "unpaired", "sft": the canonical layouts, unchanged.

Single-turn prompts of the public layouts become one user message, so a chat template applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from rewardjax.data.records import RECORD_KINDS, FieldError

__all__ = ["ADAPTERS", "HELPSTEER2_ATTRIBUTES", "adapt"]

HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")


def _field(raw: Mapping[str, Any], name: str, kind: type | tuple[type, ...] = str) -> Any:
    if name not in raw or raw[name] is None:
        present = ", ".join(sorted(map(str, raw))) or "none"
        raise FieldError(name, f"missing (fields present: {present})", f"add '{name}'")
    if not isinstance(raw[name], kind):
        raise FieldError(name, f"wrong type {type(raw[name]).__name__}", "check the layout name")
    return raw[name]


def _user(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


def _hh_turns(field: str, transcript: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(transcript)
    if parts[0].strip() or len(parts) < 3:
        raise FieldError(
            field, "not a '\\n\\nHuman: ...\\n\\nAssistant: ...' transcript", "use 'hh'"
        )
    roles = {"Human": "user", "Assistant": "assistant"}
    return [{"role": roles[r], "content": c} for r, c in zip(parts[1::2], parts[2::2])]


def _hh(raw: Mapping[str, Any]) -> dict[str, Any]:
    chosen = _hh_turns("chosen", _field(raw, "chosen"))
    rejected = _hh_turns("rejected", _field(raw, "rejected"))
    if chosen[-1]["role"] != "assistant":
        raise FieldError("chosen", "does not end with an Assistant turn", "drop the record")
    if rejected[:-1] != chosen[:-1] or rejected[-1]["role"] != "assistant":
        raise FieldError(
            "rejected", "does not share the conversation of 'chosen'", "drop the record"
        )
    return {
        "prompt": chosen[:-1],
        "chosen": chosen[-1]["content"],
        "rejected": rejected[-1]["content"],
    }


def _ultrafeedback(raw: Mapping[str, Any]) -> dict[str, Any]:
    chosen, rejected = _field(raw, "chosen", list), _field(raw, "rejected", list)
    if not chosen or chosen[:-1] != rejected[:-1]:
        raise FieldError(
            "rejected", "does not share the prompt turns of 'chosen'", "drop the record"
        )
    out = {"prompt": chosen[:-1] or _user(_field(raw, "prompt")), "chosen": chosen[-1:]}
    out["rejected"] = rejected[-1:]
    if raw.get("score_chosen") is not None and raw.get("score_rejected") is not None:
        out["margin"] = _field(raw, "score_chosen", (int, float)) - _field(
            raw, "score_rejected", (int, float)
        )
    return out


def _helpsteer2(raw: Mapping[str, Any]) -> dict[str, Any]:
    ratings = {a: _field(raw, a, (int, float)) for a in HELPSTEER2_ATTRIBUTES}
    return {
        "prompt": _user(_field(raw, "prompt")),
        "response": raw.get("response"),
        "ratings": ratings,
    }


def _rewardbench(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prompt": _user(_field(raw, "prompt")),
        "chosen": raw.get("chosen"),
        "rejected": raw.get("rejected"),
        "subset": _field(raw, "subset"),
    }


# name -> (record kind, adapter). Canonical layouts pass through unchanged.
ADAPTERS: dict[str, tuple[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]]] = {
    "hh": ("pairwise", _hh),
    "ultrafeedback_binarized": ("pairwise", _ultrafeedback),
    "helpsteer2": ("rating", _helpsteer2),
    "rewardbench": ("pairwise", _rewardbench),
    **{kind: (kind, dict) for kind in RECORD_KINDS},
}


def adapt(layout: str, raw: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Maps one raw row in `layout` (a key of `ADAPTERS`) to (record kind, canonical raw mapping).

    Raises:
      FieldError: naming the field when the row does not fit the layout.
    """
    if layout not in ADAPTERS:
        raise ValueError(f"unknown data layout {layout!r}; use one of {sorted(ADAPTERS)}")
    kind, fn = ADAPTERS[layout]
    if not isinstance(raw, Mapping):
        raise FieldError("<record>", f"expected an object, got {type(raw).__name__}", "fix the row")
    return kind, fn(raw)
