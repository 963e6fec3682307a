"""Meshes, logical-axis sharding rules, sharded initialisation and multi-host start-up.

Modules name logical axes only (`embed`, `mlp`, `heads`, `batch`, ...). A rule list maps each
logical axis to mesh axes of a `(data, fsdp, tensor)` mesh; the mesh shape then picks the strategy:

- data parallel: `data=N`; parameters replicated, the batch split over `data`;
- FSDP (ZeRO-3): `fsdp=N`; parameters and optimizer state split along `embed`, the batch split over
  `("data", "fsdp")`, XLA all-gathers the weights of each layer when it needs them;
- tensor parallel: `tensor=N`; attention heads, MLP width and vocabulary split over `tensor`
  (Megatron-LM, arXiv 1909.08053).

The flow is shapes first: `jax.eval_shape(init)` gives the parameter shapes and their logical
names, the rules turn them into `NamedSharding`s, and `jax.jit(init, out_shardings=...)` creates
every parameter directly on its shards (`sharded_init`). Optimizer state takes the shardings of the
parameters it mirrors (`sharded_optimizer_init`), batches are split over `("data", "fsdp")`
(`shard_batch`, which also assembles a global batch from per-process rows on several hosts).

Multi-host: call `initialize_distributed` first thing in the entry point of every process
(`python -m rewardjax.main --coordinator_address=... --num_processes=... --process_id=...`);
`host_local` gives process 0 full copies of global arrays for evaluation and reports.

Papers: ZeRO: Memory Optimizations Toward Training Trillion Parameter Models (arXiv 1910.02054);
Megatron-LM (arXiv 1909.08053); GSPMD: General and Scalable Parallelization for ML Computation
Graphs (arXiv 2105.04663).
"""

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "BATCH_AXES",
    "DEFAULT_RULES",
    "MESH_AXES",
    "batch_sharding",
    "host_local",
    "initialize_distributed",
    "logical_rules",
    "logical_shardings",
    "make_mesh",
    "mesh_from_config",
    "mesh_rules",
    "optimizer_shardings",
    "rules_as_strings",
    "shard_batch",
    "sharded_init",
    "sharded_optimizer_init",
]

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# Earlier rules win when two logical axes of one array want the same mesh axis (e.g. an activation
# ("batch", "length", "embed") keeps fsdp for the batch and leaves embed unsplit).
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("embed", "fsdp"),
    ("length", None),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
    ("head_mlp", None),
    ("rewards", None),
    ("ensemble", None),
)

Rules = Sequence[tuple[str, str | tuple[str, ...] | None]]


def make_mesh(
    *, data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[Any] | None = None
) -> Mesh:
    """A `(data, fsdp, tensor)` mesh over `devices` (default: all devices of all processes).

    One size may be -1: it takes whatever the others leave. Axes are `AxisType.Auto`, so shardings
    propagate through `jit` as GSPMD decides.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = {"data": data, "fsdp": fsdp, "tensor": tensor}
    free = [name for name, size in sizes.items() if size == -1]
    if len(free) > 1 or any(size == 0 or size < -1 for size in sizes.values()):
        raise ValueError(f"mesh sizes {sizes}: each must be >= 1, and at most one may be -1.")
    fixed = int(np.prod([size for size in sizes.values() if size != -1]))
    if free:
        if len(devices) % fixed:
            raise ValueError(f"mesh sizes {sizes} do not divide the {len(devices)} devices.")
        sizes[free[0]] = len(devices) // fixed
    if int(np.prod(list(sizes.values()))) != len(devices):
        raise ValueError(
            f"mesh sizes {sizes} multiply to {int(np.prod(list(sizes.values())))}, but there are "
            f"{len(devices)} devices; make data * fsdp * tensor equal the device count (or set one "
            "of them to -1)."
        )
    return jax.make_mesh(
        tuple(sizes[a] for a in MESH_AXES),
        MESH_AXES,
        axis_types=(AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )


def mesh_from_config(config: Mapping[str, Any]) -> Mesh:
    """`make_mesh` from a config section with optional fields `data`, `fsdp`, `tensor`.

    Works with a `ml_collections.ConfigDict` or a dict; unknown fields are an error. A missing
    `data` takes the devices left over, unless another axis already does (-1), then it is 1.
    """
    fields = dict(config)
    unknown = set(fields) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"mesh config has unknown fields {sorted(unknown)}; use {MESH_AXES}.")
    fields.setdefault("data", 1 if -1 in fields.values() else -1)
    return make_mesh(**fields)


def logical_rules(overrides: Mapping[str, str | Sequence[str] | None] | None = None) -> Rules:
    """`DEFAULT_RULES` with some logical axes remapped, e.g. `{"embed": None}` turns FSDP off.

    A value is a mesh axis, a sequence of them, None (not split), or, as a config writes it, a
    comma-separated string of mesh axes ("data,fsdp"; "" = not split).
    """
    overrides = dict(overrides or {})
    for name, axes in overrides.items():
        if isinstance(axes, str):
            axes = tuple(a.strip() for a in axes.split(",") if a.strip())
            overrides[name] = None if not axes else axes[0] if len(axes) == 1 else axes
        unknown = {a for a in _axes_tuple(overrides[name]) if a not in MESH_AXES}
        if unknown:
            raise ValueError(
                f"sharding rule {name!r} -> {axes!r}: unknown mesh axes {sorted(unknown)}; "
                f"use {MESH_AXES} (comma-separated), or '' to leave {name!r} unsplit."
            )
    normalise = lambda v: tuple(v) if isinstance(v, list | tuple) else v
    rules = [(name, normalise(overrides.pop(name, axes))) for name, axes in DEFAULT_RULES]
    return tuple(rules + [(name, normalise(axes)) for name, axes in overrides.items()])


def _axes_tuple(axes: str | Sequence[str] | None) -> tuple[str, ...]:
    return () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)


def rules_as_strings(rules: Rules = DEFAULT_RULES) -> dict[str, str]:
    """`rules` as a config holds them: logical axis -> comma-separated mesh axes ("" unsplit)."""
    return {name: ",".join(_axes_tuple(axes)) for name, axes in rules}


def logical_shardings(tree: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Any:
    """`NamedSharding`s for a (possibly abstract) tree whose leaves may carry logical names.

    `nn.Partitioned` leaves are sharded by their names through `rules`; every other leaf is
    replicated. The result has the structure of `nn.meta.unbox(tree)`.
    """
    specs = nn.get_partition_spec(tree)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


@contextlib.contextmanager
def mesh_rules(mesh: Mesh, rules: Rules = DEFAULT_RULES) -> Iterator[None]:
    """Makes `mesh` and `rules` current, so activation constraints (`nn.with_logical_constraint`)
    inside modules take effect while tracing."""
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def sharded_init(
    init_fn: Callable[..., Any], *args: Any, mesh: Mesh, rules: Rules = DEFAULT_RULES
) -> tuple[Any, Any]:
    """Shapes first: builds each parameter directly on its shards.

    `jax.eval_shape(init_fn, *args)` → shardings from the logical names → `jax.jit(init_fn,
    out_shardings=...)`. Returns `(params, shardings)` with plain (unboxed) params.

    Args:
      init_fn: e.g. `model.init`, called as `init_fn(*args)`.
      args: its arguments (an RNG key, example inputs).
      mesh, rules: where and how to shard.
    """
    with mesh_rules(mesh, rules):
        shardings = logical_shardings(jax.eval_shape(init_fn, *args), mesh, rules)
        init = jax.jit(lambda *a: nn.meta.unbox(init_fn(*a)), out_shardings=shardings)
        return init(*args), shardings


def optimizer_shardings(
    optimizer: optax.GradientTransformation, params: Any, param_shardings: Any, mesh: Mesh
) -> Any:
    """Shardings of `optimizer.init(params)`: each param-shaped subtree (Adam moments, ...) takes
    the params' shardings; everything else (step counts, scalars) is replicated."""
    abstract = jax.eval_shape(optimizer.init, params)
    return optax.tree_map_params(
        optimizer,
        lambda _, sharding: sharding,
        abstract,
        param_shardings,
        transform_non_params=lambda _: NamedSharding(mesh, PartitionSpec()),
    )


def sharded_optimizer_init(
    optimizer: optax.GradientTransformation, params: Any, param_shardings: Any, mesh: Mesh
) -> tuple[Any, Any]:
    """`(opt_state, opt_state_shardings)`, the state created directly on its shards."""
    shardings = optimizer_shardings(optimizer, params, param_shardings, mesh)
    return jax.jit(optimizer.init, out_shardings=shardings)(params), shardings


def batch_sharding(mesh: Mesh, ndim: int) -> NamedSharding:
    """Rows split over `("data", "fsdp")`, other dimensions whole."""
    if ndim == 0:
        return NamedSharding(mesh, PartitionSpec())
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES, *([None] * (ndim - 1))))


def shard_batch(local_batch: Any, mesh: Mesh) -> Any:
    """A global batch split over `("data", "fsdp")` from the rows this process holds.

    On one process pass the whole batch. On several, each process passes its own rows (the same
    number on every process) and the global batch is their concatenation in process order
    (`jax.make_array_from_process_local_data`). Leading dimensions must divide evenly over the
    `data * fsdp` devices.
    """

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(batch_sharding(mesh, x.ndim), x)

    return jax.tree.map(put, local_batch)


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    local_device_ids: Sequence[int] | None = None,
    cpu_collectives: str = "gloo",
) -> None:
    """Joins this process to a multi-host run; call it before anything else touches JAX devices.

    Wraps `jax.distributed.initialize`. Arguments left None are detected from the cluster
    environment (SLURM, Open MPI, TPU pods, Kubernetes, ...) by JAX. On CPU, cross-process
    collectives need an implementation: `cpu_collectives` ("gloo" or "mpi") sets
    `jax_cpu_collectives_implementation` first (only entry points set `jax.config`, and this runs
    at the start of one).

    Args:
      coordinator_address: "host:port" of process 0, the same on every process.
      num_processes: how many processes take part.
      process_id: this process, in [0, num_processes).
      local_device_ids: devices of this host to use (default: all).
      cpu_collectives: CPU collectives implementation.
    """
    if num_processes is not None and process_id is not None:
        if not 0 <= process_id < num_processes:
            raise ValueError(
                f"process_id={process_id} must be in [0, num_processes={num_processes})."
            )
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )


def host_local(tree: Any) -> Any:
    """`tree` with every array usable by this process alone (evaluation, reports, plots).

    On one process that is `tree` itself. On several, a global array may live partly on other
    hosts; this returns full numpy copies on every process (`process_allgather`), so the caller
    can then compute on process 0 only, without collectives. A collective: every process must
    call it.
    """
    if jax.process_count() == 1:
        return tree
    return multihost_utils.process_allgather(tree, tiled=True)
