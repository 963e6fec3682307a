"""Preference losses: pure, per-example, unreduced, with keyword-only hyper-parameters.

- Reward-model losses on scores: `bradley_terry`, `hinge`, `thurstone`, `reward_centering`,
  `rating_regression`, `ordinal`; on rating bins: `categorical_rating`; listwise: `plackett_luce`,
  `listwise_softmax`.
- Policy losses on summed completion log-probs against a reference: `dpo`, `robust_dpo`, `ipo`,
  `slic_hinge`, `nca`, `bco`, `sppo_hard`, `apo_zero`, `apo_down`, `exo`, `discopop`;
  reference-free: `simpo`, `orpo`; unpaired: `kto`.
- Process (step-level) rewards: `step_cross_entropy`, `step_bradley_terry`, the implicit PRM
  (`implicit_prm_outcome_loss`, `implicit_prm_step_rewards`), `aggregate_steps`.
- Helpers: `sequence_logprobs`, `implicit_reward`; losses by name: `get`, `names`, and `spec`
  (the layout, inputs, reference and implicit reward a trainer needs).

Each function's docstring gives its formula and paper.
"""

from rewardjax.losses.listwise import listwise_softmax, plackett_luce
from rewardjax.losses.logprobs import implicit_reward, sequence_logprobs
from rewardjax.losses.policy import (
    apo_down,
    apo_zero,
    bco,
    discopop,
    dpo,
    exo,
    ipo,
    nca,
    robust_dpo,
    slic_hinge,
    sppo_hard,
)
from rewardjax.losses.process import (
    aggregate_steps,
    implicit_prm_outcome_loss,
    implicit_prm_step_rewards,
    step_bradley_terry,
    step_cross_entropy,
)
from rewardjax.losses.reference_free import orpo, simpo
from rewardjax.losses.registry import LossSpec, get, names, spec
from rewardjax.losses.reward_model import (
    bradley_terry,
    categorical_rating,
    hinge,
    ordinal,
    rating_regression,
    reward_centering,
    thurstone,
)
from rewardjax.losses.unpaired import kto

__all__ = [
    "LossSpec",
    "aggregate_steps",
    "apo_down",
    "apo_zero",
    "bco",
    "bradley_terry",
    "categorical_rating",
    "discopop",
    "dpo",
    "exo",
    "get",
    "hinge",
    "implicit_prm_outcome_loss",
    "implicit_prm_step_rewards",
    "implicit_reward",
    "ipo",
    "kto",
    "listwise_softmax",
    "names",
    "nca",
    "ordinal",
    "orpo",
    "plackett_luce",
    "rating_regression",
    "reward_centering",
    "robust_dpo",
    "sequence_logprobs",
    "simpo",
    "slic_hinge",
    "spec",
    "sppo_hard",
    "step_bradley_terry",
    "step_cross_entropy",
    "thurstone",
]
