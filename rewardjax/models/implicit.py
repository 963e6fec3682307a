"""Implicit rewards of a language model, with the same `init`/`apply` as a trained reward model.

Token convention: `logits[:, t]` predicts `tokens[:, t + 1]`; `completion_mask[:, t] = 1` marks the
response tokens whose log-probabilities count (the first token is never a completion token).

Papers:
  - Direct Preference Optimization: Your Language Model is Secretly a Reward Model
    (arXiv 2305.18290).
  - SimPO: Simple Preference Optimization with a Reference-Free Reward (arXiv 2405.14734).
  - ORPO: Monolithic Preference Optimization without Reference Model (arXiv 2403.07691).
  - Generalist Reward Models: Found Inside Large Language Models (arXiv 2506.23235).
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array

from rewardjax import losses
from rewardjax.models.heads import RewardOutput
from rewardjax.models.transformer import CausalLM, TransformerConfig

__all__ = ["EndogenousReward", "ImplicitReward"]


def _require_completion_mask(name: str, completion_mask: Array | None) -> Array:
    if completion_mask is None:
        raise ValueError(
            f"{name}.apply needs completion_mask (1 on response tokens): an implicit reward is a "
            "sum of log-probabilities over the completion."
        )
    return completion_mask


@dataclasses.dataclass(frozen=True)
class ImplicitReward:
    """The implicit reward of a policy trained by a preference loss (`losses.spec(loss)`).

    DPO and the losses against a reference (Rafailov et al., arXiv 2305.18290):
      r(x, y) = β · Σ_{t ∈ y} [log π(y_t | x, y_<t) - log π_ref(y_t | x, y_<t)];
    SimPO (arXiv 2405.14734): r = β · log π(y|x) / |y|; ORPO (arXiv 2403.07691): the log odds of
    the mean token probability.

    Params are `{"policy": ...}`, plus `"reference"` when the loss has one (two `CausalLM`
    trees; `init` starts both from the same weights). No gradient flows into the reference.
    """

    config: TransformerConfig
    beta: float = 0.1
    loss: str = "dpo"

    @property
    def uses_reference(self) -> bool:
        return losses.spec(self.loss).reference

    def init(self, rng: jax.Array, tokens, mask, completion_mask=None) -> dict[str, Any]:
        params = CausalLM(self.config).init(rng, tokens, segment_ids=mask)
        return (
            {"policy": params, "reference": params} if self.uses_reference else {"policy": params}
        )

    def apply(self, params, tokens, mask, completion_mask=None) -> RewardOutput:
        """reward `[B]`; aux `policy_log_prob` (and `reference_log_prob`) `[B]`, completion sums."""
        in_completion = _require_completion_mask("ImplicitReward", completion_mask)[:, 1:] > 0
        model = CausalLM(self.config)

        def sequence_log_prob(p):
            logits, _ = model.apply(p, tokens, segment_ids=mask)
            return losses.sequence_logprobs(logits[:, :-1], tokens[:, 1:], where=in_completion)

        aux = {"policy_log_prob": sequence_log_prob(params["policy"])}
        if self.uses_reference:
            reference = jax.lax.stop_gradient(sequence_log_prob(params["reference"]))
            aux["reference_log_prob"] = reference
        lengths = jnp.maximum(jnp.sum(in_completion, axis=-1), 1).astype(jnp.float32)
        reward = losses.spec(self.loss).implicit_reward(
            aux["policy_log_prob"], aux.get("reference_log_prob"), lengths, beta=self.beta
        )
        return RewardOutput(reward, aux)


@dataclasses.dataclass(frozen=True)
class EndogenousReward:
    """The endogenous reward of a language model: its logits read as a soft Q-function.

    With Q(s_t, ·) the logits before token y_t and V(s) = α log Σ_a exp(Q(s, a)/α), inverse soft
    Bellman gives per-token rewards r_t = Q(s_t, y_t) - V(s_{t+1}), with V = 0 after the last
    completion token (terminal). The sequence reward telescopes to
    Σ_t r_t = α Σ_t log π_α(y_t | s_t) + V(s_1), where π_α = softmax(Q/α) and s_1 is the prompt;
    V(s_1) is shared by all responses to one prompt, so preferences follow α · log π_α(y | x).
    Li et al., Generalist Reward Models: Found Inside Large Language Models, arXiv 2506.23235.
    """

    config: TransformerConfig
    alpha: float = 1.0

    def init(self, rng: jax.Array, tokens, mask, completion_mask=None) -> Any:
        return CausalLM(self.config).init(rng, tokens, segment_ids=mask)

    def apply(self, params, tokens, mask, completion_mask=None) -> RewardOutput:
        """reward `[B]`; aux `token_rewards [B, T]` (0 off the completion)."""
        in_completion = _require_completion_mask("EndogenousReward", completion_mask) > 0
        logits, _ = CausalLM(self.config).apply(params, tokens, segment_ids=mask)
        q = jnp.take_along_axis(logits[:, :-1], tokens[:, 1:, None], axis=-1)[..., 0]
        value = self.alpha * jax.nn.logsumexp(logits / self.alpha, axis=-1)  # V(s) at each position
        # r_t uses V of the state after y_t, i.e. the logits at position t, unless y_t is the last.
        next_in_completion = jnp.pad(in_completion[:, 1:], ((0, 0), (0, 1)))
        next_value = jnp.where(next_in_completion, value, 0.0)
        token_rewards = jnp.where(in_completion, jnp.pad(q, ((0, 0), (1, 0))) - next_value, 0.0)
        return RewardOutput(jnp.sum(token_rewards, axis=-1), {"token_rewards": token_rewards})
