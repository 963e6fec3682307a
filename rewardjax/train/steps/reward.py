"""Reward-model steps: preference pairs, ranked lists (listwise or all ordered pairs), ratings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from rewardjax import losses
from rewardjax.models import ScoringModel, score_packed, score_pairs
from rewardjax.models.prefix import share_prefix
from rewardjax.train.state import TrainState
from rewardjax.train.steps.common import (
    Batch,
    Metrics,
    apply_grads,
    examples,
    is_packed,
    mean_members,
    objective_step,
    packing_metrics,
    pair_metrics,
    to_front,
    weighted_mean,
)

__all__ = [
    "multi_response_rows",
    "ranked_loss",
    "ranked_reward_model_step",
    "rating_loss",
    "rating_reward_model_step",
    "reward_model_step",
]


def reward_model_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    model: ScoringModel,
    loss_name: str = "bradley_terry",
    loss_kwargs: Mapping[str, Any] | None = None,
    use_margin: bool = False,
    center_coef: float = 0.0,
    prefix_length: int | None = None,
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a pairwise reward model.

    Per example: `l_i = loss(r_c, r_r[, margin=m_i]) + center_coef * (r_c + r_r)^2`, where the
    loss comes from `rewardjax.losses.get(loss_name)` and the centring term is
    `losses.reward_centering` (Eisenstein et al., arXiv:2312.09244).

    Args:
      state: the train state.
      batch: pairwise preference batch (`chosen_tokens`, `chosen_mask`, `rejected_tokens`,
        `rejected_mask`, optional completion masks, `margin`, `weight`), or a packed one
        (`rewardjax.data.packing`: every pair of the batch in rows of a fixed length,
        `models.score_packed`): the same rewards, losses and gradients.
      rng: unused by deterministic models; kept so every step has the same signature.
      model: a `rewardjax.models.ScoringModel` (e.g. `RewardModel`); rewards `[B]`, or `[E, B]`
        for an ensemble head, whose members are each trained on the pair (metrics use the mean).
      loss_name: a pairwise reward-model loss registered in `rewardjax.losses`.
      loss_kwargs: extra keyword hyper-parameters for the loss.
      use_margin: pass the batch's `margin` to the loss.
      center_coef: weight of the reward-centring term.
      prefix_length: score each pair as one prefix-shared row `[prompt | chosen | rejected]` of
        this length (`models.score_pairs`; Wang et al., arXiv 2410.20305): same rewards and
        gradients, the prompt computed once. None: the model's `config.prefix_length`.

    Returns:
      The new state and scalar metrics: loss, accuracy (r_c > r_r), reward margin, mean chosen
      and rejected reward, gradient and parameter norms (and a packed batch's
      `padding_fraction`).
    """
    del rng
    loss_fn = losses.get(loss_name)
    kwargs = dict(loss_kwargs or {})
    if use_margin:
        kwargs["margin"] = examples(batch, key="margin")
    weight = examples(batch, key="weight")

    def objective(params):
        if is_packed(batch):
            reward = score_packed(model, params, batch).reward.astype(jnp.float32)
            reward = reward.reshape(*reward.shape[:-3], -1, 2)  # [*E, R * S, 2]
            r_c, r_r = reward[..., 0], reward[..., 1]
        else:
            chosen, rejected = score_pairs(model, params, batch, prefix_length=prefix_length)
            r_c, r_r = chosen.reward.astype(jnp.float32), rejected.reward.astype(jnp.float32)
        per_example = loss_fn(r_c, r_r, **kwargs)
        if center_coef:
            per_example = per_example + center_coef * losses.reward_centering(r_c, r_r)
        return weighted_mean(mean_members(per_example), weight), (
            mean_members(r_c),
            mean_members(r_r),
        )

    (loss, (r_c, r_r)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    metrics = {"loss": loss, **pair_metrics(r_c, r_r, weight), **packing_metrics(batch)}
    return apply_grads(state, grads, metrics)


def _score_lists(model: ScoringModel, params: Any, batch: Batch) -> Float[Array, "*E B K"]:
    """Rewards of the K responses of each example (`tokens` [B, K, T]) in one forward over B*K
    rows: float32 `[B, K]`, or `[E, B, K]` for an ensemble head."""
    b, k, t = batch["tokens"].shape
    rows = [batch[key].reshape(b * k, t) for key in ("tokens", "mask", "completion_mask")]
    reward = model.apply(params, *rows).reward.astype(jnp.float32)
    return reward.reshape(*reward.shape[:-1], b, k)


def multi_response_rows(
    tokens: Int[Array, "B K T"],
    mask: Int[Array, "B K T"],
    completion_mask: Int[Array, "B K T"],
    *,
    separator: int,
) -> tuple[Int[Array, "B L"], Int[Array, "B L"], Int[Array, "B L"]]:
    """The K responses of each ranked list in one row, for multi-response scoring.

    Row b: `prompt, resp_1, SEP, resp_2, SEP, ..., resp_K, SEP`, right-padded to
    `L = K * (T + 1)` (the prompt is response 1's real tokens outside its completion), with
    `response_ids` 0 on the prompt and padding and k on response k and its SEP: the layout of
    `RewardModel(...)(tokens, mask, response_ids=...)` ("You Only Judge Once", arXiv 2604.10966).

    Returns:
      `(tokens, mask, response_ids)` [B, L].
    """
    b, k, t = tokens.shape
    length = k * (t + 1)
    is_prompt = (mask[:, 0] > 0) & (completion_mask[:, 0] == 0)
    is_completion = (mask > 0) & (completion_mask > 0)
    prompt, p = to_front(tokens[:, 0], is_prompt), jnp.sum(is_prompt, axis=-1, keepdims=True)
    c = jnp.sum(is_completion, axis=-1)  # [B, K]
    # Piece k: response k then its separator, [B, K, T + 1].
    pieces = jnp.pad(to_front(tokens, is_completion), ((0, 0), (0, 0), (0, 1)))
    pieces = jnp.where(jnp.arange(t + 1) == c[..., None], separator, pieces)
    ends = p + jnp.cumsum(c + 1, axis=-1)  # [B, K]: one past each separator
    pos = jnp.arange(length)[None, :]
    slot = jnp.minimum(jnp.sum(pos[..., None] >= ends[:, None, :], axis=-1), k - 1)  # [B, L]
    start = jnp.take_along_axis(ends - (c + 1), slot, axis=-1)
    offset = jnp.clip(pos - start, 0, t)
    in_response = (pos >= p) & (pos < ends[:, -1:])
    response_tokens = pieces[jnp.arange(b)[:, None], slot, offset]
    prompt_tokens = jnp.take_along_axis(prompt, jnp.minimum(pos, t - 1), axis=-1)
    new_tokens = jnp.where(pos < p, prompt_tokens, jnp.where(in_response, response_tokens, 0))
    response_ids = jnp.where(in_response, slot + 1, 0)
    return new_tokens, (pos < ends[:, -1:]).astype(mask.dtype), response_ids.astype(mask.dtype)


def ranked_loss(
    params: Any,
    batch: Batch,
    *,
    model: ScoringModel,
    loss_name: str = "plackett_luce",
    loss_kwargs: Mapping[str, Any] | None = None,
    separator: int | None = None,
    prefix_length: int | None = None,
) -> tuple[Float[Array, ""], Metrics]:
    """Weighted mean loss of a reward model on ranked lists of K responses, and its metrics.

    With scores `s [B, K]` and ranks `ρ [B, K]` (0 = best, ties share a rank), per example:
    - "plackett_luce": `-Σ_k [s_(k) - logsumexp(s_(k), ..., s_(K))]` over the responses sorted
      best first (ListMLE; tied responses keep their order in the record);
    - "listwise_softmax": `logsumexp_j s_j - s_best`, best = the first response of rank 0;
    - a pairwise loss (`bradley_terry`, `hinge`, `thurstone`): its mean over the strictly ordered
      pairs `{(i, j): ρ_i < ρ_j}`, i.e. all `C(K, 2)` comparisons of a list in one example, as in
      InstructGPT (Ouyang et al., arXiv:2203.02155); a list of ties only contributes 0.
    An ensemble head's members are each trained on the list (loss averaged over members).

    Args:
      params: reward-model parameters.
      batch: ranked batch (`tokens`, `mask`, `completion_mask` [B, K, T], `ranks` [B, K],
        `weight` [B]), or a packed one (`rewardjax.data.packing`, `models.score_packed`; then
        `separator` and `prefix_length` are unused): the same loss, metrics and gradients.
      model: a `rewardjax.models.ScoringModel`.
      loss_name: "plackett_luce", "listwise_softmax" or a pairwise reward-model loss.
      loss_kwargs: extra keyword hyper-parameters for the loss.
      separator: score the K responses of a list in one row (`multi_response_rows`, the model's
        `max_responses` >= K), each closed by this token id; None: each in its own row.
      prefix_length: without `separator`, score each list as one prefix-shared row
        `[prompt | y_1 | ... | y_K]` of this length (`models.prefix.share_prefix`; the model's
        `max_responses` >= K): the scores of the K rows apart, the prompt computed once (Wang et
        al., arXiv 2410.20305).

    Returns:
      The loss and metrics: `accuracy` (ordered pairs the mean score orders correctly, over lists
      with at least one such pair) and `top1_accuracy` (the highest score has rank 0).
    """
    loss_fn = losses.get(loss_name)
    kwargs = dict(loss_kwargs or {})
    ranks, weight = examples(batch, key="ranks"), examples(batch, key="weight")
    if is_packed(batch):
        scores = score_packed(model, params, batch).reward.astype(jnp.float32)
        scores = scores.reshape(*scores.shape[:-3], -1, scores.shape[-1])  # [*E, R * S, K]
    elif separator is None and prefix_length is not None:
        rows = share_prefix(
            batch["tokens"], batch["mask"], batch["completion_mask"], length=prefix_length
        )
        out = model.apply(params, rows.tokens, rows.mask, None, rows.branch_ids, True)
        scores = out.reward.astype(jnp.float32)[..., : ranks.shape[-1]]
    elif separator is None:
        scores = _score_lists(model, params, batch)
    else:
        rows = multi_response_rows(
            batch["tokens"], batch["mask"], batch["completion_mask"], separator=separator
        )
        out = model.apply(params, rows[0], rows[1], None, rows[2])
        scores = out.reward.astype(jnp.float32)[..., : ranks.shape[-1]]
    above = ranks[:, :, None] < ranks[:, None, :]  # [B, K, K]: i is ranked above j
    num_pairs = jnp.sum(above, axis=(-2, -1))
    if loss_name == "plackett_luce":
        order = jnp.broadcast_to(jnp.argsort(ranks, axis=-1, stable=True), scores.shape)
        per_example = loss_fn(jnp.take_along_axis(scores, order, axis=-1), **kwargs)
    elif loss_name == "listwise_softmax":
        best = jnp.broadcast_to(jnp.argmin(ranks, axis=-1), scores.shape[:-1])
        per_example = loss_fn(scores, best, **kwargs)
    else:
        pairs = loss_fn(scores[..., :, None], scores[..., None, :], **kwargs)
        per_example = jnp.sum(jnp.where(above, pairs, 0.0), axis=(-2, -1))
        per_example = per_example / jnp.maximum(num_pairs, 1)
    s = mean_members(scores, ndim=2)
    correct = jnp.sum(above & (s[:, :, None] > s[:, None, :]), axis=(-2, -1))
    top = jnp.take_along_axis(ranks, jnp.argmax(s, axis=-1)[:, None], axis=-1)[:, 0]
    metrics = {
        "accuracy": weighted_mean(correct / jnp.maximum(num_pairs, 1), weight * (num_pairs > 0)),
        "top1_accuracy": weighted_mean(top == jnp.min(ranks, axis=-1), weight),
        **packing_metrics(batch),
    }
    return weighted_mean(mean_members(per_example), weight), metrics


def ranked_reward_model_step(
    state: TrainState, batch: Batch, rng: jax.Array, **kwargs: Any
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a reward model on ranked lists: `ranked_loss` (same keywords).

    Returns the new state and the metrics of `ranked_loss`, the loss, gradient and parameter norms.
    """
    del rng
    return objective_step(ranked_loss, state, batch, **kwargs)


def rating_loss(
    params: Any,
    batch: Batch,
    *,
    model: ScoringModel,
    attribute: int | None = None,
    attribute_names: tuple[str, ...] = (),
    loss_name: str = "rating_regression",
) -> tuple[Float[Array, ""], Metrics]:
    """Weighted mean squared error of a reward model on rated responses (HelpSteer-style), or the
    likelihood of the ratings under a rating-bin head.

    Per example: `mean_a (r̂_a - y_a)^2` (`losses.rating_regression`). With `attribute=None` the
    head predicts every attribute (`aux["attributes"] [B, A]` of the multi-attribute head, Wang et
    al., "HelpSteer2", arXiv:2406.08673; ArmoRM, arXiv:2406.12845); with an index, the scalar
    reward of any head regresses that one rating. Ensemble members are each fitted.

    Args:
      params: reward-model parameters.
      batch: rating batch (`tokens`, `mask`, `completion_mask` [B, T], `ratings` [B, A],
        `weight` [B]).
      model: a `rewardjax.models.ScoringModel`.
      attribute: which rating the scalar reward fits; None: all, through `aux["attributes"]`.
      attribute_names: names of the A ratings, for the per-attribute metrics `mse/<name>`.
      loss_name: "rating_regression" (squared error), or "categorical_rating": the negative
        log-likelihood of the rated bin under a head with `aux["log_probs"]` and
        `aux["bin_values"]` (the ordinal head; one `attribute`), reported as `nll`.

    Returns:
      The loss and the mean squared error per attribute (and `nll`).
    """
    ratings, weight = batch["ratings"].astype(jnp.float32), batch["weight"]
    out = model.apply(params, batch["tokens"], batch["mask"], batch["completion_mask"])
    if attribute is None:
        if "attributes" not in out.aux:
            raise ValueError(
                "rating_loss(attribute=None) needs a head with per-attribute outputs "
                "(multi_attribute); set the rating `attribute` to fit the scalar reward instead."
            )
        predicted, target = out.aux["attributes"], ratings
        if predicted.shape[-1] != ratings.shape[-1]:
            raise ValueError(
                f"the head predicts {predicted.shape[-1]} attributes but the data has "
                f"{ratings.shape[-1]} ratings; set the head's num_attributes to match."
            )
    else:
        if not 0 <= attribute < ratings.shape[-1]:
            raise ValueError(f"attribute={attribute} not in [0, {ratings.shape[-1]}).")
        predicted, target = out.reward[..., None], ratings[:, attribute : attribute + 1]
    errors = mean_members(losses.rating_regression(predicted, target), ndim=2)  # [B, A]
    names = attribute_names or tuple(str(a) for a in range(ratings.shape[-1]))
    if attribute is not None:
        names = names[attribute : attribute + 1]
    metrics = {f"mse/{name}": weighted_mean(e, weight) for name, e in zip(names, errors.T)}
    if loss_name == "rating_regression":
        return weighted_mean(errors.mean(axis=-1), weight), metrics
    if loss_name != "categorical_rating" or "bin_values" not in out.aux or attribute is None:
        raise ValueError(
            f"rating loss {loss_name!r}: use 'rating_regression', or 'categorical_rating' with a "
            "rating-bin head (ordinal) and one rating attribute."
        )
    nll = losses.categorical_rating(
        out.aux["log_probs"], target[:, 0], bin_values=out.aux["bin_values"][0]
    )
    metrics["nll"] = weighted_mean(nll, weight)
    return metrics["nll"], metrics


def rating_reward_model_step(
    state: TrainState, batch: Batch, rng: jax.Array, **kwargs: Any
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a reward model on rated responses: `rating_loss` (same keywords).

    Returns the new state and the metrics of `rating_loss`, the loss, gradient and parameter norms.
    """
    del rng
    return objective_step(rating_loss, state, batch, **kwargs)
