"""Judge prompts: Jinja templates rendered to text and tokenised, or token-level rows for the
synthetic task (ids only, no text), behind one interface so that the same judge code runs on both.

A template turns (prompt, response[, reference answer, criteria]) into the ids of one judge row,
ending where the judge's verdict token is to be read:

- `TextTemplate(tokenizer, pointwise=..., pairwise=...)`: Jinja sources with the fields `prompt`,
  `response` (pointwise) or `response_a` / `response_b` (pairwise), and the optional `reference`
  and `criteria` (None when not given; test them with `{% if reference %}`). Rendered in a
  sandbox with `StrictUndefined` (a misspelt field is an error, not an empty string), then
  encoded with the `rewardjax.data.Tokenizer`.
- `TokenTemplate(separator)`: id rows `[prompt, sep, response, sep]` (plus `[reference, sep]`
  when given) and `[prompt, sep, response_a, sep, response_b, sep]`; `criteria` is not
  representable in ids and is an error.

Verdicts (e.g. "yes"/"no", "A"/"B", "1".."10") are read as the probability of one token, so each
verdict string must encode to exactly one id: `verdict_token_ids` checks this and names the string
and the tokens it became otherwise (a verdict split into pieces would be read from its first piece
only, silently).

Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv 2306.05685
(pointwise and pairwise judge prompts).
"""

from __future__ import annotations

from collections.abc import Sequence

import jinja2
import jinja2.sandbox

from rewardjax.data import Tokenizer

__all__ = [
    "DEFAULT_PAIRWISE_TEMPLATE",
    "DEFAULT_POINTWISE_TEMPLATE",
    "RATING_POINTWISE_TEMPLATE",
    "TextTemplate",
    "TokenTemplate",
    "verdict_token_ids",
]

DEFAULT_POINTWISE_TEMPLATE = (
    "Question: {{ prompt }}\n"
    "Response: {{ response }}\n"
    "{% if reference %}Reference answer: {{ reference }}\n{% endif %}"
    "{% if criteria %}Criteria: {{ criteria }}\n{% endif %}"
    "Is the response correct? Answer yes or no.\nAnswer:"
)
RATING_POINTWISE_TEMPLATE = (
    "Question: {{ prompt }}\n"
    "Response: {{ response }}\n"
    "{% if reference %}Reference answer: {{ reference }}\n{% endif %}"
    "{% if criteria %}Criteria: {{ criteria }}\n{% endif %}"
    "Rate the response from 1 to 10.\nRating:"
)
DEFAULT_PAIRWISE_TEMPLATE = (
    "Question: {{ prompt }}\n"
    "Response A: {{ response_a }}\n"
    "Response B: {{ response_b }}\n"
    "{% if reference %}Reference answer: {{ reference }}\n{% endif %}"
    "{% if criteria %}Criteria: {{ criteria }}\n{% endif %}"
    "Which response is better? Answer A or B.\nAnswer:"
)


def verdict_token_ids(tokenizer: Tokenizer, strings: Sequence[str]) -> tuple[int, ...]:
    """The one token id of each verdict string, in order.

    Args:
      tokenizer: a `rewardjax.data.Tokenizer` (its `encode`, without special tokens).
      strings: the verdicts as they follow the template's last character (e.g. " yes" when the
        template ends with "Answer:" and the tokenizer merges the space into the word).

    Returns:
      K ids, one per string.

    Raises:
      ValueError: naming the first string that does not encode to exactly one token and the
        tokens it became (ids and their decoded pieces), or whose one token decodes to another
        string (an unknown-word token), or two strings that share a token.
    """
    ids = []
    for s in strings:
        got = tokenizer.encode(s)
        if len(got) != 1:
            pieces = [tokenizer.decode([i]) for i in got]
            raise ValueError(
                f"verdict {s!r} is not one token in {type(tokenizer).__name__}: it became "
                f"{len(got)} tokens {got} ({pieces}); pick verdict strings that are single "
                "tokens of this tokenizer (e.g. with or without a leading space)"
            )
        back = tokenizer.decode(got)
        if back.strip() != s.strip():
            raise ValueError(
                f"verdict {s!r} is not a token of {type(tokenizer).__name__}: it became token "
                f"{got} which decodes to {back!r} (an unknown-word token?); pick verdict strings "
                "in the tokenizer's vocabulary"
            )
        ids.append(got[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"verdicts {list(strings)} map to repeated token ids {ids}")
    return tuple(ids)


class TextTemplate:
    """Jinja judge templates rendered to text, then encoded with `tokenizer`.

    Args:
      tokenizer: the judge model's `rewardjax.data.Tokenizer`.
      pointwise: Jinja source with `prompt`, `response`, `reference`, `criteria`.
      pairwise: Jinja source with `prompt`, `response_a`, `response_b`, `reference`, `criteria`.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        pointwise: str = DEFAULT_POINTWISE_TEMPLATE,
        pairwise: str = DEFAULT_PAIRWISE_TEMPLATE,
    ):
        self.tokenizer = tokenizer
        env = jinja2.sandbox.ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
        self._pointwise = env.from_string(pointwise)
        self._pairwise = env.from_string(pairwise)

    def render_pointwise(
        self, prompt: str, response: str, reference: str | None = None, criteria: str | None = None
    ) -> str:
        return self._pointwise.render(
            prompt=prompt, response=response, reference=reference, criteria=criteria
        )

    def render_pairwise(
        self,
        prompt: str,
        response_a: str,
        response_b: str,
        reference: str | None = None,
        criteria: str | None = None,
    ) -> str:
        return self._pairwise.render(
            prompt=prompt,
            response_a=response_a,
            response_b=response_b,
            reference=reference,
            criteria=criteria,
        )

    def pointwise(self, prompt, response, reference=None, criteria=None) -> list[int]:
        """Ids of the rendered pointwise prompt."""
        return self.encode(self.render_pointwise(prompt, response, reference, criteria))

    def pairwise(self, prompt, response_a, response_b, reference=None, criteria=None) -> list[int]:
        """Ids of the rendered pairwise prompt."""
        return self.encode(
            self.render_pairwise(prompt, response_a, response_b, reference, criteria)
        )

    def encode(self, text: str | Sequence[int]) -> list[int]:
        """Text -> ids with the tokenizer (ids pass through)."""
        return self.tokenizer.encode(text) if isinstance(text, str) else [int(i) for i in text]

    def verdict_ids(self, verdicts: Sequence[str | int]) -> tuple[int, ...]:
        """`verdict_token_ids` of strings (ints are taken as ids)."""
        if all(isinstance(v, int) for v in verdicts):
            return tuple(verdicts)
        return verdict_token_ids(self.tokenizer, [str(v) for v in verdicts])


def _ids(x, name: str) -> list[int]:
    if isinstance(x, str):
        raise TypeError(
            f"TokenTemplate: {name} is text ({x[:40]!r}); a TokenTemplate reads token ids (use "
            "TextTemplate with a tokenizer for text)"
        )
    return [int(i) for i in x]


class TokenTemplate:
    """Token-level judge rows for tasks with ids and no text (the synthetic task).

    Pointwise: `[prompt, sep, response, sep]` (`[prompt, sep, response, sep, reference, sep]` with a
    reference); pairwise: `[prompt, sep, response_a, sep, response_b, sep]`; `sep` is the id
    sequence `separator`. Verdicts are ids (e.g. two ids appended past the task's vocabulary, see
    `rewardjax.judges.training.JudgeIds`).
    """

    def __init__(self, separator: int | Sequence[int]):
        self.separator = [separator] if isinstance(separator, int) else [int(i) for i in separator]
        if not self.separator:
            raise ValueError("TokenTemplate: separator must hold at least one id")

    def _check(self, criteria) -> None:
        if criteria is not None:
            raise ValueError(
                "TokenTemplate: criteria are text and cannot be put in a token-level row; use a "
                "TextTemplate, or pass criteria=None"
            )

    def pointwise(self, prompt, response, reference=None, criteria=None) -> list[int]:
        self._check(criteria)
        sep = self.separator
        row = _ids(prompt, "prompt") + sep + _ids(response, "response") + sep
        return row + (_ids(reference, "reference") + sep if reference is not None else [])

    def pairwise(self, prompt, response_a, response_b, reference=None, criteria=None) -> list[int]:
        self._check(criteria)
        sep = self.separator
        row = _ids(prompt, "prompt") + sep + _ids(response_a, "response_a") + sep
        row += _ids(response_b, "response_b") + sep
        return row + (_ids(reference, "reference") + sep if reference is not None else [])

    def encode(self, ids: Sequence[int]) -> list[int]:
        return _ids(ids, "text")

    def verdict_ids(self, verdicts: Sequence[int]) -> tuple[int, ...]:
        for v in verdicts:
            if isinstance(v, str) or int(v) != v:
                raise ValueError(
                    f"TokenTemplate: verdict {v!r} must be a token id (int); strings need a "
                    "TextTemplate and its tokenizer"
                )
        ids = tuple(int(v) for v in verdicts)
        if len(set(ids)) != len(ids):
            raise ValueError(f"verdict ids {ids} repeat")
        return ids
