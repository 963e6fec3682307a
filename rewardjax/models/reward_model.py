"""Reward models: one backbone, a head chosen by name, pooled at the last real token.

`RewardModel(RewardModelConfig(backbone=..., head="scalar", head_kwargs={...}))` is a Flax module
used functionally: `params = model.init(rng, tokens, mask)`, `out = model.apply(params, tokens,
mask)` with `out.reward` of shape `[B]` (`[E, B]` for an ensemble head). Anything with this
`init`/`apply` pair is a `ScoringModel` (trained heads here, implicit rewards from a policy in
`implicit.py`), and `score_pairs` scores the chosen and rejected halves of a preference batch in one
call.

Multi-response scoring ("You Only Judge Once", arXiv 2604.10966): one row holds a prompt followed by
up to K responses, each closed by a separator token:
`prompt, resp_1, SEP, resp_2, SEP, ..., resp_K, SEP`, with `response_ids` 0 on the prompt (and
padding) and k on the tokens of response k including its SEP. Response k is pooled at its own last
token (its SEP). Attention layout: the row is one causal segment, so response k attends to the
prompt and to responses 1..k-1 before it (the comparative layout of the paper); response 1 therefore
scores exactly as `prompt, resp_1, SEP` alone, and response k as the row truncated after its SEP.
The scores `[B, K]` feed `losses.listwise_softmax` / `losses.plackett_luce` with
`where=aux["response_mask"]`.

Prefix sharing (Wang et al., "Accelerating Direct Preference Optimization with Prefix Sharing",
arXiv 2410.20305): with `shared_prefix=True` the same layout (without separators,
`models.prefix.share_prefix`) isolates the responses instead: response k attends to the prompt
and to itself only, with positions restarting after the prompt, so its reward equals that of
`prompt, resp_k` alone while the prompt is computed once. `score_pairs(..., prefix_length=L)`
scores a pair this way.

Packed rows (`rewardjax.data.packing`, `prefix.PackedRows`): several such examples back to back in
one row, told apart by segment ids, each response pooled at the index the host computed
(`pool_index`, `context_index`); `score_packed` returns rewards `[R, S, K]` (rows, example slots,
responses), equal to those of the unpacked rows. Both prefix-sharing layouts go through the same
pooling (`RewardModel._pool`).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Int

from rewardjax.models.heads import HEADS, RewardOutput, last_token_index, make_head, pool_last
from rewardjax.models.prefix import PackedRows, share_prefix
from rewardjax.models.transformer import Transformer, TransformerConfig

__all__ = [
    "RewardEnsemble",
    "RewardModel",
    "RewardModelConfig",
    "ScoringModel",
    "score_packed",
    "score_pairs",
]


def _freeze(value: Any) -> Any:
    """Lists (e.g. from an ml_collections config) become tuples so the config stays hashable."""
    return tuple(_freeze(v) for v in value) if isinstance(value, list | tuple) else value


@dataclasses.dataclass(frozen=True)
class RewardModelConfig:
    """A backbone and the head on top of it (hashable).

    Attributes:
      backbone: the `TransformerConfig` (see `models.presets`).
      head: a key of `heads.HEADS`: scalar, multi_attribute, ensemble, ordinal, mixture.
      head_kwargs: the head's attributes, e.g. `{"hidden_dim": 256}` or `{"num_members": 4}`; a
        mapping is stored as sorted `(name, value)` pairs.
      max_responses: K, the number of response slots of a multi-response row (used only when
        `response_ids` is passed).
      prefix_length: when set, `score_pairs` scores each pair as one prefix-shared row of this
        length (`prefix.shared_length` of the data; Wang et al., arXiv 2410.20305); None: the
        chosen and rejected rows apart. Parameters are the same either way.
    """

    backbone: TransformerConfig
    head: str = "scalar"
    head_kwargs: Mapping[str, Any] | tuple[tuple[str, Any], ...] = ()
    max_responses: int = 4
    prefix_length: int | None = None

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(
                f"RewardModelConfig.head={self.head!r} is unknown; choose one of {sorted(HEADS)}."
            )
        items = (
            self.head_kwargs.items() if isinstance(self.head_kwargs, Mapping) else self.head_kwargs
        )
        object.__setattr__(self, "head_kwargs", tuple(sorted((k, _freeze(v)) for k, v in items)))
        if self.prefix_length is not None and self.prefix_length < 1:
            raise ValueError(
                f"RewardModelConfig.prefix_length must be None or >= 1, got {self.prefix_length}."
            )
        if self.max_responses < 1:
            raise ValueError(
                f"RewardModelConfig.max_responses must be >= 1, got {self.max_responses}."
            )


@runtime_checkable
class ScoringModel(Protocol):
    """What trainers and evaluators need from a reward: `init` and `apply` over plain param trees.

    `mask`: int [B, T], 0 on padding (segment ids of the backbone); `completion_mask`: int [B, T], 1
    on response tokens (optional for trained heads, required for implicit rewards).
    """

    def init(
        self, rng: jax.Array, tokens: Array, mask: Array, completion_mask: Array | None = None
    ) -> Any: ...

    def apply(
        self, params: Any, tokens: Array, mask: Array, completion_mask: Array | None = None
    ) -> RewardOutput: ...


class RewardModel(nn.Module):
    """Backbone + head: hidden states pooled at the last real token (any padding side), then scored.

    The head's context (for gates and routers) is the hidden state at the last prompt token when
    `completion_mask` (or `response_ids`) tells where the prompt ends, else the pooled features.
    """

    config: RewardModelConfig

    def setup(self):
        self.backbone = Transformer(self.config.backbone)
        self.head = make_head(self.config.head, **dict(self.config.head_kwargs))

    def __call__(
        self,
        tokens: Int[Array, "B T"],
        mask: Int[Array, "B T"],
        completion_mask: Int[Array, "B T"] | None = None,
        response_ids: Int[Array, "B T"] | None = None,
        shared_prefix: bool = False,
        pool_index: Int[Array, "B S K"] | None = None,
        context_index: Int[Array, "B S"] | None = None,
    ) -> RewardOutput:
        """Rewards of a batch.

        Args:
          tokens: token ids, left- or right-padded.
          mask: 0 on padding, nonzero on real tokens (one sequence per row).
          completion_mask: 1 on response tokens; the prompt is `mask & ~completion_mask`.
          response_ids: multi-response layout (module docstring): 0 on prompt and padding, k on
            response k.
          shared_prefix: with `response_ids`, response k attends to the prompt and itself only
            (prefix sharing, module docstring); an empty response is scored at the last prompt
            token, as its unshared row would be.
          pool_index, context_index: packed rows (`prefix.PackedRows`; `mask` their segment
            ids, `response_ids` their branch ids): response k of the example in slot s is pooled
            at `pool_index[:, s, k]`, its head context at `context_index[:, s]`.

        Returns:
          `RewardOutput`: reward `[B]`, or `[B, K]` with `response_ids` (`[E, ...]` for an ensemble
          head); with `response_ids`, `aux["response_mask"] [B, K]` marks the slots actually
          present; with `pool_index`, reward `[B, S, K]` (aux values' batch axis likewise).
        """
        if shared_prefix and response_ids is None:
            raise ValueError("RewardModel: shared_prefix=True needs response_ids (the branches).")
        branch_ids = response_ids if shared_prefix or pool_index is not None else None
        hidden, _ = self.backbone(tokens, segment_ids=mask, branch_ids=branch_ids)
        if pool_index is not None:
            return self._pool(hidden, pool_index, context_index)
        real = mask > 0
        if response_ids is None:
            features = pool_last(hidden, mask)
            prompt = None if completion_mask is None else real & (completion_mask == 0)
            return self.head(features, None if prompt is None else pool_last(hidden, prompt))
        slots = jnp.arange(1, self.config.max_responses + 1)
        in_response = (response_ids[:, None, :] == slots[:, None]) & real[:, None, :]
        last = last_token_index(in_response)  # [B, K]
        prompt = last_token_index(real & (response_ids == 0))  # [B]
        if shared_prefix:
            last = jnp.where(in_response.any(-1), last, prompt[:, None])
        out = self._pool(hidden, last[:, None], prompt[:, None])
        slot_axis = out.reward.ndim - 2  # [*E, B, 1, K]: the one slot
        out = jax.tree.map(lambda x: jnp.squeeze(x, axis=slot_axis), out)
        return RewardOutput(out.reward, {**out.aux, "response_mask": in_response.any(-1)})

    def _pool(
        self, hidden: Array, pool_index: Int[Array, "B S K"], context_index: Int[Array, "B S"]
    ) -> RewardOutput:
        """The head on the hidden states at `pool_index` (features) and `context_index`
        (context): reward `[*E, B, S, K]`, aux values with the same `B, S, K` axes."""
        b, s, k = pool_index.shape
        index = pool_index.reshape(b, s * k)
        features = jnp.take_along_axis(hidden, index[:, :, None], axis=1)
        context_index = jnp.repeat(context_index, k, axis=1)  # slot-major, as `index`
        context = jnp.take_along_axis(hidden, context_index[:, :, None], axis=1)
        out = self.head(features, context)
        axis = out.reward.ndim - 1  # the S * K axis
        split = lambda x: x.reshape(*x.shape[:axis], s, k, *x.shape[axis + 1 :])
        return RewardOutput(split(out.reward), {key: split(v) for key, v in out.aux.items()})


class RewardEnsemble(nn.Module):
    """E full reward models (backbone and head each), vmapped over a leading `ensemble` param axis.

    `apply` returns rewards `[E, ...]` for `transforms.ensemble`; member e equals
    `RewardModel(config).apply(jax.tree.map(lambda p: p[e], params["params"]["members"]), ...)`.
    Coste et al., Reward Model Ensembles Help Mitigate Overoptimization (arXiv 2310.02743).
    """

    config: RewardModelConfig
    num_members: int

    @nn.compact
    def __call__(
        self,
        tokens,
        mask,
        completion_mask=None,
        response_ids=None,
        shared_prefix=False,
        pool_index=None,
        context_index=None,
    ) -> RewardOutput:
        members = nn.vmap(
            RewardModel,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_members,
            metadata_params={nn.PARTITION_NAME: "ensemble"},
        )
        return members(self.config, name="members")(
            tokens, mask, completion_mask, response_ids, shared_prefix, pool_index, context_index
        )


def score_pairs(
    reward_fn: ScoringModel,
    params: Any,
    batch: Mapping[str, Array],
    *,
    prefix_length: int | None = None,
) -> tuple[RewardOutput, RewardOutput]:
    """Scores `chosen_*` and `rejected_*` of a pairwise batch in one forward.

    Uses `{chosen,rejected}_tokens`, `_mask` and `_completion_mask` (when present) of the pairwise
    batch layout; returns `(chosen, rejected)` `RewardOutput`s.

    With `prefix_length=L` (default: the model's `config.prefix_length`; a `RewardModel` or
    `RewardEnsemble` with `max_responses >= 2`, and completion masks in the batch), each pair
    is one prefix-shared row `[prompt | chosen | rejected]` of length L (`prefix.share_prefix`,
    `prefix.shared_length`; Wang et al., arXiv 2410.20305): `B * L` tokens instead of `2 * B * T`,
    equal rewards. Otherwise chosen and rejected are vmapped as two `[B, T]` batches. Heads' aux
    values come back `[..., B, ...]` either way.
    """
    shareable = isinstance(reward_fn, RewardModel | RewardEnsemble)
    shareable = shareable and reward_fn.config.max_responses >= 2
    if prefix_length is None and shareable:
        prefix_length = reward_fn.config.prefix_length
    if prefix_length is not None and shareable and "chosen_completion_mask" in batch:
        names = ("tokens", "mask", "completion_mask")
        stacked = [jnp.stack([batch[f"chosen_{n}"], batch[f"rejected_{n}"]], 1) for n in names]
        rows = share_prefix(*stacked, length=prefix_length)
        out = reward_fn.apply(
            params, rows.tokens, rows.mask, rows.completion_mask, rows.branch_ids, True
        )
        return _branch(out, 0), _branch(out, 1)
    names = ["tokens", "mask"] + (["completion_mask"] if "chosen_completion_mask" in batch else [])
    stacked = [jnp.stack([batch[f"chosen_{n}"], batch[f"rejected_{n}"]]) for n in names]
    out = jax.vmap(lambda *args: reward_fn.apply(params, *args))(*stacked)
    return jax.tree.map(lambda x: x[0], out), jax.tree.map(lambda x: x[1], out)


def score_packed(reward_fn: ScoringModel, params: Any, batch: Mapping[str, Array]) -> RewardOutput:
    """Rewards of every response of a packed batch (`prefix.PackedRows`'s keys): reward
    `[*E, R, S, K]` (rows, example slots, responses); empty slots hold values to be masked by
    the batch's weights. A `RewardModel` or `RewardEnsemble`."""
    rows = PackedRows.of(batch)
    return reward_fn.apply(
        params,
        rows.tokens,
        rows.segment_ids,
        None,
        rows.branch_ids,
        True,
        rows.last_index,
        rows.context_index,
    )


def _branch(out: RewardOutput, k: int) -> RewardOutput:
    """Response k of a multi-response `RewardOutput`: reward `[*E, B, K]` -> `[*E, B]`, and each
    aux value's response axis (the one after the batch axis) dropped the same way."""
    batch_axis = out.reward.ndim - 2
    pick = lambda x: jnp.take(x, k, axis=batch_axis + 1) if x.ndim > batch_axis + 1 else x
    aux = {key: pick(v) for key, v in out.aux.items() if key != "response_mask"}
    return RewardOutput(jnp.take(out.reward, k, axis=-1), aux)
