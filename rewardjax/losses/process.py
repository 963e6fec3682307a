"""Process (step-level) reward losses and the aggregation of step scores to an outcome score.

A process reward model scores each step s of a solution with a logit z_s, the log-odds that the
step is correct (or that the solution is still on track). Every loss here is per step (or per
pair, per example), unreduced, with keyword-only hyper-parameters and a `where=` mask: masked
entries get loss 0 and no gradient whatever their padding holds (masking equals slicing).

- `step_cross_entropy`: binary or soft-label cross-entropy per step (PRM800K, Math-Shepherd).
- `step_bradley_terry`: Bradley–Terry on pairs of steps, given by index into a row of scores.
- `implicit_prm_outcome_loss`, `implicit_prm_step_rewards`: the implicit PRM, trained with outcome
  labels only; step rewards are sums of token log-ratios to a reference.
- `aggregate_steps`: min, product, last, mean, or sum of log-odds of the step scores.

Aggregation lives here, with the losses that fix what a step score means (a logit of step
correctness), rather than in `rewardjax.transforms` (reward transforms of whole-response scores);
search, evaluation and the trainers import it from `rewardjax.losses`.

Papers:
- Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050 (PRM800K; product and
  minimum of step probabilities).
- Wang et al. 2023, "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human
  Annotations", arXiv 2312.08935 (soft Monte-Carlo step labels; minimum aggregation).
- Yuan et al. 2024, "Free Process Rewards without Process Labels", arXiv 2412.01981 (implicit PRM).
- Snell et al. 2024, "Scaling LLM Test-Time Compute Optimally can be More Effective than Scaling
  Model Parameters", arXiv 2408.03314 (last-step aggregation).
- Bradley & Terry, "Rank Analysis of Incomplete Block Designs: I. The Method of Paired
  Comparisons", Biometrika 1952 (no arXiv id).
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from rewardjax.numerics import as_float, check_hparam, masked_inputs, masked_loss, smoothed_logistic

__all__ = [
    "AGGREGATIONS",
    "aggregate_steps",
    "implicit_prm_outcome_loss",
    "implicit_prm_step_rewards",
    "step_bradley_terry",
    "step_cross_entropy",
]

AGGREGATIONS = ("min", "product", "last", "mean", "sum_logodds")


def _binary_cross_entropy(z, y):
    """-(y·logσ(z) + (1 - y)·logσ(-z)), finite for |z| → ∞ and soft y."""
    return -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))


def step_cross_entropy(
    logits: Float[ArrayLike, "*B S"],
    labels: Float[ArrayLike, "*#B S"],
    *,
    where: Bool[ArrayLike, "*#B S"] | None = None,
) -> Float[Array, "*B S"]:
    """Cross-entropy of each step's correctness logit against a binary or soft label.

    loss_s = -(y_s·logσ(z_s) + (1 - y_s)·logσ(-z_s))

    Binary labels y ∈ {0, 1} (PRM800K's ratings mapped to correct / incorrect) give the logistic
    loss; soft labels y ∈ [0, 1] (Math-Shepherd's fraction of successful completions, or the
    synthetic task's exact values mapped to [0, 1]) give the cross-entropy against Bernoulli(y),
    minimised at σ(z) = y.

    Args:
      logits: z, one logit per step, shape [*B, S].
      labels: y in [0, 1], broadcastable to [*B, S].
      where: which steps take part, [*B, S] (default: all); the others get loss 0 and no gradient
        (padding steps may hold anything).

    Returns:
      Per-step loss, shape [*B, S], at least float32.

    References:
      Lightman et al. 2023, "Let's Verify Step by Step", arXiv 2305.20050; Wang et al. 2023,
      "Math-Shepherd", arXiv 2312.08935.
    """
    z, y = masked_inputs(where, logits, labels)
    return masked_loss(_binary_cross_entropy(z, y), where)


def step_bradley_terry(
    scores: Float[ArrayLike, "*B S"],
    pairs: Int[ArrayLike, "*#B P _"],  # the body checks the axis of 2 and names the fix
    *,
    margin: float | Float[ArrayLike, "*#B P"] = 0.0,
    label_smoothing: float | Float[ArrayLike, ""] = 0.0,
    where: Bool[ArrayLike, "*#B P"] | None = None,
) -> Float[Array, "*B P"]:
    """Bradley–Terry negative log-likelihood on pairs of steps of one row of step scores.

    For pair p = (i, j) = pairs[..., p, :], step i is preferred to step j:
    loss_p = -(1 - e)·logσ(z_i - z_j - m_p) - e·logσ(-(z_i - z_j - m_p))

    A row holds the step scores of everything that is compared: e.g. the S_a steps of completion
    a followed by the S_b steps of completion b (S = S_a + S_b), so that (i, S_a + i) compares the
    i-th steps of two completions that share a prefix (step-level DPO-style pairs), or the scores
    of a step's alternative continuations (PRM800K rates several completions at one step: pairs
    (i, j) with rating_i > rating_j).

    Args:
      scores: z, step scores of each row, shape [*B, S].
      pairs: integer (preferred, dispreferred) step indices into the last axis of `scores`, in
        [0, S), shape [*B, P, 2]; masked pairs may hold any index.
      margin: m, a required score gap, a scalar or per pair [*B, P].
      label_smoothing: e in [0, 1], the probability that a pair's label is flipped.
      where: which pairs take part, [*B, P] (default: all); the others get loss 0 and no gradient.

    Returns:
      Per-pair loss, shape [*B, P], at least float32.

    References:
      Bradley & Terry 1952 (no arXiv id); step pairs as in Lightman et al. 2023, "Let's Verify
      Step by Step", arXiv 2305.20050 (alternative completions rated at one step).
    """
    check_hparam("label_smoothing", label_smoothing, lambda v: 0.0 <= v <= 1.0, "in [0, 1]")
    scores = as_float(scores)
    pairs = jnp.asarray(pairs)
    if pairs.shape[-1] != 2:
        raise ValueError(
            f"pairs must end in an axis of 2 (preferred, dispreferred), got {pairs.shape}"
        )
    size = scores.shape[-1]
    batch = jnp.broadcast_shapes(scores.shape[:-1], pairs.shape[:-2])
    scores = jnp.broadcast_to(scores, (*batch, size))
    pairs = jnp.broadcast_to(pairs, (*batch, *pairs.shape[-2:]))
    # An index outside [0, S) (padding) would gather garbage; clip it, `where` masks the pair.
    pairs = jnp.clip(pairs, 0, size - 1)
    chosen = jnp.take_along_axis(scores, pairs[..., 0], axis=-1)
    rejected = jnp.take_along_axis(scores, pairs[..., 1], axis=-1)
    chosen, rejected, margin = masked_inputs(where, chosen, rejected, margin)
    return masked_loss(smoothed_logistic(chosen - rejected - margin, label_smoothing), where)


def _token_log_ratios(policy_logps, ref_logps, where):
    """log π - log π_ref per token, 0 (with no gradient) where `where` is False."""
    policy, ref = masked_inputs(where, policy_logps, ref_logps)
    return policy - ref


def implicit_prm_outcome_loss(
    policy_logps: Float[ArrayLike, "*B T"],
    ref_logps: Float[ArrayLike, "*B T"],
    outcome: Float[ArrayLike, "*#B"],
    *,
    beta: float | Float[ArrayLike, "*#B"],
    where: Bool[ArrayLike, "*#B T"] | None = None,
) -> Float[Array, "*B"]:
    """The implicit PRM's loss: cross-entropy of the implicit sequence reward vs the outcome label.

    r_θ(y) = β Σ_t log π_θ(y_t | y_<t) / π_ref(y_t | y_<t)      (t over the response tokens)
    loss = -(l·logσ(r_θ(y)) + (1 - l)·logσ(-r_θ(y)))

    Trained with outcome labels l only, the model's partial sums are process rewards:
    q_θ^k = β Σ_{t ≤ end of step k} log π_θ/π_ref is the exponential average of r_θ over the
    continuations of the first k steps, and the step reward is r_θ^k = q_θ^k - q_θ^{k-1}
    (`implicit_prm_step_rewards`).

    Args:
      policy_logps: log π_θ(y_t | y_<t) per token, shape [*B, T].
      ref_logps: log π_ref(y_t | y_<t) per token, shape [*B, T].
      outcome: l in [0, 1] (1: correct / desirable), broadcastable to [*B].
      beta: β > 0, a scalar or per example.
      where: the response tokens, [*B, T] (default: all). Other tokens (prompt, padding) count
        nowhere and may hold anything (e.g. -inf log-probs). A row with no response token is
        padding: loss 0 and no gradient.

    Returns:
      Per-example loss, shape [*B], at least float32.

    References:
      Yuan et al. 2024, "Free Process Rewards without Process Labels", arXiv 2412.01981 (eq. 4,
      the cross-entropy instantiation).
    """
    check_hparam("beta", beta, lambda v: v > 0.0, "positive")
    ratios = _token_log_ratios(policy_logps, ref_logps, where)
    reward = as_float(beta) * jnp.sum(ratios, axis=-1)
    loss = _binary_cross_entropy(reward, as_float(outcome))
    if where is None:
        return loss
    keep = jnp.broadcast_to(jnp.asarray(where, bool), ratios.shape)
    return masked_loss(loss, jnp.any(keep, axis=-1))


def implicit_prm_step_rewards(
    policy_logps: Float[ArrayLike, "*B T"],
    ref_logps: Float[ArrayLike, "*B T"],
    step_ids: Int[ArrayLike, "*#B T"],
    *,
    beta: float | Float[ArrayLike, "*#B"],
    num_steps: int,
) -> Float[Array, "*B K"]:
    """Step rewards of the implicit PRM: β times the summed token log-ratios of each step.

    r_θ^k = β Σ_{t : step_ids_t = k} log π_θ(y_t | y_<t) / π_ref(y_t | y_<t),   k = 0..K-1

    Their cumulative sums q_θ^k = Σ_{j ≤ k} r_θ^j are the implicit Q-values
    (`jnp.cumsum(rewards, -1)`), and Σ_k r_θ^k is the sequence reward of
    `implicit_prm_outcome_loss` when every response token belongs to a step.

    Args:
      policy_logps: log π_θ per token, shape [*B, T].
      ref_logps: log π_ref per token, shape [*B, T].
      step_ids: the step each token belongs to, in [0, K); any other value (e.g. -1 for prompt
        and padding tokens) belongs to no step, and its log-probs may hold anything. Shape
        broadcastable to [*B, T].
      beta: β > 0, a scalar or per example.
      num_steps: K, the number of step slots (static); steps a row does not have are 0.

    Returns:
      Step rewards, shape [*B, K], at least float32.

    References:
      Yuan et al. 2024, "Free Process Rewards without Process Labels", arXiv 2412.01981.
    """
    check_hparam("beta", beta, lambda v: v > 0.0, "positive")
    step_ids = jnp.asarray(step_ids)
    in_step = (step_ids >= 0) & (step_ids < num_steps)
    ratios = _token_log_ratios(policy_logps, ref_logps, in_step)
    one_hot = jax.nn.one_hot(step_ids, num_steps, dtype=ratios.dtype)  # out of range: all 0
    one_hot = jnp.broadcast_to(one_hot, (*ratios.shape, num_steps))
    return as_float(beta)[..., None] * jnp.einsum("...t,...tk->...k", ratios, one_hot)


def aggregate_steps(
    step_scores: Float[ArrayLike, "*B S"],
    where: Bool[ArrayLike, "*#B S"] | None = None,
    *,
    method: str,
) -> Float[Array, "*B"]:
    """An outcome score from the step logits z_s of a solution (over the steps in `where`).

    With p_s = σ(z_s):
    - "min":         min_s p_s                (Lightman et al.; Wang et al.)
    - "product":     Π_s p_s = exp Σ_s logσ(z_s)   (Lightman et al.: all steps correct)
    - "last":        p_S of the last valid step   (Snell et al.)
    - "mean":        (1/S) Σ_s p_s
    - "sum_logodds": Σ_s z_s = Σ_s log(p_s / (1 - p_s))   (log-odds, unbounded)

    A row with no valid step gets 0 (and no gradient) for every method.

    Args:
      step_scores: z, one logit per step, shape [*B, S].
      where: which steps are real, [*B, S] (default: all); masked steps may hold anything.
      method: one of `AGGREGATIONS`.

    Returns:
      One score per solution, shape [*B], at least float32: a probability in [0, 1], except
      "sum_logodds" (a log-odds).

    References:
      Lightman et al. 2023, arXiv 2305.20050; Wang et al. 2023, arXiv 2312.08935; Snell et al.
      2024, arXiv 2408.03314.
    """
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation method {method!r}; use one of {AGGREGATIONS}")
    z = as_float(step_scores)
    keep = jnp.ones(z.shape, bool) if where is None else jnp.asarray(where, bool)
    keep = jnp.broadcast_to(keep, z.shape)
    z = jnp.where(keep, z, 0.0)
    count = jnp.sum(keep, axis=-1)
    if method == "min":
        # min of σ is σ of the min: one gradient path through the smallest logit.
        out = jax.nn.sigmoid(jnp.min(jnp.where(keep, z, jnp.inf), axis=-1))
    elif method == "product":
        out = jnp.exp(jnp.sum(jnp.where(keep, jax.nn.log_sigmoid(z), 0.0), axis=-1))
    elif method == "last":
        index = z.shape[-1] - 1 - jnp.argmax(keep[..., ::-1], axis=-1)
        out = jax.nn.sigmoid(jnp.take_along_axis(z, index[..., None], axis=-1)[..., 0])
    elif method == "mean":
        total = jnp.sum(jnp.where(keep, jax.nn.sigmoid(z), 0.0), axis=-1)
        out = total / jnp.maximum(count, 1)
    else:  # sum_logodds
        out = jnp.sum(z, axis=-1)
    return jnp.where(count > 0, out, 0.0)
