"""Pointwise and pairwise judges: one forward pass of a `models.CausalLM` over judge rows, the
verdict read from the next-token distribution at the last prompt position (no sampling).

With logits z ∈ R^V at the last real position and verdict ids v_1..v_K:

    raw_k  = softmax(z)[v_k]                        (probability of verdict k among all V tokens)
    norm_k = exp(z[v_k]) / Σ_j exp(z[v_j])           (renormalised over the K verdicts)
    mass   = Σ_k raw_k                               (how much the judge says a verdict at all)

Pointwise yes/no: the score is `norm_yes` (P(yes | yes or no)); `raw_yes` is reported too.
Pointwise rating over tokens "1".."10" with values 1..10: the score is E[rating] = Σ_k norm_k · k.

Pairwise, both presentation orders in one batch of 2B rows: with P_AB = norm("A") when response a
is shown first and P_BA = norm("B") when a is shown second (b first),

    P(a ≻ b) = (P_AB + P_BA) / 2                                       (position-bias corrected)
    position_bias = mean_i [ (P_first(i, ab) + P_first(i, ba)) / 2 ] - 1/2,
        P_first = norm("A") (the verdict for whichever response is shown first)
    inconsistent_i = 1[argmax verdict names the same position in both orders]

`position_bias` ∈ [-1/2, 1/2] is 0 for a judge without a preference for a position (> 0: it
favours the first response); `inconsistency_rate` is the fraction of pairs whose verdict flips
with the order (Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena",
arXiv 2306.05685, §3.3 and Table 2: the "consistency" of a judge under swapped positions).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

from rewardjax.models import CausalLM

__all__ = [
    "PairwiseJudge",
    "PairwiseScores",
    "PointwiseJudge",
    "PointwiseScores",
    "last_logits",
    "pad_rows",
    "pairwise_from_orders",
    "verdict_probs",
]


def verdict_probs(
    logits: Float[Array, "B V"], verdict_ids: Sequence[int] | Int[Array, " K"]
) -> tuple[Float[Array, "B K"], Float[Array, "B K"]]:
    """(normalised, raw) verdict probabilities (module docstring): `norm_k = softmax(z[v])_k`,
    `raw_k = softmax(z)[v_k]`; float32, computed with log-softmax (finite at large logits)."""
    z = jnp.asarray(logits, jnp.float32)
    v = jnp.asarray(verdict_ids, jnp.int32)
    raw = jnp.exp(jax.nn.log_softmax(z, axis=-1)[:, v])
    norm = jax.nn.softmax(z[:, v], axis=-1)
    return norm, raw


@functools.partial(jax.jit, static_argnums=0)
def _last_logits(model: CausalLM, params: Any, tokens, mask):
    logits, _ = model.apply(params, tokens, segment_ids=mask)
    last = jnp.max(jnp.where(mask > 0, jnp.arange(tokens.shape[1]), 0), axis=1)
    return jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0].astype(jnp.float32)


def last_logits(
    model: CausalLM, params: Any, tokens: Int[Array, "B T"], mask: Int[Array, "B T"]
) -> Float[Array, "B V"]:
    """Float32 next-token logits at each row's last real token (`mask` 1 on real tokens, rows
    right-padded); jitted once per (model, shape)."""
    return _last_logits(model, params, jnp.asarray(tokens, jnp.int32), jnp.asarray(mask, jnp.int32))


def pad_rows(rows: Sequence[Sequence[int]], *, width: int | None = None) -> tuple[np.ndarray, ...]:
    """Right-padded int32 `(tokens, mask)`, width the next power of two >= the longest row (>= 8)
    unless given, so that calls with similar lengths share one compilation."""
    longest = max(len(r) for r in rows)
    if any(len(r) == 0 for r in rows):
        raise ValueError("pad_rows: a judge row is empty; the template rendered nothing")
    width = width or max(8, 1 << (longest - 1).bit_length())
    tokens = np.zeros((len(rows), width), np.int32)
    mask = np.zeros_like(tokens)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return tokens, mask


def _check_vocab(ids: Sequence[int], model: CausalLM, what: str) -> None:
    bad = [i for i in ids if not 0 <= i < model.config.vocab_size]
    if bad:
        raise ValueError(
            f"{what} ids {bad} are outside the model's vocabulary (vocab_size="
            f"{model.config.vocab_size}); use the judge model's own tokenizer"
        )


class _Base:
    """A judge model and template; `logits` runs the rows through one jitted forward pass."""

    def __init__(self, model: CausalLM, params: Any, template: Any, batch_size: int | None):
        self.model, self.params, self.template = model, nn.meta.unbox(params), template
        self.batch_size = batch_size

    def logits(self, rows: Sequence[Sequence[int]]) -> jax.Array:
        """[len(rows), V] last-position logits, in chunks of `batch_size` rows (one width)."""
        for r in rows:
            _check_vocab(r, self.model, "judge row")
        tokens, mask = pad_rows(rows)
        n = len(rows)
        size = self.batch_size or n
        out = []
        for start in range(0, n, size):
            t, m = tokens[start : start + size], mask[start : start + size]
            if len(t) < size:  # pad the last chunk: one compiled shape
                t = np.pad(t, ((0, size - len(t)), (0, 0)), constant_values=1)
                m = np.pad(m, ((0, size - len(m)), (0, 0)), constant_values=1)
            out.append(last_logits(self.model, self.params, t, m)[: n - start])
        return jnp.concatenate(out)


def _broadcast(x, n: int, name: str) -> list:
    if x is None or isinstance(x, str):
        return [x] * n
    x = list(x)
    if len(x) != n:
        raise ValueError(f"{name} has {len(x)} entries for {n} rows")
    return x


class PointwiseScores(NamedTuple):
    """Pointwise verdicts of B rows.

    Attributes:
      score: float32 [B]: norm P(first verdict) ("yes"), or E[rating] in rating mode.
      probs: float32 [B, K] verdict probabilities renormalised over the K verdicts.
      raw_probs: float32 [B, K] verdict probabilities among all V tokens (unnormalised).
      verdict_mass: float32 [B] Σ_k raw_probs (1: the judge only says verdicts).
    """

    score: Float[Array, " B"]
    probs: Float[Array, "B K"]
    raw_probs: Float[Array, "B K"]
    verdict_mass: Float[Array, " B"]


class PointwiseJudge(_Base):
    """A yes/no or rating judge of single responses (module docstring).

    Args:
      model, params: the judge `models.CausalLM`.
      template: a `TextTemplate` (strings) or `TokenTemplate` (ids).
      verdicts: the K verdicts: ("yes", "no") by default (the score is the first's normalised
        probability), or rating tokens ("1", ..., "10") with `values`; strings for a
        `TextTemplate` (each must be one token: `verdict_token_ids`), ids for a `TokenTemplate`.
      values: the rating of each verdict; given: the score is the expected rating Σ_k norm_k
        values_k; None: yes/no mode.
      batch_size: rows per forward pass (None: all rows in one).
    """

    def __init__(
        self,
        model: CausalLM,
        params: Any,
        template: Any,
        *,
        verdicts: Sequence[str | int] = ("yes", "no"),
        values: Sequence[float] | None = None,
        batch_size: int | None = None,
    ):
        super().__init__(model, params, template, batch_size)
        self.verdict_ids = template.verdict_ids(verdicts)
        _check_vocab(self.verdict_ids, model, "verdict")
        if values is not None and len(values) != len(self.verdict_ids):
            raise ValueError(f"values has {len(values)} entries for {len(verdicts)} verdicts")
        self.values = None if values is None else np.asarray(values, np.float32)

    def score_rows(self, rows: Sequence[Sequence[int]]) -> PointwiseScores:
        """Scores of judge rows already built (ids ending where the verdict is read)."""
        norm, raw = verdict_probs(self.logits(rows), self.verdict_ids)
        if self.values is None:
            score = norm[:, 0]
        else:
            score = norm @ jnp.asarray(self.values)
        return PointwiseScores(score, norm, raw, raw.sum(-1))

    def rows(self, prompts, responses, references=None, criteria=None) -> list[list[int]]:
        n = len(prompts)
        refs, crit = _broadcast(references, n, "references"), _broadcast(criteria, n, "criteria")
        resp = list(responses)
        if len(resp) != n:
            raise ValueError(f"{len(resp)} responses for {n} prompts")
        return [
            self.template.pointwise(p, r, f, c) for p, r, f, c in zip(prompts, resp, refs, crit)
        ]

    def __call__(self, prompts, responses, references=None, criteria=None) -> PointwiseScores:
        """Scores B (prompt, response) pairs; `references` / `criteria`: one per row, one for
        all (a string) or None."""
        return self.score_rows(self.rows(prompts, responses, references, criteria))

    def as_rubric_judge(self):
        """`judge(question, prompt, completion) -> probability` for `rewards.RubricReward` and
        `Rubric.satisfaction`: the question is rendered as the template's `criteria`."""

        def judge(question: str, prompt: str, completion: str) -> float:
            return float(self([prompt], [completion], criteria=[question]).score[0])

        return judge


class PairwiseScores(NamedTuple):
    """Pairwise verdicts of B pairs (module docstring).

    Attributes:
      prob_a: float32 [B] P(a ≻ b) averaged over both orders.
      prob_a_first: float32 [B] norm P("A") with a shown first.
      prob_a_second: float32 [B] norm P("B") with a shown second.
      inconsistent: bool [B] the verdict names the same position in both orders.
      position_bias: float32 scalar, mean P(first) - 1/2 over both orders and all pairs.
      inconsistency_rate: float32 scalar, mean of `inconsistent`.
    """

    prob_a: Float[Array, " B"]
    prob_a_first: Float[Array, " B"]
    prob_a_second: Float[Array, " B"]
    inconsistent: Array
    position_bias: Float[Array, ""]
    inconsistency_rate: Float[Array, ""]


def pairwise_from_orders(
    p_first_ab: Float[ArrayLike, " B"], p_first_ba: Float[ArrayLike, " B"]
) -> PairwiseScores:
    """Combine both orders: `p_first_ab` = P("A") with a first, `p_first_ba` = P("A") with b first
    (so P(a ≻ b) in that order is 1 - p_first_ba); see the module docstring."""
    first_ab = jnp.asarray(p_first_ab, jnp.float32)
    first_ba = jnp.asarray(p_first_ba, jnp.float32)
    p_ab, p_ba = first_ab, 1.0 - first_ba
    bias = jnp.mean((first_ab + first_ba) / 2) - 0.5
    inconsistent = (first_ab > 0.5) == (first_ba > 0.5)
    return PairwiseScores(
        (p_ab + p_ba) / 2, p_ab, p_ba, inconsistent, bias, jnp.mean(inconsistent.astype(float))
    )


class PairwiseJudge(_Base):
    """An A/B judge of two responses, both presentation orders averaged (module docstring).

    Args:
      model, params: the judge `models.CausalLM`.
      template: a `TextTemplate` or `TokenTemplate` (its `pairwise` rows).
      verdicts: (verdict for the first response, for the second): ("A", "B"), or ids.
      batch_size: rows per forward pass (None: all 2B rows in one).
    """

    def __init__(
        self,
        model: CausalLM,
        params: Any,
        template: Any,
        *,
        verdicts: Sequence[str | int] = ("A", "B"),
        batch_size: int | None = None,
    ):
        super().__init__(model, params, template, batch_size)
        self.verdict_ids = template.verdict_ids(verdicts)
        if len(self.verdict_ids) != 2:
            raise ValueError(f"a pairwise judge takes two verdicts, got {list(verdicts)}")
        _check_vocab(self.verdict_ids, model, "verdict")

    def __call__(
        self, prompts, responses_a, responses_b, references=None, criteria=None
    ) -> PairwiseScores:
        n = len(prompts)
        a, b = list(responses_a), list(responses_b)
        if not len(a) == len(b) == n:
            raise ValueError(f"{len(a)} responses_a and {len(b)} responses_b for {n} prompts")
        refs, crit = _broadcast(references, n, "references"), _broadcast(criteria, n, "criteria")
        rows = [self.template.pairwise(*x) for x in zip(prompts, a, b, refs, crit)]
        rows += [self.template.pairwise(*x) for x in zip(prompts, b, a, refs, crit)]
        norm, _ = verdict_probs(self.logits(rows), self.verdict_ids)
        return pairwise_from_orders(norm[:n, 0], norm[n:, 0])
