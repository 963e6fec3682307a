"""Step-segmented records for process reward models, their validation, and public-layout adapters.

A `StepRecord` is a prompt, the solution's steps (texts), one label per step and an optional
final outcome. Step labels come in three kinds (`LABEL_KINDS`):

- "binary":  1 (correct) or 0 (incorrect);
- "ternary": PRM800K's ratings +1 (good), 0 (neutral: fine but no progress), -1 (bad);
- "soft":    a value in [0, 1], e.g. Math-Shepherd's fraction of k completions from the step that
  reach the right answer, or the synthetic task's Monte-Carlo value labels mapped to [0, 1].

`StepRecord.targets(neutral=...)` maps any kind to training targets in [0, 1].

Layouts (`STEP_LAYOUTS`), one JSON object per row:

- "steps" (canonical): {"prompt": text (may be empty), "steps": [str, ...], "labels": [...],
  "label_kind": optional ("binary" | "ternary" | "soft"; inferred from the values when absent:
  all 0/1 or booleans -> binary, -1/0/1 with a -1 -> ternary, else in [0, 1] -> soft),
  "outcome": optional number in [0, 1] or boolean}.
- "prm800k": {"question": {"problem", ...}, "label": {"steps": [{"completions": [{"text",
  "rating", "flagged"}], "human_completion", "chosen_completion"}], "finish_reason", ...}}
  (Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050). The record follows the
  labelled trajectory: the chosen completion of each step, or the labeller's own
  `human_completion` (rated +1 when its rating is null: labellers wrote it as a good step);
  a step with neither ends the trajectory with its first completion (phase 2: the generated
  step where the labeller found the first error). Labels are ternary; the other, unchosen
  completions are counted in the report (`ignored_alternatives`), not kept. Outcome:
  finish_reason "solution" -> 1, "found_error" -> 0; rows with another finish_reason
  ("give_up", "bad_problem") are filtered by default and counted by reason.
- "math_shepherd": {"input": problem and steps, each step ending in the tag "ки", "label": the
  same text with each tag replaced by "+" or "-", "task": optional} (Wang et al. 2023,
  "Math-Shepherd", arXiv 2312.08935). The prompt is the text before "Step 1:"; labels are
  binary (+ -> 1); the outcome is the last step's label (for the final step the estimate is the
  correctness of the solution's own answer).
- "trl_stepwise": {"prompt", "completions": [str, ...], "labels": [bool or number, ...]} (the
  stepwise-supervision layout of Hugging Face TRL).

`load_step_records` reads a file like `rewardjax.data.load_records` does (same formats, errors
naming file, line and field, `on_error="skip"` counts what it drops).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import glob
import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from rewardjax import theory
from rewardjax.data import synthetic
from rewardjax.data.pipeline import EncodedDataset, EncodeStats
from rewardjax.data.readers import LoadReport, _rows
from rewardjax.data.records import FieldError, RecordError, Text, _Checker
from rewardjax.data.tokenizers import encode_example

__all__ = [
    "LABEL_KINDS",
    "MATH_SHEPHERD_TAG",
    "STEP_LAYOUTS",
    "STEP_TARGET_PAD",
    "StepLoadReport",
    "StepRecord",
    "adapt_steps",
    "encode_step_records",
    "load_step_records",
    "parse_step_record",
    "reward_range",
    "step_batch_arrays",
    "synthetic_step_data",
    "synthetic_step_dataset",
]

LABEL_KINDS = ("binary", "ternary", "soft")
MATH_SHEPHERD_TAG = "ки"


@dataclasses.dataclass(frozen=True)
class StepRecord:
    """A prompt, its solution's steps and one label per step (see the module docstring)."""

    prompt: Text
    steps: tuple[str, ...]
    labels: tuple[float, ...]  # one per step; values per `label_kind`
    label_kind: str  # "binary" | "ternary" | "soft"
    outcome: float | None = None  # final correctness in [0, 1], when known

    def targets(self, *, neutral: float = 1.0) -> tuple[float, ...]:
        """Per-step training targets in [0, 1] (for `losses.step_cross_entropy`).

        Binary and soft labels are returned as they are; ternary labels map +1 -> 1, -1 -> 0 and
        0 -> `neutral` (1.0 counts a neutral step as correct, as in Lightman et al.'s
        "convincing" reading; 0.5 is agnostic; 0.0 the strict reading).
        """
        if not 0.0 <= neutral <= 1.0:
            raise ValueError(f"neutral={neutral} must be in [0, 1]")
        if self.label_kind != "ternary":
            return self.labels
        return tuple({1.0: 1.0, -1.0: 0.0, 0.0: neutral}[v] for v in self.labels)


class _Filtered(Exception):
    """A row the layout asks to leave out (not an error): counted by reason, never raised."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# ------------------------------------------------------------------------- canonical parsing


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _infer_kind(c: _Checker, labels: list[Any]) -> str:
    if all(isinstance(v, bool) or (_is_number(v) and v in (0, 1)) for v in labels):
        return "binary"
    if all(_is_number(v) and v in (-1, 0, 1) for v in labels):
        return "ternary"
    if all(_is_number(v) and 0.0 <= v <= 1.0 for v in labels):
        return "soft"
    # Name the most wrong label: not a number, else outside [-1, 1], else negative.
    tests = (
        lambda v: not (_is_number(v) or isinstance(v, bool)),
        lambda v: abs(v) > 1,
        lambda v: v < 0,
    )
    bad = next(i for test in tests for i, v in enumerate(labels) if test(v))
    c.fail(
        f"labels[{bad}]",
        f"{labels[bad]!r} fits no label kind",
        "give 0/1 (binary), -1/0/1 (ternary) or numbers in [0, 1] (soft)",
    )


def _label(c: _Checker, field: str, value: Any, kind: str) -> float:
    if kind == "binary":
        if isinstance(value, bool) or (_is_number(value) and value in (0, 1)):
            return float(value)
        c.fail(field, f"expected 0, 1 or a boolean (binary), got {value!r}", "fix the label")
    if kind == "ternary":
        if _is_number(value) and value in (-1, 0, 1):
            return float(value)
        c.fail(field, f"expected -1, 0 or 1 (ternary), got {value!r}", "fix the label")
    if _is_number(value) and 0.0 <= value <= 1.0:
        return float(value)
    c.fail(field, f"expected a number in [0, 1] (soft), got {value!r}", "fix the label")


def _steps(c: _Checker) -> StepRecord:
    prompt = c.text("prompt", allow_empty=True)
    steps, labels = c.get("steps"), c.get("labels")
    if not isinstance(steps, list | tuple) or not steps:
        c.fail("steps", "expected a non-empty list of step texts", "give at least one step")
    for i, s in enumerate(steps):
        if not isinstance(s, str) or not s.strip():
            c.fail(f"steps[{i}]", f"expected a non-empty string, got {s!r}", "give the step text")
    if not isinstance(labels, list | tuple) or len(labels) != len(steps):
        got = f"{len(labels)} labels" if isinstance(labels, list | tuple) else repr(labels)
        c.fail("labels", f"expected a list of {len(steps)} labels, got {got}", "one per step")
    kind = c.get("label_kind", required=False)
    if kind is None:
        kind = _infer_kind(c, list(labels))
    elif kind not in LABEL_KINDS:
        c.fail("label_kind", f"unknown kind {kind!r}", f"use one of {LABEL_KINDS}")
    values = tuple(_label(c, f"labels[{i}]", v, kind) for i, v in enumerate(labels))
    outcome = c.get("outcome", required=False)
    if outcome is not None:
        if isinstance(outcome, bool):
            outcome = float(outcome)
        elif not (_is_number(outcome) and 0.0 <= outcome <= 1.0):
            c.fail(
                "outcome",
                f"expected a number in [0, 1] or a boolean, got {outcome!r}",
                "give 1 for a correct final answer, 0 for a wrong one, or leave it out",
            )
        outcome = float(outcome)
    return StepRecord(prompt, tuple(s.strip() for s in steps), values, kind, outcome)


def parse_step_record(raw: Any, *, source: str = "<memory>", location: str = "?") -> StepRecord:
    """Validates one raw record of the canonical "steps" layout and returns a `StepRecord`.

    Args:
      raw: a mapping {"prompt", "steps", "labels", optional "label_kind", optional "outcome"}.
      source: the file it came from, for error messages.
      location: where in the file, e.g. "line 3".

    Raises:
      RecordError: naming source, location and field (e.g. "labels[2]"), on a missing field, a
        wrong type, an empty step, a label count that differs from the step count, a label that
        does not fit its kind, or an outcome outside [0, 1].
    """
    return _steps(_Checker(raw, source, location))


# ------------------------------------------------------------------------- layout adapters


def _need(raw: Any, name: str, kind: type | tuple[type, ...], prefix: str = "") -> Any:
    field = f"{prefix}{name}"
    if not isinstance(raw, Mapping) or raw.get(name) is None:
        present = ", ".join(sorted(map(str, raw))) if isinstance(raw, Mapping) else "not an object"
        raise FieldError(field, f"missing (fields present: {present or 'none'})", f"add '{field}'")
    if not isinstance(raw[name], kind):
        raise FieldError(field, f"wrong type {type(raw[name]).__name__}", "check the layout name")
    return raw[name]


def _prm800k_step(i: int, step: Any) -> tuple[str, Any, str, int, bool]:
    """(text, rating, the rating's field, unchosen alternatives, whether the trajectory ends)."""
    where = f"label.steps[{i}]."
    completions = step.get("completions") if isinstance(step, Mapping) else None
    if not isinstance(completions, list):
        raise FieldError(f"label.steps[{i}]", "expected {'completions': [...], ...}", "use prm800k")
    chosen, human = step.get("chosen_completion"), step.get("human_completion")
    if chosen is not None:
        if isinstance(chosen, bool) or not isinstance(chosen, int):
            raise FieldError(where + "chosen_completion", f"not an index: {chosen!r}", "fix it")
        if not 0 <= chosen < len(completions):
            raise FieldError(
                where + "chosen_completion",
                f"index {chosen} outside the {len(completions)} completions",
                "point at one of the step's completions",
            )
        prefix = f"{where}completions[{chosen}]."
        c = completions[chosen]
        text = _need(c, "text", str, prefix)
        return text, c.get("rating"), prefix + "rating", len(completions) - 1, False
    if human is not None:
        prefix = where + "human_completion."
        if isinstance(human, str):
            return human, 1, prefix + "rating", len(completions), False
        rating = human.get("rating") if isinstance(human, Mapping) else None
        text = _need(human, "text", str, prefix)
        return text, 1 if rating is None else rating, prefix + "rating", len(completions), False
    if not completions:
        raise FieldError(where + "completions", "empty, and no completion chosen", "fix the row")
    c = completions[0]
    text = _need(c, "text", str, f"{where}completions[0].")
    return text, c.get("rating"), f"{where}completions[0].rating", len(completions) - 1, True


def _prm800k(raw: Mapping[str, Any], finish_reasons: tuple[str, ...]) -> tuple[dict, int]:
    question = _need(raw, "question", Mapping)
    problem = _need(question, "problem", str, "question.")
    label = _need(raw, "label", Mapping)
    reason = label.get("finish_reason")
    if reason not in finish_reasons:
        raise _Filtered(f"finish_reason={reason}")
    raw_steps = _need(label, "steps", list, "label.")
    if not raw_steps:
        raise FieldError("label.steps", "no labelled steps", "remove the row")
    steps, ratings, ignored = [], [], 0
    for i, step in enumerate(raw_steps):
        text, rating, field, alternatives, ends = _prm800k_step(i, step)
        if isinstance(rating, bool) or not _is_number(rating) or rating not in (-1, 0, 1):
            raise FieldError(field, f"expected -1, 0 or 1, got {rating!r}", "fix the rating")
        steps.append(text)
        ratings.append(rating)
        ignored += alternatives
        if ends:
            if i != len(raw_steps) - 1:
                raise FieldError(
                    f"label.steps[{i}].chosen_completion",
                    "null (no chosen or human completion) before the last step",
                    "choose a completion for every step but the last",
                )
            break
    outcome = {"solution": 1.0, "found_error": 0.0}.get(reason)
    canonical = {
        "prompt": [{"role": "user", "content": problem}],
        "steps": steps,
        "labels": ratings,
        "label_kind": "ternary",
        "outcome": outcome,
    }
    return canonical, ignored


def _math_shepherd(raw: Mapping[str, Any]) -> dict:
    text, labelled = _need(raw, "input", str), _need(raw, "label", str)
    chunks = text.split(MATH_SHEPHERD_TAG)
    if len(chunks) < 2:
        raise FieldError(
            "input", f"no step tag {MATH_SHEPHERD_TAG!r}", "end every step with the tag 'ки'"
        )
    if chunks[-1].strip():
        raise FieldError(
            "input", f"text after the last step tag: {chunks[-1].strip()[:40]!r}", "tag each step"
        )
    # "label" is "input" with each tag replaced by one character, "+" or "-".
    labels, pos = [], 0
    for i, chunk in enumerate(chunks[:-1]):
        if not labelled.startswith(chunk, pos):
            raise FieldError(
                "label",
                f"differs from 'input' before step {i + 1}'s tag",
                "give the input text with each 'ки' replaced by '+' or '-'",
            )
        pos += len(chunk)
        mark = labelled[pos : pos + 1]
        if mark not in ("+", "-"):
            raise FieldError(
                "label", f"step {i + 1}: expected '+' or '-' at the tag, got {mark!r}", "use + or -"
            )
        labels.append(1 if mark == "+" else 0)
        pos += 1
    if labelled[pos:] != chunks[-1]:
        raise FieldError("label", "differs from 'input' after the last tag", "copy the input text")
    head, marker, first = chunks[0].partition("Step 1:")
    if not marker:
        raise FieldError(
            "input", "no 'Step 1:' before the first tag", "write the problem, then 'Step 1: ...'"
        )
    steps = [(marker + first).strip(), *(c.strip() for c in chunks[1:-1])]
    return {
        "prompt": [{"role": "user", "content": head.strip()}] if head.strip() else "",
        "steps": steps,
        "labels": labels,
        "label_kind": "binary",
        "outcome": float(labels[-1]),
    }


def _trl_stepwise(raw: Mapping[str, Any]) -> dict:
    prompt = _need(raw, "prompt", (str, list))
    return {
        "prompt": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt,
        "steps": _need(raw, "completions", list),
        "labels": _need(raw, "labels", list),
    }


_FINISH_REASONS = ("solution", "found_error")
_ADAPTERS: dict[str, Callable[..., tuple[dict, int]]] = {
    "steps": lambda raw, reasons: (raw, 0),
    "prm800k": _prm800k,
    "math_shepherd": lambda raw, reasons: (_math_shepherd(raw), 0),
    "trl_stepwise": lambda raw, reasons: (_trl_stepwise(raw), 0),
}
STEP_LAYOUTS = tuple(_ADAPTERS)


def adapt_steps(
    layout: str, raw: Any, *, finish_reasons: tuple[str, ...] = _FINISH_REASONS
) -> Mapping[str, Any] | None:
    """Maps one raw row of `layout` to the canonical "steps" mapping (not yet validated).

    Returns None for a row the layout filters out (PRM800K rows whose finish_reason is not in
    `finish_reasons`). Raises `FieldError` naming the field on a malformed row.
    """
    if layout not in _ADAPTERS:
        raise ValueError(f"unknown step layout {layout!r}; use one of {STEP_LAYOUTS}")
    if not isinstance(raw, Mapping):
        raise FieldError("<record>", f"expected an object, got {type(raw).__name__}", "one per row")
    try:
        return _ADAPTERS[layout](raw, finish_reasons)[0]
    except _Filtered:
        return None


# ------------------------------------------------------------------------- reading files


@dataclasses.dataclass(frozen=True)
class StepLoadReport(LoadReport):
    """`LoadReport` plus what the layout left out on purpose: `filtered` counts rows by reason
    (PRM800K finish reasons), `ignored_alternatives` the unchosen PRM800K completions."""

    filtered: Mapping[str, int] = dataclasses.field(default_factory=dict)
    ignored_alternatives: int = 0

    @property
    def num_skipped(self) -> int:
        """Malformed rows dropped (`on_error="skip"`); filtered rows are not counted here."""
        return self.num_read - self.num_kept - sum(self.filtered.values())

    def summary(self) -> str:
        out = super().summary()
        if self.filtered:
            out += "; filtered " + ", ".join(f"{k}: {v}" for k, v in sorted(self.filtered.items()))
        if self.ignored_alternatives:
            out += f"; {self.ignored_alternatives} unchosen alternative completions not kept"
        return out


def load_step_records(
    path: str,
    *,
    layout: str = "steps",
    format: str | None = None,
    split: str | None = None,
    on_error: str = "raise",
    max_examples: int = 5,
    finish_reasons: tuple[str, ...] = _FINISH_REASONS,
) -> tuple[list[StepRecord], StepLoadReport]:
    """Reads `path`, maps each row through the step `layout` adapter and validates it.

    Args:
      path: a local file or folder, or a glob pattern (the formats of `rewardjax.data.FORMATS`).
      layout: one of `STEP_LAYOUTS` ("steps", "prm800k", "math_shepherd", "trl_stepwise").
      format: one of `rewardjax.data.FORMATS`; guessed from the path when None.
      split: the split of a `DatasetDict` or TFDS folder.
      on_error: "raise" stops at the first malformed row with a `RecordError` naming the file,
        line/row and field (e.g. "label.steps[3].completions[0].rating"); "skip" drops it and
        counts it by field in the report.
      max_examples: how many skip messages the report keeps.
      finish_reasons: PRM800K rows kept; others are filtered and counted by reason.

    Returns:
      (records, report).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if layout not in _ADAPTERS:
        raise ValueError(f"unknown step layout {layout!r}; use one of {STEP_LAYOUTS}")
    files = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not files:
        raise FileNotFoundError(f"{path}: no file matches")
    records, skipped, filtered, examples = [], collections.Counter(), collections.Counter(), []
    num_read = ignored = 0
    for file, (location, raw) in ((f, row) for f in files for row in _rows(f, format, split)):
        num_read += 1
        try:
            if isinstance(raw, RecordError):  # not UTF-8 or not JSON
                raise raw
            try:
                if not isinstance(raw, Mapping):
                    raise FieldError(
                        "<record>",
                        f"expected an object, got {type(raw).__name__}",
                        "one object per row",
                    )
                canonical, alternatives = _ADAPTERS[layout](raw, finish_reasons)
            except FieldError as e:
                raise RecordError(file, location, e.field, e.problem, e.fix) from None
            except _Filtered as f:
                filtered[f.reason] += 1
                continue
            records.append(parse_step_record(canonical, source=file, location=location))
            ignored += alternatives
        except RecordError as e:
            if on_error == "raise":
                raise
            skipped[e.field.split("[")[0].split(".")[0]] += 1
            if len(examples) < max_examples:
                examples.append(str(e))
    kept_or_filtered = len(records) + sum(filtered.values())
    report = StepLoadReport(
        path, num_read, len(records), dict(skipped), tuple(examples), dict(filtered), ignored
    )
    if kept_or_filtered != num_read or filtered or ignored:
        logging.warning("%s%s", report.summary(), f"; first: {examples[0]}" if examples else "")
    if not records:
        raise ValueError(f"{report.summary()}: no valid records")
    return records, report


# ------------------------------------------------------------------------- step datasets
#
# Step data ride in the "rating" batch format of `rewardjax.data.batches` (the one format whose
# per-example float array has a free shape): `completion_mask` holds the step number (step id + 1,
# so 1..S on the tokens of step 1..S and 0 on the prompt and padding; it stays a valid completion
# mask) and `ratings` [B, S] the step targets in [0, 1], NaN where a row has fewer than S steps.
# `step_batch_arrays` reads them back.

STEP_TARGET_PAD = float("nan")


def _pattern_active(task: Any) -> bool:
    m = len(task.pattern)
    return m > 0 and task.pattern_bonus != 0.0 and m <= task.length


def reward_range(task: Any) -> tuple[float, float]:
    """(lo, hi): the smallest and largest gold reward any response of the task can get.

    Max-plus (min-plus) dynamic programming over the T bigrams, m_T ≡ 0,
    m_{t-1}(a) = max_b r(a, b) + m_t(b); hi = max_a m_0(a), plus the pattern bonus when positive
    (lo likewise). Every prefix value E[r | prefix] and every Monte-Carlo label lies in [lo, hi].
    """
    r = np.asarray(task.bigram_reward, np.float64)
    hi = lo = np.zeros(r.shape[0])
    for _ in range(task.length):  # a loop over the T positions, not over examples
        hi, lo = np.max(r + hi[None, :], axis=1), np.min(r + lo[None, :], axis=1)
    bonus = float(task.pattern_bonus) if len(task.pattern) else 0.0
    return float(lo.min() + min(bonus, 0.0)), float(hi.max() + max(bonus, 0.0))


@functools.partial(jax.jit, static_argnames=("n", "labels", "num_rollouts", "exact"))
def _synthetic_steps(task, key, ends, lo, hi, threshold, *, n, labels, num_rollouts, exact):
    """One program: prompts, responses, normalised values [n, S] and targets [n, S]."""
    kp, kr, km, kx = jax.random.split(key, 4)
    prompt = synthetic.sample_prompts(task, kp, n)
    y0 = prompt[:, -1]
    response = synthetic.sample_responses(task, kr, y0)
    s = ends.shape[0]
    flat_y0, flat_resp = jnp.repeat(y0, s), jnp.repeat(response, s, axis=0)
    flat_len = jnp.tile(ends, n)
    scale = lambda v: ((v - lo) / (hi - lo)).astype(jnp.float32).reshape(n, s)
    if exact:
        values = scale(theory.task_prefix_values(task, flat_y0, flat_resp, flat_len))
    else:  # a Monte-Carlo stand-in for the exact values (pattern bonus)
        mc = theory.mc_prefix_values(kx, task, flat_y0, flat_resp, flat_len, num_rollouts=256)
        values = scale(mc)
    if labels == "exact":
        targets = values
    elif labels == "mc":
        mc = theory.mc_prefix_values(
            km, task, flat_y0, flat_resp, flat_len, num_rollouts=num_rollouts
        )
        targets = jnp.clip(scale(mc), 0.0, 1.0)
    else:
        targets = (values >= threshold).astype(jnp.float32)
    return prompt, response, values, targets


def synthetic_step_data(
    task: Any,
    key: Any,
    n: int,
    *,
    step_size: int,
    labels: str = "exact",
    num_rollouts: int = 8,
    threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """Step-labelled base-chain responses of the synthetic Markov task, all arrays at once.

    Responses y_1..y_T are sampled from the base chain after sampled prompts and cut into
    S = ceil(T / k) steps of k tokens (the last may be shorter); step s ends after token
    L_s = min(k (s + 1), T). Its value V(y_{≤L_s}) = E[r(y) | y_{≤L_s}] is exact
    (`theory.task_prefix_values`) and mapped to [0, 1] by the task's reward range [lo, hi]
    (`reward_range`): v̄ = (V - lo) / (hi - lo). Targets by `labels`:

    - "exact":  v̄ (the soft label of an infinite number of rollouts);
    - "mc":     (V̂_k - lo) / (hi - lo), V̂_k the mean gold reward of `num_rollouts` rollouts from
      the prefix (Math-Shepherd's soft estimate, `theory.mc_prefix_values`; unbiased for v̄);
    - "binary": 1[v̄ ≥ threshold] (a step is "correct" while the solution's value stays above
      the threshold; the first step below it is the first error).

    Reference: Wang et al. 2023, "Math-Shepherd", arXiv 2312.08935 (Monte-Carlo step labels).

    Args:
      task: a `MarkovTask` (the exact values need `pattern_bonus` 0; "mc" labels do not, but
        `values` then holds the Monte-Carlo estimate with 256 rollouts, stated in "exact_values").
      key: PRNG key.
      n: number of responses.
      step_size: k ≥ 1 tokens per step.
      labels: "exact", "mc" or "binary".
      num_rollouts: rollouts per prefix for "mc".
      threshold: the normalised value that separates correct from erroneous steps ("binary").

    Returns:
      numpy dict: "prompt" int32 [n, P] and "response" int32 [n, T] (vocabulary tokens),
      "values" float32 [n, S] (v̄, exact), "targets" float32 [n, S] (the labels),
      "step_ends" int32 [S] (L_s, tokens into the response), "outcome" float32 [n] (v̄ of the
      whole response: its normalised gold reward), "reward_range" float32 [2] (lo, hi),
      "exact_values" bool [] (False when "values" is a Monte-Carlo stand-in).
    """
    if labels not in ("exact", "mc", "binary"):
        raise ValueError(f"labels={labels!r}: expected 'exact', 'mc' or 'binary'.")
    if step_size < 1:
        raise ValueError(f"step_size={step_size} must be >= 1.")
    t = task.length
    num_steps = -(-t // step_size)
    ends = np.minimum(step_size * (np.arange(num_steps) + 1), t).astype(np.int32)
    lo, hi = reward_range(task)
    exact = not _pattern_active(task)
    if not exact and labels != "mc":
        raise ValueError(
            f"labels={labels!r} needs exact prefix values, but the task's pattern bonus "
            f"(pattern={task.pattern}, pattern_bonus={task.pattern_bonus}) makes the gold reward "
            "non-additive; use labels='mc', or a task with pattern_bonus=0."
        )
    prompt, response, values, targets = _synthetic_steps(
        task,
        key,
        jnp.asarray(ends),
        jnp.float32(lo),
        jnp.float32(hi),
        jnp.float32(threshold),
        n=n,
        labels=labels,
        num_rollouts=num_rollouts,
        exact=exact,
    )
    values, targets = np.asarray(values), np.asarray(targets)
    return {
        "prompt": np.asarray(prompt, np.int32),
        "response": np.asarray(response, np.int32),
        "values": values,
        "targets": np.asarray(targets, np.float32),
        "step_ends": ends,
        "outcome": values[:, -1].copy(),
        "reward_range": np.asarray([lo, hi], np.float32),
        "exact_values": np.asarray(exact),
    }


def _step_example(ids: np.ndarray, step_numbers: np.ndarray, targets: np.ndarray) -> dict:
    return {
        "seqs": (ids,),
        "segment_ids": np.ones_like(ids),
        "completion": step_numbers,
        "ratings": targets,
    }


def synthetic_step_dataset(data: Mapping[str, np.ndarray]) -> Any:
    """`synthetic_step_data` as an `EncodedDataset` in the step layout of the "rating" batches
    (see the comment above `STEP_TARGET_PAD`): ids = tokens + 1, one row per response."""
    prompt, response, targets = data["prompt"], data["response"], data["targets"]
    n, p = prompt.shape
    ids = synthetic.to_ids(np.concatenate([prompt, response], axis=1)).astype(np.int32)
    position = np.arange(response.shape[1])
    step_of = np.searchsorted(data["step_ends"], position, side="right")  # 0-based step id
    numbers = np.concatenate([np.zeros(p, np.int32), step_of.astype(np.int32) + 1])
    examples = [_step_example(ids[i], numbers, targets[i]) for i in range(n)]
    return EncodedDataset("rating", examples, ids.shape[1], EncodeStats(n, 0, {}))


def encode_step_records(
    records: list[StepRecord],
    tokenizer: Any,
    *,
    max_length: int,
    max_steps: int | None = None,
    neutral: float = 1.0,
    step_suffix: str = "\n",
) -> Any:
    """Tokenises step records into an `EncodedDataset` in the step layout of "rating" batches.

    The row is the prompt's ids (`tokenizers.encode_example`'s prompt part, chat template
    included) followed by each step's `tokenizer.encode(step + step_suffix)`; step s's tokens
    carry step number s + 1 in `completion_mask`, and `ratings[s]` its target
    (`StepRecord.targets(neutral=...)`). Steps that do not fit in `max_length` (or beyond
    `max_steps`) are cut from the end and the record counted as truncated; a record whose prompt
    and first step do not fit is dropped and counted ("too_long").

    Args:
      records: validated `StepRecord`s.
      tokenizer: a `ByteTokenizer` or `HFTokenizer`.
      max_length: T, the padded row length.
      max_steps: S, the step slots of a batch (default: the most steps of a kept record).
      neutral: the target of a PRM800K neutral (0) rating.
      step_suffix: text appended to every step before tokenising (the step separator).

    Returns:
      An `EncodedDataset` of kind "rating": "ratings" [S] per example, NaN past its last step.
    """
    rows, truncated, dropped = [], 0, collections.Counter()
    for r in records:
        prompt_ids, _ = encode_example(tokenizer, r.prompt, r.steps[0])
        ids, numbers, kept = list(prompt_ids), [0] * len(prompt_ids), []
        for s, (step, target) in enumerate(zip(r.steps, r.targets(neutral=neutral))):
            step_ids = tokenizer.encode(step + step_suffix)
            if len(ids) + len(step_ids) > max_length or (max_steps and s >= max_steps):
                break
            ids += step_ids
            numbers += [s + 1] * len(step_ids)
            kept.append(target)
        if not kept:
            dropped["too_long"] += 1
            continue
        truncated += len(kept) < len(r.steps)
        rows.append((np.asarray(ids, np.int32), np.asarray(numbers, np.int32), kept))
    if not rows:
        raise ValueError(
            f"no step record fits max_length={max_length} (prompt + first step); raise it"
        )
    slots = max_steps or max(len(k) for _, _, k in rows)
    examples = []
    for ids, numbers, kept in rows:
        targets = np.full(slots, STEP_TARGET_PAD, np.float32)
        targets[: len(kept)] = kept
        examples.append(_step_example(ids, numbers, targets))
    stats = EncodeStats(len(records), truncated, dict(dropped))
    if truncated or dropped:
        logging.warning("step records: %s", stats.summary())
    return EncodedDataset("rating", examples, max_length, stats)


def step_batch_arrays(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The step view of a "rating" batch of a step dataset (jittable).

    Returns dict: "step_ids" int32 [B, T] (0-based, -1 outside a step: the convention of
    `losses.implicit_prm_step_rewards`), "targets" float32 [B, S] (0 where absent),
    "step_mask" bool [B, S] (the step exists and its row has weight > 0).
    """
    targets = jnp.asarray(batch["ratings"], jnp.float32)
    present = ~jnp.isnan(targets)
    present &= (jnp.asarray(batch["weight"]) > 0)[:, None]
    step_ids = jnp.asarray(batch["completion_mask"], jnp.int32) - 1
    return {
        "step_ids": step_ids,
        "targets": jnp.where(present, targets, 0.0),
        "step_mask": present,
    }
