"""Evaluating process reward models: step accuracy and AUROC, first-error F1, value correlation.

Step scores are logits z_s (`models.score_prefixes`); σ(z_s) is the PRM's value of the prefix that
ends at step s. The truth of a step is either a label in [0, 1] (binary, or a soft label /
normalised value v̄_s with "correct" meaning v̄_s ≥ a threshold) or, on the synthetic task, the
exact value function.

- `step_accuracy`: agreement of 1[σ(z) ≥ decision threshold] with the correct / erroneous truth.
- `step_auroc`: the probability that a correct step scores above an erroneous one (ties 1/2).
- `first_error` + `first_error_f1`: ProcessBench's task — the index of the earliest erroneous
  step (-1: none); F1 is the harmonic mean of the accuracy on erroneous solutions and on correct
  ones (Zheng et al. 2024, "ProcessBench: Identifying Process Errors in Mathematical Reasoning",
  arXiv 2412.06559).
- Spearman's ρ of σ(z) with the exact value function over held-out prefixes
  (`evaluate.spearman`), per step index too.
- `score_step_batches`, `evaluate_process`, `process_report`: the task's evaluation and its
  report.md with plots.

Papers:
- Zheng et al. 2024, "ProcessBench", arXiv 2412.06559 (first-error identification, F1).
- Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050 (step-level evaluation).
- Hanley & McNeil 1982, "The meaning and use of the area under a ROC curve" (AUROC as the
  Mann–Whitney probability; no arXiv id).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float, Int
from matplotlib.figure import Figure

from rewardjax import models
from rewardjax.data import steps as steps_data
from rewardjax.evaluate.gold import _average_ranks, spearman
from rewardjax.evaluate.report import markdown_table

__all__ = [
    "FirstErrorF1",
    "ProcessMetrics",
    "StepScores",
    "evaluate_process",
    "first_error",
    "first_error_f1",
    "plot_step_values",
    "process_report",
    "score_step_batches",
    "step_accuracy",
    "step_auroc",
]


def _keep(where, like) -> Array:
    return jnp.ones(like.shape, bool) if where is None else jnp.broadcast_to(where, like.shape)


@jax.jit
def step_accuracy(
    correct_pred: Bool[ArrayLike, "*B"],
    correct: Bool[ArrayLike, "*B"],
    *,
    where: Bool[ArrayLike, "*B"] | None = None,
) -> Float[Array, ""]:
    """Fraction of steps (in `where`) whose predicted correctness equals the truth.

    acc = Σ_s w_s 1[ĉ_s = c_s] / Σ_s w_s   (0 when no step is kept)
    """
    pred, truth = jnp.asarray(correct_pred, bool), jnp.asarray(correct, bool)
    keep = _keep(where, pred).astype(jnp.float32)
    return jnp.sum(keep * (pred == truth)) / jnp.maximum(jnp.sum(keep), 1.0)


@jax.jit
def step_auroc(
    scores: Float[ArrayLike, " N"],
    correct: Bool[ArrayLike, " N"],
    *,
    where: Bool[ArrayLike, " N"] | None = None,
) -> Float[Array, ""]:
    """Area under the ROC curve of `scores` for separating correct from erroneous steps.

    AUROC = P(z_i > z_j) + ½ P(z_i = z_j), i correct, j erroneous (Mann–Whitney U / (n₊ n₋)),
    computed from average ranks: (Σ_{i correct} R_i - n₊(n₊ + 1)/2) / (n₊ n₋). O(N log N).
    NaN when either class is empty.

    Reference: Hanley & McNeil 1982, "The meaning and use of the area under a receiver operating
    characteristic (ROC) curve" (no arXiv id).
    """
    z = jnp.asarray(scores, jnp.float32).reshape(-1)
    pos = jnp.asarray(correct, bool).reshape(-1)
    keep = _keep(None if where is None else jnp.asarray(where).reshape(-1), z)
    ranks = _average_ranks(z, keep)
    n_pos = jnp.sum(keep & pos).astype(jnp.float32)
    n_neg = jnp.sum(keep & ~pos).astype(jnp.float32)
    u = jnp.sum(jnp.where(keep & pos, ranks, 0.0)) - n_pos * (n_pos + 1) / 2
    return jnp.where((n_pos > 0) & (n_neg > 0), u / (n_pos * n_neg), jnp.nan)


@jax.jit
def first_error(
    correct: Bool[ArrayLike, "B S"], step_mask: Bool[ArrayLike, "B S"] | None = None
) -> Int[Array, " B"]:
    """Index of the earliest erroneous step among the steps in `step_mask`; -1 when none is.

    e_b = min {s : step_mask[b, s], ¬correct[b, s]}, or -1 (ProcessBench's label).
    """
    correct = jnp.asarray(correct, bool)
    wrong = ~correct & _keep(step_mask, correct)
    return jnp.where(wrong.any(-1), jnp.argmax(wrong, axis=-1), -1).astype(jnp.int32)


class FirstErrorF1(NamedTuple):
    """ProcessBench's scores (NaN where a group is empty)."""

    error_accuracy: Float[Array, ""]  # exact first-error index, on solutions with an error
    correct_accuracy: Float[Array, ""]  # "no error" predicted, on solutions without one
    f1: Float[Array, ""]  # harmonic mean of the two
    num_erroneous: Int[Array, ""]
    num_correct: Int[Array, ""]


@jax.jit
def first_error_f1(
    predicted: Int[ArrayLike, " B"],
    truth: Int[ArrayLike, " B"],
    *,
    where: Bool[ArrayLike, " B"] | None = None,
) -> FirstErrorF1:
    """First-error identification (ProcessBench).

    acc_err = mean_{b: e_b ≥ 0} 1[ê_b = e_b],   acc_cor = mean_{b: e_b = -1} 1[ê_b = -1],
    F1 = 2 acc_err acc_cor / (acc_err + acc_cor)

    Reference: Zheng et al. 2024, "ProcessBench: Identifying Process Errors in Mathematical
    Reasoning", arXiv 2412.06559 (§3, the F1 of the two accuracies).

    Args:
      predicted: ê, predicted first-error indices (-1: none), [B].
      truth: e, true first-error indices (-1: none), [B].
      where: which solutions count, [B] (default all).
    """
    pred, true = jnp.asarray(predicted), jnp.asarray(truth)
    keep = _keep(where, true)
    err, cor = keep & (true >= 0), keep & (true < 0)
    hit = pred == true
    n_err, n_cor = jnp.sum(err), jnp.sum(cor)
    acc_err = jnp.where(n_err > 0, jnp.sum(hit & err) / jnp.maximum(n_err, 1), jnp.nan)
    acc_cor = jnp.where(n_cor > 0, jnp.sum(hit & cor) / jnp.maximum(n_cor, 1), jnp.nan)
    total = acc_err + acc_cor
    f1 = jnp.where(total > 0, 2 * acc_err * acc_cor / jnp.where(total > 0, total, 1.0), 0.0)
    return FirstErrorF1(acc_err, acc_cor, f1, n_err, n_cor)


class StepScores(NamedTuple):
    """Step logits of a data set and what they are checked against (numpy, one row each)."""

    logits: np.ndarray  # [N, S]
    targets: np.ndarray  # [N, S] training targets in [0, 1]
    step_mask: np.ndarray  # [N, S] bool
    values: np.ndarray | None = None  # [N, S] exact normalised values (synthetic task)


@functools.partial(jax.jit, static_argnames=("model", "num_steps"))
def _score_steps(model, params, batch, *, num_steps):
    arrays = steps_data.step_batch_arrays(batch)
    ends, present = models.step_ids_step_ends(arrays["step_ids"], num_steps=num_steps)
    out = models.score_prefixes(
        model,
        params,
        batch["tokens"],
        batch["mask"],
        batch["completion_mask"],
        step_ends=ends,
        step_mask=present & arrays["step_mask"],
    )
    return out.steps, arrays["targets"], out.step_mask


def score_step_batches(
    model: Any, params: Any, batches: Iterable[Mapping[str, Any]], *, num_steps: int
) -> StepScores:
    """Step logits of a PRM on step batches (the "rating"-format step layout of `data.steps`),
    `models.score_prefixes` jitted once per (model, batch shape); padding rows dropped.

    Args:
      model: a `models.ProcessRewardModel` or `models.ImplicitPRM` (hashable: a static argument).
      params: its parameters.
      batches: step batches ("tokens", "mask", "completion_mask" [B, T], "ratings" [B, S],
        "weight" [B]).
      num_steps: S, the step slots of the batches.
    """
    logits, targets, masks = [], [], []
    keys = ("tokens", "mask", "completion_mask", "ratings", "weight")
    for batch in batches:
        out = _score_steps(model, params, {k: batch[k] for k in keys}, num_steps=num_steps)
        z, y, m = jax.device_get(out)
        real = np.asarray(batch["weight"]) > 0
        logits.append(z[real])
        targets.append(y[real])
        masks.append(m[real])
    return StepScores(np.concatenate(logits), np.concatenate(targets), np.concatenate(masks))


class ProcessMetrics(NamedTuple):
    """What `evaluate_process` measures (floats; NaN when undefined)."""

    steps: int
    step_accuracy: float
    step_auroc: float
    first_error_f1: float
    first_error_accuracy_erroneous: float
    first_error_accuracy_correct: float
    target_spearman: float  # ρ(σ(z), training targets)
    value_spearman: float  # ρ(σ(z), exact value), NaN without exact values
    value_spearman_per_step: tuple[float, ...]

    def as_dict(self) -> dict[str, float]:
        out = self._asdict()
        per_step = out.pop("value_spearman_per_step")
        out.update({f"value_spearman/step_{s + 1}": v for s, v in enumerate(per_step)})
        return {k: float(v) for k, v in out.items()}


@jax.jit
def _process_metrics(z, targets, truth, mask, threshold, decision):
    """Every metric of `evaluate_process` in one program (one compilation per shape)."""
    correct = truth >= threshold
    prob = jax.nn.sigmoid(z)
    weight = mask.astype(jnp.float32)  # spearman's weight: 0 leaves a prefix out
    fe = first_error_f1(first_error(prob >= decision, mask), first_error(correct, mask))
    flat = lambda x: x.reshape(-1)
    per_step = jax.vmap(lambda p, v, w: spearman(p, v, weight=w), in_axes=1)(prob, truth, weight)
    return {
        "steps": jnp.sum(mask),
        "step_accuracy": step_accuracy(prob >= decision, correct, where=mask),
        "step_auroc": step_auroc(z, correct, where=mask),
        "first_error_f1": fe.f1,
        "first_error_accuracy_erroneous": fe.error_accuracy,
        "first_error_accuracy_correct": fe.correct_accuracy,
        "target_spearman": spearman(flat(prob), flat(targets), weight=flat(weight)),
        "value_spearman": spearman(flat(prob), flat(truth), weight=flat(weight)),
        "per_step": per_step,
    }


def evaluate_process(
    scores: StepScores, *, threshold: float = 0.5, decision_threshold: float = 0.5
) -> ProcessMetrics:
    """Step accuracy, AUROC, first-error F1 and value correlations of `scores`.

    A step is correct when its truth (the exact value v̄_s when `scores.values` is given, else the
    target) is ≥ `threshold`; the PRM calls it correct when σ(z_s) ≥ `decision_threshold`
    (0.5 for a PRM trained on binary labels; `threshold` for one that regresses values). The
    first error of a solution is its first step that is not correct (`first_error`), predicted
    likewise from σ(z). Spearman's ρ is taken over all kept (solution, step) prefixes, and per
    step index (the value ones only with `scores.values`).
    """
    z = np.asarray(scores.logits, np.float32)
    targets = np.asarray(scores.targets, np.float32)
    has_values = scores.values is not None
    truth = np.asarray(scores.values if has_values else targets, np.float32)
    out = jax.device_get(
        _process_metrics(
            z, targets, truth, np.asarray(scores.step_mask, bool), threshold, decision_threshold
        )
    )
    per_step = out.pop("per_step")
    per_step = tuple(float(v) for v in per_step) if has_values else ()
    if not has_values:
        out["value_spearman"] = float("nan")
    return ProcessMetrics(
        **{k: int(v) if k == "steps" else float(v) for k, v in out.items()},
        value_spearman_per_step=per_step,
    )


def plot_step_values(scores: StepScores, path: str) -> str:
    """PRM value σ(z) against the exact value (or the target) of each held-out prefix."""
    fig = Figure(figsize=(9, 4))
    ax, ax_step = fig.subplots(1, 2)
    mask = np.asarray(scores.step_mask, bool)
    truth = scores.targets if scores.values is None else scores.values
    prob = 1.0 / (1.0 + np.exp(-np.asarray(scores.logits, np.float64)))
    steps = np.broadcast_to(np.arange(mask.shape[1]), mask.shape)
    points = ax.scatter(truth[mask], prob[mask], c=steps[mask], s=6, cmap="viridis")
    fig.colorbar(points, ax=ax, label="step index")
    label = "exact value v̄" if scores.values is not None else "target"
    ax.set(xlabel=label, ylabel="PRM value σ(z)", title="held-out prefixes")
    count = np.maximum(mask.sum(0), 1)
    ax_step.plot(np.arange(1, mask.shape[1] + 1), (truth * mask).sum(0) / count, "o-", label=label)
    ax_step.plot(np.arange(1, mask.shape[1] + 1), (prob * mask).sum(0) / count, "s-", label="PRM")
    ax_step.set(xlabel="step", ylabel="mean value", title="mean value per step")
    ax_step.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _plot_training(records: Sequence[Mapping[str, Any]], path: str) -> str:
    fig = Figure(figsize=(9, 3.5))
    ax_loss, ax_eval = fig.subplots(1, 2)
    series = lambda key: [(r["step"], r[key]) for r in records if r.get(key) is not None]
    for key in ("loss", "eval/loss"):
        if points := series(key):
            ax_loss.plot(*zip(*points), label=key)
    for key in ("step_accuracy", "eval/step_auroc", "eval/value_spearman"):
        if points := series(key):
            ax_eval.plot(*zip(*points), marker=".", label=key)
    ax_loss.set(xlabel="step", title="loss")
    ax_eval.set(xlabel="step", title="step accuracy / AUROC / Spearman")
    for ax in (ax_loss, ax_eval):
        if ax.lines:
            ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def process_report(
    directory: str,
    metrics: ProcessMetrics,
    scores: StepScores,
    *,
    records: Sequence[Mapping[str, Any]] = (),
    notes: Mapping[str, Any] | None = None,
    title: str = "Process reward model evaluation",
) -> str:
    """Writes `report.md` (run notes, step metrics, per-step Spearman) and its plots
    (`step_values.png`, `training.png` when `records` has train metrics); returns its path."""
    os.makedirs(directory, exist_ok=True)
    parts = [f"# {title}\n"]
    if notes:
        parts += ["## Run\n", markdown_table(["", "value"], [[k, v] for k, v in notes.items()])]
    m = metrics
    rows = [
        ["steps evaluated", m.steps],
        ["step accuracy", m.step_accuracy],
        ["step AUROC", m.step_auroc],
        ["first-error F1 (ProcessBench)", m.first_error_f1],
        ["  accuracy on erroneous solutions", m.first_error_accuracy_erroneous],
        ["  accuracy on correct solutions", m.first_error_accuracy_correct],
        ["Spearman(PRM, targets)", m.target_spearman],
        ["Spearman(PRM, exact value)", m.value_spearman],
    ]
    parts += ["## Steps\n", markdown_table(["metric", "value"], rows)]
    if m.value_spearman_per_step:
        per = [[s + 1, v] for s, v in enumerate(m.value_spearman_per_step)]
        parts += ["\n### Spearman with the exact value, per step\n"]
        parts.append(markdown_table(["step", "Spearman"], per))
    plot_step_values(scores, os.path.join(directory, "step_values.png"))
    parts.append("\n![PRM value vs exact value](step_values.png)\n")
    if any("loss" in r for r in records):
        _plot_training(records, os.path.join(directory, "training.png"))
        parts.append("\n![training curves](training.png)\n")
    path = os.path.join(directory, "report.md")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
