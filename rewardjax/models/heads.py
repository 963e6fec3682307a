"""Reward heads: pooled backbone features [..., D] -> rewards.

A head never sees tokens: the reward model pools the backbone's hidden states (at the last real
token of each sequence, or of each response in a multi-response layout) and hands the head `features
[..., D]` plus optional `context [..., C]` (by default the hidden state at the last prompt token),
which gating networks and routers condition on. Every head returns a `RewardOutput(reward, aux)`:
`reward` is the scalar reward the preference losses consume (shape `[...]`, or `[E, ...]` for an
ensemble) and `aux` holds the head's extra outputs (per-attribute rewards, gate weights, bin
probabilities, ...). Heads compute in float32 whatever the backbone's compute dtype.

Parameters carry logical axis names: `embed` (the backbone width D), `head_mlp` (hidden width of an
MLP head), `rewards` (K attributes / bins / M components) and `ensemble` (E members).

Papers:
  - BaseReward: A Strong Baseline for Multimodal Reward Model (arXiv 2509.16127): two-layer SiLU MLP
    head.
  - Interpretable Preferences via Multi-Objective Reward Modeling and Mixture-of-Experts (ArmoRM,
    arXiv 2406.12845): K attribute rewards combined by a softmax gate on the prompt.
  - Arithmetic Control of LLMs for Diverse User Preferences: Directional Preference Alignment with
    Multi-Objective Rewards (arXiv 2402.18571): a fixed direction over attribute rewards.
  - Reward Model Ensembles Help Mitigate Overoptimization (arXiv 2310.02743); Improving
    Reinforcement Learning from Human Feedback with Efficient Reward Model Ensemble (arXiv
    2401.16635): E heads sharing one backbone.
  - Learning Ordinal Probabilistic Reward from Preferences (OPRM, arXiv 2602.12660): a categorical
    over ordinal rating bins; the reward is its mean.
  - MiCRo: Mixture Modeling and Context-aware Routing for Personalized Preference Learning
    (arXiv 2505.24846); PAL: Pluralistic Alignment Framework for Learning from Heterogeneous
    Preferences (arXiv 2406.08469): M reward components and a context router.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

__all__ = [
    "HEADS",
    "EnsembleHead",
    "MixtureHead",
    "MultiAttributeHead",
    "OrdinalHead",
    "RewardOutput",
    "ScalarHead",
    "last_token_index",
    "make_head",
    "pool_last",
]

_ACTIVATIONS = {"silu": jax.nn.silu, "gelu": jax.nn.gelu, "relu": jax.nn.relu, "tanh": jnp.tanh}


class RewardOutput(NamedTuple):
    """What every head and reward model returns.

    Attributes:
      reward: float32 `[...]` scalar rewards (`[E, ...]` for an ensemble).
      aux: head-specific extras, e.g. `attributes [..., K]`, `weights [..., K]`, `probs [..., K]`.
    """

    reward: Float[Array, "..."]
    aux: dict[str, Array]


def last_token_index(mask: Int[Array, "*batch T"]) -> Int[Array, "*batch"]:
    """Index of the last position where `mask > 0`, whatever the padding side.

    `mask` is a 0/1 attention mask or segment ids (0 = padding). A row without any real token maps
    to `T - 1`; callers mask such rows out (e.g. a missing response in a multi-response layout).
    """
    real = mask > 0
    return real.shape[-1] - 1 - jnp.argmax(real[..., ::-1], axis=-1)


def pool_last(
    hidden: Float[Array, "*batch T D"], mask: Int[Array, "*batch T"]
) -> Float[Array, "*batch D"]:
    """Hidden state at the last real token of each row: `hidden[..., last_token_index(mask), :]`."""
    index = last_token_index(mask)
    return jnp.take_along_axis(hidden, index[..., None, None], axis=-2)[..., 0, :]


def _dense(features: int, names: tuple[str, str], name: str) -> nn.Dense:
    """float32 Dense layer whose kernel and bias carry logical axis names."""
    return nn.Dense(
        features,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), names[1:]),
        name=name,
    )


def _activation(name: str):
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation={name!r} is unknown; choose one of {sorted(_ACTIVATIONS)}.")
    return _ACTIVATIONS[name]


class _Router(nn.Module):
    """Softmax gate over `num_outputs` choices from a context vector (linear, or one hidden
    layer)."""

    num_outputs: int
    hidden_dim: int | None = None
    activation: str = "silu"

    @nn.compact
    def __call__(self, context: Float[Array, "... C"]) -> Float[Array, "... K"]:
        x = context.astype(jnp.float32)
        if self.hidden_dim:
            x = _activation(self.activation)(
                _dense(self.hidden_dim, ("embed", "head_mlp"), "hidden")(x)
            )
        in_axis = "head_mlp" if self.hidden_dim else "embed"
        return _dense(self.num_outputs, (in_axis, "rewards"), "logits")(x)


class ScalarHead(nn.Module):
    """One scalar reward per sequence: `r = w·h + b`, or the two-layer MLP `r = w₂·act(W₁h + b₁) +
    b₂`.

    Attributes:
      hidden_dim: None for the linear head; the MLP's hidden width otherwise (BaseReward,
        arXiv 2509.16127, uses a two-layer SiLU MLP).
      activation: MLP non-linearity, one of silu, gelu, relu, tanh.
    """

    hidden_dim: int | None = None
    activation: str = "silu"

    @nn.compact
    def __call__(
        self, features: Float[Array, "... D"], context: Float[Array, "... C"] | None = None
    ) -> RewardOutput:
        del context  # a scalar head does not condition on the prompt separately
        x = features.astype(jnp.float32)
        if self.hidden_dim:
            x = _activation(self.activation)(
                _dense(self.hidden_dim, ("embed", "head_mlp"), "hidden")(x)
            )
        in_axis = "head_mlp" if self.hidden_dim else "embed"
        reward = _dense(1, (in_axis, "rewards"), "out")(x)[..., 0]
        return RewardOutput(reward, {})


class MultiAttributeHead(nn.Module):
    """K attribute rewards combined into one: `r = Σ_k w_k(x) r_k`.

    `gating="fixed"`: `w` is the constant `weights` (a direction over attributes, as in Directional
    Preference Alignment, arXiv 2402.18571; default uniform 1/K). `gating="learned"`: `w =
    softmax(g(x))` from a gating network on the context (the prompt's last hidden state), as in
    ArmoRM (arXiv 2406.12845). The attribute rewards `r_k` are regressed on ratings (e.g. HelpSteer
    attributes) through `aux["attributes"]`.

    Returns `RewardOutput(reward [...], {"attributes": [..., K], "weights": [..., K]})`.
    """

    num_attributes: int
    gating: str = "learned"
    weights: Sequence[float] | None = None
    gate_hidden_dim: int | None = None

    @nn.compact
    def __call__(
        self, features: Float[Array, "... D"], context: Float[Array, "... C"] | None = None
    ) -> RewardOutput:
        attributes = _dense(self.num_attributes, ("embed", "rewards"), "attributes")(
            features.astype(jnp.float32)
        )
        if self.gating == "fixed":
            if self.weights is None:
                weights = jnp.full((self.num_attributes,), 1.0 / self.num_attributes)
            elif len(self.weights) != self.num_attributes:
                raise ValueError(
                    f"weights has {len(self.weights)} entries but num_attributes="
                    f"{self.num_attributes}; give one weight per attribute."
                )
            else:
                weights = jnp.asarray(self.weights, jnp.float32)
            weights = jnp.broadcast_to(weights, attributes.shape)
        elif self.gating == "learned":
            gate_input = features if context is None else context
            weights = jax.nn.softmax(
                _Router(self.num_attributes, self.gate_hidden_dim, name="gate")(gate_input)
            )
        else:
            raise ValueError(f"gating={self.gating!r} is unknown; choose 'fixed' or 'learned'.")
        reward = jnp.sum(weights * attributes, axis=-1)
        return RewardOutput(reward, {"attributes": attributes, "weights": weights})


class EnsembleHead(nn.Module):
    """E independent scalar heads on one shared backbone: `r_e = head_e(h)`, stacked to `[E, ...]`.

    The members are one `ScalarHead` vmapped over a leading parameter axis (logical name
    `ensemble`), so the E heads cost one batched matmul. Reduce the `[E, ...]` rewards with
    `transforms.ensemble` (mean, worst case, uncertainty-weighted); Coste et al. (arXiv 2310.02743),
    Zhang et al. (arXiv 2401.16635).
    """

    num_members: int
    hidden_dim: int | None = None
    activation: str = "silu"

    @nn.compact
    def __call__(
        self, features: Float[Array, "... D"], context: Float[Array, "... C"] | None = None
    ) -> RewardOutput:
        members = nn.vmap(
            ScalarHead,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=0,
            axis_size=self.num_members,
            metadata_params={nn.PARTITION_NAME: "ensemble"},
        )
        return members(self.hidden_dim, self.activation, name="members")(features, context)


class OrdinalHead(nn.Module):
    """Categorical over K ordinal rating bins; the reward is its mean: `r = Σ_k p_k v_k`.

    `p = softmax(W h + b)` over bins with values `v` (default 1..K, the nine-level scale of OPRM,
    arXiv 2602.12660). Returns `RewardOutput(reward [...], {"logits", "log_probs", "probs",
    "bin_values": [..., K]})` so a distributional loss (`losses.categorical_rating`) can use the
    whole distribution.
    """

    num_bins: int = 9
    bin_values: Sequence[float] | None = None

    @nn.compact
    def __call__(
        self, features: Float[Array, "... D"], context: Float[Array, "... C"] | None = None
    ) -> RewardOutput:
        del context
        if self.bin_values is None:
            values = jnp.arange(1, self.num_bins + 1, dtype=jnp.float32)
        elif len(self.bin_values) != self.num_bins:
            raise ValueError(
                f"bin_values has {len(self.bin_values)} entries but num_bins={self.num_bins}."
            )
        else:
            values = jnp.asarray(self.bin_values, jnp.float32)
        logits = _dense(self.num_bins, ("embed", "rewards"), "logits")(features.astype(jnp.float32))
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        probs = jnp.exp(log_probs)
        reward = jnp.sum(probs * values, axis=-1)
        aux = {"logits": logits, "log_probs": log_probs, "probs": probs}
        return RewardOutput(reward, dict(aux, bin_values=jnp.broadcast_to(values, probs.shape)))


class MixtureHead(nn.Module):
    """M reward components and a context router: `r = Σ_m π_m(c) r_m(h)`, `π = softmax(router(c))`.

    Pluralistic preferences (MiCRo, arXiv 2505.24846; PAL, arXiv 2406.08469): each component is one
    latent preference type, and the router reads the context `c` (the prompt's last hidden state by
    default, or a user embedding) to weight them. `aux` keeps `components [..., M]` and
    `router_log_probs [..., M]`, so the mixture Bradley–Terry likelihood
    `log Σ_m π_m σ(r_m(y⁺) - r_m(y⁻))` can be formed from them.
    """

    num_components: int
    router_hidden_dim: int | None = None

    @nn.compact
    def __call__(
        self, features: Float[Array, "... D"], context: Float[Array, "... C"] | None = None
    ) -> RewardOutput:
        components = _dense(self.num_components, ("embed", "rewards"), "components")(
            features.astype(jnp.float32)
        )
        router_input = features if context is None else context
        router_log_probs = jax.nn.log_softmax(
            _Router(self.num_components, self.router_hidden_dim, name="router")(router_input)
        )
        reward = jnp.sum(jnp.exp(router_log_probs) * components, axis=-1)
        return RewardOutput(
            reward, {"components": components, "router_log_probs": router_log_probs}
        )


HEADS: dict[str, type[nn.Module]] = {
    "scalar": ScalarHead,
    "multi_attribute": MultiAttributeHead,
    "ensemble": EnsembleHead,
    "ordinal": OrdinalHead,
    "mixture": MixtureHead,
}


def make_head(name: str, **kwargs: Any) -> nn.Module:
    """The head registered under `name` (see `HEADS`), built with `kwargs`."""
    if name not in HEADS:
        raise ValueError(f"head={name!r} is unknown; choose one of {sorted(HEADS)}.")
    return HEADS[name](**kwargs)
