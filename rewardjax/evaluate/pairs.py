"""Pair metrics of a reward model: accuracy overall and per subset, margins, calibration.

Inputs are plain arrays: the rewards of the chosen and rejected responses `[B]`, optional subset
ids `[B]` (indices into the data set's subset names) and optional example weights `[B]` (the batch
`weight`: 1 for real examples, 0 for the padding examples that fill the last batch; a weight-0
example has no effect, exactly as if it were sliced out). Everything except `section_scores` is
pure and jittable.

Papers:
- Lambert et al. 2024, "RewardBench: Evaluating Reward Models for Language Modeling",
  arXiv 2403.13787 (accuracy per subset, subsets grouped into sections).
- Guo et al. 2017, "On Calibration of Modern Neural Networks", arXiv 1706.04599 (ECE, reliability
  diagrams).
- Nixon et al. 2019, "Measuring Calibration in Deep Learning", arXiv 1904.01685 (equal-mass bins).
"""

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int, Real

from rewardjax.evaluate._arrays import as_float, weighted_mean, weights_like

__all__ = [
    "REWARDBENCH_SECTIONS",
    "Calibration",
    "MarginStats",
    "SubsetAccuracy",
    "calibration",
    "margin_stats",
    "pair_accuracy",
    "pair_calibration",
    "pair_correct",
    "section_scores",
    "subset_accuracy",
]

# RewardBench's sections and their subsets (Lambert et al. 2024, arXiv 2403.13787, Table 1).
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy",
             "mt-bench-med"),
    "Chat Hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor",
                  "llmbar-adver-GPTInst", "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "Safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse",
               "xstest-should-respond", "donotanswer"),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python",
                  "hep-rust"),
}  # fmt: skip


def pair_correct(
    chosen: Float[ArrayLike, " B"], rejected: Float[ArrayLike, " B"]
) -> Float[Array, " B"]:
    """Per-pair correctness 1[r_c > r_r] + ½·1[r_c = r_r] (a tie is a coin flip, as in RewardBench).

    Returns:
      float [B] in {0, ½, 1}.
    """
    chosen, rejected = as_float(chosen), as_float(rejected)
    return jnp.where(chosen > rejected, 1.0, jnp.where(chosen == rejected, 0.5, 0.0))


@jax.jit
def pair_accuracy(
    chosen: Float[ArrayLike, " B"],
    rejected: Float[ArrayLike, " B"],
    *,
    weight: Real[ArrayLike, " B"] | None = None,
) -> Float[Array, ""]:
    """Pair accuracy Σ_i w_i c_i / Σ_i w_i with c_i = `pair_correct` (ties count ½).

    Reference: Lambert et al. 2024, "RewardBench", arXiv 2403.13787.

    Args:
      chosen: rewards of the preferred responses r_c, [B].
      rejected: rewards of the other responses r_r, [B].
      weight: example weights [B] (0 drops an example); None weighs all equally.

    Returns:
      scalar in [0, 1] (0 when all weights are 0, as `rewardjax.numerics.weighted_mean`).
    """
    return weighted_mean(pair_correct(chosen, rejected), weight)


class SubsetAccuracy(NamedTuple):
    """Pair accuracy per subset: accuracy [S] (NaN for an empty subset) and count [S] = Σ w."""

    accuracy: Array
    count: Array


@functools.partial(jax.jit, static_argnames="num_subsets")
def subset_accuracy(
    chosen: Float[ArrayLike, " B"],
    rejected: Float[ArrayLike, " B"],
    subset: Int[ArrayLike, " B"],
    *,
    num_subsets: int,
    weight: Real[ArrayLike, " B"] | None = None,
) -> SubsetAccuracy:
    """Pair accuracy within each subset s: Σ_{i: s_i = s} w_i c_i / Σ_{i: s_i = s} w_i.

    Reference: Lambert et al. 2024, "RewardBench", arXiv 2403.13787 (per-subset reporting).

    Args:
      chosen, rejected: rewards [B].
      subset: subset index of each example in [0, num_subsets), int [B].
      num_subsets: S, the number of subset names (static).
      weight: example weights [B]; None weighs all equally.

    Returns:
      SubsetAccuracy(accuracy [S], count [S]).
    """
    correct = pair_correct(chosen, rejected)
    w = weights_like(weight, correct)
    subset = jnp.asarray(subset, jnp.int32)
    hits = jax.ops.segment_sum(w * correct, subset, num_segments=num_subsets)
    count = jax.ops.segment_sum(w, subset, num_segments=num_subsets)
    return SubsetAccuracy(hits / count, count)


def section_scores(
    accuracy: Float[ArrayLike, " S"],
    count: Float[ArrayLike, " S"],
    subset_names: Sequence[str],
    sections: Mapping[str, Sequence[str]] = REWARDBENCH_SECTIONS,
) -> dict[str, float]:
    """Section scores from subset accuracies, RewardBench style (host-side, not jitted).

    A section's score is the example-weighted mean of its subsets' accuracies,
    Σ_s n_s acc_s / Σ_s n_s over the section's subsets present in the data (count > 0); a section
    with none present is left out. "Score" is the unweighted mean of the sections' scores.
    (RewardBench's leaderboard additionally up-weights math-prm inside Reasoning; not done here.)

    Reference: Lambert et al. 2024, "RewardBench", arXiv 2403.13787.

    Args:
      accuracy: per-subset accuracy [S] (from `subset_accuracy`).
      count: per-subset example weight [S].
      subset_names: the S names, in subset-index order.
      sections: section name -> subset names (default: `REWARDBENCH_SECTIONS`).

    Returns:
      {section: score, ..., "Score": mean of the section scores}; empty if no section is present.
    """
    accuracy, count = np.asarray(accuracy, np.float64), np.asarray(count, np.float64)
    if len(subset_names) != accuracy.shape[0]:
        raise ValueError(
            f"section_scores: subset_names has {len(subset_names)} names but accuracy has "
            f"{accuracy.shape[0]} subsets."
        )
    index = {name: i for i, name in enumerate(subset_names)}
    scores = {}
    for section, members in sections.items():
        ids = [index[m] for m in members if m in index and count[index[m]] > 0]
        if ids:
            scores[section] = float(np.sum(accuracy[ids] * count[ids]) / np.sum(count[ids]))
    if scores:
        scores["Score"] = float(np.mean(list(scores.values())))
    return scores


class MarginStats(NamedTuple):
    """Statistics of the reward margin m = r_c - r_r over the kept examples (scalars)."""

    mean: Array  # weighted mean
    std: Array  # weighted standard deviation (population)
    mean_abs: Array  # weighted mean of |m|
    min: Array
    q10: Array
    median: Array
    q90: Array
    max: Array


@jax.jit
def margin_stats(
    chosen: Float[ArrayLike, " B"],
    rejected: Float[ArrayLike, " B"],
    *,
    weight: Real[ArrayLike, " B"] | None = None,
) -> MarginStats:
    """Mean, std, mean |m|, min, 10/50/90% quantiles and max of the margins m = r_c - r_r.

    Moments use the weights; order statistics use the examples with w > 0 (linear interpolation
    between order statistics, as `numpy.quantile`).

    Args:
      chosen, rejected: rewards [B].
      weight: example weights [B]; None weighs all equally.

    Returns:
      MarginStats of scalars.
    """
    margin = as_float(chosen) - as_float(rejected)
    w = weights_like(weight, margin)
    mean = weighted_mean(margin, w)
    std = jnp.sqrt(weighted_mean(jnp.square(margin - mean), w))
    kept = jnp.where(w > 0, margin, jnp.nan)
    q = jnp.nanquantile(kept, jnp.asarray([0.0, 0.1, 0.5, 0.9, 1.0], margin.dtype))
    return MarginStats(mean, std, weighted_mean(jnp.abs(margin), w), *q)


class Calibration(NamedTuple):
    """ECE and the reliability-diagram data of M bins (empty bins: NaN confidence and accuracy)."""

    ece: Array  # scalar
    confidence: Array  # [M] mean confidence per bin
    accuracy: Array  # [M] mean correctness per bin
    weight: Array  # [M] Σ w per bin
    edges: Array  # [M + 1] bin edges


@functools.partial(jax.jit, static_argnames=("num_bins", "binning"))
def calibration(
    confidence: Float[ArrayLike, " B"],
    correct: Float[ArrayLike, " B"],
    *,
    num_bins: int = 10,
    binning: str = "width",
    lo: float | Float[ArrayLike, ""] = 0.0,
    hi: float | Float[ArrayLike, ""] = 1.0,
    weight: Real[ArrayLike, " B"] | None = None,
) -> Calibration:
    """Expected calibration error of predicted probabilities against outcomes, with its bins.

    ECE = Σ_b (W_b / W) |acc_b - conf_b|,  acc_b = Σ_{i∈b} w_i c_i / W_b,
    conf_b = Σ_{i∈b} w_i p_i / W_b,  W_b = Σ_{i∈b} w_i,  W = Σ_b W_b.

    Bin b is [e_b, e_{b+1}) (the last bin also holds values ≥ e_M, the first values < e_0). Edges
    are equally spaced on [lo, hi] (binning="width") or the quantiles 0, 1/M, …, 1 of the kept
    confidences (binning="mass", equal-mass bins; heavily tied values can leave some bins empty).

    References: Guo et al. 2017, "On Calibration of Modern Neural Networks", arXiv 1706.04599;
    Nixon et al. 2019, "Measuring Calibration in Deep Learning", arXiv 1904.01685 (equal mass).

    Args:
      confidence: predicted probabilities p_i, [B].
      correct: outcomes c_i in [0, 1] (1 = the predicted event happened), [B].
      num_bins: M (static).
      binning: "width" or "mass" (static).
      lo, hi: range of equal-width bins.
      weight: example weights [B]; None weighs all equally.

    Returns:
      Calibration(ece, confidence [M], accuracy [M], weight [M], edges [M+1]).
    """
    p = as_float(confidence)
    c = as_float(correct).astype(p.dtype)
    w = weights_like(weight, p)
    if binning == "width":
        edges = jnp.linspace(lo, hi, num_bins + 1, dtype=p.dtype)
    elif binning == "mass":
        levels = jnp.linspace(0.0, 1.0, num_bins + 1, dtype=p.dtype)
        edges = jnp.nanquantile(jnp.where(w > 0, p, jnp.nan), levels)
    else:
        raise ValueError(f"calibration: binning must be 'width' or 'mass', got {binning!r}.")
    bins = jnp.searchsorted(edges[1:-1], p, side="right")
    bin_w = jax.ops.segment_sum(w, bins, num_segments=num_bins)
    bin_p = jax.ops.segment_sum(w * p, bins, num_segments=num_bins) / bin_w
    bin_c = jax.ops.segment_sum(w * c, bins, num_segments=num_bins) / bin_w
    gap = jnp.where(bin_w > 0, bin_w * jnp.abs(bin_c - bin_p), 0.0)
    return Calibration(jnp.sum(gap) / jnp.sum(bin_w), bin_p, bin_c, bin_w, edges)


@functools.partial(jax.jit, static_argnames=("num_bins", "binning"))
def pair_calibration(
    chosen: Float[ArrayLike, " B"],
    rejected: Float[ArrayLike, " B"],
    *,
    scale: float | Float[ArrayLike, ""] = 1.0,
    num_bins: int = 10,
    binning: str = "width",
    weight: Real[ArrayLike, " B"] | None = None,
) -> Calibration:
    """Calibration of the Bradley–Terry probability σ(s (r_c - r_r)) that the chosen one wins.

    Every label says "chosen wins", so the calibration is measured on the side the model prefers
    (top-label calibration): confidence max(p, 1-p) = σ(s |r_c - r_r|) ∈ [½, 1] and outcome
    `pair_correct` (1 when the model prefers the chosen one, ½ on a tie). Equal-width bins span
    [½, 1]; the ECE then equals that of p against label 1 over both orientations (c, r) and (r, c)
    of every pair with 2M equal-width bins on [0, 1] (mirrored bins have equal gaps).

    References: Bradley & Terry 1952, "Rank analysis of incomplete block designs"; Guo et al.
    2017, arXiv 1706.04599 (ECE).

    Args:
      chosen, rejected: rewards [B].
      scale: s, the inverse temperature of the Bradley–Terry model (1 for a BT-trained model).
      num_bins, binning, weight: as in `calibration`.

    Returns:
      Calibration over confidences in [½, 1].
    """
    margin = as_float(chosen) - as_float(rejected)
    confidence = jax.nn.sigmoid(scale * jnp.abs(margin))
    return calibration(
        confidence,
        pair_correct(chosen, rejected),
        num_bins=num_bins,
        binning=binning,
        lo=0.5,
        hi=1.0,
        weight=weight,
    )
