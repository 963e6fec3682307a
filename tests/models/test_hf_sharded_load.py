"""`models.load_hf_sharded`: a Hugging Face folder read straight into a mesh's shardings.

In a fresh process with 8 simulated CPU devices (data=2 x fsdp=2 x tensor=2), checkpoints
written by transformers (Llama, untied; Qwen2, q/k/v biases and tied embeddings; one of them as
several files with an index) load to the same values as `load_hf` (whose parity with transformers
is tests/models/test_hf_parity.py), each parameter placed by the logical rules (its
`NamedSharding` spec is the rules' spec of its logical names), the split ones held as shards.
"""

import json
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

WORKER = r"""
import json, os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax, jax.numpy as jnp, numpy as np
import flax.linen as nn
from rewardjax import parallel
from rewardjax.models import CausalLM, load_hf, load_hf_sharded
from jax.sharding import PartitionSpec as P

mesh = parallel.make_mesh(data=2, fsdp=2, tensor=2)
report = {}
for folder in sys.argv[1:]:
    cfg, want = load_hf(folder)
    cfg2, got = load_hf_sharded(folder, mesh)
    assert cfg2 == cfg
    with parallel.mesh_rules(mesh, parallel.DEFAULT_RULES):
        boxed = jax.eval_shape(CausalLM(cfg).init, jax.random.key(0), jnp.ones((1, 1), jnp.int32))
    specs = nn.get_partition_spec(boxed)
    rows = []
    for (path, w), (_, g), (_, names) in zip(
        jax.tree_util.tree_leaves_with_path(want),
        jax.tree_util.tree_leaves_with_path(got),
        jax.tree_util.tree_leaves_with_path(specs, is_leaf=lambda x: isinstance(x, P)),
        strict=True,
    ):
        expected = nn.logical_to_mesh_axes(tuple(names), parallel.DEFAULT_RULES)
        rows.append(dict(
            path=jax.tree_util.keystr(path),
            equal=bool(np.array_equal(np.asarray(g), w)),
            dtype_equal=str(g.dtype) == str(w.dtype),
            spec=str(g.sharding.spec), expected=str(expected),
            split=g.addressable_shards[0].data.shape != g.shape,
        ))
    report[folder] = rows
print(json.dumps(report))
"""


def _save(tmp_path, family, **kw):
    if family == "llama":
        config = transformers.LlamaConfig(**SMALL, tie_word_embeddings=False)
        model = transformers.LlamaForCausalLM(config)
    else:
        config = transformers.Qwen2Config(**SMALL, tie_word_embeddings=True)
        model = transformers.Qwen2ForCausalLM(config)
    folder = tmp_path / family
    model.save_pretrained(folder, **kw)
    return str(folder)


SMALL = dict(
    vocab_size=256,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=96,
)


def test_sharded_load_equals_load_hf_in_the_rules_shardings(tmp_path):
    torch.manual_seed(0)
    folders = [_save(tmp_path, "llama", max_shard_size="100KB"), _save(tmp_path, "qwen2")]
    assert os.path.exists(os.path.join(folders[0], "model.safetensors.index.json"))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, *folders],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    for folder in folders:
        rows = report[folder]
        paths = {r["path"] for r in rows}
        assert any("q_bias" in p for p in paths) == folder.endswith("qwen2")
        assert any("lm_head" in p for p in paths) == folder.endswith("llama")
        for r in rows:
            assert r["equal"] and r["dtype_equal"], r
            assert r["spec"] == r["expected"], r
        # the embedding (vocab x embed -> tensor x fsdp) and the MLP kernels are held as shards
        split = {r["path"] for r in rows if r["split"]}
        assert any("embedding" in p for p in split) and any("gate_kernel" in p for p in split)
