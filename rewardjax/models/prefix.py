"""Prefix sharing: the K responses to one prompt scored in one row, the prompt computed once.

A pairwise (K = 2) or listwise batch holds K rows per example that repeat the same prompt:
`[prompt | y_k | pad]`. `share_prefix` rewrites them as one row per example,

    [prompt | y_1 | y_2 | ... | y_K | pad]      (length L <= K * T, e.g. P + C_1 + C_2 for pairs)

with `branch_ids` 0 on the prompt and k on response k. With the backbone's branch attention
(`Transformer(..., branch_ids=...)`, `transformer.branch_attention_mask`) response k attends to the
prompt and to its own earlier tokens only, and its rotary positions restart after the prompt, so
every hidden state of response k equals the one of the unshared row `[prompt | y_k]`:

- the reward of response k is read at its last token (`last_index`);
- its log-probs `log π(y_k | x) = Σ_j log softmax(logits[pred_j])[y_k,j]`, where the logits
  predicting token j of response k sit at the previous token of the same branch, except the first
  one, predicted by the last prompt token (shared by all branches) (`logit_index`,
  `branch_logprobs`: `packed_logprobs` on rows of one example each).

Packed rows (`PackedRows`, built on the host by `rewardjax.data.packing`) hold several such
examples back to back in one row, told apart by segment ids, with per-token predictor indices
(`logit_index`) and per-response pooling indices: `packed_logprobs` sums each response's
log-probs from them.

Reference: Wang et al., "Accelerating Direct Preference Optimization with Prefix Sharing"
(arXiv 2410.20305).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "PackedRows",
    "SharedRows",
    "branch_logprobs",
    "packed_logprobs",
    "share_prefix",
    "shared_length",
]


class SharedRows(NamedTuple):
    """One row per example: a shared prompt and K response branches (see the module docstring).

    Attributes:
      tokens: `[B, L]` token ids, 0 on padding.
      mask: `[B, L]` 1 on real tokens (the backbone's segment ids).
      branch_ids: `[B, L]` 0 on the prompt and padding, k on the tokens of response k (1..K).
      completion_mask: `[B, L]` 1 on response tokens.
      last_index: `[B, K]` index of each response's last token (the last prompt token when a
        response is empty): where a reward model pools response k.
      logit_index: `[B, L]` index of the logits that predict each token (the previous token, or
        the last prompt token for the first token of a response).
      target_mask: `[B, L]` the response tokens that count in a log-prob.
      context_index: `[B]` the last prompt token.
      overflow: `[B]` tokens of the example that did not fit in L (0 when `L` is large enough).
    """

    tokens: Int[Array, "B L"]
    mask: Int[Array, "B L"]
    branch_ids: Int[Array, "B L"]
    completion_mask: Int[Array, "B L"]
    last_index: Int[Array, "B K"]
    logit_index: Int[Array, "B L"]
    target_mask: Bool[Array, "B L"]
    context_index: Int[Array, " B"]
    overflow: Int[Array, " B"]

    def packed(self) -> PackedRows:
        """The same rows as `PackedRows` of one example slot each (`[B, 1, K]` pooling)."""
        return PackedRows(
            tokens=self.tokens,
            segment_ids=self.mask,
            branch_ids=self.branch_ids,
            logit_index=self.logit_index,
            target_mask=self.target_mask.astype(jnp.int32),
            last_index=self.last_index[:, None, :],
            context_index=self.context_index[:, None],
        )


class PackedRows(NamedTuple):
    """Rows of packed, prefix-shared examples (`rewardjax.data.packing`'s layout): R rows of L
    tokens, at most S examples (slots) per row, K responses per example.

    Attributes:
      tokens: `[R, L]` token ids, 0 on padding.
      segment_ids: `[R, L]` 0 on padding, s + 1 on the example in slot s (the backbone's
        segment ids).
      branch_ids: `[R, L]` 0 on prompts and padding, k on the tokens of response k (1..K).
      logit_index: `[R, L]` index (in the row) of the logits that predict each token.
      target_mask: `[R, L]` 1 on the response tokens that count in a log-prob.
      last_index: `[R, S, K]` each response's last token (its prompt's last when empty).
      context_index: `[R, S]` each example's last prompt token.
    """

    tokens: Int[Array, "R L"]
    segment_ids: Int[Array, "R L"]
    branch_ids: Int[Array, "R L"]
    logit_index: Int[Array, "R L"]
    target_mask: Int[Array, "R L"]
    last_index: Int[Array, "R S K"]
    context_index: Int[Array, "R S"]

    @classmethod
    def of(cls, batch) -> PackedRows:
        """The rows of a packed batch (a mapping with at least these keys)."""
        return cls(**{name: batch[name] for name in cls._fields})


def packed_logprobs(
    logits: Float[Array, "R L V"], rows: PackedRows
) -> tuple[Float[Array, "R S K"], Float[Array, "R S K"]]:
    """Summed log-probs of each response of packed rows, and their token counts.

    `log π(y_sk | x_s) = Σ_{j in response (s, k)} m_j [logits[i_j, y_j] - logsumexp_v
    logits[i_j, v]]` with `i = rows.logit_index`, `y = rows.tokens`, `m = rows.target_mask`, the
    response of token j read from its segment and branch ids (float32, row-local gathers and
    scatter-adds: no cross-row traffic when rows are sharded, no matmul rounding). Equal to
    `losses.sequence_logprobs` on each unpacked row `[prompt_s | y_sk]`.

    Args:
      logits: `[R, L, V]` logits of the packed rows.
      rows: the `PackedRows` that produced them.

    Returns:
      `(logps [R, S, K], counts [R, S, K])`, float32; 0 on empty slots.
    """
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    r, length, v = logits.shape
    _, s, k = rows.last_index.shape
    lse = jnp.take_along_axis(jax.nn.logsumexp(logits, axis=-1), rows.logit_index, axis=-1)
    flat = rows.logit_index * v + rows.tokens
    picked = jnp.take_along_axis(logits.reshape(r, length * v), flat, axis=-1)
    where = (rows.target_mask > 0) & (rows.segment_ids > 0) & (rows.branch_ids > 0)
    token_logps = jnp.where(where, picked - lse, 0.0)
    response = jnp.where(where, (rows.segment_ids - 1) * k + rows.branch_ids - 1, s * k)
    total = lambda x, ids: jax.ops.segment_sum(x, ids, num_segments=s * k + 1)[: s * k]
    logps = jax.vmap(total)(token_logps, response).reshape(r, s, k)
    counts = jax.vmap(total)(where.astype(jnp.float32), response).reshape(r, s, k)
    return logps, counts


def _to_front(tokens: Int[Array, "*B T"], selected: Bool[Array, "*B T"]) -> Int[Array, "*B T"]:
    """Each row's selected tokens moved to its front, in order (a stable sort on "not selected")."""
    return jnp.take_along_axis(tokens, jnp.argsort(~selected, axis=-1, stable=True), axis=-1)


def share_prefix(
    tokens: Int[Array, "B K T"],
    mask: Int[Array, "B K T"],
    completion_mask: Int[Array, "B K T"],
    *,
    length: int | None = None,
) -> SharedRows:
    """The K rows of each example (same prompt, K responses) as one prefix-shared row.

    Row b of the result: `prompt_b, y_b1, ..., y_bK`, right-padded to `L = length`. The prompt is
    the real tokens of `tokens[b, 0]` outside its completion (the K rows must share it, as the
    collated pairs and lists of `rewardjax.data` do); response k is the completion tokens of row
    k, in order. Response k starts at `s_k = P + Σ_{i<k} C_i`; token j of it is predicted by the
    logits at `s_k + j - 1` for j >= 1 and at `P - 1` (the last prompt token) for j = 0, and it
    counts in the log-prob when `P + j >= 1` (as in the unshared row, whose first token is never
    predicted). Built with array ops only (jittable, no loop over tokens).

    Args:
      tokens, mask, completion_mask: `[B, K, T]`, mask 0 on padding, completion_mask 1 on the
        response tokens (left or right padding).
      length: L, the static length of the shared rows; default `K * T` (always enough). Choose
        it from the data (`shared_length`) to save compute: tokens past L are cut and counted in
        `overflow`.

    Returns:
      `SharedRows` (shapes `[B, L]`, `[B, K]`, `[B, K, T]`).

    Reference: Wang et al., arXiv 2410.20305.
    """
    b, k, t = tokens.shape
    length = k * t if length is None else int(length)
    real = mask > 0
    is_prompt = real[:, 0] & (completion_mask[:, 0] == 0)
    is_completion = real & (completion_mask > 0)
    prompt = _to_front(tokens[:, 0], is_prompt)  # [B, T]
    p = jnp.sum(is_prompt, axis=-1).astype(jnp.int32)  # [B]
    responses = _to_front(tokens, is_completion)  # [B, K, T]
    c = jnp.sum(is_completion, axis=-1).astype(jnp.int32)  # [B, K]
    ends = p[:, None] + jnp.cumsum(c, axis=-1)  # [B, K]: one past each response
    starts = ends - c
    pos = jnp.arange(length, dtype=jnp.int32)[None, :]  # [1, L]
    branch = jnp.minimum(jnp.sum(pos[..., None] >= ends[:, None, :], axis=-1), k - 1)  # [B, L]
    offset = jnp.clip(pos - jnp.take_along_axis(starts, branch, axis=-1), 0, t - 1)
    total = ends[:, -1:]
    in_response = (pos >= p[:, None]) & (pos < total)
    # Row-local gathers only (take_along_axis), so a batch sharded over rows stays local.
    flat = responses.reshape(b, k * t)
    response_tokens = jnp.take_along_axis(flat, branch * t + offset, axis=-1)
    prompt_tokens = jnp.take_along_axis(prompt, jnp.minimum(pos, t - 1), axis=-1)
    response_tokens = jnp.where(in_response, response_tokens, 0)
    new_tokens = jnp.where(pos < p[:, None], prompt_tokens, response_tokens)
    last_prompt = jnp.maximum(p - 1, 0)[:, None]
    last_index = jnp.where(c > 0, ends - 1, last_prompt)
    # Token j of response k is predicted by the previous token, its first one by the last prompt
    # token, and counts unless it is the first token of a row without a prompt.
    first = in_response & (pos == jnp.take_along_axis(starts, branch, axis=-1))
    logit_index = jnp.where(first, last_prompt, jnp.maximum(pos - 1, 0))
    target_mask = in_response & ~(first & (p[:, None] == 0))
    return SharedRows(
        tokens=new_tokens.astype(tokens.dtype),
        mask=(pos < total).astype(mask.dtype),
        branch_ids=jnp.where(in_response, branch + 1, 0).astype(jnp.int32),
        completion_mask=in_response.astype(mask.dtype),
        last_index=jnp.clip(last_index, 0, length - 1),
        logit_index=jnp.clip(logit_index, 0, length - 1).astype(jnp.int32),
        target_mask=target_mask,
        context_index=jnp.minimum(last_prompt[:, 0], length - 1),
        overflow=jnp.maximum(total[:, 0] - length, 0),
    )


def branch_logprobs(
    logits: Float[Array, "B L V"], rows: SharedRows
) -> tuple[Float[Array, "B K"], Float[Array, "B K"]]:
    """Summed log-probs of each response of prefix-shared rows, and their token counts.

    `log π(y_k | x) = Σ_j m_j [logits[i_j, y_j] - logsumexp_v logits[i_j, v]]` over the tokens
    j of response k, with `i = rows.logit_index`, `m = rows.target_mask` (float32): equal to
    `losses.sequence_logprobs` on the unshared rows. The rows are packed rows of one example
    each, so this is `packed_logprobs(logits, rows.packed())`.

    Args:
      logits: `[B, L, V]` logits of the shared rows (`logits[:, i]` predicts token i + 1).
      rows: the `SharedRows` that produced them.

    Returns:
      `(logps [B, K], counts [B, K])`, float32.
    """
    logps, counts = packed_logprobs(logits, rows.packed())
    return logps[:, 0], counts[:, 0]


def shared_length(
    examples: Iterable[dict], *, max_length: int, num_responses: int = 2, multiple: int = 1
) -> int:
    """The length L of the prefix-shared rows of encoded examples (`rewardjax.data`
    `EncodedDataset.examples`: "seqs" prompt + response, "prompt_len"), on the host.

    `L = max_examples (P + Σ_k C_k)` rounded up to `multiple`, at most `K * max_length`: every
    example fits, and a batch's shared rows hold `B * L` tokens instead of the
    `K * B * max_length` of the unshared ones.
    """
    longest = 0
    for e in examples:
        seqs: Sequence = e["seqs"]
        p = int(e["prompt_len"])
        longest = max(longest, p + sum(len(s) - p for s in seqs))
    rounded = multiple * math.ceil(longest / multiple)
    return int(min(max(rounded, multiple), num_responses * max_length))
