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

from rewardjax.train.steps.common import LogitsFn, weighted_mean
from rewardjax.train.steps.policy import (
    completion_logps,
    dpo_step,
    kto_loss,
    kto_reference_logps,
    kto_step,
    mismatched_rows,
    pair_logps,
    reference_logps,
    sft_step,
)
from rewardjax.train.steps.reward import (
    multi_response_rows,
    ranked_loss,
    ranked_reward_model_step,
    rating_loss,
    rating_reward_model_step,
    reward_model_step,
)

__all__ = [
    "LogitsFn",
    "completion_logps",
    "dpo_step",
    "kto_loss",
    "kto_reference_logps",
    "kto_step",
    "mismatched_rows",
    "multi_response_rows",
    "pair_logps",
    "ranked_loss",
    "ranked_reward_model_step",
    "rating_loss",
    "rating_reward_model_step",
    "reference_logps",
    "reward_model_step",
    "sft_step",
    "weighted_mean",
]
