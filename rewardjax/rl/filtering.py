"""Which completions an RL update learns from: DAPO's dynamic sampling (drop groups whose rewards
are all equal) and the handling of overlong completions (mask the truncated ones, or shape their
reward with DAPO's soft overlong penalty, counted in tokens).

Everything is a mask or a per-row value of fixed shape (jittable, no dynamic shapes), and what is
dropped is counted, so a trainer can report it.

Rows are grouped as in `rewardjax.rl.advantages`: B = P·N rows, the N completions of prompt p
consecutive (row p·N + j).

Papers:
- Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
  arXiv 2503.14476 (dynamic sampling, overlong filtering, soft overlong punishment).
"""

from typing import NamedTuple

import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int, Real, Shaped

from rewardjax.numerics import as_float

__all__ = [
    "GroupFilter",
    "TruncatedMask",
    "group_filter_mask",
    "overlong_penalty",
    "truncated_mask",
]


class GroupFilter(NamedTuple):
    """The result of `group_filter_mask`.

    Attributes:
      keep: bool[B], False on every row of a dropped group.
      num_filtered_groups: int32[], how many of the P groups were dropped.
    """

    keep: Bool[Array, " B"]
    num_filtered_groups: Int[Array, ""]


class TruncatedMask(NamedTuple):
    """The result of `truncated_mask`.

    Attributes:
      mask: [B, T], the input mask (same dtype) with every truncated row zeroed.
      num_truncated: int32[], how many rows were truncated.
    """

    mask: Shaped[Array, "B T"]
    num_truncated: Int[Array, ""]


def group_filter_mask(
    rewards: Real[ArrayLike, " B"], *, group_size: int, tol: float | Float[ArrayLike, ""] = 0.0
) -> GroupFilter:
    """DAPO dynamic sampling: drop the groups whose rewards (nearly) all agree.

    A group with equal rewards (all correct or all wrong) gives every sample a zero group-relative
    advantage, so it carries no gradient but still dilutes the batch. For group g:
      σ_g = sqrt(mean_j (r_gj − mean_j r_gj)²)   (population std, computed around r_g0 so
                                                  identical rewards give exactly 0)
      keep_gj = σ_g > tol.
    A group holding a non-finite reward has σ_g = NaN and is kept (guard rewards upstream).

    Args:
      rewards: sequence rewards [B], B = P·N, the N of a prompt consecutive.
      group_size: N (static under jit).
      tol: groups with σ_g <= tol are dropped (0: only exactly constant groups).

    Returns:
      `GroupFilter(keep bool[B], num_filtered_groups int32[])`.

    References:
      Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
      arXiv 2503.14476 (section 3.2, dynamic sampling).
    """
    r = as_float(rewards)
    if r.ndim != 1:
        raise ValueError(f"rewards must have shape [B] (one per row); got shape {r.shape}.")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(
            f"group_size must be an int >= 1 (the N completions per prompt); got {group_size!r}."
        )
    if r.shape[0] % group_size:
        raise ValueError(
            f"batch size {r.shape[0]} is not a multiple of group_size={group_size}: rows must be "
            "P prompts x N completions, the N of each prompt consecutive."
        )
    grouped = r.reshape(-1, group_size)
    centred = grouped - grouped[:, :1]
    std = jnp.sqrt(jnp.var(centred, axis=-1))
    dropped = std <= tol
    keep = jnp.repeat(~dropped, group_size)
    return GroupFilter(keep, jnp.sum(dropped).astype(jnp.int32))


def truncated_mask(
    mask: Shaped[ArrayLike, "B T"], finished: Bool[ArrayLike, " B"]
) -> TruncatedMask:
    """Overlong filtering: zero the mask of truncated completions, so they carry no loss.

    A completion is truncated when it hit the generation budget (max_new_tokens) without a stop
    token, i.e. when the sampler did not mark it finished (`finished` False); its reward judges an
    unfinished answer, so DAPO masks its loss rather than punish it.
      mask'_bt = mask_bt · finished_b.
    The length alone cannot tell a truncated completion from one whose stop token fell exactly on
    the last allowed position, so this takes the sampler's finished flags.

    Args:
      mask: completion mask [B, T] (bool or int).
      finished: bool[B], True where the completion ended with a stop token.

    Returns:
      `TruncatedMask(mask [B, T] in the input's dtype, num_truncated int32[])`.

    References:
      Yu et al. 2025, "DAPO", arXiv 2503.14476 (section 3.4, overlong filtering).
    """
    mask = jnp.asarray(mask)
    finished = jnp.asarray(finished).astype(bool)
    if mask.ndim != 2 or finished.shape != mask.shape[:1]:
        raise ValueError(
            f"truncated_mask needs mask [B, T] and finished [B]; got shapes {mask.shape} and "
            f"{finished.shape}."
        )
    kept = jnp.where(finished[:, None], mask, jnp.zeros_like(mask))
    return TruncatedMask(kept, jnp.sum(~finished).astype(jnp.int32))


def overlong_penalty(
    lengths: Int[ArrayLike, " B"], *, max_length: int, cache_length: int
) -> Float[Array, " B"]:
    """DAPO's soft overlong punishment, a reward term that grows with the length in tokens.

    With L = max_length, C = cache_length and |y| the completion length in tokens:
      R(|y|) = 0                     if |y| <= L − C,
               ((L − C) − |y|) / C   if L − C < |y| <= L,
               −1                    if |y| > L.
    It is added to the task reward (place it at the last real token). C = 0 gives a hard step:
    0 up to L, −1 beyond.

    Args:
      lengths: completion lengths in tokens [B] (int; never characters).
      max_length: L > 0, the expected maximum length in tokens.
      cache_length: C, 0 <= C <= L, the width of the linear punishment interval in tokens.

    Returns:
      Penalties [B] in [−1, 0], float32.

    References:
      Yu et al. 2025, "DAPO: An Open-Source LLM Reinforcement Learning System at Scale",
      arXiv 2503.14476 (section 3.4, equation 13).
    """
    if not isinstance(max_length, int) or max_length <= 0:
        raise ValueError(f"max_length must be a positive int (tokens); got {max_length!r}.")
    if not isinstance(cache_length, int) or not 0 <= cache_length <= max_length:
        raise ValueError(
            f"cache_length must be an int in [0, max_length={max_length}] (tokens); got "
            f"{cache_length!r}."
        )
    lengths = jnp.asarray(lengths)
    if jnp.issubdtype(lengths.dtype, jnp.floating):
        raise ValueError(
            f"lengths must be integer token counts; got dtype {lengths.dtype}. Count tokens "
            "(mask.sum(-1)), not characters."
        )
    n = as_float(lengths)
    start = max_length - cache_length
    ramp = (start - n) / max(cache_length, 1)
    return jnp.where(n <= start, 0.0, jnp.where(n <= max_length, ramp, -1.0)).astype(n.dtype)
