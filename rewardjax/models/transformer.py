"""Decoder-only transformer of the Llama / Qwen2 / Gemma family, used functionally.

``params = model.init(rng, tokens)``; ``hidden, cache = model.apply(params, tokens, ...)``.
Layers are stacked with ``nn.scan`` (parameters carry a leading "layers" axis), so
``jax.eval_shape`` of a 7B model traces one block.

Papers:
- LLaMA: Open and Efficient Foundation Language Models (arXiv:2302.13971);
  Llama 2 (arXiv:2307.09288); The Llama 3 Herd of Models (arXiv:2407.21783).
- Qwen2 Technical Report (arXiv:2407.10671).
- Gemma: Open Models Based on Gemini Research and Technology (arXiv:2403.08295).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Int

from rewardjax.models.layers import (
    Attention,
    GatedMLP,
    RMSNorm,
    RopeScaling,
    rope_inverse_frequencies,
    rope_sin_cos,
)

__all__ = [
    "CausalLM",
    "KVCache",
    "Transformer",
    "TransformerConfig",
    "branch_attention_mask",
    "init_cache",
    "segment_positions",
]

_ACTIVATIONS = ("silu", "gelu_tanh")


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Shape and numerics of the backbone (hashable, so it can be a static jit argument).

    Attributes:
      vocab_size, d_model, n_layers, n_heads, n_kv_heads, d_ff: the usual sizes.
      head_dim: per-head width; ``None`` means ``d_model // n_heads``.
      mlp_activation: "silu" (SwiGLU, Llama/Qwen2) or "gelu_tanh" (GeGLU, Gemma).
      rope_theta, rope_scaling: rotary base and optional ``RopeScaling``.
      norm_eps: RMSNorm epsilon. norm_plus_one: Gemma's ``(1 + w)`` RMSNorm scale.
      embed_scale: multiply embeddings by ``sqrt(d_model)`` (Gemma).
      tie_embeddings: the LM head reuses the embedding matrix.
      qkv_bias: biases on the q/k/v projections (Qwen2).
      dtype: compute dtype ("float32" or "bfloat16"); param_dtype: parameter storage dtype.
      remat: rematerialise each block's activations in the backward pass.
      unroll_layers: unroll the scanned layer stack in the compiled program (parameters keep
        their stacked "layers" axis and tracing still sees one block): no loop, no dynamic
        slicing of stacked params and residuals, about 1.3x faster forward+backward on CPU for
        few layers; set False for deep models to keep compile time low.
      init_std: std of the normal initialiser of every matrix.
      attention: "einsum" (this module's attention, tuned for XLA:CPU) or "dot_product"
        (`jax.nn.dot_product_attention`: cuDNN / fused kernels on GPU and TPU, the same values);
        decoding with a KV cache always uses the cached einsum path.
    """

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    head_dim: int | None = None
    mlp_activation: str = "silu"
    rope_theta: float = 10000.0
    rope_scaling: RopeScaling | None = None
    norm_eps: float = 1e-6
    norm_plus_one: bool = False
    embed_scale: bool = False
    tie_embeddings: bool = False
    qkv_bias: bool = False
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    unroll_layers: bool = True
    init_std: float = 0.02
    attention: str = "einsum"

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"TransformerConfig.{name} must be > 0, got {getattr(self, name)}."
                )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"TransformerConfig.n_heads ({self.n_heads}) must be a multiple of n_kv_heads "
                f"({self.n_kv_heads})."
            )
        if self.head_dim is None:
            if self.d_model % self.n_heads:
                raise ValueError(
                    f"TransformerConfig.head_dim is None but d_model ({self.d_model}) is not a "
                    f"multiple of n_heads ({self.n_heads}); set head_dim explicitly."
                )
            object.__setattr__(self, "head_dim", self.d_model // self.n_heads)
        if self.head_dim % 2:
            raise ValueError(f"TransformerConfig.head_dim must be even, got {self.head_dim}.")
        if self.attention not in ("einsum", "dot_product"):
            raise ValueError(
                "TransformerConfig.attention must be 'einsum' or 'dot_product', "
                f"got {self.attention!r}."
            )
        if self.mlp_activation not in _ACTIVATIONS:
            raise ValueError(
                f"TransformerConfig.mlp_activation must be one of {_ACTIVATIONS}, "
                f"got {self.mlp_activation!r}."
            )
        for name in ("dtype", "param_dtype"):
            if getattr(self, name) not in ("float32", "bfloat16", "float16"):
                raise ValueError(
                    f"TransformerConfig.{name} must be 'float32', 'bfloat16' or 'float16', "
                    f"got {getattr(self, name)!r}."
                )

    @property
    def compute_dtype(self):
        """``dtype`` as a numpy dtype."""
        return jnp.dtype(self.dtype)

    @property
    def storage_dtype(self):
        """``param_dtype`` as a numpy dtype."""
        return jnp.dtype(self.param_dtype)


class KVCache(NamedTuple):
    """Pre-allocated keys/values of every layer plus the bookkeeping to append to them.

    Attributes:
      k: ``[n_layers, B, n_kv_heads, head_dim, S_max]`` and v: ``[n_layers, B, n_kv_heads, S_max,
        head_dim]`` in the compute dtype (the layouts attention reads without a transpose).
      segment_ids: ``[B, S_max]`` int32, 0 on empty or padding slots.
      index: int32 scalar, the next slot to write (the same for every row).
      next_position: ``[B]`` int32, the rotary position of the next real token of each row.
    """

    k: Float[Array, "L B K Dh S"]
    v: Float[Array, "L B K S Dh"]
    segment_ids: Int[Array, "B S"]
    index: Int[Array, ""]
    next_position: Int[Array, " B"]


def init_cache(config: TransformerConfig, batch_size: int, max_length: int) -> KVCache:
    """An empty cache for ``batch_size`` rows of at most ``max_length`` tokens (prompt + new)."""
    heads = (config.n_layers, batch_size, config.n_kv_heads)
    return KVCache(
        k=jnp.zeros((*heads, config.head_dim, max_length), config.compute_dtype),
        v=jnp.zeros((*heads, max_length, config.head_dim), config.compute_dtype),
        segment_ids=jnp.zeros((batch_size, max_length), jnp.int32),
        index=jnp.zeros((), jnp.int32),
        next_position=jnp.zeros((batch_size,), jnp.int32),
    )


def segment_positions(segment_ids: Int[Array, "B T"]) -> Int[Array, "B T"]:
    """Position of each token within its (contiguous) segment: restarts at 0 where the segment id
    changes, so left padding and packed sequences both get positions 0, 1, ... per sequence."""
    t = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)
    starts = jnp.concatenate(
        [jnp.ones_like(segment_ids[:, :1], bool), segment_ids[:, 1:] != segment_ids[:, :-1]], axis=1
    )
    return t - jax.lax.cummax(jnp.where(starts, t, 0), axis=1)


def _attention_mask(
    q_segments: Int[Array, "B T"],
    k_segments: Int[Array, "B S"],
    q_slots: Int[Array, " T"],
    k_slots: Int[Array, " S"],
) -> Bool[Array, "B T S"]:
    """Causal (by slot) within a segment; padding keys (segment 0) are never attended."""
    same = q_segments[:, :, None] == k_segments[:, None, :]
    causal = k_slots[None, :] <= q_slots[:, None]
    return same & (k_segments[:, None, :] != 0) & causal[None]


def branch_attention_mask(
    segment_ids: Int[Array, "B T"], branch_ids: Int[Array, "B T"]
) -> Bool[Array, "B T T"]:
    """Attention of rows that hold a shared prefix and K branches (prefix sharing).

    `mask[b, i, j] = same_segment(i, j) & seg_j != 0 & j <= i & (br_j == 0 | br_j == br_i)`:
    token i attends to the earlier tokens of its segment that lie in the shared prefix (branch 0)
    or in its own branch, so branch k computes exactly as `prefix + branch k` alone would. The
    rotary positions that go with it are `mask.sum(-1) - 1`, the position of each token within
    `prefix + own branch` (`Transformer.__call__` uses them by default).

    Reference: Wang et al., "Accelerating Direct Preference Optimization with Prefix Sharing"
    (arXiv 2410.20305).

    Args:
      segment_ids: 0 on padding, 1..k for (packed) sequences.
      branch_ids: 0 on the shared prefix (and padding), k >= 1 on branch k.

    Returns:
      The boolean mask `[B, T, T]` (query, key).
    """
    slots = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)
    mask = _attention_mask(segment_ids, segment_ids, slots, slots)
    q, k = branch_ids[:, :, None], branch_ids[:, None, :]
    return mask & ((k == 0) | (k == q))


class Block(nn.Module):
    """Pre-norm decoder block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    config: TransformerConfig

    @nn.compact
    def __call__(self, x, kv, mask, sin, cos, index):
        cfg = self.config
        norm = dict(
            eps=cfg.norm_eps,
            plus_one=cfg.norm_plus_one,
            dtype=cfg.compute_dtype,
            param_dtype=cfg.storage_dtype,
        )
        h, kv = Attention(
            n_heads=cfg.n_heads,
            n_kv_heads=cfg.n_kv_heads,
            head_dim=cfg.head_dim,
            qkv_bias=cfg.qkv_bias,
            init_std=cfg.init_std,
            dtype=cfg.compute_dtype,
            param_dtype=cfg.storage_dtype,
            fused=cfg.attention == "dot_product",
            name="attn",
        )(RMSNorm(**norm, name="attn_norm")(x), mask, sin, cos, kv, index)
        x = nn.with_logical_constraint(x + h, ("batch", "length", "embed"))
        h = GatedMLP(
            d_ff=cfg.d_ff,
            activation=cfg.mlp_activation,
            init_std=cfg.init_std,
            dtype=cfg.compute_dtype,
            param_dtype=cfg.storage_dtype,
            name="mlp",
        )(RMSNorm(**norm, name="mlp_norm")(x))
        x = nn.with_logical_constraint(x + h, ("batch", "length", "embed"))
        return x, kv


class Transformer(nn.Module):
    """The backbone: embeddings, ``n_layers`` scanned blocks, final RMSNorm.

    Parameters: ``embed/embedding [V, D]``, ``layers/...`` (leading axis ``n_layers``),
    ``final_norm/scale [D]``.
    """

    config: TransformerConfig

    def setup(self):
        cfg = self.config
        self.embed = nn.Embed(
            cfg.vocab_size,
            cfg.d_model,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(stddev=cfg.init_std), ("vocab", "embed")
            ),
            dtype=cfg.compute_dtype,
            param_dtype=cfg.storage_dtype,
        )
        block = nn.remat(Block, prevent_cse=False) if cfg.remat else Block
        self.layers = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
            length=cfg.n_layers,
            unroll=cfg.n_layers if cfg.unroll_layers else 1,
            metadata_params={nn.PARTITION_NAME: "layers"},
        )(cfg)
        self.final_norm = RMSNorm(
            eps=cfg.norm_eps,
            plus_one=cfg.norm_plus_one,
            dtype=cfg.compute_dtype,
            param_dtype=cfg.storage_dtype,
        )

    def __call__(
        self,
        tokens: Int[Array, "B T"],
        *,
        segment_ids: Int[Array, "B T"] | None = None,
        positions: Int[Array, "B T"] | None = None,
        branch_ids: Int[Array, "B T"] | None = None,
        cache: KVCache | None = None,
        decode: bool = False,
    ) -> tuple[Float[Array, "B T D"], KVCache | None]:
        """Final-norm hidden states (compute dtype) and the updated cache.

        Args:
          tokens: token ids.
          segment_ids: 0 on padding, 1..k for (packed) sequences; attention is causal within a
            segment. Default: all ones. A padded batch passes its 0/1 attention mask.
          positions: rotary positions. Default: the running count of tokens within each segment
            (without a cache), or ``cache.next_position`` plus the running count of real tokens
            (with a cache), so left and right padding both work.
          cache: with ``decode=True``, the ``KVCache`` to append these tokens to (prefill a prompt,
            then one token per step); each row then holds one sequence.
          decode: use and update ``cache``; without it the call is a plain forward.

        Returns:
          ``(hidden [B, T, D], cache)``; the cache is ``None`` unless ``decode``.
        """
        cfg = self.config
        if branch_ids is not None and cache is not None:
            raise ValueError(
                "Transformer: branch_ids (prefix sharing) is for plain forwards; decode with a "
                "cache one sequence per row instead."
            )
        if decode != (cache is not None):
            raise ValueError(
                "Transformer: pass `cache` (see init_cache) exactly when decode=True; "
                f"got decode={decode} and cache={'None' if cache is None else 'KVCache'}."
            )
        b, t = tokens.shape
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        segment_ids = segment_ids.astype(jnp.int32)
        real = (segment_ids != 0).astype(jnp.int32)
        if cache is None and branch_ids is not None:
            mask = branch_attention_mask(segment_ids, branch_ids.astype(jnp.int32))
            if positions is None:
                positions = jnp.sum(mask, axis=-1, dtype=jnp.int32) - 1
            kv, index = None, None
        elif cache is None:
            if positions is None:
                positions = segment_positions(segment_ids)
            slots = jnp.arange(t, dtype=jnp.int32)
            mask = _attention_mask(segment_ids, segment_ids, slots, slots)
            kv, index = None, None
        else:
            if positions is None:
                positions = cache.next_position[:, None] + jnp.cumsum(real, axis=1) - 1
            index = cache.index
            k_segments = jax.lax.dynamic_update_slice(cache.segment_ids, segment_ids, (0, index))
            q_slots = index + jnp.arange(t, dtype=jnp.int32)
            k_slots = jnp.arange(k_segments.shape[1], dtype=jnp.int32)
            mask = _attention_mask(segment_ids, k_segments, q_slots, k_slots)
            kv = (cache.k, cache.v)
        positions = jnp.maximum(positions, 0)
        sin, cos = rope_sin_cos(
            positions, rope_inverse_frequencies(cfg.head_dim, cfg.rope_theta, cfg.rope_scaling)
        )
        x = self.embed(tokens)
        if cfg.embed_scale:
            x = x * jnp.asarray(math.sqrt(cfg.d_model), cfg.compute_dtype)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))
        x, kv = self.layers(x, kv, mask, sin, cos, index)
        hidden = self.final_norm(x)
        if cache is not None:
            cache = KVCache(
                k=kv[0],
                v=kv[1],
                segment_ids=k_segments,
                index=index + t,
                next_position=cache.next_position + real.sum(axis=1),
            )
        return hidden, cache

    def attend(self, hidden: Float[Array, "B T D"]) -> Float[Array, "B T V"]:
        """Tied LM head: float32 logits ``hidden @ embedding^T``."""
        table = self.embed.embedding.astype(self.config.compute_dtype)
        return jnp.einsum("btd,vd->btv", hidden, table, preferred_element_type=jnp.float32)


class CausalLM(nn.Module):
    """Backbone plus LM head (tied to the embeddings, or its own ``lm_head [D, V]``).

    ``logits, cache = model.apply(params, tokens, ...)`` takes the arguments of
    ``Transformer.__call__``; ``hidden, logits, cache = model.apply(params, tokens, ...,
    method=CausalLM.hidden_and_logits)`` also returns the final hidden states. Parameters:
    ``transformer/...`` (the backbone's tree) and ``lm_head [D, V]`` when untied.
    """

    config: TransformerConfig

    def setup(self):
        cfg = self.config
        self.transformer = Transformer(cfg)
        if not cfg.tie_embeddings:
            self.lm_head = self.param(
                "lm_head",
                nn.with_logical_partitioning(
                    nn.initializers.normal(stddev=cfg.init_std), ("embed", "vocab")
                ),
                (cfg.d_model, cfg.vocab_size),
                cfg.storage_dtype,
            )

    def hidden_and_logits(self, tokens, **kwargs):
        hidden, cache = self.transformer(tokens, **kwargs)
        return hidden, self.logits(hidden), cache

    def logits(self, hidden: Float[Array, "B T D"]) -> Float[Array, "B T V"]:
        """Float32 logits of final hidden states."""
        cfg = self.config
        if cfg.tie_embeddings:
            logits = self.transformer.attend(hidden)
        else:
            logits = jnp.einsum(
                "btd,dv->btv",
                hidden,
                self.lm_head.astype(cfg.compute_dtype),
                preferred_element_type=jnp.float32,
            )
        return nn.with_logical_constraint(logits, ("batch", "length", "vocab"))

    def __call__(
        self, tokens: Int[Array, "B T"], **kwargs: Any
    ) -> tuple[Float[Array, "B T V"], KVCache | None]:
        _, logits, cache = self.hidden_and_logits(tokens, **kwargs)
        return logits, cache
