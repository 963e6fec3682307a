"""Alignment theory on plain arrays: the KL-constrained optimum, sequences, asymptotics, laws.

- `optimum`: tilted optimum q_β ∝ p e^{r/β}, the exact KL–reward frontier, β for a KL budget.
- `markov`: the Markov-chain world — exact optimal sequence policy (soft Bellman), its KL and
  reward, the exact law of the sequence reward and best-of-n over sequences.
- `asymptotics`: cumulant generating function, rate function, Rényi cross-entropy, best-of-N ≈
  KL-RL (Yang et al. 2024, arXiv 2404.01730).
- `overoptimization`: Gao et al. (arXiv 2210.10760) forms and their fit.
- `distances`: STARC reward distance (arXiv 2309.15257).
- `process`: exact values of response prefixes on the Markov world (the ground truth of process
  reward models) and Math-Shepherd Monte-Carlo value labels (arXiv 2312.08935).

Usage: `from rewardjax import theory; theory.beta_for_kl(probs, rewards, 1.0)`.
"""

from rewardjax.theory.asymptotics import (
    BonVsKlRl,
    bon_vs_kl_rl,
    cumulant_generating_function,
    rate_function,
    renyi_cross_entropy,
    tilted_rate_function,
)
from rewardjax.theory.distances import standardize_reward, starc_distance
from rewardjax.theory.markov import (
    markov_bon_kl_reward,
    markov_kl_reward_frontier,
    markov_optimal_policy,
    markov_policy_kl_reward,
    markov_reward_law,
)
from rewardjax.theory.optimum import beta_for_kl, kl_reward_frontier, max_kl, tilted_distribution
from rewardjax.theory.overoptimization import (
    OveroptimizationFit,
    fit_overoptimization,
    gao_bon,
    gao_rl,
)
from rewardjax.theory.process import (
    mc_prefix_values,
    prefix_values,
    task_prefix_values,
    value_of_prefixes,
)

__all__ = [
    "BonVsKlRl",
    "OveroptimizationFit",
    "beta_for_kl",
    "bon_vs_kl_rl",
    "cumulant_generating_function",
    "fit_overoptimization",
    "gao_bon",
    "gao_rl",
    "kl_reward_frontier",
    "markov_bon_kl_reward",
    "markov_kl_reward_frontier",
    "markov_optimal_policy",
    "markov_policy_kl_reward",
    "markov_reward_law",
    "max_kl",
    "mc_prefix_values",
    "prefix_values",
    "rate_function",
    "renyi_cross_entropy",
    "standardize_reward",
    "starc_distance",
    "task_prefix_values",
    "tilted_distribution",
    "tilted_rate_function",
    "value_of_prefixes",
]
