"""Pure train steps `(state, batch, rng) -> (state, metrics)`: reward models, DPO family, SFT.

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
    n = weight.shape[0]

    def objective(params):
        chosen, rejected = score_pairs(model, params, batch)
        r_c, r_r = chosen.reward.astype(jnp.float32), rejected.reward.astype(jnp.float32)
        per_example = loss_fn(r_c, r_r, **kwargs)
        if center_coef:
            per_example = per_example + center_coef * losses.reward_centering(r_c, r_r)
        mean_members = lambda x: x.reshape(-1, n).mean(axis=0)
        return weighted_mean(mean_members(per_example), weight), (
            mean_members(r_c),
            mean_members(r_r),
        )

    (loss, (r_c, r_r)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    return _apply_grads(state, grads, {"loss": loss, **_pair_metrics(r_c, r_r, weight)})


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
