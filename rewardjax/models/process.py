"""Process reward models: a score for every prefix in one forward pass, gathered at step ends.

A process reward model (PRM) scores each step of a solution. Here every model scores *every
position* t of a row — `positions[b, t]` is the logit for the prefix `tokens[b, :t + 1]` — and a
step's score is the score at its last token (its step end). One forward pass therefore scores all
steps of a solution, and all prefixes a search may cut it at.

Two PRMs share that interface (`init(rng, tokens, mask, completion_mask=None)`,
`apply(params, tokens, mask, completion_mask=None) -> positions [B, T]` float32):

- `ProcessRewardModel(backbone)`: the transformer with a linear head `process_head [D, 1]` on its
  final hidden states (a discriminative PRM, trained with `losses.step_cross_entropy` on step
  labels: PRM800K, Math-Shepherd, or the synthetic task's exact / Monte-Carlo values). Its
  backbone's tree sits under `transformer`, as in `CausalLM`, so Hugging Face weights read by
  `models.load_hf` plug in with `with_lm_backbone`.
- `ImplicitPRM(backbone, beta)`: a causal LM trained with outcome labels only
  (`losses.implicit_prm_outcome_loss`); its prefix score is the implicit Q-value
  q_t = β Σ_{s ≤ t, s in the response} log π(y_s | y_<s) / π_ref(y_s | y_<s) (0 on the prompt).

Step ends come from any of four places: given indices `[B, S]`; the positions of a separator
token (`separator_step_ends`); per-token step ids (`step_ids_step_ends`, -1 outside a step, the
convention of `losses.implicit_prm_step_rewards`); or fixed-size steps of k tokens after the
prompt (`fixed_step_ends`, the synthetic task's steps).

Scoring prefixes (the interface for search), jittable with `model` static:

    scores = score_prefixes(model, params, tokens, mask, step_ends=ends, step_mask=valid)
    scores.last       # Float[B]: logit of the last complete step (last real token if no step)
    scores.steps      # Float[B, S]: logit at each step end (0 where step_mask is False)
    scores.step_mask  # Bool[B, S]: steps present in the row
    scores.positions  # Float[B, T]: the logit of every prefix

`jax.nn.sigmoid(scores.last)` is the PRM's value in [0, 1] (for the synthetic task, the prefix's
value normalised to the task's reward range; for the implicit PRM, the modelled probability of a
good outcome).

Papers:
- Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050 (PRM800K; scores at step
  ends, one forward pass per solution).
- Wang et al. 2023, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human
  Annotations", arXiv 2312.08935.
- Yuan et al. 2024, "Free Process Rewards without Process Labels", arXiv 2412.01981 (implicit PRM).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from rewardjax.models.heads import last_token_index
from rewardjax.models.transformer import CausalLM, Transformer, TransformerConfig

__all__ = [
    "ImplicitPRM",
    "PrefixScores",
    "ProcessRewardModel",
    "fixed_step_ends",
    "gather_steps",
    "last_step",
    "score_prefixes",
    "separator_step_ends",
    "step_ids_step_ends",
    "with_lm_backbone",
]


class ProcessRewardModel(nn.Module):
    """Backbone + linear `process_head [D, 1]` at every position: float32 logits `[B, T]`.

    `positions[b, t]` scores the prefix `tokens[b, :t + 1]` (causal attention: it sees nothing
    after t). `mask` holds segment ids (0 on padding; any padding side); `completion_mask` is
    accepted for the shared interface and not read.
    """

    config: TransformerConfig

    @nn.compact
    def __call__(
        self,
        tokens: Int[Array, "B T"],
        mask: Int[Array, "B T"],
        completion_mask: Int[Array, "B T"] | None = None,
    ) -> Float[Array, "B T"]:
        del completion_mask
        hidden, _ = Transformer(self.config, name="transformer")(tokens, segment_ids=mask)
        head = nn.Dense(
            1,
            dtype=jnp.float32,
            param_dtype=jnp.float32,
            kernel_init=nn.with_logical_partitioning(
                nn.initializers.zeros_init(), ("embed", "rewards")
            ),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ("rewards",)),
            name="process_head",
        )
        return head(hidden.astype(jnp.float32))[..., 0]


def with_lm_backbone(params: Any, lm_params: Any) -> dict[str, Any]:
    """`ProcessRewardModel` params whose backbone is a causal LM's (`CausalLM` params, e.g. from
    `models.load_hf(folder)[1]` or an SFT run); the head keeps its values from `params`.

    Raises ValueError naming the missing key when `lm_params` holds no `transformer` tree.
    """
    lm = lm_params.get("params", lm_params)
    if "transformer" not in lm:
        raise ValueError(
            f"lm_params has no 'transformer' tree (keys: {sorted(lm)}); pass CausalLM params, "
            "e.g. models.load_hf(folder)[1]."
        )
    inner = dict(params["params"])
    inner["transformer"] = lm["transformer"]
    return {**params, "params": inner}


def _token_logps(model: CausalLM, params, tokens, mask) -> Float[Array, "B T"]:
    """log π(tokens[:, t] | tokens[:, :t]) at position t (0 at t = 0), float32."""
    logits, _ = model.apply(params, tokens, segment_ids=mask)
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    taken = jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]
    return jnp.pad(taken, ((0, 0), (1, 0)))


@dataclasses.dataclass(frozen=True)
class ImplicitPRM:
    """The implicit PRM of a causal LM against a frozen reference (Yuan et al., arXiv 2412.01981).

    q_t = β Σ_{s ≤ t, completion_mask_s = 1} [log π(y_s | y_<s) - log π_ref(y_s | y_<s)]

    Params are `{"policy": CausalLM params, "reference": CausalLM params}` (`init` starts both
    from the same weights; no gradient flows into the reference). `apply` returns q `[B, T]`;
    the step reward of step k is q at its end minus q at the previous step's end.
    """

    config: TransformerConfig
    beta: float = 0.05

    def init(self, rng: jax.Array, tokens, mask, completion_mask=None) -> dict[str, Any]:
        params = CausalLM(self.config).init(rng, tokens, segment_ids=mask)
        return {"policy": params, "reference": params}

    def token_logps(self, params, tokens, mask) -> tuple[Float[Array, "B T"], Float[Array, "B T"]]:
        """(policy, reference) log-probs of each token given the ones before it, `[B, T]` each
        (position 0: 0); the reference's under `stop_gradient`."""
        model = CausalLM(self.config)
        policy = _token_logps(model, params["policy"], tokens, mask)
        reference = jax.lax.stop_gradient(_token_logps(model, params["reference"], tokens, mask))
        return policy, reference

    def apply(self, params, tokens, mask, completion_mask=None) -> Float[Array, "B T"]:
        if completion_mask is None:
            raise ValueError(
                "ImplicitPRM.apply needs completion_mask (nonzero on response tokens): its "
                "prefix scores sum log-ratios over the response."
            )
        policy, reference = self.token_logps(params, tokens, mask)
        inside = (completion_mask > 0) & (mask > 0)
        ratios = jnp.where(inside, policy - reference, 0.0)
        return self.beta * jnp.cumsum(ratios, axis=-1)


# ----------------------------------------------------------------------------- step ends


def separator_step_ends(
    tokens: Int[Array, "B T"], mask: Int[Array, "B T"], *, separator: int, num_steps: int
) -> tuple[Int[Array, "B S"], Bool[Array, "B S"]]:
    """Positions of the first `num_steps` separator tokens of each row (the step ends).

    end[b, s] = the t at which (tokens[b, t] = separator, mask[b, t] > 0) occurs for the
    (s + 1)-th time; valid[b, s] = the row has at least s + 1 separators (else end = 0).
    """
    hit = (tokens == separator) & (mask > 0)
    count = jnp.cumsum(hit, axis=-1)  # [B, T]
    s = jnp.arange(1, num_steps + 1)
    at = hit[:, None, :] & (count[:, None, :] == s[None, :, None])  # [B, S, T]
    valid = at.any(-1)
    return jnp.where(valid, jnp.argmax(at, axis=-1), 0).astype(jnp.int32), valid


def step_ids_step_ends(
    step_ids: Int[Array, "B T"], *, num_steps: int
) -> tuple[Int[Array, "B S"], Bool[Array, "B S"]]:
    """The last position of each step: end[b, s] = max {t : step_ids[b, t] = s}.

    `step_ids` in [0, S) on the tokens of a step, anything else (e.g. -1) outside any step (the
    convention of `losses.implicit_prm_step_rewards`); valid[b, s] = step s has a token.
    """
    member = step_ids[:, None, :] == jnp.arange(num_steps)[None, :, None]  # [B, S, T]
    valid = member.any(-1)
    return jnp.where(valid, last_token_index(member), 0).astype(jnp.int32), valid


def fixed_step_ends(
    prompt_length: int | Int[Array, " B"],
    mask: Int[Array, "B T"],
    *,
    step_size: int,
    num_steps: int,
) -> tuple[Int[Array, "B S"], Bool[Array, "B S"]]:
    """Steps of `step_size` tokens after a right-padded prompt of `prompt_length` tokens.

    end[b, s] = P_b - 1 + k (s + 1); valid[b, s] = that position holds a real token (so a prefix
    cut inside step s counts steps 0..s-1 only: the last *complete* step).
    """
    p = jnp.asarray(prompt_length, jnp.int32).reshape(-1, 1)
    ends = p - 1 + step_size * (jnp.arange(num_steps, dtype=jnp.int32)[None, :] + 1)
    ends = jnp.broadcast_to(ends, (mask.shape[0], num_steps))
    inside = ends < mask.shape[1]
    real = jnp.take_along_axis(mask > 0, jnp.clip(ends, 0, mask.shape[1] - 1), axis=-1)
    return jnp.where(inside, ends, 0), inside & real


def gather_steps(
    positions: Float[Array, "B T"], step_ends: Int[Array, "B S"], step_mask: Bool[Array, "B S"]
) -> Float[Array, "B S"]:
    """scores[b, s] = positions[b, step_ends[b, s]] where step_mask, else 0."""
    ends = jnp.clip(step_ends, 0, positions.shape[-1] - 1)
    return jnp.where(step_mask, jnp.take_along_axis(positions, ends, axis=-1), 0.0)


def last_step(
    step_scores: Float[Array, "B S"], step_mask: Bool[Array, "B S"]
) -> Float[Array, " B"]:
    """The score of the last step in `step_mask` (0 for a row without steps)."""
    index = last_token_index(step_mask)
    return jnp.where(
        step_mask.any(-1), jnp.take_along_axis(step_scores, index[:, None], axis=-1)[:, 0], 0.0
    )


class PrefixScores(NamedTuple):
    """What `score_prefixes` returns (logits; `jax.nn.sigmoid` gives values in [0, 1])."""

    last: Float[Array, " B"]  # the last complete step (last real token when no step is marked)
    steps: Float[Array, "B S"]  # each step end, 0 where step_mask is False
    step_mask: Bool[Array, "B S"]
    positions: Float[Array, "B T"]  # every prefix


def score_prefixes(
    model: Any,
    params: Any,
    tokens: Int[Array, "B T"],
    mask: Int[Array, "B T"],
    completion_mask: Int[Array, "B T"] | None = None,
    *,
    step_ends: Int[Array, "B S"] | None = None,
    step_mask: Bool[Array, "B S"] | None = None,
    separator: int | None = None,
    num_steps: int | None = None,
) -> PrefixScores:
    """Scores the prefixes in `tokens` with a trained PRM, in one forward pass.

    positions = model.apply(params, tokens, mask, completion_mask)   [B, T]
    steps[b, s] = positions[b, end[b, s]],   last[b] = steps[b, last s with step_mask]

    Step ends are `step_ends` (with `step_mask`, default all True), or the positions of the
    `separator` token (the first `num_steps`); with neither, the row's last real token is its only
    step (S = 1). Jit it with `model` (and `separator`, `num_steps`) static, e.g.
    `jax.jit(score_prefixes, static_argnums=0, static_argnames=("separator", "num_steps"))`.

    Args:
      model: a `ProcessRewardModel` or an `ImplicitPRM` (the latter needs `completion_mask`).
      params: its parameters.
      tokens: int32 `[B, T]`, any padding side.
      mask: segment ids `[B, T]`, 0 on padding.
      completion_mask: nonzero on response tokens `[B, T]`.
      step_ends: step-end positions `[B, S]`.
      step_mask: which of `step_ends` are real (complete) steps `[B, S]`.
      separator: the step-separator token id (when `step_ends` is None).
      num_steps: S, how many separators to look for (required with `separator`).

    Returns:
      `PrefixScores(last [B], steps [B, S], step_mask [B, S], positions [B, T])`, float32 logits.

    Reference: Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050.
    """
    positions = model.apply(params, tokens, mask, completion_mask)
    if step_ends is None and separator is not None:
        if num_steps is None:
            raise ValueError("score_prefixes(separator=...) needs num_steps (the S to look for).")
        step_ends, step_mask = separator_step_ends(
            tokens, mask, separator=separator, num_steps=num_steps
        )
    elif step_ends is None:
        step_ends = last_token_index(mask)[:, None]
        step_mask = (mask > 0).any(-1, keepdims=True)
    if step_mask is None:
        step_mask = jnp.ones(step_ends.shape, bool)
    steps = gather_steps(positions, step_ends, step_mask)
    return PrefixScores(last_step(steps, step_mask), steps, step_mask, positions)
