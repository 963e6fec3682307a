"""A critic for PPO: a backbone with a linear value head at every position.

`values = ValueModel(config).apply(params, tokens, segment_ids=mask)` gives `[B, T]` float32,
`values[:, t]` the value of the state after token t (the prefix `tokens[:, :t + 1]`), so the
value of the state in which completion token t is generated is `values[:, t - 1]`. Its backbone
has the policy's (or a reward model's) tree under `transformer`, so either can initialise it.

Paper: Schulman et al., "Proximal Policy Optimization Algorithms" (arXiv 1707.06347); Ouyang et
al., "Training language models to follow instructions with human feedback" (arXiv 2203.02155),
for the critic initialised from the reward model.
"""

import flax.linen as nn
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from rewardjax.models.transformer import Transformer, TransformerConfig

__all__ = ["ValueModel"]


class ValueModel(nn.Module):
    """Backbone + `value_head [D, 1]`; returns float32 values `[B, T]`."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, tokens: Int[Array, "B T"], segment_ids=None) -> Float[Array, "B T"]:
        hidden, _ = Transformer(self.config, name="transformer")(tokens, segment_ids=segment_ids)
        head = nn.Dense(
            1,
            kernel_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed", "rewards")),
            dtype=jnp.float32,
            param_dtype=self.config.storage_dtype,
            name="value_head",
        )
        return head(hidden.astype(jnp.float32))[..., 0]
