"""The overoptimization lab: what `experiments/` studies compose, importable on its own.

- `study`: curves read at equal KL (`at_kl`), and the files every study writes (`write_study`).
- `proxies`: Bradley–Terry reward models on bigram counts (the gold reward's own class; fitted in
  milliseconds), their bootstrap ensembles, and a trained reward-model run scored on every
  enumerated response (`score_reward_model_run`).
- `policies`: a trained policy's (SFT, DPO, RL) exact law over the enumerated responses, and its
  exact KL, gold and proxy reward (`response_logprobs`, `policy_point`, `load_policy`).
- `runs`: the exact path of a run through every checkpoint it kept (`checkpoint_path`), read at
  equal KL (`path_at_kl`).
- `frontier`: best-of-n, soft best-of-n and trained policies against the exact KL-regularised
  optimum (Beirami et al. 2024, arXiv 2401.01879; Yang et al. 2024, arXiv 2404.01730).
- `distill`: BOND-style distillation data, responses drawn from the exact best-of-n law (Sessa et
  al. 2024, arXiv 2407.14622).
- `ensembles`: best-of-n by single vs aggregated proxies (Coste et al. 2023, arXiv 2310.02743).
- `scaling`: both of Gao et al.'s forms fitted to a curve, trends with model size (Gao et al.
  2022, arXiv 2210.10760).
- `shaping`: exact optima of transformed proxies (log-sigmoid centring, PAR, calibration) judged
  by gold (Wang et al. 2024, arXiv 2402.00742; Fu et al. 2025, arXiv 2502.18770).
- `constrained`: each proxy component's useful range and the exact constrained optimum
  (Moskovitz et al. 2023, arXiv 2310.04373).

The exact best-of-n machinery itself is `rewardjax.evaluate.overoptimization`
(`synthetic_response_law`, `exact_bon_study`, `bon_gold_peak`, `plot_exact_bon_study`).

Usage: `from rewardjax import lab; lab.gain_fraction(...)`.
"""

from rewardjax.lab.constrained import (
    ConstrainedOptimum,
    UsefulRange,
    constrained_optimum,
    tilted_policy,
    tilted_stats,
    useful_range,
)
from rewardjax.lab.distill import bon_law, sample_records, write_id_tokenizer, write_records
from rewardjax.lab.ensembles import aggregate_members, ensemble_bon_gold
from rewardjax.lab.frontier import (
    Curve,
    frontier_curves,
    gain_fraction,
    law_curve,
    point_gain_fraction,
    soft_bon_curves,
)
from rewardjax.lab.policies import PolicyPoint, load_policy, policy_point, response_logprobs
from rewardjax.lab.proxies import (
    ScoredProxy,
    bigram_counts,
    bootstrap_bigram_ensemble,
    fit_bigram_proxy,
    score_bigram,
    score_reward_model_run,
)
from rewardjax.lab.runs import RunPath, checkpoint_path, path_at_kl
from rewardjax.lab.scaling import GaoFits, SizeTrend, fit_gao_forms, size_trend
from rewardjax.lab.shaping import (
    SHAPINGS,
    HackingOnset,
    ShapedCurve,
    exact_calibration,
    exact_par,
    exact_reference_quantile,
    exact_transform,
    hacking_onset,
    shaped_optima,
    shaped_optimum,
)
from rewardjax.lab.study import at_kl, write_study

__all__ = [
    "SHAPINGS",
    "ConstrainedOptimum",
    "Curve",
    "GaoFits",
    "HackingOnset",
    "PolicyPoint",
    "RunPath",
    "ScoredProxy",
    "ShapedCurve",
    "SizeTrend",
    "UsefulRange",
    "aggregate_members",
    "at_kl",
    "bigram_counts",
    "bon_law",
    "bootstrap_bigram_ensemble",
    "checkpoint_path",
    "constrained_optimum",
    "ensemble_bon_gold",
    "exact_calibration",
    "exact_par",
    "exact_reference_quantile",
    "exact_transform",
    "fit_bigram_proxy",
    "fit_gao_forms",
    "frontier_curves",
    "gain_fraction",
    "hacking_onset",
    "law_curve",
    "load_policy",
    "path_at_kl",
    "point_gain_fraction",
    "policy_point",
    "response_logprobs",
    "sample_records",
    "score_bigram",
    "score_reward_model_run",
    "shaped_optima",
    "shaped_optimum",
    "size_trend",
    "soft_bon_curves",
    "tilted_policy",
    "tilted_stats",
    "useful_range",
    "write_id_tokenizer",
    "write_records",
    "write_study",
]
