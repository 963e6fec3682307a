"""The training loop: jitted steps, checkpoints, resume, metrics, SIGTERM and non-finite losses.

`fit` drives any pure step `(state, batch, rng) -> (state, metrics)`. The step's key is
`fold_in(state.rng, state.step)`, so a run is a function of the seed and the data order alone,
and a run resumed from a checkpoint (state and data-iterator position) continues exactly as an
uninterrupted one would.

Several processes (`parallel.initialize_distributed`) run the same loop: each feeds its own rows
of every global batch, all of them save checkpoints together, process 0 alone writes metrics,
shows the progress bar and runs the evaluation (on host copies of the parameters), and a SIGTERM
to any of them stops all of them at the same step (JAX's preemption sync point).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np
import tqdm
from jax.experimental import multihost_utils

from rewardjax import parallel
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.metrics import MetricWriter
from rewardjax.train.state import TrainState

__all__ = ["NonFiniteLossError", "Preempted", "fit"]

# Metrics whose non-finite value stops the run. The loss and gradient are computed before the
# step's update, the parameter norm after it: a finite gradient times a huge learning rate can
# still ruin the parameters, and no checkpoint of ruined parameters may be kept.
_CHECKED = ("loss", "grad_norm", "param_norm")

StepFn = Callable[[TrainState, Mapping[str, Any], jax.Array], tuple[TrainState, dict]]


class NonFiniteLossError(FloatingPointError):
    """The loss, gradient norm or parameter norm became NaN or infinite; the last checkpoint
    with finite parameters is kept."""


class Preempted(Exception):
    """SIGTERM was received; a checkpoint of the current step was saved before stopping."""


def _rng_step(step_fn: StepFn) -> Callable:
    def step(state, batch):
        return step_fn(state, batch, jax.random.fold_in(state.rng, state.step))

    return step


class _SigtermFlag:
    """Records SIGTERM instead of dying, so the loop can save first (main thread only).

    With several processes JAX's preemption service owns SIGTERM: `stop(step)` turns true on
    every process at the same step once any of them received it.
    """

    def __init__(self):
        self.received = False
        self._previous = None
        self._multihost = jax.process_count() > 1

    def __enter__(self):
        # Signal handlers can only be installed from the main thread; elsewhere SIGTERM kills.
        if not self._multihost and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True

    def stop(self, step: int) -> bool:
        if self._multihost:
            return multihost_utils.reached_preemption_sync_point(step)
        return self.received

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def fit(
    state: TrainState,
    step_fn: StepFn,
    batches: Iterator[Mapping[str, Any]],
    *,
    workdir: str,
    num_steps: int,
    log_every: int = 10,
    checkpoint_every: int = 100,
    max_to_keep: int = 3,
    stop_at_step: int = 0,
    batch_fn: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    eval_fn: Callable[[TrainState], Mapping[str, float]] | None = None,
    eval_every: int = 0,
    eval_at_end: bool = True,
    mesh: jax.sharding.Mesh | None = None,
    rules: parallel.Rules = parallel.DEFAULT_RULES,
    state_sharding: Any = None,
    progress_bar: bool = True,
    jit: bool = True,
) -> TrainState:
    """Trains `state` with `step_fn` on `batches` until step `num_steps`, resuming from `workdir`.

    Args:
      state: a freshly initialised state (placed with `state_sharding`); replaced by the latest
        checkpoint in `<workdir>/checkpoints` if there is one.
      step_fn: pure `(state, batch, rng) -> (state, metrics)`; metrics must include `loss`.
      batches: a grain iterator (its position is checkpointed) of batches (dicts of arrays).
      workdir: checkpoints go to `<workdir>/checkpoints`, metrics to `metrics.jsonl` and
        `tensorboard/`.
      num_steps: total number of steps of the run (not of this invocation).
      log_every: write metrics averaged over the last `log_every` steps.
      checkpoint_every: save every this many steps (and always at the end).
      max_to_keep: checkpoints to keep.
      stop_at_step: if > 0, save and return once this step is reached (a time-sliced job; the
        schedule still runs to `num_steps`).
      batch_fn: applied to each (sharded) batch before the step, e.g. a jitted function adding
        reference log-probs.
      eval_fn: `state -> metrics`, called every `eval_every` steps (and at the end when
        `eval_at_end`); logged with an `eval/` prefix. It runs outside the mesh, on process 0
        only, with host copies of the parameters (`parallel.host_local`): on several processes
        it must not use global arrays (e.g. take the reference's through `host_local` too).
      mesh, rules: each batch is split over the mesh's batch axes (`parallel.shard_batch`) and
        steps are traced under `parallel.mesh_rules(mesh, rules)`; None runs on one device.
      state_sharding: shardings of `state` (from `parallel.sharded_init`) for `jax.jit`.
      progress_bar: show a tqdm bar (on process 0).
      jit: jit `step_fn` with `state_sharding` and donate the state (the default). False calls it
        as it is, for a step that jits its own parts around host work (the RL iteration: sample,
        score with any reward function, update).

    Returns:
      The final state.

    Raises:
      NonFiniteLossError: the loss, gradient norm or parameter norm became NaN/inf (nothing is
        saved after the last step whose loss, gradient and updated parameters were finite).
      Preempted: SIGTERM arrived; a checkpoint of the current step was saved.
    """
    checkpointer = Checkpointer(f"{workdir}/checkpoints", max_to_keep=max_to_keep)
    if checkpointer.latest_step() is not None:
        state = checkpointer.restore(state, batches)
        logging.info("Resumed from step %d in %s.", int(state.step), checkpointer.directory)
    # Replicated metrics: every process can read them (and stop on a non-finite loss together).
    replicated = None if mesh is None else parallel.batch_sharding(mesh, 0)
    if jit:
        run_step = jax.jit(
            _rng_step(step_fn),
            in_shardings=(state_sharding, None),
            out_shardings=(state_sharding, replicated),
            donate_argnums=0,
        )
    else:
        run_step = _rng_step(step_fn)
    writer = MetricWriter(workdir)
    step = int(jax.device_get(state.step))
    last_step = min(num_steps, stop_at_step) if stop_at_step > 0 else num_steps
    pending: list[tuple[int, dict]] = []  # device metrics not yet checked or written
    last_saved = step if checkpointer.latest_step() == step else None
    timer = time.perf_counter()

    def flush() -> None:
        """Checks the pending losses for non-finite values, then writes their mean."""
        nonlocal timer
        if not pending:
            return
        host = jax.device_get([m for _, m in pending])
        for (s, _), m in zip(pending, host):
            # A non-finite gradient corrupts the parameters even when the loss was still finite.
            bad = {k: float(m[k]) for k in _CHECKED if k in m and not np.isfinite(m[k])}
            if bad:
                checkpointer.wait()
                kept = checkpointer.latest_step()
                raise NonFiniteLossError(
                    f"Non-finite {', '.join(f'{k} {v}' for k, v in bad.items())} at step {s}; "
                    f"stopping. The last good checkpoint is step {kept} in "
                    f"{checkpointer.directory}"
                    + ("" if kept is not None else " (none was saved)")
                    + ". Lower optimizer.learning_rate, set optimizer.grad_clip_norm, or check "
                    "the data, then rerun with the same --workdir to resume from it."
                )
        mean = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
        elapsed = time.perf_counter() - timer
        mean["steps_per_sec"] = len(host) / max(elapsed, 1e-9)
        writer.write(pending[-1][0], mean)
        if bar is not None:
            bar.set_postfix(loss=f"{mean['loss']:.4f}")
        pending.clear()
        timer = time.perf_counter()

    def save() -> None:
        nonlocal last_saved
        flush()
        if last_saved != step:
            checkpointer.save(state, batches)
            last_saved = step

    def evaluate() -> None:
        if eval_fn is None:
            return
        # Every process gathers the parameters, then process 0 evaluates alone (no collectives).
        local = state.replace(params=parallel.host_local(state.params))
        if primary:
            writer.write(step, {f"eval/{k}": v for k, v in eval_fn(local).items()})

    primary = jax.process_index() == 0
    bar = tqdm.tqdm(
        total=num_steps, initial=step, disable=not (progress_bar and primary), desc="train"
    )
    # Only the step runs under the mesh: the evaluation on host copies must not be constrained
    # to devices of other processes.
    context = lambda: (
        parallel.mesh_rules(mesh, rules) if mesh is not None else contextlib.nullcontext()
    )
    try:
        with _SigtermFlag() as sigterm:
            while step < last_step:
                batch = next(batches)
                with context():
                    if mesh is not None:
                        batch = parallel.shard_batch(batch, mesh)
                    if batch_fn is not None:
                        batch = batch_fn(batch)
                    state, metrics = run_step(state, batch)
                step += 1
                pending.append((step, metrics))
                bar.update(1)
                if step % log_every == 0:
                    flush()
                if eval_every and step % eval_every == 0:
                    flush()
                    evaluate()
                if step % checkpoint_every == 0:
                    save()
                if sigterm.stop(step):
                    save()
                    checkpointer.wait()
                    raise Preempted(
                        f"SIGTERM at step {step}: checkpoint saved in {checkpointer.directory}; "
                        "rerun with the same --workdir to resume."
                    )
            save()
            if eval_at_end and eval_fn is not None and not (eval_every and step % eval_every == 0):
                evaluate()
    finally:
        bar.close()
        checkpointer.wait()
        checkpointer.close()
        writer.close()
    return state
