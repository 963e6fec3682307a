"""Best-of-n: exact laws on discrete outcomes, samplers, and estimators from reward samples.

On a discrete base law π over Y outcomes with rewards r (ties allowed), F(y) = P[r ≤ r(y)] and
F⁻(y) = P[r < r(y)]. Best-of-n draws n outcomes iid from π and keeps one of highest reward (ties
broken uniformly), so P[best reward = r(y)] = F(y)^n - F⁻(y)^n, shared by the tied outcomes in
proportion to π. All functions are pure, jittable and vectorised: n broadcasts against the batch
shape of `probs`, so one call gives the laws for many n and many problems at once.

Papers:
- Beirami et al. 2024, "Theoretical guarantees on the best-of-n alignment policy", arXiv 2401.01879
  (exact law with ties, KL ≤ log n - (n-1)/n, win rate ≤ n/(n+1), the KL estimator).
- Stiennon et al. 2020, "Learning to summarize from human feedback", arXiv 2009.01325
  (the log n - (n-1)/n formula).
- Verdun et al. 2025, "Soft Best-of-n Sampling for Model Alignment", arXiv 2505.03156.
- Sessa et al. 2024, "BOND: Aligning LLMs with Best-of-N Distillation", arXiv 2407.14622.
- David & Nagaraja 2003, "Order Statistics" (the unbiased estimator of E[max of n]).
"""

from rewardjax.bon.empirical import BonCurves, empirical_bon_curves
from rewardjax.bon.laws import (
    bon_distribution,
    bon_expected_reward,
    bon_kl,
    bon_kl_bound,
    bon_kl_estimate,
    bon_win_rate,
)
from rewardjax.bon.samplers import best_of_n, bond_reward, soft_best_of_n, soft_bon_distribution

__all__ = [
    "BonCurves",
    "best_of_n",
    "bon_distribution",
    "bon_expected_reward",
    "bon_kl",
    "bon_kl_bound",
    "bon_kl_estimate",
    "bon_win_rate",
    "bond_reward",
    "empirical_bon_curves",
    "soft_best_of_n",
    "soft_bon_distribution",
]
