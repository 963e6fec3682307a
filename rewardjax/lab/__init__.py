"""The overoptimization lab: what `experiments/` studies compose, importable on its own.

- `study`: curves read at equal KL (`at_kl`), and the files every study writes (`write_study`).
- `proxies`: Bradley–Terry reward models on bigram counts (the gold reward's own class; fitted in
  milliseconds) and their bootstrap ensembles.
- `frontier`: best-of-n against the exact KL-regularised optimum (Beirami et al. 2024,
  arXiv 2401.01879; Yang et al. 2024, arXiv 2404.01730).
- `ensembles`: best-of-n by single vs aggregated proxies (Coste et al. 2023, arXiv 2310.02743).
- `policies`: a trained policy's (SFT, DPO, RL) exact law over the enumerated responses, and its
  exact KL, gold and proxy reward (`response_logprobs`, `policy_point`, `load_policy`).

The exact best-of-n machinery itself is `rewardjax.evaluate.overoptimization`
(`synthetic_response_law`, `exact_bon_study`, `bon_gold_peak`, `plot_exact_bon_study`).

Usage: `from rewardjax import lab; lab.gain_fraction(...)`.
"""

from rewardjax.lab.ensembles import aggregate_members, ensemble_bon_gold
from rewardjax.lab.frontier import Curve, frontier_curves, gain_fraction
from rewardjax.lab.policies import PolicyPoint, load_policy, policy_point, response_logprobs
from rewardjax.lab.proxies import (
    bigram_counts,
    bootstrap_bigram_ensemble,
    fit_bigram_proxy,
    score_bigram,
)
from rewardjax.lab.study import at_kl, write_study

__all__ = [
    "Curve",
    "PolicyPoint",
    "aggregate_members",
    "at_kl",
    "bigram_counts",
    "bootstrap_bigram_ensemble",
    "ensemble_bon_gold",
    "fit_bigram_proxy",
    "frontier_curves",
    "gain_fraction",
    "load_policy",
    "policy_point",
    "response_logprobs",
    "score_bigram",
    "write_study",
]
