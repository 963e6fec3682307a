"""Reward-model forward+backward throughput (preference pairs/s): rewardjax vs PyTorch transformers.

The same model on both sides: a Llama backbone of the named preset with a linear reward head read
at the last real token (`LlamaForSequenceClassification`, num_labels=1), float32 on CPU, the same
weights (exported with `models.save_hf`), the same right-padded batch of chosen/rejected pairs and
the Bradley–Terry loss. One step = loss and gradients of every parameter (no optimizer update).
The JAX step runs on one XLA CPU device per core with the batch split over them (`--cpu_devices`),
as torch runs one thread per core. Also prints the JAX step's model FLOP utilisation against a
measured float32 matmul peak.

  python benchmarks/reward_model_benchmark.py [--preset tiny] [--pairs 16] [--length 128]
"""

import argparse
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from flax import linen as nn
from jax.sharding import NamedSharding, PartitionSpec

from rewardjax import losses, parallel
from rewardjax.models import RewardModel, RewardModelConfig, get_preset, save_hf, score_pairs


def make_batch(pairs: int, length: int, vocab: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = {}
    for side in ("chosen", "rejected"):
        lengths = rng.integers(length // 2, length + 1, size=pairs)
        real = np.arange(length)[None] < lengths[:, None]
        tokens = np.where(real, rng.integers(1, vocab, size=(pairs, length)), 0)
        batch[f"{side}_tokens"] = tokens.astype(np.int32)
        batch[f"{side}_mask"] = real.astype(np.int32)
    return batch


def time_steps(step, steps: int) -> float:
    """Seconds per call of `step` (already warmed up), median of `steps` timed calls."""
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_interleaved(steps_by_name: dict, steps: int, rounds: int = 5) -> dict[str, float]:
    """Median seconds per call of each step, timed in alternating rounds so that both sides see
    the same background load on a shared machine."""
    times = {name: [] for name in steps_by_name}
    for _ in range(rounds):
        for name, step in steps_by_name.items():
            times[name].append(time_steps(step, max(1, steps // rounds)))
    return {name: float(np.median(t)) for name, t in times.items()}


def matmul_peak_flops(n: int = 2048, steps: int = 10) -> float:
    """Measured float32 matmul FLOP/s of this machine (through XLA)."""
    a = jnp.ones((n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    return 2 * n**3 / time_steps(lambda: matmul(a).block_until_ready(), steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--cpu_devices",
        type=int,
        default=os.cpu_count(),
        help="XLA CPU devices, the batch split over them (default: one per core, as torch runs "
        "one thread per core)",
    )
    args = parser.parse_args()
    jax.config.update("jax_num_cpu_devices", args.cpu_devices)
    mesh = parallel.make_mesh()

    backbone = get_preset(args.preset)
    model = RewardModel(RewardModelConfig(backbone=backbone, head="scalar"))
    batch = make_batch(args.pairs, args.length, backbone.vocab_size)
    params = nn.meta.unbox(
        model.init(jax.random.key(0), batch["chosen_tokens"][:1], batch["chosen_mask"][:1])
    )
    params["params"]["head"]["out"]["bias"] = jnp.zeros(1)  # HF's score layer has no bias

    def loss_fn(p, b):
        chosen, rejected = score_pairs(model, p, b)
        return jnp.mean(losses.bradley_terry(chosen.reward, rejected.reward)), chosen.reward

    jax_step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
    device_batch = parallel.shard_batch(batch, mesh)
    (jax_loss, jax_rewards), _ = jax_step(params, device_batch)
    jax.block_until_ready(jax_step(params, device_batch))

    transformers.logging.set_verbosity_error()  # the score layer is set below, not loaded
    with tempfile.TemporaryDirectory() as folder:
        lm_params = {
            "params": {
                "transformer": params["params"]["backbone"],
                "lm_head": jnp.zeros((backbone.d_model, backbone.vocab_size)),
            }
        }
        save_hf(folder, backbone, lm_params)
        hf = transformers.LlamaForSequenceClassification.from_pretrained(
            folder, num_labels=1, pad_token_id=0, torch_dtype=torch.float32
        )
    with torch.no_grad():
        hf.score.weight.copy_(torch.tensor(np.asarray(params["params"]["head"]["out"]["kernel"]).T))
    hf.train()  # dropout is 0 in Llama; train mode as in a real training step
    tokens = torch.from_numpy(np.concatenate([batch["chosen_tokens"], batch["rejected_tokens"]]))
    mask = torch.from_numpy(np.concatenate([batch["chosen_mask"], batch["rejected_mask"]]))

    def torch_step():
        hf.zero_grad(set_to_none=True)
        rewards = hf(input_ids=tokens.long(), attention_mask=mask).logits[:, 0]
        chosen, rejected = rewards[: args.pairs], rewards[args.pairs :]
        loss = -torch.nn.functional.logsigmoid(chosen - rejected).mean()
        loss.backward()
        return loss.detach(), chosen.detach()

    torch_loss, torch_rewards = torch_step()
    torch_step()
    seconds = time_interleaved(
        {"jax": lambda: jax.block_until_ready(jax_step(params, device_batch)), "torch": torch_step},
        args.steps,
    )
    jax_seconds, torch_seconds = seconds["jax"], seconds["torch"]

    jax_rate, torch_rate = args.pairs / jax_seconds, args.pairs / torch_seconds
    print(
        f"preset={args.preset} pairs={args.pairs} length={args.length} "
        f"jax={jax.__version__} ({jax.default_backend()}, {args.cpu_devices} devices) "
        f"torch={torch.__version__} "
        f"threads={torch.get_num_threads()} transformers={transformers.__version__}"
    )
    print(
        f"same model: |loss diff| = {abs(float(jax_loss) - float(torch_loss)):.2e}, "
        f"max |reward diff| = {np.max(np.abs(np.asarray(jax_rewards) - torch_rewards.numpy())):.2e}"
    )
    print(f"rewardjax (jit)        : {jax_rate:10.1f} pairs/s  ({1e3 * jax_seconds:.2f} ms/step)")
    print(
        f"transformers (PyTorch) : {torch_rate:10.1f} pairs/s  ({1e3 * torch_seconds:.2f} ms/step)"
    )
    print(f"ratio rewardjax / PyTorch: {jax_rate / torch_rate:.2f}x")

    flops = jax_step.lower(params, device_batch).compile().cost_analysis()
    flops = (flops[0] if isinstance(flops, list) else flops).get("flops", float("nan"))
    flops *= args.cpu_devices  # cost analysis counts one device's share
    peak = matmul_peak_flops()
    achieved = flops / jax_seconds
    print(
        f"JAX step: {flops / 1e9:.2f} GFLOP (XLA cost analysis), {achieved / 1e9:.1f} GFLOP/s; "
        f"measured f32 matmul peak {peak / 1e9:.1f} GFLOP/s; MFU {achieved / peak:.1%}"
    )


if __name__ == "__main__":
    main()
