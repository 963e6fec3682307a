"""Policy steps: the DPO family against a reference, KTO on unpaired completions, SFT."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int

from rewardjax import losses
from rewardjax.models.prefix import PackedRows, packed_logprobs, share_prefix
from rewardjax.train.state import TrainState
from rewardjax.train.steps.common import (
    Batch,
    LogitsFn,
    Metrics,
    apply_grads,
    examples,
    is_packed,
    objective_step,
    packing_metrics,
    pair_metrics,
    to_front,
    weighted_mean,
)

__all__ = [
    "completion_logps",
    "dpo_step",
    "kto_loss",
    "kto_reference_logps",
    "kto_step",
    "mismatched_rows",
    "pair_logps",
    "reference_logps",
    "sft_step",
]


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


def pair_logps(
    params: Any, batch: Batch, *, logits_fn: LogitsFn, prefix_length: int | None = None
) -> tuple[Float[Array, " B"], Float[Array, " B"], Float[Array, " B"], Float[Array, " B"]]:
    """Summed completion log-probs and completion lengths of the chosen and rejected rows of a
    pairwise batch: `(logp_c, logp_r, len_c, len_r)`, each [B] float32.

    Without `prefix_length`: one forward over the stacked `[2B, T]` rows (`completion_logps`).
    With it: one forward over `[B, L]` prefix-shared rows `[prompt | chosen | rejected]`
    (`models.prefix.share_prefix`), the prompt computed once; `logits_fn` is then called with
    `branch_ids=` (Wang et al., "Accelerating Direct Preference Optimization with Prefix
    Sharing", arXiv 2410.20305). A packed batch (`rewardjax.data.packing`): one forward over its
    `[R, L]` rows, each `[R * S]` (example slots, `examples`). Shared rows are packed rows of one
    pair each (`SharedRows.packed`): both go through `models.prefix.packed_logprobs`. All give
    the same values.
    """
    if is_packed(batch):
        rows = PackedRows.of(batch)
    elif prefix_length is None:
        logps, lengths = completion_logps(params, *_stack_pairs(batch), logits_fn=logits_fn)
        n = logps.shape[0] // 2
        return logps[:n], logps[n:], lengths[:n], lengths[n:]
    else:  # prefix-shared on device: packed rows of one pair each
        stacked = [
            jnp.stack([batch[f"chosen_{k}"], batch[f"rejected_{k}"]], axis=1)
            for k in ("tokens", "mask", "completion_mask")
        ]
        rows = share_prefix(*stacked, length=prefix_length).packed()
    logits = logits_fn(params, rows.tokens, rows.segment_ids, branch_ids=rows.branch_ids)
    logps, lengths = (x.reshape(-1, 2) for x in packed_logprobs(logits, rows))
    return logps[:, 0], logps[:, 1], lengths[:, 0], lengths[:, 1]


def reference_logps(
    ref_params: Any, batch: Batch, *, logits_fn: LogitsFn, prefix_length: int | None = None
) -> dict[str, Any]:
    """Adds `ref_chosen_logps` and `ref_rejected_logps` [B] from frozen reference parameters.

    Run it (jitted) on each batch before `dpo_step` when the data has no precomputed reference
    log-probs; no gradient flows into the reference. `prefix_length`: see `pair_logps`. In a
    packed batch they are `[R, S]`, as its other per-example fields.
    """
    logp_c, logp_r, _, _ = pair_logps(
        jax.lax.stop_gradient(ref_params), batch, logits_fn=logits_fn, prefix_length=prefix_length
    )
    shape = batch["weight"].shape
    return {
        **batch,
        "ref_chosen_logps": logp_c.reshape(shape),
        "ref_rejected_logps": logp_r.reshape(shape),
    }


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
    prefix_length: int | None = None,
) -> tuple[TrainState, Metrics]:
    """One optimiser step of a DPO-family policy loss, optionally plus the chosen NLL.

    Per example: `l_i = loss_weight * L_i + nll_weight * NLL_i`, with `NLL_i` the mean negative
    log-likelihood per chosen completion token and `L_i` from `rewardjax.losses.get(loss_name)`:
    `L(log π(y_c), log π(y_r), log π_ref(y_c), log π_ref(y_r), beta=beta)` for the reference-based
    losses (DPO, Rafailov et al., arXiv:2305.18290, and its family); `simpo` gets summed log-probs
    and completion lengths (Meng et al., arXiv:2405.14734); `orpo` gets mean token log-probs (Hong
    et al., arXiv:2403.07691; ORPO is `loss_weight=0.1, nll_weight=1`). The implicit reward in the
    metrics is the loss's own (`losses.spec(loss_name).implicit_reward`): `beta * (log π -
    log π_ref)` for the reference-based losses, SimPO's length-normalised and ORPO's log-odds one.

    Args:
      state: the policy's train state.
      batch: pairwise batch with completion masks, or a packed one (`rewardjax.data.packing`);
        reference-based losses also need `ref_chosen_logps`, `ref_rejected_logps` [B] (`[R, S]`
        packed; see `reference_logps`).
      rng: unused by deterministic models.
      logits_fn: `(params, tokens, mask) -> logits [B, T, V]`.
      loss_name: a policy-level loss registered in `rewardjax.losses`.
      beta: the loss's `beta`.
      loss_kwargs: extra keyword hyper-parameters for the loss.
      loss_weight, nll_weight: weights of the preference loss and of the chosen NLL.
      prefix_length: compute the log-probs on prefix-shared rows of this length (`pair_logps`;
        `logits_fn` then takes `branch_ids=`); None: on the stacked `[2B, T]` rows.

    Returns:
      The new state and scalar metrics: loss, implicit-reward accuracy and margin, mean chosen
      and rejected implicit rewards, chosen log-prob, gradient and parameter norms (and a packed
      batch's `padding_fraction`).
    """
    del rng
    spec = losses.spec(loss_name)
    loss_fn = spec.fn
    kwargs = dict(loss_kwargs or {})
    ref_c = ref_r = None
    if spec.reference:
        for key in ("ref_chosen_logps", "ref_rejected_logps"):
            if key not in batch:
                raise KeyError(
                    f"dpo_step({loss_name!r}): batch has no {key!r}; compute it with "
                    "`reference_logps` or precompute it in the data."
                )
        ref_c = examples(batch, key="ref_chosen_logps").astype(jnp.float32)
        ref_r = examples(batch, key="ref_rejected_logps").astype(jnp.float32)
    weight = examples(batch, key="weight")

    def objective(params):
        pi_c, pi_r, len_c, len_r = pair_logps(
            params, batch, logits_fn=logits_fn, prefix_length=prefix_length
        )
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
        return weighted_mean(per_example, weight), (pi_c, pi_r, len_c, len_r)

    (loss, (pi_c, pi_r, len_c, len_r)), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params
    )
    reward = lambda pi, ref, length: spec.implicit_reward(
        pi, ref, jnp.maximum(length, 1.0), beta=beta
    )
    metrics = {
        "loss": loss,
        **pair_metrics(reward(pi_c, ref_c, len_c), reward(pi_r, ref_r, len_r), weight),
        "logp_chosen": weighted_mean(pi_c, weight),
        **packing_metrics(batch),
    }
    return apply_grads(state, grads, metrics)


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
    prompt = to_front(tokens, is_prompt)
    completion = jnp.roll(to_front(tokens, is_completion), 1, axis=0)
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


def _desirable_mask(desirable: Any) -> jax.Array:
    """`batch["desirable"]` as a boolean mask [B]: bool, or integers / floats that are 0 or 1.

    The dtype is checked when the step is traced; the values are checked when they are concrete
    (outside `jit`); under `jit` a nonzero value counts as desirable.
    """
    d = jnp.asarray(desirable)
    if not (jnp.issubdtype(d.dtype, jnp.bool_) or jnp.issubdtype(d.dtype, jnp.number)):
        raise TypeError(
            f"kto_loss: batch['desirable'] has dtype {d.dtype}; it must be bool (or 0/1 numbers)."
        )
    if d.dtype != jnp.bool_ and not isinstance(d, jax.core.Tracer):
        values = np.unique(np.asarray(d))
        if not np.isin(values, (0, 1)).all():
            raise ValueError(
                f"kto_loss: batch['desirable'] holds {values.tolist()}; it must be True/False or "
                "1/0 (1 = desirable, 0 = undesirable)."
            )
    return d != 0


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
        `weight` [B]; `desirable` is bool or 0/1, 1 = desirable) with `ref_logps` and
        `ref_kl_logps` [B] (see `kto_reference_logps`).
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
    weight, desirable = batch["weight"], _desirable_mask(batch["desirable"])
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
    return objective_step(kto_loss, state, batch, **kwargs)


def sft_step(
    state: TrainState, batch: Batch, rng: jax.Array, *, logits_fn: LogitsFn
) -> tuple[TrainState, Metrics]:
    """One optimiser step of supervised fine-tuning on completion tokens.

    `loss = -sum_{i,t} w_i c_{i,t} log π(y_{i,t} | y_{i,<t}) / sum_{i,t} w_i c_{i,t}`: the mean
    negative log-likelihood per completion token (c is the completion mask).

    Args:
      state: the policy's train state.
      batch: SFT batch (`tokens`, `mask`, `completion_mask` [B, T], `weight` [B]), or a packed
        one (`rewardjax.data.packing`: `[prompt | response]` examples back to back in rows, their
        log-probs from `models.prefix.packed_logprobs`): the same loss and gradients.
      rng: unused by deterministic models.
      logits_fn: `(params, tokens, mask) -> logits [B, T, V]` (`mask`: segment ids).

    Returns:
      The new state and scalar metrics: loss (nats per token), gradient and parameter norms (and
      a packed batch's `padding_fraction`).
    """
    del rng
    weight = examples(batch, key="weight").astype(jnp.float32)

    def objective(params):
        if is_packed(batch):
            # One response per example: branch attention is causal attention within a segment.
            rows = PackedRows.of(batch)
            logits = logits_fn(params, rows.tokens, rows.segment_ids)
            logps, n_tokens = (x.reshape(-1) for x in packed_logprobs(logits, rows))
        else:
            logps, n_tokens = completion_logps(
                params,
                batch["tokens"],
                batch["mask"],
                batch["completion_mask"],
                logits_fn=logits_fn,
            )
        return -jnp.sum(logps * weight) / jnp.maximum(jnp.sum(n_tokens * weight), 1.0)

    loss, grads = jax.value_and_grad(objective)(state.params)
    return apply_grads(state, grads, {"loss": loss, **packing_metrics(batch)})
