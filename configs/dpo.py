"""DPO family: a policy trained on preference pairs against a frozen reference.

    python -m rewardjax.main --config=configs/dpo.py --workdir=runs/dpo
    python -m rewardjax.main --config=configs/dpo.py:smoke --workdir=/tmp/dpo
    python -m rewardjax.main --config=configs/dpo.py:kto,smoke --workdir=/tmp/kto

Any policy-level loss of rewardjax.losses by name (`--config.loss.name=ipo`, `robust_dpo`, `nca`,
`simpo`, `orpo`, ...). The reference is the initial policy: its log-probs computed in every step
(`reference="initial"`), or once over the training set before the first step
(`reference="precompute"`: no reference forward pass while training), or read from the records'
`ref_chosen_logps` / `ref_rejected_logps` fields (`reference="in_batch"`). Start from an SFT run
with `--config.init_from=runs/sft`. ORPO: `loss.name=orpo, loss.loss_weight=0.1,
loss.nll_weight=1`.

Arg (`rewardjax.train.defaults.parse_arg`): comma-separated options and `key=value` pairs;
`smoke` (a few-second run), `kto`: KTO (Ethayarajh et al., arXiv:2402.01306) on unpaired
completions (`data.layout=unpaired` files, or each pair split into a desirable and an undesirable
completion), evaluated by its implicit reward on held-out pairs, and `beta=<float>`: the loss's
beta (default 0.1), e.g. `--config=configs/dpo.py:kto,beta=0.5`.
"""

import ml_collections

from rewardjax.train import defaults


def get_config(arg=None):
    options, values = defaults.parse_arg(
        arg, options={"kto", "smoke"}, values={"beta": float}, config_file="configs/dpo.py"
    )
    c = defaults.base_config("dpo")
    c.optimizer.learning_rate = 3e-4
    c.loss = ml_collections.ConfigDict()
    c.loss.name = "dpo"
    c.loss.beta = values.get("beta", 0.1)
    c.loss.kwargs = ml_collections.ConfigDict()
    c.loss.loss_weight = 1.0
    c.loss.nll_weight = 0.0  # weight of the chosen responses' NLL (RPO, ORPO)
    c.reference = "initial"  # or "precompute", "in_batch" (see the module docstring)
    if "kto" in options:
        c.loss.name = "kto"
        c.loss.kwargs = ml_collections.ConfigDict(
            {"desirable_weight": 1.0, "undesirable_weight": 1.0}
        )
    if "smoke" in options:
        defaults.smoke_overrides(c)
    return c
