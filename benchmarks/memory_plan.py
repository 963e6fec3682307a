"""Pod-scale memory plan: the 1B and 7B presets' train steps compiled ahead of time for meshes of
simulated CPU devices, with nothing allocated.

    python benchmarks/memory_plan.py                       # the README's table (≈ 10-20 min)
    python benchmarks/memory_plan.py --presets=llama3.2-1b --meshes=8:1x8x1 --steps=reward_model

For each (preset, mesh, step) the step is lowered with `jax.ShapeDtypeStruct` arguments that
carry the shardings a real run would use (parameters and Adam moments by the logical rules, the
batch split over data x fsdp), and compiled by XLA's SPMD partitioner: `memory_analysis()` gives
the bytes one device holds (arguments, outputs not aliased to them, temporaries). Two batch sizes
give the per-example slope, so the largest per-chip batch that fits a 16 GiB (v5e-class) or
95 GiB (v5p-class) HBM follows by a linear fit. The model FLOPs of an example follow PaLM's
formula (`model_flops`).

These are compiled plans, not runs: the numbers are XLA's accounting for the CPU backend's
compilation of the same partitioned program (layouts, fusion and rematerialisation decisions of
a TPU or GPU compiler differ, typically by tens of percent), and nothing here measures time.

Steps (the trainer's own functions): `reward_model` (pairwise Bradley-Terry, scalar head),
`dpo` (DPO with precomputed reference log-probs), `rl` (a GRPO-style policy-gradient update on
completions: the policy's forward and backward, the k3 KL to the reference's forward in the
loss; one epoch, one minibatch).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time

GIB = 2**30
HBM = {"16 GiB (v5e-class)": 16 * GIB, "95 GiB (v5p-class)": 95 * GIB}


def _args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--presets", default="llama3.2-1b,llama2-7b", help="comma-separated presets")
    p.add_argument(
        "--meshes",
        default="8:1x8x1,32:2x8x2,64:2x8x4",
        help="comma-separated devices:data x fsdp x tensor",
    )
    p.add_argument("--steps", default="reward_model,dpo,rl", help="comma-separated steps")
    p.add_argument("--seq_len", type=int, default=2048, help="tokens per sequence")
    p.add_argument(
        "--batches", default="1,2", help="two per-device batch sizes (pairs or rows) for the fit"
    )
    p.add_argument("--out", default="", help="also write the rows as JSONL here")
    return p.parse_args(argv)


def _mesh_spec(text: str) -> tuple[int, tuple[int, int, int]]:
    devices, shape = text.split(":")
    data, fsdp, tensor = (int(x) for x in shape.split("x"))
    if data * fsdp * tensor != int(devices):
        raise SystemExit(f"--meshes: {text}: {data}x{fsdp}x{tensor} != {devices} devices")
    return int(devices), (data, fsdp, tensor)


def main(argv=None) -> None:
    args = _args(argv)
    meshes = [_mesh_spec(m) for m in args.meshes.split(",")]
    most = max(n for n, _ in meshes)
    # Simulated devices must be requested before jax initialises its backends.
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={most}"
    )
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax

    from rewardjax import parallel

    rows = []
    b1, b2 = (int(x) for x in args.batches.split(","))
    print(
        "| preset | mesh (data x fsdp x tensor) | step | params | GiB/device at batch "
        f"{b1} / {b2} | model GFLOP/example | max batch/chip 16 GiB | 95 GiB | compile s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for preset in args.presets.split(","):
        for devices, (data, fsdp, tensor) in meshes:
            mesh = parallel.make_mesh(
                data=data, fsdp=fsdp, tensor=tensor, devices=jax.devices()[:devices]
            )
            for step in args.steps.split(","):
                start = time.perf_counter()
                plans = [_plan(preset, step, mesh, b * data * fsdp, args.seq_len) for b in (b1, b2)]
                row = _row(preset, (data, fsdp, tensor), step, plans, (b1, b2), args.seq_len)
                row["compile_seconds"] = round(time.perf_counter() - start, 1)
                rows.append(row)
                fits = [row["max_batch_per_chip"][k] for k in HBM]
                print(
                    f"| {preset} | {data}x{fsdp}x{tensor} | {step} | {row['params_b']:.2f} B | "
                    f"{row['gib_per_device'][0]:.2f} / {row['gib_per_device'][1]:.2f} | "
                    f"{row['model_gflop_per_example']:.0f} | {fits[0]} | {fits[1]} | "
                    f"{row['compile_seconds']} |",
                    flush=True,
                )
    if args.out:
        with open(args.out, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


def model_flops(preset: str, step: str, n_params: int, seq_len: int) -> float:
    """Model FLOPs of one example's step (PaLM's accounting, arXiv 2204.02311, App. B):
    6 N + 12 L H Q T per trained token (N the parameters that multiply activations, L layers, H
    heads of width Q, T the sequence length), and 2 N + 4 L H Q T per token of a forward-only
    pass (RL's reference); remat's recomputed forward is not counted. A pair is 2 sequences.

    XLA's `cost_analysis()` is not used: it counts the body of the scanned layer loop once."""
    from rewardjax import models

    c = models.get_preset(preset)
    table = c.vocab_size * c.d_model
    # The embedding lookup does no arithmetic; a tied table is the LM head's matmul as well.
    matmul = n_params - table if (step == "reward_model" or not c.tie_embeddings) else n_params
    attention = c.n_layers * c.n_heads * (c.head_dim or c.d_model // c.n_heads) * seq_len
    train, forward = 6 * matmul + 12 * attention, 2 * matmul + 4 * attention
    if step == "rl":  # one row: the policy trained, the reference's forward
        return (train + forward) * seq_len
    return 2 * train * seq_len


def _row(preset, mesh, step, plans, batches, seq_len) -> dict:
    """Linear fit of device bytes in the per-device batch: fixed + slope * batch."""
    (m1, n_params), (m2, _) = plans
    b1, b2 = batches
    slope = (m2 - m1) / (b2 - b1)
    fixed = m1 - slope * b1
    fits = {k: max(int((hbm - fixed) // slope), 0) if slope > 0 else None for k, hbm in HBM.items()}
    return {
        "preset": preset,
        "mesh": "x".join(map(str, mesh)),
        "step": step,
        "params_b": n_params / 1e9,
        "batches": list(batches),
        "gib_per_device": [m1 / GIB, m2 / GIB],
        "model_gflop_per_example": model_flops(preset, step, n_params, seq_len) / 1e9,
        "max_batch_per_chip": fits,
    }


def _plan(preset: str, step: str, mesh, global_batch: int, seq_len: int):
    """(bytes per device, parameter count) of one compiled step."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from rewardjax import models, parallel, rl
    from rewardjax.train import TrainState, make_optimizer, steps
    from rewardjax.train.defaults import base_config

    backbone = models.get_preset(preset, dtype="bfloat16", remat=True)
    config = base_config("reward_model").optimizer
    config.decay_steps = 10_000  # resolved from train.num_steps in a run
    optimizer = make_optimizer(config)
    rules = parallel.DEFAULT_RULES
    if step == "reward_model":
        model = models.RewardModel(models.RewardModelConfig(backbone=backbone, head="scalar"))
    else:
        model = models.CausalLM(backbone)
    example = jnp.ones((1, 8), jnp.int32)
    with parallel.mesh_rules(mesh, rules):
        inputs = (example, example) if step == "reward_model" else (example,)
        boxed = jax.eval_shape(model.init, jax.random.key(0), *inputs)
        param_sh = parallel.logical_shardings(boxed, mesh, rules)
    params = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nn.meta.unbox(boxed),
        param_sh,
    )
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
    opt_sh = parallel.optimizer_shardings(optimizer, params, param_sh, mesh)
    opt_state = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        jax.eval_shape(optimizer.init, params),
        opt_sh,
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    scalar = lambda dtype: jax.ShapeDtypeStruct((), dtype, sharding=replicated)
    state = TrainState(
        step=scalar(jnp.int32),
        params=params,
        opt_state=opt_state,
        rng=jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated),
        tx=optimizer,
    )

    def rows(n, dtype=jnp.int32, length=seq_len):
        shape = (n, length) if length else (n,)
        sharding = parallel.batch_sharding(mesh, len(shape))
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    b = global_batch
    pair = {
        "chosen_tokens": rows(b),
        "chosen_mask": rows(b),
        "chosen_completion_mask": rows(b),
        "rejected_tokens": rows(b),
        "rejected_mask": rows(b),
        "rejected_completion_mask": rows(b),
        "margin": rows(b, jnp.float32, 0),
        "weight": rows(b, jnp.float32, 0),
    }
    logits_fn = lambda p, tokens, mask: model.apply(p, tokens, segment_ids=mask)[0]
    if step == "reward_model":
        fn = functools.partial(steps.reward_model_step, model=model)
        batch = pair
    elif step == "dpo":
        fn = functools.partial(steps.dpo_step, logits_fn=logits_fn)
        batch = {
            **pair,
            "ref_chosen_logps": rows(b, jnp.float32, 0),
            "ref_rejected_logps": rows(b, jnp.float32, 0),
        }
    elif step == "rl":
        fn = functools.partial(_policy_gradient_step, logits_fn=logits_fn, rl=rl)
        batch = {
            "tokens": rows(b),
            "mask": rows(b),
            "completion_mask": rows(b, jnp.float32),
            "old_logps": rows(b, jnp.float32),
            "advantages": rows(b, jnp.float32, 0),
            "reference": params,
        }
    else:
        raise SystemExit(f"--steps: unknown step {step!r}; use reward_model, dpo or rl")
    with parallel.mesh_rules(mesh, rules):
        jitted = jax.jit(fn, donate_argnums=0)
        compiled = jitted.lower(state, batch, jax.random.key(0)).compile()
    memory = compiled.memory_analysis()
    held = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        - memory.alias_size_in_bytes
        + memory.temp_size_in_bytes
    )
    return held, n_params


def _policy_gradient_step(state, batch, rng, *, logits_fn, rl):
    """GRPO's update on one minibatch: clipped ratio loss + beta * k3 KL to the reference."""
    import jax
    import jax.numpy as jnp

    from rewardjax.sampling import token_logprobs

    del rng
    tokens, mask, cmask = batch["tokens"], batch["mask"], batch["completion_mask"][:, 1:]

    def logps(params):
        logits = logits_fn(params, tokens, mask)[:, :-1]
        return token_logprobs(logits, tokens[:, 1:])

    ref = jax.lax.stop_gradient(logps(batch["reference"]))

    def objective(params):
        logp = logps(params)
        adv = jnp.broadcast_to(batch["advantages"][:, None], logp.shape)
        loss, _ = rl.policy_losses.ppo_clip(logp, batch["old_logps"][:, 1:], adv, cmask)
        loss = loss + 0.04 * rl.kl_penalty.token_kl(logp, ref, cmask, estimator="k3")
        return rl.aggregation.aggregate(loss, cmask, "seq_mean_token_mean")

    grads = jax.grad(objective)(state.params)
    return state.apply_gradients(grads), {}


if __name__ == "__main__":
    main(sys.argv[1:])
