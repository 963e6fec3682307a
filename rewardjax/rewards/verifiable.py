"""Verifiable rewards (RLVR): rules that check a completion's answer against a known one.

Rules (`rule(prompt, completion) -> float | bool | None`, for `RuleReward`, so a batch is scored
row by row on text):

- `normalized_match`: exact match after `normalize_answer` (Unicode NFKC, U+2212 minus -> "-",
  whitespace collapsed, case folded unless `case_sensitive`, trailing punctuation dropped unless
  `strip_punctuation=False`);
- `math_match`: numeric / boxed-answer equivalence: the last `\\boxed{...}` (nested braces) of the
  completion against the reference, as exact rationals when both sides are numbers (`parse_number`:
  "1/2" == "0.5" == "\\frac{1}{2}" == "\\dfrac12", "1,000" == "1000", "1e3" == "1000", "+2.50" ==
  "2.5"), with an optional float tolerance, else as normalised LaTeX strings (`math_equal`);
- `choice_match`: the multiple-choice letter (`extract_choice`: "The answer is (B)", "B)", "**B**",
  "\\boxed{B}"; an answer naming two letters is ambiguous and extracts nothing);
- `tag_format`: 1 when the completion is `<think>…</think><answer>…</answer>`, each tag exactly
  once, in that order, nothing but whitespace outside them (DeepSeek-R1's format reward).

Reward functions on the batch's arrays:

- `LengthPenalty`: -coef · max(0, L - budget), capped at `max_penalty`, with L counted in tokens
  (the completion mask) or characters (`length_penalty` is the pure formula);
- `ReferenceLikelihoodReward`: the mean (or summed) log-probability of a reference answer placed
  after the completion, `[prompt | completion | answer]`, under a `models.CausalLM`, one jitted call
  per batch.

Papers: DeepSeek-AI 2025, "DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via
Reinforcement Learning", arXiv 2501.12948 (accuracy and format rewards); Lambert et al. 2024,
"Tülu 3: Pushing Frontiers in Open Language Model Post-Training", arXiv 2411.15124 (RLVR); Yu et al.
2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale", arXiv 2503.14476 (the
linear overlong penalty); Zhou et al. 2025, "Reinforcing General Reasoning without Verifiers",
arXiv 2505.21493 (the likelihood of the reference answer as the reward).
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Collection, Mapping, Sequence
from fractions import Fraction
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from rewardjax.data import Tokenizer
from rewardjax.rewards.base import (
    RewardInputs,
    RewardOutput,
    check_inputs,
    decode_texts,
    texts_of,
)
from rewardjax.rewards.model import _ByIdentity, _static
from rewardjax.rewards.rules import Rule, exact_match

__all__ = [
    "PERCENT_MODES",
    "LengthPenalty",
    "ReferenceLikelihoodReward",
    "choice_match",
    "extract_boxed",
    "extract_choice",
    "extract_tag",
    "length_penalty",
    "math_equal",
    "math_match",
    "normalize_answer",
    "normalized_match",
    "parse_number",
    "tag_format",
]

Answers = Mapping[str, "str | Collection[str]"] | Callable[[str], "str | Collection[str]"]

_MINUS = {"\u2212": "-", "\ufe63": "-", "\uff0d": "-"}
_TRAILING_PUNCT = re.compile(r"[\s.,;:!?\u3002]+$")


def _unicode(text: str) -> str:
    """NFKC (full-width digits and letters, ligatures, non-breaking spaces) and minus signs."""
    text = unicodedata.normalize("NFKC", text)
    for k, v in _MINUS.items():
        text = text.replace(k, v)
    return text


def normalize_answer(
    text: str, *, case_sensitive: bool = False, strip_punctuation: bool = True
) -> str:
    """The canonical form of a short answer for exact matching.

    NFKC; U+2212 (and the small / full-width hyphen-minus) -> "-"; whitespace collapsed to single
    spaces and stripped; `str.casefold` unless `case_sensitive`; trailing `. , ; : ! ?` and "。"
    removed when `strip_punctuation` (an answer "Paris." equals "Paris").
    """
    text = " ".join(_unicode(text).split())
    if not case_sensitive:
        text = text.casefold()
    if strip_punctuation:
        text = _TRAILING_PUNCT.sub("", text)
    return text


def _lookup(answers: Answers, who: str) -> Callable[[str], list[str]]:
    """prompt -> the list of its reference answers (a missing prompt raises, naming it)."""

    def reference(prompt: str) -> list[str]:
        if callable(answers):
            found = answers(prompt)
        else:
            if prompt not in answers:
                raise ValueError(
                    f"{who}: no reference answer for prompt {prompt[:80]!r} "
                    f"({len(answers)} prompts have one); add it to `answers`"
                )
            found = answers[prompt]
        return [found] if isinstance(found, str) else list(found)

    return reference


def normalized_match(
    answers: Answers,
    *,
    extract: Callable[[str], str | None] | None = None,
    case_sensitive: bool = False,
    strip_punctuation: bool = True,
) -> Rule:
    """A rule: 1 when the completion's answer equals a reference after `normalize_answer`.

    match(x, y) = 1[n(extract(y)) ∈ {n(a) : a ∈ answers(x)}],  n = normalize_answer

    Args:
      answers: a mapping prompt text -> answer (or a collection of acceptable answers), or a
        function of the prompt text returning them.
      extract: the answer in a completion (e.g. `extract_boxed`, `extract_tag`); None when it has
        none (the row scores 0); default: the whole completion.
      case_sensitive, strip_punctuation: see `normalize_answer`.

    Returns:
      `rule(prompt, completion) -> bool`.
    """

    def norm(s: str) -> str:
        return normalize_answer(
            s, case_sensitive=case_sensitive, strip_punctuation=strip_punctuation
        )

    return exact_match(answers, extract=extract, normalize=norm)


# ----------------------------------------------------------------------------------------------
# Boxed answers and numbers.


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (or `\\fbox{...}`) of `text`, nested braces kept.

    Braces are matched by depth (`\\{` and `\\}` are escaped characters, not braces). The last box
    wins ("\\boxed{1} ... \\boxed{2}" -> "2"; a box inside a box: the inner one). None when there is
    no box or the last one is never closed (a truncated completion).
    """
    starts = [m.end() for m in re.finditer(r"\\(?:boxed|fbox)\s*\{", text)]
    if not starts:
        return None
    i = j = starts[-1]
    depth = 1
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip()
        j += 1
    return None


def extract_tag(text: str, tag: str = "answer") -> str | None:
    """The stripped content of the one `<tag>…</tag>` of `text`; None unless both tags occur
    exactly once, opening before closing."""
    open_, close = f"<{tag}>", f"</{tag}>"
    if text.count(open_) != 1 or text.count(close) != 1:
        return None
    i, j = text.index(open_) + len(open_), text.index(close)
    return text[i:j].strip() if i <= j else None


PERCENT_MODES = ("either", "divide", "ignore")

_DECIMAL = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+"
_NUMBER = re.compile(rf"(?P<mant>{_DECIMAL})(?:[eE](?P<exp>[+-]?\d+))?")
_TIMES_TEN = re.compile(
    r"(?P<mant>.+?)(?:\\times|\\cdot|×|\*)10\^(?:\{(?P<e1>[+-]?\d+)\}|(?P<e2>[+-]?\d))"
)
_FRAC = re.compile(r"\\[dt]?frac(?:\{(?P<a>[^{}]+)\}|(?P<a1>\d))(?:\{(?P<b>[^{}]+)\}|(?P<b1>\d))")
_LATEX_NOISE = re.compile(r"\\left|\\right|\\[!,;: ]|~|\\displaystyle|\^\{?\\circ\}?|\\%|%")


def _strip_math(text: str) -> str:
    """Math delimiters, sizing and spacing commands, a leading "x =" removed; no spaces."""
    s = _unicode(text).strip()
    s = _TRAILING_PUNCT.sub("", s)
    for pair in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        while len(s) >= 2 and s.startswith(pair[0]) and s.endswith(pair[1]):
            s = s[len(pair[0]) : len(s) - len(pair[1])].strip()
    s = re.sub(r"\\text\{\s*\}", "", s)
    s = s.replace("{,}", ",").replace("\\$", "").replace("$", "")
    s = re.sub(r"^[A-Za-z]\w*\s*=\s*", "", s)
    s = _LATEX_NOISE.sub(lambda m: "%" if "%" in m.group() else "", s)
    return "".join(s.split())


def _plain(s: str) -> Fraction | None:
    """An unsigned or signed decimal, with thousands separators and an exponent, exactly."""
    sign = 1
    if s[:1] in "+-" and s:
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    m = _TIMES_TEN.fullmatch(s)
    if m:
        mant = _plain(m.group("mant"))
        exp = int(m.group("e1") or m.group("e2"))
        return None if mant is None else sign * mant * Fraction(10) ** exp
    m = _NUMBER.fullmatch(s)
    if not m:
        return None
    value = Fraction(m.group("mant").replace(",", ""))
    if m.group("exp"):
        value *= Fraction(10) ** int(m.group("exp"))
    return sign * value


def _rational(s: str) -> Fraction | None:
    """A decimal, a/b, or \\frac{a}{b} (a, b decimals), optionally signed; None otherwise."""
    sign = 1
    while s[:1] in ("+", "-") and s:
        sign, s = (-sign if s[0] == "-" else sign), s[1:]
    if s.startswith("{") and s.endswith("}"):
        s = s[1:-1]
    m = _FRAC.fullmatch(s)
    if m:
        num, den = _plain(m.group("a") or m.group("a1")), _plain(m.group("b") or m.group("b1"))
    elif s.count("/") == 1:
        num, den = (_plain(part) for part in s.split("/"))
    else:
        value = _plain(s)
        return None if value is None else sign * value
    if num is None or den is None or den == 0:
        return None
    return sign * num / den


def parse_number(text: str, *, percent: str = "divide") -> Fraction | None:
    """A number written in text or LaTeX as an exact rational, or None when it is not one.

    Accepted: an optional sign ("+", "-", U+2212); decimals with trailing zeros ("2.50" = 5/2),
    with a leading point (".5"), with comma thousands separators in groups of three ("1,000"; "1,5"
    is not a number) or LaTeX's "1{,}000" and thin spaces "1\\,000"; exponents ("1.5e3", "1.5E-3",
    "1.5\\times10^{3}", "2\\cdot 10^3"); fractions "a/b", "\\frac{a}{b}", "\\dfrac{a}{b}",
    "\\tfrac", the shorthand "\\frac12"; a trailing "%" or "\\%". Ignored: surrounding "$...$",
    "\\(...\\)", "\\[...\\]"; "\\left", "\\right", "\\!", "\\,", "~", a degree sign "^\\circ", a
    currency "\\$"; a leading "x =" (one name); trailing sentence punctuation.
    Not numbers (None): "\\sqrt{2}", "\\pi", intervals, tuples, mixed numbers "1 1/2", digits
    separated by spaces ("1 000"), units.

    Args:
      percent: how "50%" reads: "divide" -> 1/2 (the default here), "ignore" -> 50. `math_equal`
        accepts "either" (both readings, the grader's default).
    """
    if percent not in ("divide", "ignore"):
        raise ValueError(f"parse_number: percent={percent!r}; choose 'divide' or 'ignore'")
    if re.search(r"\d\s+[\d.]", _unicode(text)):
        return None  # "1 1/2", "1 000": a mixed number or a space separator is ambiguous
    s = _strip_math(text)
    is_percent = s.endswith("%")
    s = s.rstrip("%")
    if not s:
        return None
    value = _rational(s)
    if value is None or not is_percent or percent == "ignore":
        return value
    return value / 100


def _readings(text: str, percent: str) -> list[Fraction]:
    """The values `text` may denote: one, or two for a percentage under percent="either"."""
    if percent == "either":
        found = {parse_number(text, percent="divide"), parse_number(text, percent="ignore")}
        return [v for v in found if v is not None]
    value = parse_number(text, percent=percent)
    return [] if value is None else [value]


def _latex_form(text: str) -> str:
    """A string form of a non-numeric answer: `_strip_math` with \\dfrac, \\tfrac -> \\frac."""
    s = _strip_math(text)
    return re.sub(r"\\[dt]frac", r"\\frac", s)


def math_equal(
    answer: str,
    reference: str,
    *,
    rel_tol: float = 0.0,
    abs_tol: float = 0.0,
    percent: str = "either",
) -> bool:
    """Whether two final answers are equal: as numbers when both parse, else as LaTeX strings.

    Numbers (`parse_number`): equal exactly as rationals when `rel_tol = abs_tol = 0`, else when
    |a - b| <= max(rel_tol · max(|a|, |b|), abs_tol) in float64 (`math.isclose`). With
    `percent="either"` a percentage has two readings ("50%" is 50 or 0.5) and any reading of one
    side equal to any reading of the other counts; "divide" reads only 0.5, "ignore" only 50.
    When either side is not a number the two `_latex_form`s (no spaces, delimiters, "\\left",
    "\\right"; "\\dfrac" = "\\frac") must be equal: "\\frac{\\sqrt{3}}{2}" = "\\dfrac{\\sqrt3}{2}"
    is False (no symbolic algebra), as is "\\sqrt{2}" against "1.41421" at any tolerance.

    Raises:
      ValueError: for a `percent` outside `PERCENT_MODES` or a negative tolerance.
    """
    if percent not in PERCENT_MODES:
        raise ValueError(f"math_equal: percent={percent!r}; choose one of {PERCENT_MODES}")
    if rel_tol < 0 or abs_tol < 0:
        raise ValueError(f"math_equal: rel_tol={rel_tol}, abs_tol={abs_tol} must be >= 0")
    a, b = _readings(answer, percent), _readings(reference, percent)
    if a and b:
        if rel_tol == 0 and abs_tol == 0:
            return any(x == y for x in a for y in b)
        return any(
            math.isclose(float(x), float(y), rel_tol=rel_tol, abs_tol=abs_tol) for x in a for y in b
        )
    if a or b:
        return False
    form = _latex_form(answer)
    return bool(form) and form == _latex_form(reference)


def math_match(
    answers: Answers,
    *,
    extract: Callable[[str], str | None] | None = extract_boxed,
    rel_tol: float = 0.0,
    abs_tol: float = 0.0,
    percent: str = "either",
    missing: float | None = 0.0,
) -> Rule:
    """A rule: 1 when the completion's final answer equals a reference answer (`math_equal`).

    match(x, y) = 1[∃ a ∈ answers(x): math_equal(extract(y), a)]

    Args:
      answers: a mapping prompt text -> answer(s), or a function of the prompt text. A reference
        written in a box ("\\boxed{5}") is unboxed first.
      extract: the final answer of a completion; default `extract_boxed` (the last box); None
        (the argument) compares the whole completion.
      rel_tol, abs_tol, percent: see `math_equal`.
      missing: the value of a completion without an answer (no box); None makes `RuleReward` give
        it `invalid_reward` and count it in `aux["invalid"]`.

    Returns:
      `rule(prompt, completion) -> float | None`.
    """
    if percent not in PERCENT_MODES:
        raise ValueError(f"math_match: percent={percent!r}; choose one of {PERCENT_MODES}")
    reference = _lookup(answers, "math_match")

    def rule(prompt: str, completion: str) -> float | None:
        answer = completion if extract is None else extract(completion)
        if answer is None:
            return missing
        for ref in reference(prompt):
            boxed = extract_boxed(ref)
            ref = ref if boxed is None else boxed
            if math_equal(answer, ref, rel_tol=rel_tol, abs_tol=abs_tol, percent=percent):
                return 1.0
        return 0.0

    return rule


# ----------------------------------------------------------------------------------------------
# Multiple choice.

_CUE = re.compile(
    r"(?i)\b(?:answer|option|choice)\b(?:\s*(?:is|would\s+be|should\s+be|will\s+be|[:=]))?"
    r"(?:\s*(?:option|choice|letter))?(?:\s*is)?\s*:?"
)
_SPAN_END = re.compile(r"\n|[.;!?](?=\s|$)|\b(?:because|since|as|but|which|while)\b")
_BARE = re.compile(r"\s*[\(\[]?\s*(?:\*\*)?\s*([A-Za-z])\s*(?:\*\*)?\s*[\)\]]?\s*[.:]?\s*")
_LEADING = re.compile(r"\s*(?:\*\*)?(?:\(([A-Za-z])\)|\[([A-Za-z])\]|([A-Z])[\)\]:.](?=\s|$))")


def _letters(span: str, choices: str) -> set[str]:
    """The choice letters named in `span`: standalone capitals ("B", "**B**", "(B)") and
    bracketed lower-case letters ("(b)")."""
    found = re.findall(r"(?<![A-Za-z0-9_\\])([A-Z])(?![A-Za-z0-9_'’])", span)
    found += [c.upper() for c in re.findall(r"[\(\[]([a-z])[\)\]]", span)]
    return {c for c in found if c in choices}


def extract_choice(text: str, choices: str = "ABCD") -> str | None:
    """The multiple-choice letter a completion answers with, or None.

    In order: the last `\\boxed{...}`; else the clause after the last answer cue ("answer is",
    "Answer:", "the correct option is", "choice:" ...) that names a letter, up to the end of its
    line or sentence or a "because"/"since"; else a bare answer ("B", "(B)", "B)", "**B**",
    "B.") or a leading one ("B) 42", "(B) because ..."). Letters are capitals of `choices` standing
    alone or a bracketed lower-case letter "(b)". A clause naming two different letters ("A or B",
    "A and B", "B, or maybe C") is ambiguous: None. A later answer statement overrides an earlier
    one ("answer is A. ... Final answer: C" -> "C").

    Args:
      choices: the allowed letters (e.g. "ABCDEFGHIJ" for ten options); other capitals ("I") are
        words, not answers.
    """
    boxed = extract_boxed(text)
    if boxed is not None:
        letters = _letters(_strip_math(boxed) or boxed, choices)
        return letters.pop() if len(letters) == 1 else None
    for cue in reversed(list(_CUE.finditer(text))):
        rest = text[cue.end() :]
        end = _SPAN_END.search(rest)
        letters = _letters(rest[: end.start()] if end else rest, choices)
        if letters:
            return letters.pop() if len(letters) == 1 else None
    m = _BARE.fullmatch(text)
    if m and m.group(1).upper() in choices:
        return m.group(1).upper()
    m = _LEADING.match(text)
    if m:
        letter = next(g for g in m.groups() if g).upper()
        return letter if letter in choices else None
    return None


def choice_match(answers: Answers, *, choices: str = "ABCD", missing: float | None = 0.0) -> Rule:
    """A rule: 1 when the completion's letter (`extract_choice`) is the reference letter.

    Args:
      answers: a mapping prompt text -> the correct letter ("B", "(B)" and "b" are the same), or a
        function of the prompt text.
      choices: the allowed letters.
      missing: the value of a completion with no (or an ambiguous) letter; None marks the row
        invalid in `RuleReward`.

    Returns:
      `rule(prompt, completion) -> float | None`.
    """
    reference = _lookup(answers, "choice_match")

    def rule(prompt: str, completion: str) -> float | None:
        letter = extract_choice(completion, choices)
        if letter is None:
            return missing
        refs = {r.strip().strip("()[]*. ").upper() for r in reference(prompt)}
        bad = sorted(r for r in refs if len(r) != 1 or r not in choices)
        if bad:
            raise ValueError(
                f"choice_match: reference answer(s) {bad} of prompt {prompt[:80]!r} are not "
                f"one of the letters {choices!r}; give the correct letter, or pass choices="
            )
        return float(letter in refs)

    return rule


# ----------------------------------------------------------------------------------------------
# Format.


def tag_format(
    *,
    think: str = "think",
    answer: str = "answer",
    think_opened_in_prompt: bool = False,
    allow_empty_answer: bool = False,
) -> Rule:
    """A rule: 1 when the completion is `<think>…</think><answer>…</answer>` and nothing else.

    Each of the four tags occurs exactly once, in that order; only whitespace lies before
    `<think>`, between `</think>` and `<answer>`, and after `</answer>`; the answer is not blank
    unless `allow_empty_answer`. With `think_opened_in_prompt` (a chat template whose generation
    prompt ends in "<think>") the completion starts inside the thought and must not repeat
    `<think>`.

    Returns:
      `rule(prompt, completion) -> float` in {0, 1} (the prompt is not used).
    """
    tags = [f"<{think}>", f"</{think}>", f"<{answer}>", f"</{answer}>"]
    opening = "" if think_opened_in_prompt else r"\s*" + re.escape(tags[0])
    pattern = re.compile(
        opening
        + r"(?P<thought>.*)"
        + re.escape(tags[1])
        + r"\s*"
        + re.escape(tags[2])
        + r"(?P<answer>.*)"
        + re.escape(tags[3])
        + r"\s*",
        re.DOTALL,
    )

    def rule(prompt: str, completion: str) -> float:
        del prompt
        counts = [completion.count(t) for t in tags]
        if counts != [0 if think_opened_in_prompt else 1, 1, 1, 1]:
            return 0.0
        m = pattern.fullmatch(completion)
        if m is None:
            return 0.0
        return float(allow_empty_answer or bool(m.group("answer").strip()))

    return rule


# ----------------------------------------------------------------------------------------------
# Length.


def length_penalty(
    lengths: Float[ArrayLike, " B"],
    *,
    budget: float,
    coef: float = 1.0,
    max_penalty: float | None = None,
) -> Float[Array, " B"]:
    """Linear penalty on the length beyond a budget (0 within it).

    r(L) = -min(coef · max(0, L - budget), max_penalty)     (no cap when max_penalty is None)

    DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476) with maximum length L_max
    and interval L_cache is budget = L_max - L_cache, coef = 1 / L_cache, max_penalty = 1.

    Args:
      lengths: [B] completion lengths (any unit).
      budget: the length allowed without penalty.
      coef: penalty per unit beyond the budget.
      max_penalty: the largest penalty (positive), or None.

    Returns:
      float32 [B], <= 0.
    """
    over = jnp.maximum(jnp.asarray(lengths, jnp.float32) - budget, 0.0)
    penalty = coef * over
    if max_penalty is not None:
        penalty = jnp.minimum(penalty, max_penalty)
    return -penalty


class LengthPenalty:
    """`length_penalty` of each completion as a reward function.

    Args:
      budget, coef, max_penalty: see `length_penalty`.
      unit: "tokens": L = Σ completion_mask (the generated tokens, the stop token included), from
        the ids, no decoding; "chars": L = the number of Unicode characters of the completion text
        (`RewardInputs.completion_text`, or the ids decoded with `tokenizer`, the stop token
        dropped).
      tokenizer: decodes the ids for unit="chars" when the inputs carry no text.

    Returns (on call): `RewardOutput(rewards [B], None, {"length": [B]})`.
    """

    needs_reference = False

    def __init__(
        self,
        budget: float,
        *,
        coef: float = 1.0,
        max_penalty: float | None = None,
        unit: str = "tokens",
        tokenizer: Tokenizer | None = None,
    ):
        if unit not in ("tokens", "chars"):
            raise ValueError(f"LengthPenalty: unit={unit!r}; choose 'tokens' or 'chars'")
        if budget < 0 or coef < 0 or (max_penalty is not None and max_penalty < 0):
            raise ValueError(
                f"LengthPenalty: budget={budget}, coef={coef}, max_penalty={max_penalty} must be "
                ">= 0 (the penalty is subtracted)"
            )
        self.budget, self.coef, self.max_penalty = float(budget), float(coef), max_penalty
        self.unit, self.tokenizer = unit, tokenizer

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        del reference
        check_inputs(inputs)
        if self.unit == "tokens":
            lengths = np.sum(np.asarray(inputs.completion_mask) > 0, axis=1)
        else:
            _, completions = texts_of(inputs, self.tokenizer, who="LengthPenalty(unit='chars')")
            lengths = np.asarray([len(c) for c in completions])
        lengths = jnp.asarray(lengths, jnp.float32)
        rewards = length_penalty(
            lengths, budget=self.budget, coef=self.coef, max_penalty=self.max_penalty
        )
        return RewardOutput(rewards, None, {"length": lengths})


# ----------------------------------------------------------------------------------------------
# Likelihood of a reference answer.


def _reference_logprobs(key: Any, params: Any, tokens, mask, target):
    """(Σ_t log p(tokens_t | tokens_<t) over target positions, the number of them), float32 [B]."""
    model = key.model if isinstance(key, _ByIdentity) else key
    out = model.apply(params, tokens, segment_ids=mask)
    logits = out[0] if isinstance(out, tuple) else out
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    picked = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    where = target[:, 1:] > 0
    return jnp.sum(jnp.where(where, picked, 0.0), axis=-1), jnp.sum(where, axis=-1)


_score_reference = jax.jit(_reference_logprobs, static_argnums=0)


class ReferenceLikelihoodReward:
    """The log-likelihood of a reference answer after the completion, under a causal LM.

    Row b is `[prompt | completion | answer]` (real tokens only, right-padded with id 0; a final
    stop token `tokenizer.eos_id` of the completion is dropped so the answer continues the text);
    with a_1..a_m the answer's ids (`tokenizer.encode(separator + answer)`):

        sum:  r = Σ_j log π(a_j | prompt, completion, a_<j)
        mean: r = (1/m) · Σ_j log π(a_j | prompt, completion, a_<j)

    All rows are scored in one jitted forward pass (widths padded to `max_length`, or to a power of
    two, so few compilations). Zhou et al. 2025, "Reinforcing General Reasoning without
    Verifiers", arXiv 2505.21493, use the answer's likelihood given the reasoning as the reward.

    Args:
      model: a `models.CausalLM` (anything with `apply(params, tokens, segment_ids=mask)` returning
        logits [B, T, V] or `(logits, cache)`).
      params: its parameters (logical-partitioning boxes are removed).
      references: a mapping prompt text -> answer text (prompts are the inputs' `prompt_text` or
        the ids decoded with `tokenizer`), or a sequence of B answers, one per row.
      tokenizer: the model's tokenizer (the policy's: the prompt and completion ids are used as
        they are).
      reduce: "mean" or "sum".
      separator: text put before each answer (e.g. "\\nAnswer: ").
      max_length: rows longer than this lose tokens from the start of the prompt (counted in
        `aux["truncated"]`); rows are padded to this width (one compilation). None: no limit,
        rows padded to the next power of two.

    Returns (on call): `RewardOutput(rewards [B], None, aux)`; aux "answer_tokens" [B] (m),
    "logprob_sum" [B], "truncated" [B].

    Raises:
      ValueError: when the tokenizer has ids outside the model's vocabulary, a prompt has no
        answer, an answer encodes to no tokens, or the answer and completion exceed `max_length`.
    """

    needs_reference = False

    def __init__(
        self,
        model: Any,
        params: Any,
        references: Mapping[str, str] | Sequence[str],
        tokenizer: Tokenizer,
        *,
        reduce: str = "mean",
        separator: str = "",
        max_length: int | None = None,
    ):
        if reduce not in ("mean", "sum"):
            raise ValueError(f"ReferenceLikelihoodReward: reduce={reduce!r}; 'mean' or 'sum'")
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if vocab is not None and tokenizer.vocab_size > vocab:
            raise ValueError(
                f"ReferenceLikelihoodReward: the tokenizer has {tokenizer.vocab_size} ids but the "
                f"model's embedding {vocab} rows; use the model's own tokenizer"
            )
        if isinstance(references, str):
            raise TypeError(
                "ReferenceLikelihoodReward: references is one string; give a mapping prompt -> "
                "answer or one answer per row"
            )
        self.model, self.params, self._key = model, nn.meta.unbox(params), _static(model)
        self.references, self.tokenizer = references, tokenizer
        self.reduce, self.separator, self.max_length = reduce, separator, max_length

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        del reference
        b, _ = check_inputs(inputs)
        refs = self.references
        if isinstance(refs, Mapping):
            prompts = inputs.prompt_text
            if prompts is None:
                prompts = decode_texts(self.tokenizer, inputs.prompt_tokens, inputs.prompt_mask)
            lookup = _lookup(refs, "ReferenceLikelihoodReward")
            answers = []
            for p in prompts:
                found = lookup(p)
                if len(found) != 1:
                    raise ValueError(
                        f"ReferenceLikelihoodReward: prompt {p[:80]!r} has {len(found)} answers; "
                        "give exactly one reference answer per prompt"
                    )
                answers.append(found[0])
        elif len(refs) != b:
            raise ValueError(
                f"ReferenceLikelihoodReward: {len(refs)} per-row references for B={b} rows; give "
                "one answer per row, or a mapping prompt -> answer"
            )
        else:
            answers = list(refs)
        p_tok, p_mask = np.asarray(inputs.prompt_tokens), np.asarray(inputs.prompt_mask) > 0
        c_tok, c_mask = np.asarray(inputs.completion_tokens), np.asarray(inputs.completion_mask) > 0
        eos = self.tokenizer.eos_id
        rows, truncated = [], np.zeros(b, np.float32)
        for i in range(b):
            prompt, completion = p_tok[i][p_mask[i]].tolist(), c_tok[i][c_mask[i]].tolist()
            if completion and eos is not None and completion[-1] == eos:
                completion = completion[:-1]
            answer = self.tokenizer.encode(self.separator + answers[i])
            if not answer:
                raise ValueError(
                    f"ReferenceLikelihoodReward: row {i}'s answer {answers[i]!r} encodes to no "
                    "tokens; give a non-empty answer"
                )
            head = prompt + completion
            if self.max_length is not None and len(head) + len(answer) > self.max_length:
                keep = self.max_length - len(answer) - len(completion)
                if keep < 1:
                    raise ValueError(
                        f"ReferenceLikelihoodReward: row {i}: completion ({len(completion)} "
                        f"tokens) and answer ({len(answer)}) leave no room for the prompt within "
                        f"max_length={self.max_length}; raise max_length"
                    )
                head, truncated[i] = prompt[len(prompt) - keep :] + completion, 1.0
            if not head:
                raise ValueError(
                    f"ReferenceLikelihoodReward: row {i} has no prompt or completion token to "
                    "condition the answer on"
                )
            rows.append((head, answer))
        longest = max(len(h) + len(a) for h, a in rows)
        width = self.max_length or max(8, 1 << (longest - 1).bit_length())
        tokens = np.zeros((b, width), np.int32)
        mask, target = np.zeros_like(tokens), np.zeros_like(tokens)
        for i, (head, answer) in enumerate(rows):
            n = len(head) + len(answer)
            tokens[i, :n], mask[i, :n] = head + answer, 1
            target[i, len(head) : n] = 1
        total, count = _score_reference(self._key, self.params, tokens, mask, target)
        count = count.astype(jnp.float32)
        rewards = total / count if self.reduce == "mean" else total
        aux = {"answer_tokens": count, "logprob_sum": total, "truncated": jnp.asarray(truncated)}
        return RewardOutput(rewards.astype(jnp.float32), None, aux)
