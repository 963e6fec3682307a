"""SFT: a policy fine-tuned on the chosen responses of preference pairs (or on SFT records).

    python -m rewardjax.main --config=configs/sft.py --workdir=runs/sft
    python -m rewardjax.main --config=configs/sft.py:smoke --workdir=/tmp/sft

Then DPO from it: `--config=configs/dpo.py --config.init_from=runs/sft`.
"""

from rewardjax.train import defaults


def get_config(arg=None):
    c = defaults.base_config("sft")
    c.optimizer.learning_rate = 3e-4
    if arg == "smoke":
        defaults.smoke_overrides(c)
    elif arg:
        raise ValueError(f"configs/sft.py: unknown arg {arg!r} (expected 'smoke').")
    return c
