"""Pure train steps `(state, batch, rng) -> (state, metrics)`: reward models (on pairs, ranked
lists or ratings), the DPO family, KTO, SFT.

Each step is built by binding the model (or its apply function) and the loss hyper-parameters with
`functools.partial`; what remains is a pure function of arrays that the loop jits with shardings.
Per-example losses are reduced with the batch's `weight` (0 marks padding examples):
`loss = sum_i w_i l_i / max(sum_i w_i, 1)`.

Papers:
  Bradley & Terry, "Rank analysis of incomplete block designs" (1952); Ouyang et al., "Training
  language models to follow instructions with human feedback" (arXiv:2203.02155).
  Eisenstein et al., "Helping or Herding? Reward Model Ensembles Mitigate but do not Eliminate
  Reward Hacking" (arXiv:2312.09244), for the reward-centring penalty.
  Rafailov et al., "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
  (arXiv:2305.18290).
  Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization" (arXiv:2402.01306).
  Wang et al., "HelpSteer2: Open-source dataset for training top-performing reward models"
  (arXiv:2406.08673), for rating regression.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array, Float, Int

from rewardjax import losses
from rewardjax.models import RewardFunction, score_pairs
from rewardjax.train.state import TrainState

__all__ = [
    "REFERENCE_FREE",
    "LogitsFn",
    "completion_logps",
    "dpo_step",
    "kto_loss",
    "kto_reference_logps",
    "kto_step",
    "mismatched_rows",
    "multi_response_rows",
    "ranked_loss",
    "ranked_reward_model_step",
    "rating_loss",
    "rating_reward_model_step",
    "reference_logps",
    "reward_model_step",
    "sft_step",
    "weighted_mean",
]

Batch = Mapping[str, Any]
Metrics = dict[str, jax.Array]
# logits_fn(params, tokens [B, T], mask [B, T]) -> logits [B, T, V] (logits[:, t] scores token t+1)
LogitsFn = Callable[[Any, Int[Array, "B T"], Int[Array, "B T"]], Float[Array, "B T V"]]
# Policy losses that need no reference model, with their own signatures.
REFERENCE_FREE = ("simpo", "orpo")


def weighted_mean(x: Float[Array, " B"], weight: Float[Array, " B"]) -> Float[Array, ""]:
    """`sum(x * w) / max(sum(w), 1)`: the mean over real examples (weight 0 marks padding)."""
    weight = weight.astype(jnp.float32)
    return jnp.sum(x.astype(jnp.float32) * weight) / jnp.maximum(jnp.sum(weight), 1.0)


def _stack_pairs(batch: Batch) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Chosen then rejected rows as one [2B, T] batch, so the policy runs once per step."""
    return tuple(
        jnp.concatenate([batch[f"chosen_{k}"], batch[f"rejected_{k}"]], axis=0)
        for k in ("tokens", "mask", "completion_mask")
    )


def completion_logps(
    params: Any,
    tokens: Int[Array, "B T"],
    mask: Int[Array, "B T"],
    completion_mask: Int[Array, "B T"],
    *,
    logits_fn: LogitsFn,
) -> tuple[Float[Array, " B"], Float[Array, " B"]]:
    """Summed log-probs of the completion tokens and their count, each [B] float32.

    `log π(y|x) = sum_t c_t log softmax(logits[t-1])[tokens[t]]` (token t is predicted at t-1).
    """
    logits = logits_fn(params, tokens, mask)
    where = completion_mask[:, 1:] > 0
    logps = losses.sequence_logprobs(logits[:, :-1], tokens[:, 1:], where)
    return logps, jnp.sum(where, axis=-1).astype(jnp.float32)


def _mean_members(x: jax.Array, ndim: int = 1) -> jax.Array:
    """The mean over the leading members axis of an ensemble head's `[E, *batch]` output; `x`
    itself when it has only the `ndim` batch axes."""
    return x.mean(axis=0) if x.ndim > ndim else x


def _apply_grads(state: TrainState, grads: Any, metrics: Metrics) -> tuple[TrainState, Metrics]:
    metrics["grad_norm"] = optax.global_norm(grads)
    new_state = state.apply_gradients(grads)
    metrics["param_norm"] = optax.global_norm(new_state.params)
    return new_state, metrics


def _pair_metrics(r_c: jax.Array, r_r: jax.Array, weight: jax.Array) -> Metrics:
    return {
        "accuracy": weighted_mean((r_c > r_r).astype(jnp.float32), weight),
        "reward_margin": weighted_mean(r_c - r_r, weight),
        "reward_chosen": weighted_mean(r_c, weight),
        "reward_rejected": weighted_mean(r_r, weight),
    }


def reward_model_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    model: RewardFunction,
    loss_name: str = "bradley_terry",
    loss_kwargs: Mapping[str, Any] | None = None,
    use_margin: bool = False,
    center_coef: float = 0.0,
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a pairwise reward model.

    Per example: `l_i = loss(r_c, r_r[, margin=m_i]) + center_coef * (r_c + r_r)^2`, where the
    loss comes from `rewardjax.losses.get(loss_name)` and the centring term is
    `losses.reward_centering` (Eisenstein et al., arXiv:2312.09244).

    Args:
      state: the train state.
      batch: pairwise preference batch (`chosen_tokens`, `chosen_mask`, `rejected_tokens`,
        `rejected_mask`, optional completion masks, `margin`, `weight`).
      rng: unused by deterministic models; kept so every step has the same signature.
      model: a `rewardjax.models.RewardFunction` (e.g. `RewardModel`); rewards `[B]`, or `[E, B]`
        for an ensemble head, whose members are each trained on the pair (metrics use the mean).
      loss_name: a pairwise reward-model loss registered in `rewardjax.losses`.
      loss_kwargs: extra keyword hyper-parameters for the loss.
      use_margin: pass the batch's `margin` to the loss.
      center_coef: weight of the reward-centring term.

    Returns:
      The new state and scalar metrics: loss, accuracy (r_c > r_r), reward margin, mean chosen
      and rejected reward, gradient and parameter norms.
    """
    del rng
    loss_fn = losses.get(loss_name)
    kwargs = dict(loss_kwargs or {})
    if use_margin:
        kwargs["margin"] = batch["margin"]
    weight = batch["weight"]

    def objective(params):
        chosen, rejected = score_pairs(model, params, batch)
        r_c, r_r = chosen.reward.astype(jnp.float32), rejected.reward.astype(jnp.float32)
        per_example = loss_fn(r_c, r_r, **kwargs)
        if center_coef:
            per_example = per_example + center_coef * losses.reward_centering(r_c, r_r)
        return weighted_mean(_mean_members(per_example), weight), (
            _mean_members(r_c),
            _mean_members(r_r),
        )

    (loss, (r_c, r_r)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    return _apply_grads(state, grads, {"loss": loss, **_pair_metrics(r_c, r_r, weight)})


def _objective_step(
    objective: Callable[..., tuple[jax.Array, Metrics]], state: TrainState, batch: Batch, **kwargs
) -> tuple[TrainState, Metrics]:
    """One optimiser step on `objective(params, batch, **kwargs) -> (loss, metrics)`."""
    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params, batch, **kwargs
    )
    return _apply_grads(state, grads, {"loss": loss, **metrics})


def _score_lists(model: RewardFunction, params: Any, batch: Batch) -> Float[Array, "*E B K"]:
    """Rewards of the K responses of each example (`tokens` [B, K, T]) in one forward over B*K
    rows: float32 `[B, K]`, or `[E, B, K]` for an ensemble head."""
    b, k, t = batch["tokens"].shape
    rows = [batch[key].reshape(b * k, t) for key in ("tokens", "mask", "completion_mask")]
    reward = model.apply(params, *rows).reward.astype(jnp.float32)
    return reward.reshape(*reward.shape[:-1], b, k)


def _to_front(tokens: Int[Array, "*B T"], selected: Int[Array, "*B T"]) -> Int[Array, "*B T"]:
    """Each row's selected tokens moved to its front, in order (a stable sort on "not selected")."""
    return jnp.take_along_axis(tokens, jnp.argsort(~selected, axis=-1, stable=True), axis=-1)


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
    prompt, p = _to_front(tokens[:, 0], is_prompt), jnp.sum(is_prompt, axis=-1, keepdims=True)
    c = jnp.sum(is_completion, axis=-1)  # [B, K]
    # Piece k: response k then its separator, [B, K, T + 1].
    pieces = jnp.pad(_to_front(tokens, is_completion), ((0, 0), (0, 0), (0, 1)))
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
    model: RewardFunction,
    loss_name: str = "plackett_luce",
    loss_kwargs: Mapping[str, Any] | None = None,
    separator: int | None = None,
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
        `weight` [B]).
      model: a `rewardjax.models.RewardFunction`.
      loss_name: "plackett_luce", "listwise_softmax" or a pairwise reward-model loss.
      loss_kwargs: extra keyword hyper-parameters for the loss.
      separator: score the K responses of a list in one row (`multi_response_rows`, the model's
        `max_responses` >= K), each closed by this token id; None: each in its own row.

    Returns:
      The loss and metrics: `accuracy` (ordered pairs the mean score orders correctly, over lists
      with at least one such pair) and `top1_accuracy` (the highest score has rank 0).
    """
    loss_fn = losses.get(loss_name)
    kwargs = dict(loss_kwargs or {})
    ranks, weight = batch["ranks"], batch["weight"]
    if separator is None:
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
    s = _mean_members(scores, ndim=2)
    correct = jnp.sum(above & (s[:, :, None] > s[:, None, :]), axis=(-2, -1))
    top = jnp.take_along_axis(ranks, jnp.argmax(s, axis=-1)[:, None], axis=-1)[:, 0]
    metrics = {
        "accuracy": weighted_mean(correct / jnp.maximum(num_pairs, 1), weight * (num_pairs > 0)),
        "top1_accuracy": weighted_mean(top == jnp.min(ranks, axis=-1), weight),
    }
    return weighted_mean(_mean_members(per_example), weight), metrics


def ranked_reward_model_step(
    state: TrainState, batch: Batch, rng: jax.Array, **kwargs: Any
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a reward model on ranked lists: `ranked_loss` (same keywords).

    Returns the new state and the metrics of `ranked_loss`, the loss, gradient and parameter norms.
    """
    del rng
    return _objective_step(ranked_loss, state, batch, **kwargs)


def rating_loss(
    params: Any,
    batch: Batch,
    *,
    model: RewardFunction,
    attribute: int | None = None,
    attribute_names: tuple[str, ...] = (),
) -> tuple[Float[Array, ""], Metrics]:
    """Weighted mean squared error of a reward model on rated responses (HelpSteer-style).

    Per example: `mean_a (r̂_a - y_a)^2` (`losses.rating_regression`). With `attribute=None` the
    head predicts every attribute (`aux["attributes"] [B, A]` of the multi-attribute head, Wang et
    al., "HelpSteer2", arXiv:2406.08673; ArmoRM, arXiv:2406.12845); with an index, the scalar
    reward of any head regresses that one rating. Ensemble members are each fitted.

    Args:
      params: reward-model parameters.
      batch: rating batch (`tokens`, `mask`, `completion_mask` [B, T], `ratings` [B, A],
        `weight` [B]).
      model: a `rewardjax.models.RewardFunction`.
      attribute: which rating the scalar reward fits; None: all, through `aux["attributes"]`.
      attribute_names: names of the A ratings, for the per-attribute metrics `mse/<name>`.

    Returns:
      The loss and the mean squared error per attribute.
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
    errors = _mean_members(losses.rating_regression(predicted, target), ndim=2)  # [B, A]
    names = attribute_names or tuple(str(a) for a in range(ratings.shape[-1]))
    if attribute is not None:
        names = names[attribute : attribute + 1]
    metrics = {f"mse/{name}": weighted_mean(e, weight) for name, e in zip(names, errors.T)}
    return weighted_mean(errors.mean(axis=-1), weight), metrics


def rating_reward_model_step(
    state: TrainState, batch: Batch, rng: jax.Array, **kwargs: Any
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a reward model on rated responses: `rating_loss` (same keywords).

    Returns the new state and the metrics of `rating_loss`, the loss, gradient and parameter norms.
    """
    del rng
    return _objective_step(rating_loss, state, batch, **kwargs)


def reference_logps(ref_params: Any, batch: Batch, *, logits_fn: LogitsFn) -> dict[str, Any]:
    """Adds `ref_chosen_logps` and `ref_rejected_logps` [B] from frozen reference parameters.

    Run it (jitted) on each batch before `dpo_step` when the data has no precomputed reference
    log-probs; no gradient flows into the reference.
    """
    logps, _ = completion_logps(
        jax.lax.stop_gradient(ref_params), *_stack_pairs(batch), logits_fn=logits_fn
    )
    n = batch["weight"].shape[0]
    return {**batch, "ref_chosen_logps": logps[:n], "ref_rejected_logps": logps[n:]}


def dpo_step(
    state: TrainState,
    batch: Batch,
    rng: jax.Array,
    *,
    logits_fn: LogitsFn,
    loss_name: str = "dpo",
    beta: float = 0.1,
    loss_kwargs: Mapping[str, Any] | None = None,
    loss_weight: float = 1.0,
    nll_weight: float = 0.0,
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a DPO-family policy loss, optionally plus the chosen NLL.

    Per example: `l_i = loss_weight * L_i + nll_weight * NLL_i`, with `NLL_i` the mean negative
    log-likelihood per chosen completion token and `L_i` from `rewardjax.losses.get(loss_name)`:
    `L(log π(y_c), log π(y_r), log π_ref(y_c), log π_ref(y_r), beta=beta)` for the reference-based
    losses (DPO, Rafailov et al., arXiv:2305.18290, and its family); `simpo` gets summed log-probs
    and completion lengths (Meng et al., arXiv:2405.14734); `orpo` gets mean token log-probs (Hong
    et al., arXiv:2403.07691; ORPO is `loss_weight=0.1, nll_weight=1`). The implicit reward in the
    metrics is `beta * (log π - log π_ref)` (`log π_ref = 0` for the reference-free losses).

    Args:
      state: the policy's train state.
      batch: pairwise batch with completion masks; reference-based losses also need
        `ref_chosen_logps`, `ref_rejected_logps` [B] (see `reference_logps`).
      rng: unused by deterministic models.
      logits_fn: `(params, tokens, mask) -> logits [B, T, V]`.
      loss_name: a policy-level loss registered in `rewardjax.losses`.
      beta: the loss's `beta`.
      loss_kwargs: extra keyword hyper-parameters for the loss.
      loss_weight, nll_weight: weights of the preference loss and of the chosen NLL.

    Returns:
      The new state and scalar metrics: loss, implicit-reward accuracy and margin, mean chosen
      and rejected implicit rewards, chosen log-prob, gradient and parameter norms.
    """
    del rng
    loss_fn = losses.get(loss_name)
    kwargs = dict(loss_kwargs or {})
    n = batch["weight"].shape[0]
    if loss_name in REFERENCE_FREE:
        ref_c = ref_r = jnp.zeros((n,), jnp.float32)
    else:
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key not in batch:
                raise KeyError(
                    f"dpo_step({loss_name!r}): batch has no {key!r}; compute it with "
                    "`reference_logps` or precompute it in the data."
                )
        ref_c = batch["ref_chosen_logps"].astype(jnp.float32)
        ref_r = batch["ref_rejected_logps"].astype(jnp.float32)
    weight = batch["weight"]

    def objective(params):
        logps, lengths = completion_logps(params, *_stack_pairs(batch), logits_fn=logits_fn)
        pi_c, pi_r, len_c, len_r = logps[:n], logps[n:], lengths[:n], lengths[n:]
        mean_c = pi_c / jnp.maximum(len_c, 1.0)
        if loss_name == "simpo":
            pref = loss_fn(pi_c, pi_r, len_c, len_r, beta=beta, **kwargs)
        elif loss_name == "orpo":
            pref = loss_fn(mean_c, pi_r / jnp.maximum(len_r, 1.0), **kwargs)
        else:
            pref = loss_fn(pi_c, pi_r, ref_c, ref_r, beta=beta, **kwargs)
        per_example = loss_weight * pref
        if nll_weight:
            per_example = per_example - nll_weight * mean_c
        return weighted_mean(per_example, weight), (pi_c, pi_r)

    (loss, (pi_c, pi_r)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    metrics = {
        "loss": loss,
        **_pair_metrics(beta * (pi_c - ref_c), beta * (pi_r - ref_r), weight),
        "logp_chosen": weighted_mean(pi_c, weight),
    }
    return _apply_grads(state, grads, metrics)


def mismatched_rows(
    tokens: Int[Array, "B T"], mask: Int[Array, "B T"], completion_mask: Int[Array, "B T"]
) -> tuple[Int[Array, "B T"], Int[Array, "B T"], Int[Array, "B T"]]:
    """Row i: the prompt of row i followed by the completion of row i - 1 (mod B), left-aligned.

    The mismatched (prompt, completion) pairs of the KTO reference point (the completions shifted
    by one within the batch, as TRL does). A prompt is a row's real tokens outside its completion
    (in order), a completion its completion tokens; rows longer than T are cut at T.

    Returns:
      `(tokens, mask, completion_mask)` [B, T], 0 on padding.
    """
    length = tokens.shape[-1]
    is_prompt = (mask > 0) & (completion_mask == 0)
    is_completion = (mask > 0) & (completion_mask > 0)
    prompt = _to_front(tokens, is_prompt)
    completion = jnp.roll(_to_front(tokens, is_completion), 1, axis=0)
    p = jnp.sum(is_prompt, axis=-1, keepdims=True)
    c = jnp.roll(jnp.sum(is_completion, axis=-1, keepdims=True), 1, axis=0)
    t = jnp.arange(length)[None, :]
    in_completion = (t >= p) & (t < p + c)
    shifted = jnp.take_along_axis(completion, jnp.clip(t - p, 0, length - 1), axis=-1)
    new_tokens = jnp.where(t < p, prompt, jnp.where(in_completion, shifted, 0))
    return new_tokens, (t < p + c).astype(mask.dtype), in_completion.astype(mask.dtype)


def kto_reference_logps(ref_params: Any, batch: Batch, *, logits_fn: LogitsFn) -> dict[str, Any]:
    """Adds `ref_logps` (the batch's completions) and `ref_kl_logps` (the `mismatched_rows`) [B]
    from frozen reference parameters; run it (jitted) on each batch before `kto_step`."""
    rows = (batch["tokens"], batch["mask"], batch["completion_mask"])
    stacked = [jnp.concatenate(pair, axis=0) for pair in zip(rows, mismatched_rows(*rows))]
    logps, _ = completion_logps(jax.lax.stop_gradient(ref_params), *stacked, logits_fn=logits_fn)
    n = batch["weight"].shape[0]
    return {**batch, "ref_logps": logps[:n], "ref_kl_logps": logps[n:]}


def kto_loss(
    params: Any,
    batch: Batch,
    *,
    logits_fn: LogitsFn,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[Float[Array, ""], Metrics]:
    """Weighted mean KTO loss of a policy on unpaired desirable / undesirable completions.

    Per example `losses.kto(log π(y|x), log π_ref(y|x), desirable, z0, beta=...)`: desirable
    `w_D (1 - σ(β(ρ - z0)))`, undesirable `w_U (1 - σ(β(z0 - ρ)))`, `ρ = log π - log π_ref`. The
    reference point is the batch estimate of KL(π‖π_ref) on mismatched pairs (`mismatched_rows`),
    `z0 = max(0, mean_i [log π(y_{i-1}|x_i) - log π_ref(y_{i-1}|x_i)])`, with no gradient
    (Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization",
    arXiv:2402.01306).

    Args:
      params: policy parameters.
      batch: unpaired batch (`tokens`, `mask`, `completion_mask` [B, T], `desirable` [B],
        `weight` [B]) with `ref_logps` and `ref_kl_logps` [B] (see `kto_reference_logps`).
      logits_fn: `(params, tokens, mask) -> logits [B, T, V]`.
      beta, desirable_weight, undesirable_weight: the loss's hyper-parameters.

    Returns:
      The loss and metrics: `kl` (z0), mean implicit rewards `β ρ` of the desirable and the
      undesirable completions, and `logp` (mean completion log-prob).
    """
    for key in ("ref_logps", "ref_kl_logps"):
        if key not in batch:
            raise KeyError(
                f"kto_loss: batch has no {key!r}; compute it with `kto_reference_logps`."
            )
    rows = (batch["tokens"], batch["mask"], batch["completion_mask"])
    weight, desirable = batch["weight"], batch["desirable"]
    kl_logps, _ = completion_logps(
        jax.lax.stop_gradient(params), *mismatched_rows(*rows), logits_fn=logits_fn
    )
    # Fillers (weight 0) neither pose a prompt nor lend a completion to the estimate.
    kl_weight = weight * jnp.roll(weight, 1)
    z0 = jnp.maximum(weighted_mean(kl_logps - batch["ref_kl_logps"], kl_weight), 0.0)
    logps, _ = completion_logps(params, *rows, logits_fn=logits_fn)
    per_example = losses.kto(
        logps,
        batch["ref_logps"],
        desirable,
        z0,
        beta=beta,
        desirable_weight=desirable_weight,
        undesirable_weight=undesirable_weight,
    )
    reward = beta * (logps - batch["ref_logps"].astype(jnp.float32))
    metrics = {
        "kl": z0,
        "reward_desirable": weighted_mean(reward, weight * desirable),
        "reward_undesirable": weighted_mean(reward, weight * ~desirable),
        "logp": weighted_mean(logps, weight),
    }
    return weighted_mean(per_example, weight), metrics


def kto_step(
    state: TrainState, batch: Batch, rng: jax.Array, **kwargs: Any
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a policy with the KTO loss: `kto_loss` (same keywords).

    Returns the new state and the metrics of `kto_loss`, the loss, gradient and parameter norms.
    """
    del rng
    return _objective_step(kto_loss, state, batch, **kwargs)


def sft_step(
    state: TrainState, batch: Batch, rng: jax.Array, *, logits_fn: LogitsFn
) -> tuple[TrainState, Metrics]:
    """One optimiser step of supervised fine-tuning on completion tokens.

    `loss = -sum_{i,t} w_i c_{i,t} log π(y_{i,t} | y_{i,<t}) / sum_{i,t} w_i c_{i,t}`: the mean
    negative log-likelihood per completion token (c is the completion mask).

    Args:
      state: the policy's train state.
      batch: SFT batch (`tokens`, `mask`, `completion_mask` [B, T], `weight` [B]).
      rng: unused by deterministic models.
      logits_fn: `(params, tokens, mask) -> logits [B, T, V]`.

    Returns:
      The new state and scalar metrics: loss (nats per token), gradient and parameter norms.
    """
    del rng
    weight = batch["weight"].astype(jnp.float32)

    def objective(params):
        logps, n_tokens = completion_logps(
            params, batch["tokens"], batch["mask"], batch["completion_mask"], logits_fn=logits_fn
        )
        return -jnp.sum(logps * weight) / jnp.maximum(jnp.sum(n_tokens * weight), 1.0)

    loss, grads = jax.value_and_grad(objective)(state.params)
    return _apply_grads(state, grads, {"loss": loss})
