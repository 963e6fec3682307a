"""Parity with Hugging Face transformers (PyTorch CPU) on tiny random Llama / Qwen2 / Gemma models
built and saved locally (no download): logits on the same tokens, padded batches, checkpoint
import (single file, sharded, bfloat16) and export back to a folder transformers can load."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rewardjax.models.checkpoint import config_from_hf, load_hf, save_hf  # noqa: E402
from rewardjax.models.transformer import CausalLM  # noqa: E402

TOL = 1e-4  # max abs error of float32 logits
SMALL = dict(
    vocab_size=256,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=96,
)
FAMILIES = {
    # Llama with Llama-3.1 rope scaling, short original context so all three bands are used.
    "llama": (
        "LlamaConfig",
        "LlamaForCausalLM",
        dict(
            rope_scaling=dict(
                rope_type="llama3",
                factor=4.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=16,
            ),
            rms_norm_eps=1e-5,
        ),
    ),
    # Qwen2: q/k/v biases, tied embeddings, linear rope scaling, large theta.
    "qwen2": (
        "Qwen2Config",
        "Qwen2ForCausalLM",
        dict(
            tie_word_embeddings=True,
            rope_theta=1e6,
            rope_scaling=dict(rope_type="linear", factor=2.0),
        ),
    ),
    # Gemma: (1 + w) RMSNorm, sqrt(d) embedding scale, GeGLU, head_dim != d / heads, tied.
    "gemma": ("GemmaConfig", "GemmaForCausalLM", dict(head_dim=32)),
}


def _hf_model(family: str, seed: int = 0):
    config_cls, model_cls, extra = FAMILIES[family]
    torch.manual_seed(seed)
    model = getattr(transformers, model_cls)(getattr(transformers, config_cls)(**SMALL, **extra))
    with torch.no_grad():  # every weight random (norm scales and biases included)
        for name, p in model.named_parameters():
            # Norm scales near 1 (Gemma stores w of its (1 + w) scale, so near 0).
            p.normal_(1.0 if "norm" in name and family != "gemma" else 0.0, 0.15)
    return model.eval()


def _batch():
    rng = np.random.RandomState(0)
    tokens = rng.randint(0, 256, (3, 12))
    mask = np.ones((3, 12), np.int64)
    mask[1, :5] = 0  # left-padded
    mask[2, 8:] = 0  # right-padded
    return tokens, mask


def _hf_logits(model, tokens, mask):
    # Positions as transformers' generate builds them: running count of real tokens.
    positions = np.clip(mask.cumsum(1) - 1, 0, None)
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(tokens),
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(positions),
        )
    return out.logits.float().numpy()


def _our_logits(folder, tokens, mask):
    cfg, params = load_hf(folder)
    logits, _ = jax.jit(CausalLM(cfg).apply)(
        params, jnp.asarray(tokens, jnp.int32), segment_ids=jnp.asarray(mask, jnp.int32)
    )
    return cfg, params, np.asarray(logits)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_match_transformers_and_export_round_trips(family, tmp_path):
    model = _hf_model(family)
    model.save_pretrained(tmp_path / "hf")
    tokens, mask = _batch()
    ref = _hf_logits(model, tokens, mask)
    cfg, params, ours = _our_logits(tmp_path / "hf", tokens, mask)
    real = mask.astype(bool)
    err = np.abs(ours - ref)[real].max()
    print(f"{family}: max abs logit error {err:.2e} (logit scale {np.abs(ref).max():.2f})")
    assert err <= TOL
    assert np.abs(ref).max() > 1.0  # the comparison is not between near-zero logits

    # Export: transformers loads our folder and reproduces its own logits.
    save_hf(tmp_path / "ours", cfg, params)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert type(reloaded).__name__ == FAMILIES[family][1]
    assert np.abs(_hf_logits(reloaded, tokens, mask) - ref)[real].max() <= TOL
    # ... and load_hf of the export gives back the same config and parameters exactly.
    cfg2, params2 = load_hf(tmp_path / "ours")
    assert cfg2 == cfg
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_sharded_and_bfloat16_checkpoints(tmp_path):
    model = _hf_model("llama", seed=1)
    model.save_pretrained(tmp_path / "single")
    model.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert os.path.exists(tmp_path / "sharded" / "model.safetensors.index.json")
    assert len([n for n in os.listdir(tmp_path / "sharded") if n.endswith(".safetensors")]) > 1
    _, single = load_hf(tmp_path / "single")
    _, sharded = load_hf(tmp_path / "sharded")
    for a, b in zip(jax.tree.leaves(single), jax.tree.leaves(sharded), strict=True):
        np.testing.assert_array_equal(a, b)

    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    _, bf16 = load_hf(tmp_path / "bf16")
    embed = model.model.embed_tokens.weight.float().detach().numpy()
    got = bf16["params"]["transformer"]["embed"]["embedding"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, embed)


def test_config_from_hf_reads_released_style_configs():
    """Released checkpoints (transformers < 5) keep rope_theta / rope_scaling at the top level."""
    cfg = config_from_hf(
        {
            "model_type": "llama",
            "vocab_size": 128256,
            "hidden_size": 4096,
            "num_hidden_layers": 32,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "intermediate_size": 14336,
            "hidden_act": "silu",
            "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0,
            "rope_scaling": {
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
                "rope_type": "llama3",
            },
            "tie_word_embeddings": False,
        },
        dtype="bfloat16",
    )
    assert (cfg.n_kv_heads, cfg.head_dim, cfg.rope_theta) == (8, 128, 500000.0)
    assert cfg.rope_scaling.kind == "llama3" and cfg.rope_scaling.factor == 8.0
    assert cfg.dtype == "bfloat16" and not cfg.tie_embeddings


def test_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="model_type 'mistral'"):
        config_from_hf({"model_type": "mistral"})
    with pytest.raises(ValueError, match="rope scaling type 'yarn'"):
        config_from_hf({**_llama_json(), "rope_scaling": {"rope_type": "yarn", "factor": 2.0}})
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_hf(tmp_path)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(_llama_json(), f)
    with pytest.raises(FileNotFoundError, match="safetensors"):
        load_hf(tmp_path)


def _llama_json():
    return {"model_type": "llama", **SMALL}
