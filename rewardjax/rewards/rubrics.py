"""Rubrics: weighted checklists of hard constraints and soft criteria, as rewards.

A `Rubric` is a tuple of `RubricItem(text, weight, kind, verifier)`. Each item's verifier gives a
satisfaction s_k ∈ [0, 1] for a (prompt, completion): a rule on text (a callable, or built by
`make_verifier` from a spec such as {"type": "regex", "pattern": ...}), or a question for a judge
(`JudgeQuestion`, answered by `judge(question, prompt, completion) -> probability`, the hook for
the generative judges of `rewardjax.judges`). With weights w_k > 0 and H the hard items:

    score   = Σ_k w_k s_k / Σ_k w_k                              (weighted fraction satisfied)
    reward  = gate_reward   if any k ∈ H has s_k < hard_threshold (a failed hard constraint)
              score         otherwise

The gate gives the minimum of the score's range (`gate_reward = 0` by default), so a completion
that breaks a hard constraint is never better than one that satisfies nothing. Hard items count in
the fraction too (with the gate on, a passing completion gets at least Σ_{k∈H} w_k / Σ_k w_k).

Pairwise, criterion by criterion (`rubric_votes`): the weighted fractions of criteria on which A
is better (s_A,k > s_B,k), B is better, or they tie; `a + tie / 2` is A's preference.

Files: `load_rubrics(path)` reads JSONL, one rubric per line,
`{"prompt": "...", "items": [{"text": "...", "weight": 2, "kind": "hard", "verifier": {...}}]}`,
and raises `data.RecordError` naming the file, line, field (e.g. `items[1].verifier.pattern`) and
the fix.

Papers: Gunjal et al. 2025, "Rubrics as Rewards: Reinforcement Learning Beyond Verifiable Domains",
arXiv 2507.17746 (explicit and implicit rubric aggregation); Arora et al. 2025, "HealthBench:
Evaluating Large Language Models Towards Improved Human Health", arXiv 2505.08775 (weighted rubric
criteria).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from rewardjax.data import FieldError, RecordError, Tokenizer, read_rows
from rewardjax.rewards.base import RewardInputs, RewardOutput, check_inputs, texts_of
from rewardjax.rewards.verifiable import (
    extract_boxed,
    extract_tag,
    math_equal,
    normalize_answer,
)

__all__ = [
    "ITEM_KINDS",
    "VERIFIER_TYPES",
    "JudgeQuestion",
    "Rubric",
    "RubricItem",
    "RubricReward",
    "RubricVotes",
    "load_rubrics",
    "make_verifier",
    "rubric_scores",
    "rubric_votes",
]

ITEM_KINDS = ("hard", "soft")
VERIFIER_TYPES = ("regex", "contains", "exact_match", "math", "max_length", "judge")

Verifier = Callable[[str, str], "float | bool | None"]
Judge = Callable[[str, str, str], "float | None"]


@dataclasses.dataclass(frozen=True)
class JudgeQuestion:
    """A rubric item answered by a judge: `judge(question, prompt, completion)` is the
    probability that the completion satisfies the item."""

    question: str


# ----------------------------------------------------------------------------------------------
# Verifiers from specs.

_EXTRACTORS: dict[str, Callable[[str], str | None]] = {
    "none": lambda s: s,
    "boxed": extract_boxed,
    "answer_tag": extract_tag,
}
_SPEC_KEYS = {
    "regex": ({"pattern"}, {"mode", "flags", "negate"}),
    "contains": ({"text"}, {"case_sensitive", "negate"}),
    "exact_match": ({"answer"}, {"case_sensitive", "extract", "negate"}),
    "math": ({"answer"}, {"extract", "rel_tol", "abs_tol", "negate"}),
    "max_length": ({"max"}, {"unit", "negate"}),
    "judge": (set(), {"question"}),
}
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def _bool(spec: Mapping, key: str, default: bool, field: str) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise FieldError(f"{field}.{key}", f"{value!r} is not true/false", f"write {key}: true")
    return value


def _answers(spec: Mapping, field: str) -> list[str]:
    value = spec["answer"]
    values = [value] if isinstance(value, str) else value
    if (
        not isinstance(values, list | tuple)
        or not values
        or not all(isinstance(v, str) for v in values)
    ):
        raise FieldError(
            f"{field}.answer", f"{value!r} is not a string", "give a string or a list of strings"
        )
    return list(values)


def _extractor(spec: Mapping, field: str, default: str) -> Callable[[str], str | None]:
    name = spec.get("extract", default)
    if name not in _EXTRACTORS:
        raise FieldError(
            f"{field}.extract", f"unknown extractor {name!r}", f"use one of {sorted(_EXTRACTORS)}"
        )
    return _EXTRACTORS[name]


def make_verifier(spec: Mapping[str, Any], *, field: str = "verifier") -> Verifier | JudgeQuestion:
    """A verifier from a spec (a JSON object). Types (`VERIFIER_TYPES`):

    - {"type": "regex", "pattern": p, "mode": "search" | "fullmatch", "flags": "ims"}: the
      pattern found (default "search"); flags i = ignore case, m = multiline, s = dot-all;
    - {"type": "contains", "text": t, "case_sensitive": false}: t occurs in the completion;
    - {"type": "exact_match", "answer": a | [a...], "case_sensitive": false,
      "extract": "none" | "boxed" | "answer_tag"}: `normalize_answer` of the extracted answer
      equals one of the answers;
    - {"type": "math", "answer": a | [a...], "extract": "boxed" | "answer_tag" | "none",
      "rel_tol": 0, "abs_tol": 0}: `math_equal` (default extract: "boxed");
    - {"type": "max_length", "max": n, "unit": "chars" | "words"}: at most n characters or
      whitespace-separated words;
    - {"type": "judge", "question": q}: a `JudgeQuestion` (q defaults to the item's text).

    Every rule type takes "negate": true (satisfied when the rule fails: "does not mention X").
    An unknown key is an error, so a misspelt option fails loudly.

    Args:
      spec: the mapping.
      field: its name in error messages.

    Returns:
      `verifier(prompt, completion) -> bool`, or a `JudgeQuestion` (its question None until
      `RubricItem` fills in the item's text).

    Raises:
      FieldError: naming the key (`field.key`) that is missing, unknown or malformed, and the fix.
    """
    if not isinstance(spec, Mapping):
        raise FieldError(field, f"{spec!r} is not an object", 'give {"type": ..., ...}')
    kind = spec.get("type")
    if kind not in VERIFIER_TYPES:
        raise FieldError(
            f"{field}.type", f"unknown verifier type {kind!r}", f"use one of {VERIFIER_TYPES}"
        )
    required, optional = _SPEC_KEYS[kind]
    keys = set(spec) - {"type"}
    if required - keys:
        missing = sorted(required - keys)[0]
        raise FieldError(f"{field}.{missing}", "missing", f"add '{missing}' to the {kind} verifier")
    if keys - required - optional:
        extra = sorted(keys - required - optional)[0]
        raise FieldError(
            f"{field}.{extra}",
            f"unknown key for a {kind} verifier",
            f"use only {sorted(required | optional)}",
        )
    if kind == "judge":
        question = spec.get("question")
        if question is not None and (not isinstance(question, str) or not question.strip()):
            raise FieldError(f"{field}.question", f"{question!r} is not a question", "give text")
        return JudgeQuestion(question)
    negate = _bool(spec, "negate", False, field)

    if kind == "regex":
        mode, flags = spec.get("mode", "search"), spec.get("flags", "")
        if mode not in ("search", "fullmatch"):
            raise FieldError(f"{field}.mode", f"{mode!r}", "use 'search' or 'fullmatch'")
        if not isinstance(flags, str) or set(flags) - set(_FLAGS):
            raise FieldError(f"{field}.flags", f"{flags!r}", "use letters of 'ims'")
        try:
            compiled = re.compile(spec["pattern"], sum(_FLAGS[f] for f in set(flags)))
        except (re.error, TypeError) as e:
            raise FieldError(
                f"{field}.pattern", f"not a regular expression ({e})", "fix the pattern"
            ) from None
        match = compiled.search if mode == "search" else compiled.fullmatch
        test = lambda completion: match(completion) is not None
    elif kind == "contains":
        text, case = spec["text"], _bool(spec, "case_sensitive", False, field)
        if not isinstance(text, str) or not text:
            raise FieldError(f"{field}.text", f"{text!r}", "give a non-empty string")
        if case:
            test = lambda completion: text in completion
        else:
            needle = text.casefold()
            test = lambda completion: needle in completion.casefold()
    elif kind == "exact_match":
        case = _bool(spec, "case_sensitive", False, field)
        norm = lambda s: normalize_answer(s, case_sensitive=case)
        refs, extract = {norm(a) for a in _answers(spec, field)}, _extractor(spec, field, "none")

        def test(completion: str) -> bool:
            answer = extract(completion)
            return answer is not None and norm(answer) in refs

    elif kind == "math":
        refs, extract = _answers(spec, field), _extractor(spec, field, "boxed")
        tols = {}
        for key in ("rel_tol", "abs_tol"):
            value = spec.get(key, 0.0)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise FieldError(f"{field}.{key}", f"{value!r}", "give a number >= 0")
            tols[key] = float(value)

        def test(completion: str) -> bool:
            answer = extract(completion)
            return answer is not None and any(math_equal(answer, r, **tols) for r in refs)

    else:  # max_length
        limit, unit = spec["max"], spec.get("unit", "chars")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise FieldError(f"{field}.max", f"{limit!r}", "give an integer >= 0")
        if unit not in ("chars", "words"):
            raise FieldError(f"{field}.unit", f"{unit!r}", "use 'chars' or 'words'")
        size = len if unit == "chars" else (lambda s: len(s.split()))
        test = lambda completion: size(completion) <= limit

    def verifier(prompt: str, completion: str) -> bool:
        del prompt
        return test(completion) != negate

    verifier.__name__ = f"{kind}_verifier"
    return verifier


# ----------------------------------------------------------------------------------------------
# Schema.


@dataclasses.dataclass(frozen=True)
class RubricItem:
    """One criterion of a rubric.

    Attributes:
      text: what the item asks for (shown to a judge; names the item in errors).
      weight: w > 0 (a "pitfall" is an item with `"negate": true`, not a negative weight).
      kind: "hard" (a constraint: failing it gates the reward) or "soft" (a criterion).
      verifier: `verifier(prompt, completion) -> bool | float in [0, 1] | None` (None: cannot
        judge), a spec for `make_verifier`, a `JudgeQuestion`, or None: a judge answers the item's
        text.
    """

    text: str
    weight: float = 1.0
    kind: str = "soft"
    verifier: Any = None

    def __post_init__(self):
        if not isinstance(self.text, str) or not self.text.strip():
            raise FieldError("text", f"{self.text!r} is empty", "say what the item asks for")
        w = self.weight
        if (
            isinstance(w, bool)
            or not isinstance(w, int | float)
            or not (math.isfinite(w) and w > 0)
        ):
            raise FieldError(
                "weight",
                f"{w!r} is not a positive number",
                "give a weight > 0 (negate the verifier for a pitfall)",
            )
        if self.kind not in ITEM_KINDS:
            raise FieldError("kind", f"{self.kind!r}", f"use one of {ITEM_KINDS}")
        v = self.verifier
        if v is None:
            v = JudgeQuestion(self.text)
        elif isinstance(v, Mapping):
            v = make_verifier(v)
        elif not (isinstance(v, JudgeQuestion) or callable(v)):
            raise FieldError(
                "verifier", f"{type(v).__name__}", "give a callable, a spec object or None"
            )
        if isinstance(v, JudgeQuestion) and v.question is None:
            v = JudgeQuestion(self.text)
        object.__setattr__(self, "weight", float(w))
        object.__setattr__(self, "verifier", v)

    @property
    def needs_judge(self) -> bool:
        return isinstance(self.verifier, JudgeQuestion)


@dataclasses.dataclass(frozen=True)
class Rubric:
    """A weighted checklist: `items`, a tuple of `RubricItem`s (at least one)."""

    items: tuple[RubricItem, ...]

    def __post_init__(self):
        items = tuple(self.items)
        if not items:
            raise FieldError("items", "empty", "give at least one rubric item")
        for i, item in enumerate(items):
            if not isinstance(item, RubricItem):
                raise FieldError(f"items[{i}]", f"a {type(item).__name__}", "give a RubricItem")
        object.__setattr__(self, "items", items)

    @property
    def weights(self) -> np.ndarray:
        """float32 [K]."""
        return np.asarray([it.weight for it in self.items], np.float32)

    @property
    def hard(self) -> np.ndarray:
        """bool [K], True on hard items."""
        return np.asarray([it.kind == "hard" for it in self.items], bool)

    @property
    def needs_judge(self) -> bool:
        return any(it.needs_judge for it in self.items)

    def satisfaction(
        self, prompt: str, completion: str, *, judge: Judge | None = None
    ) -> np.ndarray:
        """float64 [K]: each item's s_k ∈ [0, 1] (a bool as 0/1), NaN where its verifier
        returned None (cannot judge).

        Raises:
          ValueError: naming the item when it needs a judge and none is given, or when its
            verifier returns something other than a bool, a number in [0, 1] or None.
        """
        out = np.empty(len(self.items))
        for k, item in enumerate(self.items):
            v = item.verifier
            if isinstance(v, JudgeQuestion):
                if judge is None:
                    raise ValueError(
                        f"rubric item {k} ({item.text[:60]!r}) asks a judge: {v.question[:60]!r}; "
                        "pass judge=<judge(question, prompt, completion) -> probability>"
                    )
                value = judge(v.question, prompt, completion)
            else:
                value = v(prompt, completion)
            if value is None:
                out[k] = np.nan
                continue
            ok = not isinstance(value, str | bytes) and np.ndim(value) == 0
            ok = ok and np.asarray(value).dtype.kind in "biuf" and 0.0 <= float(value) <= 1.0
            if not ok:
                raise ValueError(
                    f"rubric item {k} ({item.text[:60]!r}): its verifier returned {value!r:.60}; "
                    "a verifier returns a bool, a probability in [0, 1], or None"
                )
            out[k] = float(value)
        return out

    def score(
        self,
        prompt: str,
        completion: str,
        *,
        judge: Judge | None = None,
        hard_gate: bool = True,
        gate_reward: float = 0.0,
        hard_threshold: float = 0.5,
    ) -> float:
        """The (gated) weighted fraction of `rubric_scores` for one completion (NaN when an item
        cannot be judged)."""
        s = self.satisfaction(prompt, completion, judge=judge)
        if np.isnan(s).any():
            return float("nan")
        out = rubric_scores(
            s,
            self.weights,
            self.hard,
            hard_gate=hard_gate,
            gate_reward=gate_reward,
            hard_threshold=hard_threshold,
        )
        return float(out)

    def votes(self, prompt: str, a: str, b: str, *, judge: Judge | None = None) -> RubricVotes:
        """`rubric_votes` of completions `a` and `b` of `prompt` (scalars); an item that cannot
        be judged on either side (NaN) counts as a tie."""
        sa = self.satisfaction(prompt, a, judge=judge)
        sb = self.satisfaction(prompt, b, judge=judge)
        return RubricVotes(*(float(x) for x in rubric_votes(sa, sb, self.weights)))


# ----------------------------------------------------------------------------------------------
# Aggregation (pure).


def rubric_scores(
    satisfied: Float[ArrayLike, "*B K"],
    weights: Float[ArrayLike, "*B K"],
    hard: Bool[ArrayLike, "*B K"],
    *,
    hard_gate: bool = True,
    gate_reward: float = 0.0,
    hard_threshold: float = 0.5,
) -> Float[Array, "*B"]:
    """Hard-gated weighted fraction of satisfied rubric items.

    score = Σ_k w_k s_k / Σ_k w_k;  reward = gate_reward if hard_gate and ∃k: hard_k and
    s_k < hard_threshold, else score. Items with w_k = 0 are padding (rubrics of different sizes
    in one batch): they count nowhere, hard or not.

    Args:
      satisfied: s ∈ [0, 1], [*B, K].
      weights: w >= 0, broadcastable to `satisfied`, Σ_k w_k > 0.
      hard: True on hard items, broadcastable to `satisfied`.
      hard_gate: apply the gate.
      gate_reward: the reward of a completion that fails a hard item (0: the score's minimum).
      hard_threshold: a hard item with s_k below it fails (judges give probabilities).

    Returns:
      float32 [*B].

    Reference: Gunjal et al. 2025, "Rubrics as Rewards", arXiv 2507.17746 (explicit aggregation).
    """
    s = jnp.asarray(satisfied, jnp.float32)
    w = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), s.shape)
    h = jnp.broadcast_to(jnp.asarray(hard, bool), s.shape) & (w > 0)
    score = jnp.sum(w * s, axis=-1) / jnp.sum(w, axis=-1)
    failed = jnp.any(h & (s < hard_threshold), axis=-1)
    return jnp.where(failed & hard_gate, jnp.float32(gate_reward), score)


class RubricVotes(NamedTuple):
    """Weighted fractions of criteria (each [*B]); a + b + tie = 1."""

    a: Any
    b: Any
    tie: Any


def rubric_votes(
    satisfied_a: Float[ArrayLike, "*B K"],
    satisfied_b: Float[ArrayLike, "*B K"],
    weights: Float[ArrayLike, "*B K"],
) -> RubricVotes:
    """Criterion-wise pairwise votes between completions A and B.

    a = Σ_k w_k 1[s_A,k > s_B,k] / Σ_k w_k,  b likewise with s_B,k > s_A,k,  tie = 1 - a - b;
    A's preference is a + tie / 2 (symmetric: swapping A and B swaps a and b).

    Args:
      satisfied_a, satisfied_b: s ∈ [0, 1], [*B, K], for the two completions of each prompt.
      weights: w >= 0 broadcastable to them (0 on padding items).

    Returns:
      `RubricVotes(a, b, tie)`, float32 [*B] each.
    """
    sa, sb = jnp.asarray(satisfied_a, jnp.float32), jnp.asarray(satisfied_b, jnp.float32)
    w = jnp.broadcast_to(jnp.asarray(weights, jnp.float32), sa.shape)
    total = jnp.sum(w, axis=-1)
    a = jnp.sum(jnp.where(sa > sb, w, 0.0), axis=-1) / total
    b = jnp.sum(jnp.where(sb > sa, w, 0.0), axis=-1) / total
    return RubricVotes(a, b, 1.0 - a - b)


# ----------------------------------------------------------------------------------------------
# Files.


def _parse_item(raw: Any, field: str) -> RubricItem:
    if isinstance(raw, str):
        raw = {"text": raw}
    if not isinstance(raw, Mapping):
        raise FieldError(field, f"a {type(raw).__name__}", 'give {"text": ..., "weight": ...}')
    known = {"text", "weight", "kind", "verifier"}
    extra = sorted(set(raw) - known)
    if extra:
        raise FieldError(f"{field}.{extra[0]}", "unknown key", f"use only {sorted(known)}")
    if "text" not in raw:
        raise FieldError(f"{field}.text", "missing", "say what the item asks for")
    verifier = raw.get("verifier")
    if verifier is not None:
        verifier = make_verifier(verifier, field=f"{field}.verifier")
    try:
        return RubricItem(raw["text"], raw.get("weight", 1.0), raw.get("kind", "soft"), verifier)
    except FieldError as e:
        raise FieldError(f"{field}.{e.field}", e.problem, e.fix) from None


def load_rubrics(path: str) -> dict[str, Rubric]:
    """Reads a JSONL file of rubrics, one per line, keyed by prompt text.

    A line: {"prompt": str, "items": [item, ...]}; an item: {"text": str, "weight": number > 0
    (default 1), "kind": "hard" | "soft" (default "soft"), "verifier": spec (see `make_verifier`;
    default: a judge answers the text)}, or just the text as a string. Other top-level keys
    (ids, sources) are ignored; blank lines are skipped.

    Raises:
      RecordError: naming the file, the line, the field ("items[2].verifier.pattern") and the fix:
        on a line that is not JSON, a missing or malformed field, an unknown verifier type or key,
        a prompt given twice (both lines named), or a file with no rubric.
    """
    rubrics: dict[str, Rubric] = {}
    lines: dict[str, str] = {}
    for location, raw in read_rows(path, format="jsonl"):
        try:
            if not isinstance(raw, Mapping):
                raise FieldError("<record>", f"a {type(raw).__name__}", "one JSON object per line")
            prompt = raw.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise FieldError(
                    "prompt",
                    "missing" if prompt is None else f"{prompt!r:.60} is not a non-empty string",
                    "give the prompt text as the policy sees it (render chat messages first)",
                )
            items = raw.get("items")
            if not isinstance(items, list) or not items:
                raise FieldError(
                    "items",
                    "missing" if items is None else f"{items!r:.60} is not a non-empty list",
                    "give a list of rubric items",
                )
            parsed = tuple(_parse_item(it, f"items[{i}]") for i, it in enumerate(items))
            if prompt in rubrics:
                raise FieldError(
                    "prompt",
                    f"{prompt[:60]!r} already has a rubric ({lines[prompt]})",
                    "merge the two rubrics into one line",
                )
        except FieldError as e:
            raise RecordError(path, location, e.field, e.problem, e.fix) from None
        rubrics[prompt], lines[prompt] = Rubric(parsed), location
    if not rubrics:
        raise RecordError(path, "line 1", "<file>", "no rubric", "write one rubric per line")
    return rubrics


# ----------------------------------------------------------------------------------------------
# Reward function.


class RubricReward:
    """The rubric of each row's prompt, scored by `rubric_scores`, as a reward function.

    Args:
      rubrics: a mapping prompt text -> `Rubric` (`load_rubrics`), a function of the prompt text
        returning one, or one `Rubric` for every prompt.
      tokenizer: decodes the ids when `RewardInputs` has no text.
      judge: `judge(question, prompt, completion) -> probability | None` for the items without a
        rule (the hook for `rewardjax.judges`); required when a rubric has such an item.
      hard_gate, gate_reward, hard_threshold: see `rubric_scores`.
      invalid_reward: the reward of a row where some item could not be judged (a verifier or the
        judge returned None); counted in `aux["invalid"]`.

    Returns (on call): `RewardOutput(rewards [B], None, aux)`; aux: "invalid", "hard_failed"
    (1 where a hard item failed), "satisfied_fraction" (the ungated score; NaN on invalid rows),
    "num_items" [B].

    Raises:
      ValueError: naming the prompt with no rubric, or the rubric item that needs a judge when
        none is given (at construction for a mapping, else on call).
    """

    needs_reference = False

    def __init__(
        self,
        rubrics: Mapping[str, Rubric] | Callable[[str], Rubric] | Rubric,
        *,
        tokenizer: Tokenizer | None = None,
        judge: Judge | None = None,
        hard_gate: bool = True,
        gate_reward: float = 0.0,
        hard_threshold: float = 0.5,
        invalid_reward: float = 0.0,
    ):
        if isinstance(rubrics, Mapping) and judge is None:
            for prompt, rubric in rubrics.items():
                if rubric.needs_judge:
                    k = next(i for i, it in enumerate(rubric.items) if it.needs_judge)
                    raise ValueError(
                        f"RubricReward: the rubric of prompt {prompt[:60]!r} has item {k} "
                        f"({rubric.items[k].text[:60]!r}) for a judge but judge=None; pass "
                        "judge=<judge(question, prompt, completion) -> probability>, or give the "
                        "item a rule verifier"
                    )
        self.rubrics, self.tokenizer, self.judge = rubrics, tokenizer, judge
        self.hard_gate, self.gate_reward = hard_gate, float(gate_reward)
        self.hard_threshold, self.invalid_reward = float(hard_threshold), float(invalid_reward)

    def rubric_of(self, prompt: str) -> Rubric:
        r = self.rubrics
        if isinstance(r, Rubric):
            return r
        if isinstance(r, Mapping):
            if prompt not in r:
                raise ValueError(
                    f"RubricReward: no rubric for prompt {prompt[:80]!r} ({len(r)} prompts have "
                    "one); add it to the rubric file"
                )
            return r[prompt]
        found = r(prompt)
        if not isinstance(found, Rubric):
            raise TypeError(
                f"RubricReward: the rubric function returned a {type(found).__name__} for prompt "
                f"{prompt[:80]!r}; return a Rubric"
            )
        return found

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        del reference
        b, _ = check_inputs(inputs)
        prompts, completions = texts_of(inputs, self.tokenizer, who="RubricReward")
        found = [self.rubric_of(p) for p in prompts]
        k = max(len(r.items) for r in found)
        s, w, h = np.zeros((b, k)), np.zeros((b, k), np.float32), np.zeros((b, k), bool)
        for i, (rubric, p, c) in enumerate(zip(found, prompts, completions)):
            n = len(rubric.items)
            s[i, :n] = rubric.satisfaction(p, c, judge=self.judge)
            w[i, :n], h[i, :n] = rubric.weights, rubric.hard
        invalid = np.isnan(s).any(axis=1)
        s = np.nan_to_num(s)
        kwargs = dict(gate_reward=self.gate_reward, hard_threshold=self.hard_threshold)
        gated = rubric_scores(s, w, h, hard_gate=self.hard_gate, **kwargs)
        ungated = rubric_scores(s, w, h, hard_gate=False, **kwargs)
        hard_failed = ((s < self.hard_threshold) & h & (w > 0)).any(axis=1)
        rewards = jnp.where(invalid, jnp.float32(self.invalid_reward), gated)
        aux = {
            "invalid": jnp.asarray(invalid, jnp.float32),
            "hard_failed": jnp.asarray(hard_failed & ~invalid, jnp.float32),
            "satisfied_fraction": jnp.where(invalid, jnp.nan, ungated),
            "num_items": jnp.asarray([len(r.items) for r in found], jnp.float32),
        }
        return RewardOutput(rewards.astype(jnp.float32), None, aux)
