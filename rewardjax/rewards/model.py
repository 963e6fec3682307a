"""A trained reward model (any head, or an ensemble) as a reward function.

Rows are built in the layout the reward model was trained on (`data.collate`,
`data.synthetic.pairs_to_batch`): the prompt's real tokens, then the completion's, right-padded with
id 0; `mask` 1 on real tokens (one segment), `completion_mask` 1 on the completion. When the reward
model's tokenizer differs from the policy's, the prompt and completion are re-tokenised from text
with `data.encode_example` (the training path: plain strings, the reward tokenizer's EOS appended).

Ensembles (rewards [E, B], from `models.RewardEnsemble` or an `ensemble` head) are reduced per row:

    mean:         r̄ = (1/E) Σ_e r_e
    worst_case:   min_e r_e
    uncertainty:  r̄ - c · std_e(r_e)          std = sqrt((1/E) Σ_e (r_e - r̄)²)
    uwo:          r̄ - c · var_e(r_e)          (`transforms.ensemble(method="uwo")`)

Coste et al. 2023, "Reward Model Ensembles Help Mitigate Overoptimization", arXiv 2310.02743.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import transforms
from rewardjax.data import ByteTokenizer, Tokenizer, encode_example
from rewardjax.models import ScoringModel
from rewardjax.rewards.base import RewardInputs, RewardOutput, check_inputs, join_rows, texts_of

__all__ = ["ENSEMBLE_REDUCTIONS", "ModelReward"]

ENSEMBLE_REDUCTIONS = ("mean", "worst_case", "uncertainty", "uwo")


def _same_tokenizer(a: Tokenizer, b: Tokenizer) -> bool:
    """Conservative: the same object, or two byte tokenizers; anything else counts as different
    (re-tokenising through text is then correct, only slower)."""
    return a is b or (type(a) is ByteTokenizer and type(b) is ByteTokenizer)


def _describe(tokenizer: Tokenizer | None) -> str:
    if tokenizer is None:
        return "None"
    return f"{type(tokenizer).__name__}(vocab_size={getattr(tokenizer, 'vocab_size', '?')})"


def _model_vocab_size(model: Any) -> int | None:
    backbone = getattr(getattr(model, "config", None), "backbone", None)
    if backbone is None:
        backbone = getattr(model, "config", None)
    return getattr(backbone, "vocab_size", None)


class _ByIdentity:
    """A static jit argument for a model that is not hashable (compared by identity)."""

    def __init__(self, model: Any):
        self.model = model

    def __hash__(self) -> int:
        return id(self.model)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByIdentity) and other.model is self.model


def _static(model: Any) -> Any:
    try:
        hash(model)
    except TypeError:
        return _ByIdentity(model)
    return model


def _apply_model(key: Any, params: Any, tokens, mask, completion_mask):
    """Raw model rewards ([B] or [E, B], float32), the head's per-row aux, the invalid flag."""
    model = key.model if isinstance(key, _ByIdentity) else key
    out = model.apply(params, tokens, mask, completion_mask)
    reward = jnp.asarray(out.reward, jnp.float32)
    b = tokens.shape[0]
    head_aux = {}
    if reward.ndim == 1:
        head_aux = {f"head/{k}": v for k, v in out.aux.items() if v.shape[:1] == (b,)}
    vocab_size = _model_vocab_size(model)
    if vocab_size is None:
        invalid = jnp.zeros((b,), bool)
    else:
        invalid = ((mask > 0) & ((tokens < 0) | (tokens >= vocab_size))).any(1)
    return reward, head_aux, invalid


# Module-level, keyed by the (static) model: every ModelReward of one model shares compilations.
_score_rows = jax.jit(_apply_model, static_argnums=0)
_score_joined = jax.jit(
    lambda key, params, *arrays: _apply_model(key, params, *join_rows(*arrays)), static_argnums=0
)


@functools.partial(jax.jit, static_argnames="ensemble")
def _reduce(reward, coef, invalid, invalid_reward, *, ensemble: str):
    """[B] or [E, B] model rewards -> [B] rewards and the ensemble diagnostics."""
    if reward.ndim == 1:
        if ensemble != "mean":
            raise ValueError(
                f"ModelReward: ensemble={ensemble!r} needs an ensemble (rewards [E, B]) "
                f"but the model returns one reward per row (shape {reward.shape}); use "
                "ensemble='mean', or a RewardEnsemble / an 'ensemble' head"
            )
        out, aux = reward, {}
    elif reward.ndim == 2:
        mean, std = jnp.mean(reward, axis=0), jnp.std(reward, axis=0)
        if ensemble == "uncertainty":
            out = mean - coef * std
        else:
            method = {"mean": "mean", "worst_case": "min", "uwo": "uwo"}[ensemble]
            out = transforms.ensemble(reward, method=method, coef=coef)
        aux = {"ensemble_mean": mean, "ensemble_std": std, "members": reward.T}
    else:
        raise ValueError(f"ModelReward: rewards must be [B] or [E, B], got {reward.shape}")
    return jnp.where(invalid, invalid_reward, out), aux


class ModelReward:
    """Rewards from a `models.ScoringModel`: `RewardModel`, `RewardEnsemble`, `ImplicitReward`...

    Args:
      model: anything with `apply(params, tokens, mask, completion_mask) -> models.RewardOutput`.
      params: its parameters (logical-partitioning boxes are removed).
      ensemble: reduction of [E, B] rewards, one of `ENSEMBLE_REDUCTIONS` (module docstring); a
        model with [B] rewards accepts only "mean".
      uncertainty_coef: c of "uncertainty" and "uwo".
      tokenizer: the reward model's tokenizer; None when it reads the policy's ids as they are.
      policy_tokenizer: the policy's tokenizer. Re-tokenisation through text happens when
        `tokenizer` is given and differs from `policy_tokenizer` (None counts as different; two
        tokenizers are the same when they are one object or both `ByteTokenizer`s). The text is
        `RewardInputs.prompt_text` / `completion_text`, else the ids decoded with
        `policy_tokenizer` (a final stop token, its `eos_id`, dropped).
      max_length: re-tokenised rows longer than this keep the end of the prompt (at least
        `max_length // 2` tokens of it) and the start of the completion, as `data.encode_records`
        truncates (counted in `aux["truncated"]`); rows are padded to `max_length`. None: no
        truncation, rows padded to the next power of two (fewer recompilations).
      invalid_reward: the reward of a row holding an id outside the model's embedding
        (`aux["invalid"] = 1`); NaN by default so that it cannot pass unnoticed.

    Returns (on call): `RewardOutput(rewards [B], None, aux)`; aux: "invalid" [B], "truncated" [B]
    (re-tokenised rows cut to `max_length`), for ensembles "ensemble_mean", "ensemble_std" [B] and
    "members" [B, E]; for single models the head's own per-row outputs as "head/<name>".
    `reference` is ignored.
    """

    needs_reference = False

    def __init__(
        self,
        model: ScoringModel,
        params: Any,
        *,
        ensemble: str = "mean",
        uncertainty_coef: float = 1.0,
        tokenizer: Tokenizer | None = None,
        policy_tokenizer: Tokenizer | None = None,
        max_length: int | None = None,
        invalid_reward: float = float("nan"),
    ):
        if ensemble not in ENSEMBLE_REDUCTIONS:
            raise ValueError(
                f"ModelReward: ensemble={ensemble!r} is unknown; choose one of "
                f"{ENSEMBLE_REDUCTIONS}"
            )
        if max_length is not None and max_length < 2:
            raise ValueError(f"ModelReward: max_length={max_length} must be >= 2 (or None)")
        self.model, self.params = model, nn.meta.unbox(params)
        self.ensemble, self.uncertainty_coef = ensemble, float(uncertainty_coef)
        self.tokenizer, self.policy_tokenizer = tokenizer, policy_tokenizer
        self.max_length, self.invalid_reward = max_length, float(invalid_reward)
        self.retokenize = tokenizer is not None and (
            policy_tokenizer is None or not _same_tokenizer(tokenizer, policy_tokenizer)
        )
        self._key = _static(model)

    def _retokenized_rows(self, inputs: RewardInputs) -> tuple[np.ndarray, ...]:
        if inputs.prompt_text is None or inputs.completion_text is None:
            if self.policy_tokenizer is None:
                raise ValueError(
                    f"ModelReward: the reward model's tokenizer ({_describe(self.tokenizer)}) "
                    f"differs from the policy's ({_describe(self.policy_tokenizer)}), so rows are "
                    "re-tokenised from text, but RewardInputs.prompt_text/completion_text are None "
                    "and there is no policy_tokenizer to decode the ids with; pass the texts, or "
                    "policy_tokenizer=<the policy's tokenizer>"
                )
        prompts, completions = texts_of(inputs, self.policy_tokenizer, who="ModelReward")
        encoded = [encode_example(self.tokenizer, p, c) for p, c in zip(prompts, completions)]
        truncated = np.zeros(len(encoded), np.float32)
        if self.max_length is not None:
            limit, keep_prompt = self.max_length, self.max_length // 2
            fitted = []
            for i, (p, c) in enumerate(encoded):
                if len(p) + len(c) > limit:
                    truncated[i] = 1.0
                    keep = max(limit - len(c), min(len(p), keep_prompt))
                    p, c = p[len(p) - keep :], c[: limit - keep]
                fitted.append((p, c))
            encoded, width = fitted, limit
        else:
            longest = max(len(p) + len(c) for p, c in encoded)
            width = max(8, 1 << (longest - 1).bit_length())
        tokens = np.zeros((len(encoded), width), np.int32)
        mask, completion_mask = np.zeros_like(tokens), np.zeros_like(tokens)
        for i, (p, c) in enumerate(encoded):
            tokens[i, : len(p) + len(c)] = p + c
            mask[i, : len(p) + len(c)] = 1
            completion_mask[i, len(p) : len(p) + len(c)] = 1
        return tokens, mask, completion_mask, truncated

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        del reference
        b, _ = check_inputs(inputs)
        if self.retokenize:
            tokens, mask, completion_mask, truncated = self._retokenized_rows(inputs)
            raw, head_aux, invalid = _score_rows(
                self._key, self.params, tokens, mask, completion_mask
            )
        else:
            arrays = (
                inputs.prompt_tokens,
                inputs.prompt_mask,
                inputs.completion_tokens,
                inputs.completion_mask,
            )
            raw, head_aux, invalid = _score_joined(
                self._key, self.params, *(jnp.asarray(a) for a in arrays)
            )
            truncated = np.zeros(b, np.float32)
        rewards, aux = _reduce(
            raw,
            jnp.float32(self.uncertainty_coef),
            invalid,
            jnp.float32(self.invalid_reward),
            ensemble=self.ensemble,
        )
        aux.update(head_aux, invalid=invalid.astype(jnp.float32), truncated=jnp.asarray(truncated))
        return RewardOutput(rewards, None, aux)
