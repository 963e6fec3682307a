"""Reward model: a backbone + head trained on preference pairs with a pairwise loss.

    python -m rewardjax.main --config=configs/reward_model.py --workdir=runs/rm
    python -m rewardjax.main --config=configs/reward_model.py:ensemble,smoke --workdir=/tmp/rm

Arg: comma-separated options; `smoke` (a few-second run) and a head variant (a key of `HEADS`:
`mlp`, `ensemble`, `multi_attribute`, `ordinal`, `mixture`).
Real data: `--config.data.source=files --config.data.train_path=prefs.jsonl
--config.data.layout=hh` (see rewardjax.data.ADAPTERS). Losses: `--config.loss.name=hinge`, any
pairwise loss of rewardjax.losses.
"""

import ml_collections

from rewardjax.train import defaults

# Head variants (rewardjax.models.HEADS): name -> (head, its keyword arguments).
HEADS = {
    "scalar": ("scalar", {}),
    "mlp": ("scalar", {"hidden_dim": 128}),
    "ensemble": ("ensemble", {"num_members": 4}),
    "multi_attribute": ("multi_attribute", {"num_attributes": 4}),
    "ordinal": ("ordinal", {"num_bins": 9}),
    "mixture": ("mixture", {"num_components": 4}),
}


def get_config(arg=None):
    options = [o for o in (arg or "").split(",") if o]
    unknown = set(options) - set(HEADS) - {"smoke"}
    if unknown:
        raise ValueError(f"configs/reward_model.py: unknown options {sorted(unknown)}.")
    c = defaults.reward_model_config()
    head = next((o for o in options if o in HEADS), "scalar")
    c.head.name = HEADS[head][0]
    c.head.kwargs = ml_collections.ConfigDict(HEADS[head][1])
    if "smoke" in options:
        defaults.smoke_overrides(c)
    return c
