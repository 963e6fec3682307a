"""A weighted combination of reward functions, each reward transformed first (`transforms`).

With K components r_k, weights w_k and a transform u:

    R(x, y) = Σ_k w_k · u(r_k)(x, y)        (`transforms.combine(method="weighted")`)

Transforms (`TRANSFORMS`), applied to each component separately:

- None: u(r) = r.
- "log_sigmoid_centered": u = log σ(r(x, y) - r_ref(x)), r_ref(x) the `reference_quantile`
  q-quantile of the rewards of the M reference completions of prompt x (Wang et al. 2024,
  "Transforming and Combining Rewards for Aligning Large Language Models", arXiv 2402.00742; the
  weighted sum is then a weighted log P(good on every property)).
- "preference_as_reward": u = (1/M) Σ_m σ(r(x, y) - r(x, y_m)) over the reference completions y_m
  (PAR; Fu et al. 2025, "Reward Shaping to Mitigate Reward Hacking in RLHF", arXiv 2502.18770).
- "calibrate": u = mid-rank of r(x, y) among the references' rewards (Balashankar et al. 2024,
  "InfAlign", arXiv 2412.19792).
- "whiten": u = (r - mean) / std over the batch; "center": u = r - mean over the batch (Huang et
  al. 2024, "The N+ Implementation Details of RLHF with PPO", arXiv 2403.17031).

The reference completions come from the same rollout: `reference` holds M completions per prompt
(consecutive rows) for the P prompts of `inputs` (N completions each, `inputs.group_size`), in the
same order; each component scores them too.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from rewardjax import transforms
from rewardjax.rewards.base import (
    RewardInputs,
    RewardOutput,
    as_float32,
    check_inputs,
)

__all__ = ["REFERENCE_TRANSFORMS", "TRANSFORMS", "CombinedReward"]

REFERENCE_TRANSFORMS = ("log_sigmoid_centered", "preference_as_reward", "calibrate")
TRANSFORMS = (None, *REFERENCE_TRANSFORMS, "whiten", "center")


class CombinedReward:
    """Σ_k w_k · transform(r_k) over reward functions r_k (see the module docstring).

    Args:
      components: `(fn, weight)` or `(name, fn, weight)` tuples; names default to "0", "1", ...
      transform: one of `TRANSFORMS`.
      reference_quantile: q of r_ref for "log_sigmoid_centered" (Wang et al. centre on a high
        quantile of the reference rewards; 0.5 is the median).

    Returns (on call): `RewardOutput(rewards [B], None, aux)`; aux: "<name>/reward" (raw) and
    "<name>/transformed" [B] per component, each component's aux as "<name>/<key>", and "invalid"
    [B], the maximum of the components' "invalid".

    Raises (on call):
      ValueError: naming the transform when it needs `reference` completions and none are given,
        or when their prompts do not line up with those of `inputs`.
    """

    def __init__(
        self,
        components: Sequence[tuple],
        *,
        transform: str | None = None,
        reference_quantile: float = 0.85,
    ):
        if transform not in TRANSFORMS:
            raise ValueError(
                f"CombinedReward: transform={transform!r} is unknown; choose one of {TRANSFORMS}"
            )
        if not components:
            raise ValueError("CombinedReward: give at least one (fn, weight) component")
        self.names, self.fns, weights = [], [], []
        for i, c in enumerate(components):
            if len(c) == 2:
                c = (str(i), *c)
            if len(c) != 3 or not callable(c[1]):
                raise ValueError(
                    f"CombinedReward: component {i} is {c!r}; give (fn, weight) or "
                    "(name, fn, weight)"
                )
            self.names.append(c[0])
            self.fns.append(c[1])
            weights.append(float(c[2]))
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"CombinedReward: component names {self.names} must be distinct")
        if not 0.0 <= reference_quantile <= 1.0:
            raise ValueError(
                f"CombinedReward: reference_quantile={reference_quantile} not in [0, 1]"
            )
        self.weights = np.asarray(weights, np.float32)
        self.transform, self.reference_quantile = transform, reference_quantile

    @property
    def needs_reference(self) -> bool:
        return self.transform in REFERENCE_TRANSFORMS or any(
            getattr(fn, "needs_reference", False) for fn in self.fns
        )

    def _transform(self, r, inputs: RewardInputs, reference: RewardInputs | None):
        """[K, B] component rewards -> [K, B] transformed."""
        t = self.transform
        if t is None:
            return r
        if t == "whiten":
            return transforms.whiten(r, axis=-1)
        if t == "center":
            return transforms.center(r, axis=-1)
        if reference is None:
            raise ValueError(
                f"CombinedReward(transform={t!r}) needs per-prompt reference rewards: pass "
                "`reference`, a RewardInputs of M reference completions per prompt (consecutive "
                "rows, the prompts of `inputs` in the same order), sampled in the same rollout"
            )
        b, p = check_inputs(inputs)
        b_ref, _ = check_inputs(reference, name="reference")
        m = reference.group_size or (b_ref // p if b_ref % p == 0 else None)
        if m is None or b_ref != p * m:
            raise ValueError(
                f"CombinedReward(transform={t!r}): reference has {b_ref} rows, not M per prompt "
                f"for the P={p} prompts of inputs (B={b}, group_size={inputs.group_size}); "
                "give M completions for each prompt, consecutive"
            )
        _check_same_prompts(inputs, reference, p, t)
        ref = jnp.stack([as_float32(fn(reference).rewards) for fn in self.fns])
        k = r.shape[0]
        grouped, ref = r.reshape(k, p, b // p), ref.reshape(k, p, m)
        if t == "log_sigmoid_centered":
            r_ref = transforms.reference_quantile(ref, self.reference_quantile)
            out = transforms.log_sigmoid_centered(grouped, r_ref[..., None])
        elif t == "preference_as_reward":
            out = transforms.preference_as_reward(grouped, ref[:, :, None, :])
        else:
            out = transforms.calibrate(grouped, ref[:, :, None, :])
        return out.reshape(k, b)

    def __call__(self, inputs: RewardInputs, reference: RewardInputs | None = None) -> RewardOutput:
        b, _ = check_inputs(inputs)
        outs = [
            fn(inputs, reference) if getattr(fn, "needs_reference", False) else fn(inputs)
            for fn in self.fns
        ]
        raw = jnp.stack([as_float32(o.rewards) for o in outs])  # [K, B]
        transformed = self._transform(raw, inputs, reference)
        total = transforms.combine(transformed, method="weighted", weights=self.weights)
        aux, invalid = {}, jnp.zeros(b, jnp.float32)
        for name, o, r, u in zip(self.names, outs, raw, transformed):
            aux[f"{name}/reward"], aux[f"{name}/transformed"] = r, u
            aux.update({f"{name}/{key}": v for key, v in o.aux.items()})
            if "invalid" in o.aux:
                invalid = jnp.maximum(invalid, as_float32(o.aux["invalid"]))
        aux["invalid"] = invalid
        return RewardOutput(total.astype(jnp.float32), None, aux)


def _check_same_prompts(inputs: RewardInputs, reference: RewardInputs, p: int, transform: str):
    """When both batches use the same prompt layout, the reference's prompt of each group must be
    the prompt of the matching group of `inputs` (a misaligned rollout raises, naming the group)."""
    a_tok, b_tok = np.asarray(inputs.prompt_tokens), np.asarray(reference.prompt_tokens)
    if a_tok.shape[1] != b_tok.shape[1]:
        return
    a_mask, b_mask = np.asarray(inputs.prompt_mask) > 0, np.asarray(reference.prompt_mask) > 0
    n, m = a_tok.shape[0] // p, b_tok.shape[0] // p
    for g in range(p):
        i, j = g * n, g * m
        if not np.array_equal(a_tok[i][a_mask[i]], b_tok[j][b_mask[j]]):
            raise ValueError(
                f"CombinedReward(transform={transform!r}): prompt group {g} of reference (row {j}) "
                f"is not the prompt of inputs' group {g} (row {i}); give the reference completions "
                "in the order of the prompts of inputs"
            )
