"""rewardjax.parallel: meshes, rules, sharded init; sharded runs equal one device.

The multi-device checks run tests/parallel_worker.py in a fresh process (8 simulated CPU devices);
two processes joined by jax.distributed (gloo) are tested end to end, through `python -m
rewardjax.main`, in tests/test_main_multiprocess.py.
"""

import json
import os
import subprocess
import sys

import flax.linen as nn
import jax
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from rewardjax import parallel
from rewardjax.models import EnsembleHead, ScalarHead

WORKER = os.path.join(os.path.dirname(__file__), "parallel_worker.py")
TOL = 1e-5  # float32 rounding: reductions run in a different order on different shardings


def _worker(*args):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    return subprocess.Popen(
        [sys.executable, WORKER, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(proc, timeout=540):
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-4000:]


def test_data_fsdp_and_tensor_parallel_train_step_equals_one_device(tmp_path):
    _finish(_worker(tmp_path))
    report = json.loads((tmp_path / "modes.json").read_text())
    assert report["step_change"] > 1e-4  # the step really moved the parameters
    embedding = "['params']['backbone']['embed']['embedding']"  # [vocab=256, embed=64]
    q_kernel = "['params']['backbone']['layers']['attn']['q_kernel']"  # [layers, embed, heads, hd]
    expected_shards = {
        "data": {embedding: [256, 64], q_kernel: [1, 64, 4, 16]},
        "fsdp": {embedding: [256, 8], q_kernel: [1, 8, 4, 16]},
        "tensor": {embedding: [128, 64], q_kernel: [1, 64, 2, 16]},
    }
    for mode, shards in expected_shards.items():
        result = report[mode]
        for name, shape in shards.items():
            assert result["shard_shapes"][name] == shape, (mode, name)
        assert result["loss"] <= TOL, mode
        assert result["rewards"] <= TOL, mode
        assert result["params"] <= TOL, mode


def _mesh():
    return parallel.make_mesh(data=-1)


def test_make_mesh_sizes_and_errors():
    mesh = _mesh()
    assert mesh.axis_names == parallel.MESH_AXES
    assert dict(mesh.shape) == {"data": jax.device_count(), "fsdp": 1, "tensor": 1}
    with pytest.raises(ValueError, match="multiply to"):
        parallel.make_mesh(data=jax.device_count() + 1)
    with pytest.raises(ValueError, match="at most one may be -1"):
        parallel.make_mesh(data=-1, fsdp=-1)
    with pytest.raises(ValueError, match="unknown fields"):
        parallel.mesh_from_config({"data": 1, "model": 2})
    assert dict(parallel.mesh_from_config({"fsdp": -1}).shape)["fsdp"] == jax.device_count()


def test_logical_rules_overrides_keep_order_and_add_names():
    rules = dict(parallel.logical_rules({"embed": None, "experts": ["data", "tensor"]}))
    assert rules["embed"] is None and rules["experts"] == ("data", "tensor")
    assert rules["mlp"] == "tensor" and rules["batch"] == ("data", "fsdp")
    assert parallel.logical_rules() == parallel.DEFAULT_RULES


def test_logical_shardings_follow_parameter_names():
    x = np.zeros((2, 8), np.float32)
    head = EnsembleHead(num_members=3, hidden_dim=4)
    abstract = jax.eval_shape(head.init, jax.random.key(0), x)
    shardings = parallel.logical_shardings(abstract, _mesh())
    member = shardings["params"]["members"]
    # ensemble -> unsharded, embed -> fsdp, head_mlp -> unsharded.
    assert member["hidden"]["kernel"].spec == PartitionSpec(None, "fsdp", None)
    assert member["out"]["bias"].spec == PartitionSpec(None, None)
    # An activation constraint keeps fsdp for the batch, so embed stays whole there.
    axes = nn.logical_to_mesh_axes(("batch", "length", "embed"), parallel.DEFAULT_RULES)
    assert axes == PartitionSpec(("data", "fsdp"), None, None)


def test_sharded_init_and_optimizer_state_shardings():
    mesh = _mesh()
    x = np.ones((2, 8), np.float32)
    head = ScalarHead(hidden_dim=4)
    params, shardings = parallel.sharded_init(head.init, jax.random.key(0), x, mesh=mesh)
    plain = nn.meta.unbox(head.init(jax.random.key(0), x))
    jax.tree.map(np.testing.assert_array_equal, params, plain)
    assert params["params"]["hidden"]["kernel"].sharding == shardings["params"]["hidden"]["kernel"]
    optimizer = optax.adamw(1e-3)
    state, state_shardings = parallel.sharded_optimizer_init(optimizer, params, shardings, mesh)
    mu = state_shardings[0].mu["params"]["hidden"]["kernel"]
    assert mu == shardings["params"]["hidden"]["kernel"]
    assert state_shardings[0].count == NamedSharding(mesh, PartitionSpec())
    jax.tree.map(lambda s, a: s == a.sharding or pytest.fail(str(s)), state_shardings, state)


def test_shard_batch_keeps_values_and_splits_rows():
    mesh = _mesh()
    batch = {"tokens": np.arange(24, dtype=np.int32).reshape(8, 3), "weight": np.ones(8)}
    sharded = parallel.shard_batch(batch, mesh)
    np.testing.assert_array_equal(sharded["tokens"], batch["tokens"])
    assert sharded["tokens"].sharding.spec == PartitionSpec(("data", "fsdp"), None)
    assert parallel.host_local(sharded) is sharded  # one process: nothing to gather


def test_initialize_distributed_checks_process_id():
    with pytest.raises(ValueError, match="process_id=2"):
        parallel.initialize_distributed(
            coordinator_address="localhost:1", num_processes=2, process_id=2
        )
