"""SFT: a policy fine-tuned on the chosen responses of preference pairs (or on SFT records).

    python -m rewardjax.main --config=configs/sft.py --workdir=runs/sft
    python -m rewardjax.main --config=configs/sft.py:smoke --workdir=/tmp/sft

Then DPO from it: `--config=configs/dpo.py --config.init_from=runs/sft`.

Arg (`rewardjax.train.defaults.parse_arg`): `smoke` (a few-second run).
"""

from rewardjax.train import defaults


def get_config(arg=None):
    options, _ = defaults.parse_arg(arg, options={"smoke"}, config_file="configs/sft.py")
    c = defaults.base_config("sft")
    c.optimizer.learning_rate = 3e-4
    if "smoke" in options:
        defaults.smoke_overrides(c)
    return c
