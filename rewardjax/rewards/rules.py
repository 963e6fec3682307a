"""Rule rewards: a Python function of the decoded prompt and completion, applied row by row.

`RuleReward(fn, tokenizer=...)` calls `fn(prompt, completion)` on each row (the text given in
`RewardInputs`, or the ids decoded with `tokenizer`, the completion's final stop token dropped) and
returns float32 rewards whatever `fn` returns (bool, int or float). Two built-in rules:

- `exact_match(answers, extract=..., normalize=...)`: 1.0 when the completion's answer equals the
  reference answer of its prompt after normalisation, else 0.0;
- `regex_format(pattern, mode="fullmatch" | "search")`: 1.0 when the completion has the format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

import jax.numpy as jnp
import numpy as np

from rewardjax.data import Tokenizer
from rewardjax.rewards.base import RewardInputs, RewardOutput, check_inputs, texts_of

__all__ = ["RuleReward", "exact_match", "normalize_whitespace", "regex_format"]

Rule = Callable[[str, str], "float | int | bool | None"]


def normalize_whitespace(text: str) -> str:
    """Strips both ends and collapses every run of whitespace to one space (case is kept)."""
    return " ".join(text.split())


def exact_match(
    answers: Mapping[str, str | Collection[str]] | Callable[[str], str | Collection[str]],
    *,
    extract: Callable[[str], str | None] | None = None,
    normalize: Callable[[str], str] | None = normalize_whitespace,
) -> Rule:
    """A rule: 1 when the completion's answer equals its prompt's reference answer, else 0.

    match(x, y) = 1[normalize(extract(y)) ∈ {normalize(a) : a ∈ answers(x)}]

    Args:
      answers: the reference answer(s) of each prompt: a mapping prompt text -> answer (or a
        collection of acceptable answers), or a function of the prompt text returning them.
      extract: the answer in a completion (e.g. the text after "####"), None when it has none
        (the row scores 0); default: the whole completion.
      normalize: applied to both sides before comparing; default `normalize_whitespace`
        (whitespace-insensitive, case-sensitive); None compares the raw strings.

    Returns:
      `rule(prompt, completion) -> bool`.

    Raises (on call):
      ValueError: naming the prompt when `answers` is a mapping without it (a missing reference is
        an error, not a silent 0).
    """
    norm = normalize or (lambda s: s)

    def reference(prompt: str) -> list[str]:
        if callable(answers):
            found = answers(prompt)
        else:
            if prompt not in answers:
                raise ValueError(
                    f"exact_match: no reference answer for prompt {prompt[:80]!r} "
                    f"({len(answers)} prompts have one); add it to `answers`"
                )
            found = answers[prompt]
        return [found] if isinstance(found, str) else list(found)

    def rule(prompt: str, completion: str) -> bool:
        refs = {norm(a) for a in reference(prompt)}
        answer = completion if extract is None else extract(completion)
        return answer is not None and norm(answer) in refs

    return rule


def regex_format(pattern: str | re.Pattern, *, mode: str = "fullmatch", flags: int = 0) -> Rule:
    """A rule: 1 when the completion has the format `pattern`, else 0.

    mode="fullmatch": `re.fullmatch` — the whole completion must match (a trailing newline must be
    in the pattern; `$` alone does not make `re.search` strict, `fullmatch` is). mode="search":
    `re.search` — a match anywhere. `.` does not match a newline unless `flags=re.DOTALL`; with
    `re.MULTILINE`, `^`/`$` match at line boundaries (search mode).

    Returns:
      `rule(prompt, completion) -> bool` (the prompt is not used).
    """
    if mode not in ("fullmatch", "search"):
        raise ValueError(f"regex_format: mode={mode!r}; choose 'fullmatch' or 'search'")
    compiled = re.compile(pattern, flags)
    match = compiled.fullmatch if mode == "fullmatch" else compiled.search

    def rule(prompt: str, completion: str) -> bool:
        del prompt
        return match(completion) is not None

    return rule


def _is_real_scalar(v) -> bool:
    return not isinstance(v, str | bytes) and np.ndim(v) == 0 and np.asarray(v).dtype.kind in "biuf"


class RuleReward:
    """A Python rule on decoded text as a reward function (see the module docstring).

    Args:
      fn: `fn(prompt, completion) -> float | int | bool | None`; None means "cannot judge" and the
        row gets `invalid_reward` with `aux["invalid"] = 1`.
      tokenizer: decodes the ids when `RewardInputs` has no text.
      invalid_reward: the reward of rows where `fn` returned None.

    Returns (on call): `RewardOutput(rewards float32 [B], None, {"invalid": [B]})`. `reference` is
    ignored.

    Raises (on call):
      TypeError: naming the row when `fn` returns anything but a real number, a bool or None.
    """

    needs_reference = False

    def __init__(
        self, fn: Rule, *, tokenizer: Tokenizer | None = None, invalid_reward: float = 0.0
    ):
        self.fn, self.tokenizer, self.invalid_reward = fn, tokenizer, float(invalid_reward)

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        del reference
        check_inputs(inputs)
        prompts, completions = texts_of(inputs, self.tokenizer, who="RuleReward")
        values = [self.fn(p, c) for p, c in zip(prompts, completions)]
        rewards = np.empty(len(values), np.float32)
        invalid = np.zeros(len(values), np.float32)
        for i, v in enumerate(values):
            if v is None:
                rewards[i], invalid[i] = self.invalid_reward, 1.0
            elif _is_real_scalar(v):
                rewards[i] = float(np.asarray(v))  # bool, int, float, NumPy or JAX scalars
            else:
                name = getattr(self.fn, "__name__", repr(self.fn))
                raise TypeError(
                    f"RuleReward: rule {name} returned {type(v).__name__} ({v!r:.80}) for row {i}; "
                    "a rule returns a float, int, bool, or None (cannot judge)"
                )
        return RewardOutput(jnp.asarray(rewards), None, {"invalid": jnp.asarray(invalid)})
