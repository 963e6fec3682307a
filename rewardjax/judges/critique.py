"""Critique-then-verdict: the judge first writes a rationale (sampled with the jitted
`rewardjax.sampling.sample`), then the verdict prompt is appended and the verdict token's
probability is read in one forward pass, as a pointwise judge reads it.

A rationale ends with the end marker (one token, e.g. "</critique>", the sampler's stop token).
A row fails, and is counted by reason, when

- "no_end_marker": the rationale reached `max_new_tokens` without the end marker (truncated; its
  verdict would be read from the middle of a sentence);
- "unparsed_verdict": with `verdict_pattern` given, the rationale's text holds no match, or the
  matched verdict is not one of the verdicts.

A failed row's score is NaN and its reason is returned: failures are never mapped to a score.

Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv 2306.05685
(chain-of-thought judging); Mahan et al. 2024, "Generative Reward Models", arXiv 2410.12832
(a rationale before the verdict token).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from rewardjax import sampling
from rewardjax.judges.scoring import PointwiseJudge, pad_rows, verdict_probs
from rewardjax.models import CausalLM

__all__ = ["FAILURE_REASONS", "CritiqueJudge", "CritiqueScores", "parse_verdict"]

FAILURE_REASONS = ("no_end_marker", "unparsed_verdict")


def parse_verdict(text: str, pattern: str, verdicts: Sequence[str]) -> str | None:
    """The verdict named in `text`: the first group of the last match of `pattern` (stripped),
    if it is one of `verdicts`; None otherwise (no match, or another word)."""
    matches = list(re.finditer(pattern, text))
    if not matches:
        return None
    found = (matches[-1].group(1) if matches[-1].groups() else matches[-1].group(0)).strip()
    return found if found in [v.strip() for v in verdicts] else None


class CritiqueScores(NamedTuple):
    """Critique-then-verdict results of B rows.

    Attributes:
      score: float32 [B] as `PointwiseJudge` scores, NaN on failed rows.
      probs: float32 [B, K] normalised verdict probabilities (NaN on rows without end marker).
      failed: bool [B].
      reasons: B entries, None or one of `FAILURE_REASONS`.
      failures: reason -> count (every reason present, zeros included).
      rationales: B id lists (the generated tokens, end marker included when present).
      texts: B decoded rationales (without end marker), or None without a tokenizer.
      text_verdicts: B parsed verdicts (None where unparsed or no pattern).
    """

    score: Float[Array, " B"]
    probs: Float[Array, "B K"]
    failed: np.ndarray
    reasons: list[str | None]
    failures: dict[str, int]
    rationales: list[list[int]]
    texts: list[str] | None
    text_verdicts: list[str | None]


class CritiqueJudge:
    """Sample a rationale, append the verdict prompt, read the verdict token (module docstring).

    Args:
      judge: a `PointwiseJudge` (model, params, template, verdicts and values are its own); its
        template's pointwise row is the critique prompt (it ends where the rationale starts).
      end_marker: the rationale's last token: a string (one token of the template's tokenizer)
        or an id.
      verdict_prompt: appended after the rationale (text, or ids for a `TokenTemplate`); the
        verdict is read after it.
      max_new_tokens: the rationale's length limit (rows reaching it without the end marker fail).
      temperature, top_k, top_p: sampling settings (temperature 0: greedy).
      verdict_pattern: a regex whose first group is the verdict written in the rationale; None:
        no text-level parse (needs the template's tokenizer to decode).
    """

    def __init__(
        self,
        judge: PointwiseJudge,
        *,
        end_marker: str | int,
        verdict_prompt: str | Sequence[int],
        max_new_tokens: int = 128,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        verdict_pattern: str | None = None,
    ):
        self.judge = judge
        self.end_id = judge.template.verdict_ids([end_marker])[0]
        self.verdict_prompt = judge.template.encode(verdict_prompt)
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.top_k, self.top_p = top_k, top_p
        self.tokenizer = getattr(judge.template, "tokenizer", None)
        if verdict_pattern is not None and self.tokenizer is None:
            raise ValueError(
                "CritiqueJudge: verdict_pattern parses text, but the template has no tokenizer "
                "(a TokenTemplate); use a TextTemplate or verdict_pattern=None"
            )
        self.verdict_pattern = verdict_pattern
        self._verdict_strings = None
        if verdict_pattern is not None:
            self._verdict_strings = [self.tokenizer.decode([i]) for i in judge.verdict_ids]

    def __call__(
        self, prompts, responses, key: jax.Array, references=None, criteria=None
    ) -> CritiqueScores:
        j = self.judge
        rows = j.rows(prompts, responses, references, criteria)
        tokens, mask = pad_rows(rows)
        model: CausalLM = j.model
        out = sampling.sample(
            model,
            j.params,
            jnp.asarray(tokens),
            jnp.asarray(mask),
            key,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            stop_tokens=(self.end_id,),
        )
        gen, gen_mask = np.asarray(out.tokens[:, 0]), np.asarray(out.mask[:, 0])
        b = len(rows)
        rationales = [gen[i][gen_mask[i] > 0].tolist() for i in range(b)]
        reasons: list[str | None] = [None] * b
        texts, text_verdicts = None, [None] * b
        for i, r in enumerate(rationales):
            if not r or r[-1] != self.end_id:
                reasons[i] = "no_end_marker"
        if self.tokenizer is not None:
            texts = [
                self.tokenizer.decode(r[:-1] if r and r[-1] == self.end_id else r)
                for r in rationales
            ]
            if self.verdict_pattern is not None:
                for i, t in enumerate(texts):
                    text_verdicts[i] = parse_verdict(t, self.verdict_pattern, self._verdict_strings)
                    if text_verdicts[i] is None and reasons[i] is None:
                        reasons[i] = "unparsed_verdict"
        ended = [i for i in range(b) if reasons[i] != "no_end_marker"]
        k = len(j.verdict_ids)
        probs = np.full((b, k), np.nan, np.float32)
        if ended:
            second = [rows[i] + rationales[i] + self.verdict_prompt for i in ended]
            norm, _ = verdict_probs(j.logits(second), j.verdict_ids)
            probs[ended] = np.asarray(norm)
        failed = np.asarray([r is not None for r in reasons])
        if j.values is None:
            score = probs[:, 0].copy()
        else:
            score = probs @ j.values
        score[failed] = np.nan
        failures = {reason: reasons.count(reason) for reason in FAILURE_REASONS}
        return CritiqueScores(
            jnp.asarray(score, jnp.float32),
            jnp.asarray(probs),
            failed,
            reasons,
            failures,
            rationales,
            texts,
            text_verdicts,
        )

    @staticmethod
    def summary(scores: CritiqueScores) -> dict[str, Any]:
        """Counts for a report: rows, failed rows, failures by reason, and the failure rate."""
        n = len(scores.reasons)
        return {
            "rows": n,
            "failed": int(scores.failed.sum()),
            "failure_rate": float(scores.failed.mean()) if n else 0.0,
            **{f"failures/{k}": v for k, v in scores.failures.items()},
        }
