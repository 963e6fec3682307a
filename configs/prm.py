"""Process reward model: step scores trained on the synthetic task's step values, or on files.

    python -m rewardjax.main --config=configs/prm.py --workdir=runs/prm
    python -m rewardjax.main --config=configs/prm.py:smoke --workdir=/tmp/prm
    python -m rewardjax.main --config=configs/prm.py:implicit,smoke --workdir=/tmp/iprm

Arg (`rewardjax.train.defaults.parse_arg`): comma-separated options and `key=value` pairs;
`smoke` (a few-second run); `implicit`: the implicit PRM of Yuan et al. 2024 ("Free Process
Rewards without Process Labels", arXiv 2412.01981), a causal LM trained with the outcome label
only (`implicit_prm_outcome_loss`) against its frozen initial weights, step rewards
β log π/π_ref; at most one label kind of the synthetic steps, `exact` (the default: the exact
prefix value), `mc` (Math-Shepherd Monte-Carlo estimates, `rollouts=<int>` per prefix) or
`binary` (1[value ≥ config.prm.threshold]); `step=<int>`: tokens per step.
Real data: `--config.data.source=files --config.data.train_path=prm800k.jsonl
--config.data.layout=prm800k` (or `math_shepherd`, `trl_stepwise`, `steps`: see
rewardjax.data.STEP_LAYOUTS). The run writes report.md (step accuracy and AUROC, ProcessBench
first-error F1, Spearman's ρ with the exact value function) in its work directory.
"""

import ml_collections
from ml_collections import config_dict

from rewardjax.train import defaults

LABELS = ("exact", "mc", "binary")


def get_config(arg=None):
    options, values = defaults.parse_arg(
        arg,
        options={"implicit", "smoke", *LABELS},
        values={"rollouts": int, "step": int},
        exclusive=[LABELS],
        config_file="configs/prm.py",
    )
    c = defaults.base_config("prm")
    c.model.vocab_size = 9  # the synthetic task's V = 8 tokens + the pad id
    c.data.layout = "steps"  # files: a key of rewardjax.data.STEP_LAYOUTS
    c.loss = ml_collections.ConfigDict()
    c.loss.name = "implicit_prm_outcome_loss" if "implicit" in options else "step_cross_entropy"
    c.prm = ml_collections.ConfigDict()
    p = c.prm
    p.step_size = values.get("step", 2)  # synthetic: tokens per step
    p.labels = next(iter(options & set(LABELS)), "exact")
    p.num_rollouts = values.get("rollouts", 8)  # "mc" labels: rollouts per prefix
    p.threshold = 0.5  # normalised value separating correct from erroneous steps
    p.decision_threshold = config_dict.placeholder(float)  # None: 0.5 (binary) or threshold
    p.num_train = 4096  # synthetic solutions
    p.num_eval = 512
    p.beta = 0.05  # implicit PRM
    p.neutral = 1.0  # files: target of a PRM800K neutral (0) step
    p.max_steps = config_dict.placeholder(int)  # files: step slots (None: the most in the data)
    c.optimizer.learning_rate = 3e-3
    c.train.num_steps = 2000
    c.train.batch_size = 64
    c.report = ml_collections.ConfigDict()
    c.report.enabled = True
    if "smoke" in options:
        defaults.smoke_overrides(c)
        c.train.num_steps = 10
        c.train.batch_size = 64
        c.train.checkpoint_every = 10
        c.optimizer.learning_rate = 1e-2
        p.num_train = 640
        p.num_eval = 256
        c.eval.batch_size = 256
        # A world a 1-layer model learns in a few dozen steps: token rewards (the value is a sum
        # over the prefix's tokens plus the reward-to-go of its last one; bigram values need a
        # deeper model and longer training), the threshold near the median value.
        c.data.synthetic.reward = "token"
        p.threshold = 0.7
    return c
