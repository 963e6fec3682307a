"""Transformer building blocks: RMSNorm, rotary embeddings, attention, gated MLP.

Papers:
- Root Mean Square Layer Normalization (arXiv:1910.07467).
- RoFormer: Enhanced Transformer with Rotary Position Embedding (arXiv:2104.09864).
- Extending Context Window of Large Language Models via Positional Interpolation (arXiv:2306.15595),
  the "linear" rope scaling; The Llama 3 Herd of Models (arXiv:2407.21783), the "llama3" scaling.
- GQA: Training Generalized Multi-Query Transformer Models from Multi-Head Checkpoints
  (arXiv:2305.13245).
- GLU Variants Improve Transformer (arXiv:2002.05202), SwiGLU and GeGLU.

Layouts follow Hugging Face Llama so that checkpoints map with transposes only: rotary embeddings
rotate the two halves of each head (``rotate_half``), not interleaved pairs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

__all__ = [
    "Attention",
    "GatedMLP",
    "RMSNorm",
    "RopeScaling",
    "apply_rope",
    "rope_inverse_frequencies",
    "rope_sin_cos",
]

_MASK_VALUE = -1e30  # large finite negative: a fully masked (padding) row stays finite


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Rotary-embedding frequency scaling.

    kind "linear": every inverse frequency is divided by ``factor`` (positional interpolation).
    kind "llama3": wavelengths longer than ``original_max_position / low_freq_factor`` are divided
    by ``factor``, those shorter than ``original_max_position / high_freq_factor`` are kept, and
    the band between is interpolated smoothly (Llama 3.1).
    """

    kind: str
    factor: float
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192

    def __post_init__(self):
        if self.kind not in ("linear", "llama3"):
            raise ValueError(
                f"RopeScaling.kind must be 'linear' or 'llama3', got {self.kind!r}; "
                "other scalings (dynamic, yarn) are not supported."
            )
        if self.factor <= 0:
            raise ValueError(f"RopeScaling.factor must be > 0, got {self.factor}.")


def rope_inverse_frequencies(
    head_dim: int, theta: float, scaling: RopeScaling | None = None
) -> Float[Array, " D2"]:
    """Inverse frequencies ``theta ** (-2i / head_dim)``, i < head_dim / 2, after ``scaling``."""
    inv = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    if scaling is None:
        return inv
    if scaling.kind == "linear":
        return inv / scaling.factor
    low_wavelen = scaling.original_max_position / scaling.low_freq_factor
    high_wavelen = scaling.original_max_position / scaling.high_freq_factor
    wavelen = 2 * math.pi / inv
    scaled = jnp.where(wavelen > low_wavelen, inv / scaling.factor, inv)
    smooth = (scaling.original_max_position / wavelen - scaling.low_freq_factor) / (
        scaling.high_freq_factor - scaling.low_freq_factor
    )
    smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return jnp.where(medium, smoothed, scaled)


def rope_sin_cos(
    positions: Int[Array, "B T"], inv_freq: Float[Array, " D2"]
) -> tuple[Float[Array, "B T D2"], Float[Array, "B T D2"]]:
    """Float32 sin and cos of ``positions * inv_freq``."""
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    return jnp.sin(angles), jnp.cos(angles)


def apply_rope(
    x: Float[Array, "B T H Dh"], sin: Float[Array, "B T D2"], cos: Float[Array, "B T D2"]
) -> Float[Array, "B T H Dh"]:
    """Rotate each head's halves: ``x * cos + rotate_half(x) * sin`` (computed in float32)."""
    x32 = x.astype(jnp.float32)
    x1, x2 = jnp.split(x32, 2, axis=-1)
    sin, cos = sin[:, :, None, :], cos[:, :, None, :]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def _init(names: tuple[str, ...], std: float):
    return nn.with_logical_partitioning(nn.initializers.normal(stddev=std), names)


class RMSNorm(nn.Module):
    """``y = x / sqrt(mean(x^2) + eps) * w`` in float32; Gemma stores ``w - 1`` (``plus_one``)."""

    eps: float = 1e-6
    plus_one: bool = False
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Float[Array, "... D"]) -> Float[Array, "... D"]:
        init = nn.initializers.zeros if self.plus_one else nn.initializers.ones
        scale = self.param(
            "scale", nn.with_logical_partitioning(init, ("norm",)), (x.shape[-1],), self.param_dtype
        )
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        w = scale.astype(jnp.float32)
        return (y * (1.0 + w if self.plus_one else w)).astype(self.dtype)


def _attend(
    q: Float[Array, "B T H Dh"],
    k: Float[Array, "B S K Dh"],
    v: Float[Array, "B S K Dh"],
    mask: Bool[Array, "B T S"],
) -> Float[Array, "B T H Dh"]:
    """``softmax(q k^T / sqrt(Dh) + mask) v``, query head ``h`` reading key/value head
    ``h // (H / K)``; logits and softmax in float32.

    Keys and values are repeated to ``H`` heads and logits laid out ``[B, H, T, S]``: on CPU the
    backward pass of this layout is faster than that of a grouped ``[B, K, H/K, T, S]`` einsum.
    """
    groups = q.shape[2] // k.shape[2]
    k, v = jnp.repeat(k, groups, axis=2), jnp.repeat(v, groups, axis=2)
    logits = jnp.einsum("bthd,bshd->bhts", q, k, preferred_element_type=jnp.float32)
    logits = jnp.where(mask[:, None], logits / math.sqrt(q.shape[-1]), _MASK_VALUE)
    # Softmax normalised after the value product, on [B, T, H, Dh] instead of [B, H, T, S]: one
    # pass less over the largest tensor (forward and backward). The max is a constant shift.
    weights = jnp.exp(logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True)))
    total = jnp.sum(weights, axis=-1).transpose(0, 2, 1)[..., None]  # [B, T, H, 1]
    out = jnp.einsum("bhts,bshd->bthd", weights.astype(q.dtype), v)
    return (out / total).astype(q.dtype)


def _attend_fused(
    q: Float[Array, "B T H Dh"],
    k: Float[Array, "B S K Dh"],
    v: Float[Array, "B S K Dh"],
    mask: Bool[Array, "B T S"],
) -> Float[Array, "B T H Dh"]:
    """``_attend`` through ``jax.nn.dot_product_attention``, which picks a fused kernel where
    the platform has one (cuDNN flash attention on GPU, XLA's on TPU) and never materialises the
    [B, H, T, S] logits there; on CPU it is XLA's plain composition."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask[:, None]).astype(q.dtype)


def _attend_cached(
    q: Float[Array, "B T H Dh"],
    k: Float[Array, "B K Dh S"],
    v: Float[Array, "B K S Dh"],
    mask: Bool[Array, "B T S"],
) -> Float[Array, "B T H Dh"]:
    """``_attend`` against a KV cache, query heads grouped per key/value head (no repeated keys
    and values). One query token (a decoding step) is a broadcast product and a sum: on CPU that
    is one fused loop, where a batched matmul of [H/K, Dh] x [Dh, S] blocks costs more per call."""
    b, t, h, d = q.shape
    q = q.reshape(b, t, k.shape[1], h // k.shape[1], d).astype(jnp.float32)
    if t == 1:
        logits = jnp.sum(q[:, 0, :, :, :, None] * k[:, :, None], axis=-2)[:, :, :, None]
    else:
        logits = jnp.einsum("btkgd,bkds->bkgts", q, k, preferred_element_type=jnp.float32)
    logits = jnp.where(mask[:, None, None], logits / math.sqrt(d), _MASK_VALUE)
    probs = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
    if t == 1:
        out = jnp.sum(probs[:, :, :, 0, :, None] * v[:, :, None], axis=-2)[:, None]
    else:
        out = jnp.einsum("bkgts,bksd->btkgd", probs, v)
    return out.reshape(b, t, h, d)


class Attention(nn.Module):
    """Grouped-query self-attention with rotary embeddings and an optional KV cache.

    ``attn(q, k, v) = softmax(q k^T / sqrt(head_dim) + mask) v`` with ``n_heads / n_kv_heads``
    query heads sharing each key/value head; logits and softmax in float32.
    """

    n_heads: int
    n_kv_heads: int
    head_dim: int
    qkv_bias: bool = False
    init_std: float = 0.02
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    fused: bool = False  # jax.nn.dot_product_attention (no KV cache) instead of `_attend`

    def _proj(self, name, x, heads, head_axis):
        kernel = self.param(
            f"{name}_kernel",
            _init(("embed", head_axis, "head_dim"), self.init_std),
            (x.shape[-1], heads, self.head_dim),
            self.param_dtype,
        )
        y = jnp.einsum("btd,dhk->bthk", x, kernel.astype(self.dtype))
        if self.qkv_bias:
            bias = self.param(
                f"{name}_bias",
                nn.with_logical_partitioning(nn.initializers.zeros, (head_axis, "head_dim")),
                (heads, self.head_dim),
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y

    @nn.compact
    def __call__(
        self,
        x: Float[Array, "B T D"],
        mask: Bool[Array, "B T S"],
        sin: Float[Array, "B T D2"],
        cos: Float[Array, "B T D2"],
        kv: tuple[Float[Array, "B K Dh S"], Float[Array, "B K S Dh"]] | None = None,
        index: Int[Array, ""] | None = None,
    ):
        """Attend from ``x`` to itself, or, with a cache ``kv``, write ``x``'s keys and values at
        slot ``index`` and attend to every cache slot (``S`` = cache length); ``mask`` says which
        (query, key slot) pairs may attend. Returns ``(out [B,T,D], new kv or None)``."""
        q = apply_rope(self._proj("q", x, self.n_heads, "heads"), sin, cos)
        k = apply_rope(self._proj("k", x, self.n_kv_heads, "kv_heads"), sin, cos)
        v = self._proj("v", x, self.n_kv_heads, "kv_heads")
        q = nn.with_logical_constraint(q, ("batch", "length", "heads", "head_dim"))
        if kv is None:
            out = (_attend_fused if self.fused else _attend)(q, k, v, mask)
        else:
            # Keys are cached [B, K, Dh, S] and values [B, K, S, Dh]: the layouts the two attention
            # products read without a transposed copy of the cache per decoding step.
            kv = (
                jax.lax.dynamic_update_slice(
                    kv[0], k.transpose(0, 2, 3, 1).astype(kv[0].dtype), (0, 0, 0, index)
                ),
                jax.lax.dynamic_update_slice(
                    kv[1], v.transpose(0, 2, 1, 3).astype(kv[1].dtype), (0, 0, index, 0)
                ),
            )
            out = _attend_cached(q, kv[0].astype(self.dtype), kv[1].astype(self.dtype), mask)
        o_kernel = self.param(
            "o_kernel",
            _init(("heads", "head_dim", "embed"), self.init_std),
            (self.n_heads, self.head_dim, x.shape[-1]),
            self.param_dtype,
        )
        return jnp.einsum("bthk,hkd->btd", out, o_kernel.astype(self.dtype)), kv


class GatedMLP(nn.Module):
    """``down(act(gate(x)) * up(x))``: SwiGLU (act = silu) or GeGLU (act = tanh gelu)."""

    d_ff: int
    activation: str = "silu"
    init_std: float = 0.02
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Float[Array, "B T D"]) -> Float[Array, "B T D"]:
        d = x.shape[-1]

        def kernel(name, shape, names):
            return self.param(name, _init(names, self.init_std), shape, self.param_dtype).astype(
                self.dtype
            )

        # Both input projections in one matmul against the stacked [D, 2, F] kernels (kept as two
        # parameters, as in checkpoints; a sharded F axis stays sharded): about 1.2x faster
        # forward+backward on CPU than two half-width matmuls.
        gate_up = jnp.stack(
            [
                kernel("gate_kernel", (d, self.d_ff), ("embed", "mlp")),
                kernel("up_kernel", (d, self.d_ff), ("embed", "mlp")),
            ],
            axis=1,
        )
        gate_up = jnp.einsum("btd,dgf->btgf", x, gate_up)
        gate, up = gate_up[..., 0, :], gate_up[..., 1, :]
        act = (
            jax.nn.silu(gate) if self.activation == "silu" else jax.nn.gelu(gate, approximate=True)
        )
        h = nn.with_logical_constraint(act * up, ("batch", "length", "mlp"))
        return h @ kernel("down_kernel", (self.d_ff, d), ("mlp", "embed"))
