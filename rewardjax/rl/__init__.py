"""Online KL-constrained RL, pure (layer 1): advantages, policy losses, loss aggregation, KL
placement and controllers, constrained multi-reward Lagrangians, group filtering and overlong
shaping. Arrays in, arrays out: no models, no data, no train.

- `advantages`: `gae`, `grpo` (group / batch / no scaling: Dr. GRPO), `rloo`, `reinforce_pp`,
  `reinforce_pp_baseline`, `remax`, `gdpo`; `get`, `names`, `spec` (what a trainer must provide).
- `policy_losses`: `ppo_clip` (clip-higher, dual clip), `gspo`, `cispo`, `value_loss`,
  `entropy_from_logits`; `get`, `names`, `spec`.
- `aggregation`: `aggregate(loss, mask, mode)` with `token_mean`, `seq_mean_token_mean`,
  `seq_mean_token_sum`, `seq_mean_token_sum_norm`.
- `kl_penalty`: `token_kl` (k1, k2, k3, k3+), `check_placement`, `reward_with_kl`, the target-KL
  Lagrangian controller.
- `constraints`: one Lagrange multiplier per reward with a threshold (constrained RLHF).
- `filtering`: DAPO's dynamic sampling (group filter) and overlong handling.
"""

from rewardjax.rl import advantages, aggregation, constraints, filtering, kl_penalty, policy_losses

__all__ = [
    "advantages",
    "aggregation",
    "constraints",
    "filtering",
    "kl_penalty",
    "policy_losses",
]
