"""Exact laws of sums of integer reward levels along a Markov chain (the lattice discretisation)."""

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.theory._support import concrete_or_none


def check_levels(rewards, num_levels: int, name: str = "bigram_reward") -> None:
    """Eagerly rejects rewards that are not integer levels in [0, num_levels); no-op under jit."""
    concrete = concrete_or_none(rewards)
    if concrete is None:
        return
    levels = concrete[0]
    if not (np.all(levels == np.round(levels)) and levels.min() >= 0 and levels.max() < num_levels):
        raise ValueError(
            f"{name} must hold integer reward levels in [0, num_levels) = "
            f"[0, {num_levels}) for the exact reward law; got values in "
            f"[{levels.min()}, {levels.max()}]. Map a lattice reward offset + step·k to k first."
        )


def level_sum_laws(transition, levels, *, length, num_levels):
    """Laws of Σ_{s≤t} levels for t = 1..T given y_0, as [T, V, S] with S = T(L - 1) + 1."""
    size = length * (num_levels - 1) + 1
    vocab = transition.shape[-1]
    # m[a, b, l] = p(b | a) 1[level(a, b) = l]
    by_level = transition[..., None] * jax.nn.one_hot(levels, num_levels, dtype=transition.dtype)
    joint = jnp.zeros((vocab, vocab, size), transition.dtype).at[:, :, 0].set(jnp.eye(vocab))

    def forward(f, _):  # f[x, a, s] = P(y_t = a, S_t = s | y_0 = x)
        padded = jnp.pad(f, ((0, 0), (0, 0), (num_levels - 1, 0)))
        shifted = jnp.stack(
            [padded[..., num_levels - 1 - k : num_levels - 1 - k + size] for k in range(num_levels)]
        )
        f = jnp.einsum("lxas,abl->xbs", shifted, by_level)
        return f, jnp.sum(f, axis=1)

    _, laws = jax.lax.scan(forward, joint, None, length=length)
    return laws
