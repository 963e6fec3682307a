"""Named backbone shapes: "tiny" for tests, Llama 3.2 1B and the published 7B-class models.

Shapes from each model's released config.json: Llama 2 (arXiv:2307.09288), Llama 3 / 3.1 / 3.2
(arXiv:2407.21783), Qwen2 (arXiv:2407.10671), Gemma (arXiv:2403.08295).
"""

from __future__ import annotations

import dataclasses

from rewardjax.models.layers import RopeScaling
from rewardjax.models.transformer import TransformerConfig

__all__ = ["PRESETS", "get_preset"]

# The deep presets keep the layer loop rolled: unrolling 28-32 layers multiplies compile time
# (2.7 s -> 12.4 s at 32 tiny layers on CPU) for a run-time gain measured only on small CPU models.
PRESETS: dict[str, TransformerConfig] = {
    # Byte-level vocabulary, small enough for unit tests on CPU.
    "tiny": TransformerConfig(
        vocab_size=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, norm_eps=1e-6
    ),
    "llama2-7b": TransformerConfig(
        vocab_size=32000,
        d_model=4096,
        n_layers=32,
        unroll_layers=False,
        n_heads=32,
        n_kv_heads=32,
        d_ff=11008,
        rope_theta=10000.0,
        norm_eps=1e-5,
    ),
    "llama3-8b": TransformerConfig(
        vocab_size=128256,
        d_model=4096,
        n_layers=32,
        unroll_layers=False,
        n_heads=32,
        n_kv_heads=8,
        d_ff=14336,
        rope_theta=500000.0,
        norm_eps=1e-5,
    ),
    "llama3.1-8b": TransformerConfig(
        vocab_size=128256,
        d_model=4096,
        n_layers=32,
        unroll_layers=False,
        n_heads=32,
        n_kv_heads=8,
        d_ff=14336,
        rope_theta=500000.0,
        rope_scaling=RopeScaling(
            kind="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position=8192,
        ),
        norm_eps=1e-5,
    ),
    "llama3.2-1b": TransformerConfig(
        vocab_size=128256,
        d_model=2048,
        n_layers=16,
        unroll_layers=False,
        n_heads=32,
        n_kv_heads=8,
        d_ff=8192,
        rope_theta=500000.0,
        rope_scaling=RopeScaling(
            kind="llama3",
            factor=32.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position=8192,
        ),
        norm_eps=1e-5,
        tie_embeddings=True,
    ),
    "qwen2-7b": TransformerConfig(
        vocab_size=152064,
        d_model=3584,
        n_layers=28,
        unroll_layers=False,
        n_heads=28,
        n_kv_heads=4,
        d_ff=18944,
        rope_theta=1000000.0,
        norm_eps=1e-6,
        qkv_bias=True,
    ),
    "gemma-7b": TransformerConfig(
        vocab_size=256000,
        d_model=3072,
        n_layers=28,
        unroll_layers=False,
        n_heads=16,
        n_kv_heads=16,
        head_dim=256,
        d_ff=24576,
        mlp_activation="gelu_tanh",
        rope_theta=10000.0,
        norm_eps=1e-6,
        norm_plus_one=True,
        embed_scale=True,
        tie_embeddings=True,
    ),
}


def get_preset(name: str, **overrides) -> TransformerConfig:
    """The preset ``name`` with fields replaced by ``overrides`` (e.g. ``dtype="bfloat16"``)."""
    if name not in PRESETS:
        raise KeyError(f"Unknown model preset {name!r}; available: {sorted(PRESETS)}.")
    return dataclasses.replace(PRESETS[name], **overrides)
