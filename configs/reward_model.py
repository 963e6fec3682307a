"""Reward model: a backbone + head trained on preference pairs, ranked lists or ratings.

    python -m rewardjax.main --config=configs/reward_model.py --workdir=runs/rm
    python -m rewardjax.main --config=configs/reward_model.py:ensemble,smoke --workdir=/tmp/rm

Arg: comma-separated options; `smoke` (a few-second run), a head variant (a key of `HEADS`:
`mlp`, `ensemble`, `multi_attribute`, `ordinal`, `mixture`) and a data layout (a key of
`LAYOUTS`: `listwise` trains on ranked lists with the Plackett–Luce loss, `rating` regresses
ratings; on the synthetic task pairs become lists of two and responses rated by their gold reward).
Real data: `--config.data.source=files --config.data.train_path=prefs.jsonl
--config.data.layout=hh` (see rewardjax.data.ADAPTERS); ranked lists with `data.layout=ranked`,
HelpSteer2 ratings with `rating,multi_attribute --config.data.layout=helpsteer2
--config.head.kwargs.num_attributes=5`, or one rating by the ordinal head's likelihood with
`rating,ordinal --config.loss.name=categorical_rating --config.loss.attribute=0` (bins
`--config.head.kwargs.bin_values`); the K responses of a list in one row with
`--config.head.separator=<token id>`. Losses: `--config.loss.name=hinge`, any pairwise loss of
rewardjax.losses (on ranked lists: over every ordered pair), or `listwise_softmax`.
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

# Data layouts: name -> (loss, the rewardjax.data layout of real files).
LAYOUTS = {"listwise": ("plackett_luce", "ranked"), "rating": ("rating_regression", "rating")}


def get_config(arg=None):
    options = [o for o in (arg or "").split(",") if o]
    unknown = set(options) - set(HEADS) - set(LAYOUTS) - {"smoke"}
    if unknown:
        raise ValueError(f"configs/reward_model.py: unknown options {sorted(unknown)}.")
    c = defaults.reward_model_config()
    head = next((o for o in options if o in HEADS), "scalar")
    c.head.name = HEADS[head][0]
    c.head.kwargs = ml_collections.ConfigDict(HEADS[head][1])
    for layout in (o for o in options if o in LAYOUTS):
        c.loss.name, c.data.layout = LAYOUTS[layout]
    if "smoke" in options:
        defaults.smoke_overrides(c)
    return c
