"""Subprocess worker for tests/test_parallel.py: each run needs a fresh JAX process.

python tests/parallel_worker.py OUT_DIR
    8 simulated CPU devices: one train step of a tiny reward model on one device (saved as the
    reference) and with data, FSDP and tensor parallelism; writes the max differences as JSON.

Two processes joined by jax.distributed are tested end to end in tests/test_main_multiprocess.py.
"""

import json
import os
import sys

# Simulated devices; the low backend optimisation level only shortens compiles (every result that is
# compared is computed in a process with the same flags).
os.environ["XLA_FLAGS"] = (
    "--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
    + os.environ.get("XLA_FLAGS", "")
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.core import meta

from rewardjax import parallel
from rewardjax.models import RewardModel, RewardModelConfig, get_preset, score_pairs

B, T = 8, 16
MODEL = RewardModel(
    RewardModelConfig(
        backbone=get_preset("tiny", n_layers=1), head="scalar", head_kwargs={"hidden_dim": 16}
    )
)
OPTIMIZER = optax.adamw(1e-3, eps=1e-4)


def make_batch() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    batch = {}
    for side in ("chosen", "rejected"):
        lengths = rng.integers(6, T + 1, size=B)
        real = np.arange(T)[None] < lengths[:, None]
        batch[f"{side}_tokens"] = np.where(real, rng.integers(1, 256, size=(B, T)), 0).astype(
            np.int32
        )
        batch[f"{side}_mask"] = real.astype(np.int32)
        batch[f"{side}_completion_mask"] = (real & (np.arange(T)[None] >= 4)).astype(np.int32)
    return batch


def loss_fn(params, batch):
    chosen, rejected = score_pairs(MODEL, params, batch)
    return jnp.mean(-jax.nn.log_sigmoid(chosen.reward - rejected.reward)), chosen.reward


def train_step(params, opt_state, batch):
    (loss, rewards), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
    updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, rewards


def flatten(tree) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree.leaves_with_path(tree)}


def init_single():
    example = make_batch()
    return meta.unbox(
        MODEL.init(jax.random.key(0), example["chosen_tokens"][:1], example["chosen_mask"][:1])
    )


def run(mesh, local_batch):
    """Sharded init, one sharded train step; returns host copies of (loss, rewards, params)."""
    example = {k: v[:1] for k, v in make_batch().items()}
    params, shardings = parallel.sharded_init(
        MODEL.init,
        jax.random.key(0),
        example["chosen_tokens"],
        example["chosen_mask"],
        mesh=mesh,
    )
    opt_state, opt_shardings = parallel.sharded_optimizer_init(OPTIMIZER, params, shardings, mesh)
    batch = parallel.shard_batch(local_batch, mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    with parallel.mesh_rules(mesh):
        step = jax.jit(
            train_step,
            out_shardings=(shardings, opt_shardings, replicated, replicated),
            donate_argnums=(0, 1),
        )
        params, opt_state, loss, rewards = step(params, opt_state, batch)
    shard_shapes = {
        jax.tree_util.keystr(k): list(v.addressable_shards[0].data.shape)
        for k, v in jax.tree.leaves_with_path(params)
    }
    loss, rewards, params = parallel.host_local((loss, rewards, params))
    return np.asarray(loss), np.asarray(rewards), flatten(params), shard_shapes


def single_device():
    params = init_single()
    params, _, loss, rewards = jax.jit(train_step)(params, OPTIMIZER.init(params), make_batch())
    return np.asarray(loss), np.asarray(rewards), flatten(params)


def max_diff(a, b):
    return float(max(np.max(np.abs(a[k] - b[k])) for k in a))


def main():
    loss, rewards, params = single_device()
    report = {"step_change": max_diff(params, flatten(init_single()))}
    for name, sizes in {
        "data": dict(data=8),
        "fsdp": dict(data=1, fsdp=8),
        "tensor": dict(data=4, tensor=2),
    }.items():
        m_loss, m_rewards, m_params, shard_shapes = run(parallel.make_mesh(**sizes), make_batch())
        report[name] = {
            "loss": float(abs(m_loss - loss)),
            "rewards": float(np.max(np.abs(m_rewards - rewards))),
            "params": max_diff(m_params, params),
            "shard_shapes": shard_shapes,
        }
    with open(os.path.join(sys.argv[1], "modes.json"), "w") as f:
        json.dump(report, f)


if __name__ == "__main__":
    main()
