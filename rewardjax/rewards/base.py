"""The reward-function interface shared by RL, best-of-N and evaluation.

A reward function scores one batch of B completions, each the continuation of a prompt:

    reward_fn(inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput

`RewardInputs` holds token ids and masks (plus the decoded text when the caller has it) and the
group size N when the N completions of a prompt are consecutive rows; `RewardOutput.rewards` is
float32 `[B]` whatever the source computes (a rule's ints or bools included), with optional dense
`token_rewards [B, L]` and per-row diagnostics in `aux`. `reference` holds M reference completions
per prompt (consecutive rows, the same prompts in the same order) for the reward functions whose
`needs_reference` is True (transforms centred on a per-prompt reference reward).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from rewardjax.data import Tokenizer

__all__ = [
    "RewardFunction",
    "RewardInputs",
    "RewardOutput",
    "check_inputs",
    "decode_texts",
    "join_rows",
    "texts_of",
]


class RewardInputs(NamedTuple):
    """One batch of B completions to score.

    Attributes:
      prompt_tokens: int [B, P] prompt ids, left- or right-padded (any pad id).
      prompt_mask: int/bool [B, P], nonzero on real prompt tokens.
      completion_tokens: int [B, L] generated ids.
      completion_mask: int/bool [B, L], nonzero on generated tokens (the stop token included),
        0 on what follows the stop token and on padding.
      prompt_text: the B decoded prompts, or None.
      completion_text: the B decoded completions (without the stop token), or None.
      group_size: N when the N completions of each prompt are consecutive rows (B = P·N), or None
        (each row its own prompt).
    """

    prompt_tokens: Int[Array, "B P"]
    prompt_mask: Int[Array, "B P"]
    completion_tokens: Int[Array, "B L"]
    completion_mask: Int[Array, "B L"]
    prompt_text: Sequence[str] | None = None
    completion_text: Sequence[str] | None = None
    group_size: int | None = None


class RewardOutput(NamedTuple):
    """What every reward function returns.

    Attributes:
      rewards: float32 [B] sequence rewards.
      token_rewards: float32 [B, L] dense rewards on completion positions (0 elsewhere), or None.
      aux: per-row diagnostics, each array with leading axis B (e.g. "invalid" float32 [B] = 1 on
        rows that got a fixed fallback reward, "ensemble_std" [B], "members" [B, E]).
    """

    rewards: Float[Array, " B"]
    token_rewards: Float[Array, "B L"] | None
    aux: dict[str, Array]


@runtime_checkable
class RewardFunction(Protocol):
    """A source of rewards: a trained reward model, the synthetic task's gold reward, a rule on
    text, a combination of these (and, later, judges and verifiers).

    `needs_reference` is True when a call needs `reference` completions (M per prompt, consecutive
    rows, the prompts of `inputs` in the same order); the caller samples them from the reference
    policy in the same rollout.
    """

    needs_reference: bool

    def __call__(
        self, inputs: RewardInputs, reference: RewardInputs | None = None
    ) -> RewardOutput: ...


def check_inputs(inputs: RewardInputs, *, name: str = "inputs") -> tuple[int, int]:
    """Checks the shapes of `inputs` and returns (B, P) = (rows, prompts).

    Raises:
      ValueError: naming the field of `RewardInputs` whose shape or length is wrong.
    """
    if not isinstance(inputs, RewardInputs):
        raise TypeError(f"{name} must be a rewards.RewardInputs, got {type(inputs).__name__}")
    shapes = {f: np.shape(getattr(inputs, f)) for f in RewardInputs._fields[:4]}
    for f, s in shapes.items():
        if len(s) != 2:
            raise ValueError(f"{name}.{f} must be 2-D [B, length], got shape {s}")
    b = shapes["prompt_tokens"][0]
    pairs = (("prompt_tokens", "prompt_mask"), ("completion_tokens", "completion_mask"))
    for tokens, mask in pairs:
        if shapes[tokens] != shapes[mask]:
            raise ValueError(
                f"{name}.{mask} has shape {shapes[mask]}, {name}.{tokens} {shapes[tokens]}; "
                "give one mask entry per token"
            )
    if shapes["completion_tokens"][0] != b:
        raise ValueError(
            f"{name}.completion_tokens has {shapes['completion_tokens'][0]} rows, "
            f"{name}.prompt_tokens {b}; give one prompt row per completion (repeat a prompt "
            "N times)"
        )
    for f in ("prompt_text", "completion_text"):
        text = getattr(inputs, f)
        if text is not None and len(text) != b:
            raise ValueError(f"{name}.{f} has {len(text)} strings for B={b} rows")
    n = inputs.group_size
    if n is not None and (n < 1 or b % n):
        raise ValueError(
            f"{name}.group_size={n} does not divide B={b}: the N completions of each prompt must "
            "be consecutive rows"
        )
    return b, b // (n or 1)


def join_rows(
    prompt_tokens: Int[Array, "B P"],
    prompt_mask: Int[Array, "B P"],
    completion_tokens: Int[Array, "B L"],
    completion_mask: Int[Array, "B L"],
) -> tuple[Int[Array, "B P+L"], Int[Array, "B P+L"], Int[Array, "B P+L"]]:
    """[prompt | completion] rows in the training layout of `data.collate`: real tokens first,
    right-padded with id 0.

    Row b holds its real prompt tokens, then its real completion tokens, in order, then padding:
    `mask` is 1 on them (one segment) and `completion_mask` 1 on the completion's; jittable (a
    stable sort moves the real tokens to the front, whatever the padding side of the inputs).

    Returns:
      (tokens, mask, completion_mask), int32 [B, P + L].
    """
    tokens = jnp.concatenate([prompt_tokens, completion_tokens], axis=1).astype(jnp.int32)
    in_prompt = jnp.concatenate([prompt_mask > 0, jnp.zeros(completion_mask.shape, bool)], axis=1)
    in_completion = jnp.concatenate(
        [jnp.zeros(prompt_mask.shape, bool), completion_mask > 0], axis=1
    )
    real = in_prompt | in_completion
    order = jnp.argsort(jnp.where(real, 0, 1), axis=1, stable=True)
    take = lambda x: jnp.take_along_axis(x, order, axis=1)
    real_sorted = take(real)
    return (
        jnp.where(real_sorted, take(tokens), 0),
        real_sorted.astype(jnp.int32),
        take(in_completion).astype(jnp.int32),
    )


def decode_texts(
    tokenizer: Tokenizer,
    tokens: Int[Array, "B T"],
    mask: Int[Array, "B T"],
    *,
    strip_eos: bool = False,
) -> list[str]:
    """Decodes the real tokens (mask nonzero) of each row; with `strip_eos`, a final
    `tokenizer.eos_id` (the policy's stop token) is dropped first, so the text is the completion's
    content as the training records hold it."""
    tokens, mask = np.asarray(tokens), np.asarray(mask) > 0
    out = []
    for row, keep in zip(tokens, mask):
        ids = row[keep].tolist()
        if strip_eos and ids and tokenizer.eos_id is not None and ids[-1] == tokenizer.eos_id:
            ids = ids[:-1]
        out.append(tokenizer.decode(ids))
    return out


def texts_of(
    inputs: RewardInputs, tokenizer: Tokenizer | None, *, who: str
) -> tuple[list[str], list[str]]:
    """(prompt texts, completion texts): `inputs`' text where given, else decoded with `tokenizer`
    (the completion's final stop token stripped).

    Raises:
      ValueError: naming `who` when the text is missing and there is no tokenizer to decode with.
    """
    out = []
    for field, tokens, mask, strip in (
        ("prompt_text", inputs.prompt_tokens, inputs.prompt_mask, False),
        ("completion_text", inputs.completion_tokens, inputs.completion_mask, True),
    ):
        text = getattr(inputs, field)
        if text is not None:
            out.append(list(text))
        elif tokenizer is None:
            raise ValueError(
                f"{who} needs text: RewardInputs.{field} is None and no tokenizer was given to "
                f"decode it; pass {field}, or construct {who} with tokenizer=<the policy's>"
            )
        else:
            out.append(decode_texts(tokenizer, tokens, mask, strip_eos=strip))
    return out[0], out[1]


def as_float32(x) -> jax.Array:
    """Rewards of any dtype (bool, int, float64) as a float32 array."""
    return jnp.asarray(x if isinstance(x, jax.Array) else np.asarray(x, np.float32), jnp.float32)
