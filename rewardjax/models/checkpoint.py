"""Hugging Face safetensors checkpoints of Llama, Qwen2 and Gemma <-> ``CausalLM`` params.

``config, params = load_hf(folder)`` reads ``config.json`` and ``*.safetensors`` (a single file or a
sharded ``model.safetensors.index.json``) from a local folder; ``save_hf(folder, config, params)``
writes them back in the Hugging Face layout. Params are the plain (unboxed) pytree of
``CausalLM(config).init``: ``{"params": {"transformer": ..., "lm_head": [D, V]}}`` (no
``lm_head`` when embeddings are tied); ``params["params"]["transformer"]`` is the backbone alone.

Layouts: HF linear weights are ``[out, in]``; ours are ``[in, ...]`` with the heads split out
(``q_kernel [D, H, Dh]``, ``o_kernel [H, Dh, D]``) and layers stacked on a leading axis. Gemma's
RMSNorm stores ``w`` and scales by ``1 + w`` in both libraries, so norms map unchanged.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from rewardjax.models.layers import RopeScaling
from rewardjax.models.transformer import TransformerConfig

__all__ = ["config_from_hf", "config_to_hf", "load_hf", "load_hf_sharded", "save_hf"]

_FAMILIES = ("llama", "qwen2", "gemma")
_ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "gemma": "GemmaForCausalLM",
}
_SILU = ("silu", "swish")
_GELU_TANH = ("gelu_pytorch_tanh", "gelu_new", "gelu_fast")


def _rope_scaling(hf: dict[str, Any]) -> tuple[float, RopeScaling | None]:
    # transformers >= 5 writes "rope_parameters"; released checkpoints use rope_theta/rope_scaling.
    params = dict(hf.get("rope_parameters") or {})
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    scaling = params if params.get("rope_type", "default") != "default" else hf.get("rope_scaling")
    if not scaling:
        return theta, None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind not in ("linear", "llama3"):
        raise ValueError(
            f"config.json: rope scaling type {kind!r} is not supported (only linear and llama3)."
        )
    return theta, RopeScaling(
        kind=kind,
        factor=float(scaling["factor"]),
        low_freq_factor=float(scaling.get("low_freq_factor", 1.0)),
        high_freq_factor=float(scaling.get("high_freq_factor", 4.0)),
        original_max_position=int(scaling.get("original_max_position_embeddings", 8192)),
    )


def config_from_hf(hf: dict[str, Any], **overrides: Any) -> TransformerConfig:
    """``TransformerConfig`` of a Hugging Face ``config.json`` dict (Llama, Qwen2 or Gemma).

    ``overrides`` replace fields (e.g. ``dtype="bfloat16"``, ``remat=True``).
    """
    family = hf.get("model_type")
    if family not in _FAMILIES:
        raise ValueError(
            f"config.json: model_type {family!r} is not supported; use one of {_FAMILIES}."
        )
    for key in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads"):
        if key not in hf:
            raise ValueError(f"config.json: missing field {key!r} for model_type {family!r}.")
    if hf.get("mlp_bias") or (family != "qwen2" and hf.get("attention_bias")):
        raise ValueError(
            "config.json: mlp_bias / attention_bias on Llama or Gemma is not supported."
        )
    if family == "qwen2" and hf.get("use_sliding_window"):
        raise ValueError("config.json: use_sliding_window=true (Qwen2) is not supported.")
    if family == "gemma":
        activation = "gelu_tanh"  # HF Gemma always uses the tanh approximation.
    else:
        act = hf.get("hidden_act", "silu")
        if act in _SILU:
            activation = "silu"
        elif act in _GELU_TANH:
            activation = "gelu_tanh"
        else:
            raise ValueError(f"config.json: hidden_act {act!r} is not supported.")
    theta, scaling = _rope_scaling(hf)
    fields = dict(
        vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"],
        n_layers=hf["num_hidden_layers"],
        n_heads=hf["num_attention_heads"],
        n_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
        d_ff=hf["intermediate_size"],
        head_dim=hf.get("head_dim"),
        mlp_activation=activation,
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        norm_plus_one=family == "gemma",
        embed_scale=family == "gemma",
        tie_embeddings=bool(hf.get("tie_word_embeddings", family == "gemma")),
        qkv_bias=family == "qwen2",
    )
    fields.update(overrides)
    return TransformerConfig(**fields)


def _family(config: TransformerConfig) -> str:
    if config.norm_plus_one and config.embed_scale:
        if config.mlp_activation != "gelu_tanh" or config.qkv_bias:
            raise ValueError("save_hf: a Gemma-style config needs gelu_tanh and no qkv_bias.")
        return "gemma"
    if config.norm_plus_one or config.embed_scale:
        raise ValueError("save_hf: norm_plus_one and embed_scale go together (Gemma) in HF.")
    return "qwen2" if config.qkv_bias else "llama"


def config_to_hf(config: TransformerConfig) -> dict[str, Any]:
    """Hugging Face ``config.json`` dict of ``config`` (model_type chosen by its features)."""
    family = _family(config)
    rope = {"rope_type": "default", "rope_theta": config.rope_theta}
    if config.rope_scaling is not None:
        s = config.rope_scaling
        rope.update(rope_type=s.kind, factor=s.factor)
        if s.kind == "llama3":
            rope.update(
                low_freq_factor=s.low_freq_factor,
                high_freq_factor=s.high_freq_factor,
                original_max_position_embeddings=s.original_max_position,
            )
    act = {"silu": "silu", "gelu_tanh": "gelu_pytorch_tanh"}[config.mlp_activation]
    return {
        "architectures": [_ARCHITECTURES[family]],
        "model_type": family,
        "vocab_size": config.vocab_size,
        "hidden_size": config.d_model,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_kv_heads,
        "head_dim": config.head_dim,
        "intermediate_size": config.d_ff,
        "hidden_act": act,
        "hidden_activation": act,
        "rms_norm_eps": config.norm_eps,
        "rope_theta": config.rope_theta,  # read by transformers < 5
        "rope_scaling": None if config.rope_scaling is None else dict(rope),
        "rope_parameters": rope,
        "tie_word_embeddings": config.tie_embeddings,
        "attention_bias": config.qkv_bias,
        "torch_dtype": config.param_dtype,
    }


class _Tensors:
    """The tensors of a folder's safetensors files: names and shapes from the headers, a tensor
    copied out of the memory-mapped file only when asked for."""

    def __init__(self, folder: str):
        self.folder = folder
        index = os.path.join(folder, "model.safetensors.index.json")
        if os.path.exists(index):
            with open(index) as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
        else:
            files = sorted(n for n in os.listdir(folder) if n.endswith(".safetensors"))
        if not files:
            raise FileNotFoundError(f"{folder}: no *.safetensors files (or index) found.")
        self.file_of: dict[str, str] = {}
        self.shape_of: dict[str, tuple[int, ...]] = {}
        for name in files:
            path = os.path.join(folder, name)
            with safe_open(path, framework="numpy") as f:
                for key in f.keys():
                    self.file_of[key] = path
                    self.shape_of[key] = tuple(f.get_slice(key).get_shape())

    def check(self, cfg: TransformerConfig, sources: dict[tuple[str, ...], _Source]) -> None:
        """Every tensor the config needs is there with its shape, and there is nothing else."""
        expected = {}
        for src in sources.values():
            layers = range(cfg.n_layers) if src.stacked else [0]
            expected.update((src.name.format(i=i), src.shape) for i in layers)
        for name, shape in expected.items():
            if name not in self.shape_of:
                raise KeyError(
                    f"{self.folder}: tensor {name!r} missing from the safetensors files."
                )
            if self.shape_of[name] != shape:
                raise ValueError(
                    f"{self.folder}: tensor {name!r} has shape {self.shape_of[name]}, expected "
                    f"{shape}."
                )
        ignored = {"lm_head.weight"} if cfg.tie_embeddings else set()  # tied copies exist
        unexpected = sorted(
            k
            for k in self.shape_of
            if k not in expected and k not in ignored and not k.endswith("rotary_emb.inv_freq")
        )
        if unexpected:
            raise ValueError(
                f"{self.folder}: {len(unexpected)} unexpected tensors, e.g. {unexpected[:5]}; "
                f"is this a plain {_family(cfg)} causal LM checkpoint?"
            )

    def get(self, name: str) -> np.ndarray:
        with safe_open(self.file_of[name], framework="numpy") as f:
            return f.get_tensor(name)


def _layer_names(i: int) -> dict[str, str]:
    p = f"model.layers.{i}."
    return {
        "q": p + "self_attn.q_proj",
        "k": p + "self_attn.k_proj",
        "v": p + "self_attn.v_proj",
        "o": p + "self_attn.o_proj",
        "gate": p + "mlp.gate_proj",
        "up": p + "mlp.up_proj",
        "down": p + "mlp.down_proj",
        "attn_norm": p + "input_layernorm",
        "mlp_norm": p + "post_attention_layernorm",
    }


class _Source(NamedTuple):
    """Where a parameter comes from: the HF tensor `name` (with `{i}` for the layer of a stacked
    leaf), its HF shape, and the map from the HF layout to ours."""

    name: str
    shape: tuple[int, ...]
    to_ours: Callable[[np.ndarray], np.ndarray]

    @property
    def stacked(self) -> bool:
        return "{i}" in self.name


def _sources(cfg: TransformerConfig) -> dict[tuple[str, ...], _Source]:
    """Every leaf of `CausalLM(cfg)`'s params (its path under "params") and its source."""
    d, h, kv, dh, ff = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff
    n = {k: v.replace("layers.0.", "layers.{i}.") for k, v in _layer_names(0).items()}
    same = lambda x: x
    heads_in = lambda heads: lambda x: x.T.reshape(d, heads, dh)  # [heads * dh, D] -> [D, H, Dh]
    layer = ("transformer", "layers")
    out = {
        ("transformer", "embed", "embedding"): _Source(
            "model.embed_tokens.weight", (cfg.vocab_size, d), same
        ),
        ("transformer", "final_norm", "scale"): _Source("model.norm.weight", (d,), same),
        (*layer, "attn", "q_kernel"): _Source(n["q"] + ".weight", (h * dh, d), heads_in(h)),
        (*layer, "attn", "k_kernel"): _Source(n["k"] + ".weight", (kv * dh, d), heads_in(kv)),
        (*layer, "attn", "v_kernel"): _Source(n["v"] + ".weight", (kv * dh, d), heads_in(kv)),
        (*layer, "attn", "o_kernel"): _Source(
            n["o"] + ".weight", (d, h * dh), lambda x: x.T.reshape(h, dh, d)
        ),
        (*layer, "attn_norm", "scale"): _Source(n["attn_norm"] + ".weight", (d,), same),
        (*layer, "mlp_norm", "scale"): _Source(n["mlp_norm"] + ".weight", (d,), same),
        (*layer, "mlp", "gate_kernel"): _Source(n["gate"] + ".weight", (ff, d), np.transpose),
        (*layer, "mlp", "up_kernel"): _Source(n["up"] + ".weight", (ff, d), np.transpose),
        (*layer, "mlp", "down_kernel"): _Source(n["down"] + ".weight", (d, ff), np.transpose),
    }
    if cfg.qkv_bias:
        for name, heads in (("q", h), ("k", kv), ("v", kv)):
            out[(*layer, "attn", f"{name}_bias")] = _Source(
                n[name] + ".bias", (heads * dh,), lambda x, heads=heads: x.reshape(heads, dh)
            )
    if not cfg.tie_embeddings:
        out[("lm_head",)] = _Source("lm_head.weight", (cfg.vocab_size, d), np.transpose)
    return out


def _read_config(folder: str, overrides: dict[str, Any]) -> TransformerConfig:
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"{folder}: config.json not found.")
    with open(config_path) as f:
        return config_from_hf(json.load(f), **overrides)


def _nest(flat: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return out


def load_hf(folder: str, **overrides: Any) -> tuple[TransformerConfig, dict[str, Any]]:
    """Read a local Hugging Face Llama / Qwen2 / Gemma folder into ``(config, params)``.

    ``overrides`` replace config fields (e.g. ``dtype="bfloat16"``); weights are cast to
    ``config.param_dtype``. Raises if a tensor is missing, unexpected or of the wrong shape. The
    whole model is built in host memory: for models that only fit sharded, `load_hf_sharded`.
    """
    cfg = _read_config(folder, overrides)
    tensors, dtype, sources = _Tensors(folder), np.dtype(cfg.storage_dtype), _sources(cfg)
    tensors.check(cfg, sources)
    flat = {}
    for path, src in sources.items():
        layers = range(cfg.n_layers) if src.stacked else [0]
        read = [src.to_ours(tensors.get(src.name.format(i=i))).astype(dtype) for i in layers]
        flat[path] = np.stack(read) if src.stacked else read[0]
    return cfg, {"params": _nest(flat)}


def load_hf_sharded(
    folder: str, mesh: Any, rules: Any = None, **overrides: Any
) -> tuple[TransformerConfig, dict[str, Any]]:
    """`load_hf` straight into the shardings a run uses, one parameter at a time.

    The target shapes and logical names come from `jax.eval_shape` of `CausalLM(config).init`
    (nothing allocated), the shardings from the logical `rules` on `mesh`
    (`parallel.DEFAULT_RULES` when None); each parameter is then assembled by
    `jax.make_array_from_callback`, whose callback reads, for each shard this process holds, only
    the layers in the shard (a stacked leaf's layer axis) from the memory-mapped files and keeps
    the slice of each. The host holds at most one parameter's layers in the storage dtype at a
    time, never the whole model, and every process reads only what its devices hold.

    Returns:
      `(config, params)` with params `{"params": ...}` of global `jax.Array`s on `mesh`.
    """
    from rewardjax import parallel  # models is below parallel's users; import at call time
    from rewardjax.models.transformer import CausalLM

    cfg = _read_config(folder, overrides)
    rules = parallel.DEFAULT_RULES if rules is None else rules
    tensors, dtype, sources = _Tensors(folder), np.dtype(cfg.storage_dtype), _sources(cfg)
    tensors.check(cfg, sources)
    with parallel.mesh_rules(mesh, rules):
        boxed = jax.eval_shape(
            CausalLM(cfg).init, jax.random.key(0), jax.ShapeDtypeStruct((1, 1), np.int32)
        )
        shardings = parallel.logical_shardings(boxed, mesh, rules)["params"]
    shapes = nn.meta.unbox(boxed)["params"]
    flat = {}
    for path, src in sources.items():
        shape = functools.reduce(lambda node, key: node[key], path, shapes).shape
        sharding = functools.reduce(lambda node, key: node[key], path, shardings)
        cache: dict[int, np.ndarray] = {}  # this parameter's layers, read once per process

        def layer(i: int, src=src, cache=cache) -> np.ndarray:
            if i not in cache:
                cache[i] = src.to_ours(tensors.get(src.name.format(i=i))).astype(dtype)
            return cache[i]

        def shard(index: tuple[slice, ...], src=src, layer=layer) -> np.ndarray:
            if not src.stacked:
                return layer(0)[index]
            return np.stack([layer(i)[index[1:]] for i in range(cfg.n_layers)[index[0]]])

        flat[path] = jax.make_array_from_callback(shape, sharding, shard)
    return cfg, {"params": _nest(flat)}


def save_hf(folder: str, config: TransformerConfig, params: dict[str, Any]) -> None:
    """Write ``config.json`` and ``model.safetensors`` (float32 or the params' dtype) in the Hugging
    Face layout of the config's family, loadable by ``transformers`` and by ``load_hf``."""
    os.makedirs(folder, exist_ok=True)
    p = nn.unbox(params)
    p = p["params"] if "params" in p else p
    t = jax.tree.map(np.asarray, p["transformer"])
    d, h, kv, dh = config.d_model, config.n_heads, config.n_kv_heads, config.head_dim
    out = {
        "model.embed_tokens.weight": t["embed"]["embedding"],
        "model.norm.weight": t["final_norm"]["scale"],
    }
    if not config.tie_embeddings:
        out["lm_head.weight"] = np.asarray(p["lm_head"]).T
    lay = t["layers"]
    for i in range(config.n_layers):
        n = _layer_names(i)
        a = lay["attn"]
        out[n["q"] + ".weight"] = a["q_kernel"][i].reshape(d, h * dh).T
        out[n["k"] + ".weight"] = a["k_kernel"][i].reshape(d, kv * dh).T
        out[n["v"] + ".weight"] = a["v_kernel"][i].reshape(d, kv * dh).T
        out[n["o"] + ".weight"] = a["o_kernel"][i].reshape(h * dh, d).T
        if config.qkv_bias:
            for name in ("q", "k", "v"):
                out[n[name] + ".bias"] = a[f"{name}_bias"][i].reshape(-1)
        out[n["attn_norm"] + ".weight"] = lay["attn_norm"]["scale"][i]
        out[n["mlp_norm"] + ".weight"] = lay["mlp_norm"]["scale"][i]
        out[n["gate"] + ".weight"] = lay["mlp"]["gate_kernel"][i].T
        out[n["up"] + ".weight"] = lay["mlp"]["up_kernel"][i].T
        out[n["down"] + ".weight"] = lay["mlp"]["down_kernel"][i].T
    out = {k: np.ascontiguousarray(v) for k, v in out.items()}
    save_file(out, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config_to_hf(config), f, indent=2)
