"""Reward model: a backbone + head trained on preference pairs, ranked lists or ratings.

    python -m rewardjax.main --config=configs/reward_model.py --workdir=runs/rm
    python -m rewardjax.main --config=configs/reward_model.py:ensemble,smoke --workdir=/tmp/rm

Arg (`rewardjax.train.defaults.parse_arg`): comma-separated options and `key=value` pairs;
`smoke` (a few-second run), at most one head variant (a key of `HEADS`: `scalar`, `mlp`,
`ensemble`, `multi_attribute`, `ordinal`, `mixture`), at most one data layout (a key of `LAYOUTS`:
`listwise` trains on ranked lists with the Plackett–Luce loss, `rating` regresses ratings; on the
synthetic task pairs become lists of two and responses rated by their gold reward), and
`size=<int>`: the head's size (its `SIZES` keyword: MLP width, ensemble members, attributes, bins
or mixture components), e.g. `--config=configs/reward_model.py:ensemble,size=8`.
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

# Head variant -> the keyword argument that `size=<int>` sets.
SIZES = {
    "mlp": "hidden_dim",
    "ensemble": "num_members",
    "multi_attribute": "num_attributes",
    "ordinal": "num_bins",
    "mixture": "num_components",
}

# Data layouts: name -> (loss, the rewardjax.data layout of real files).
LAYOUTS = {"listwise": ("plackett_luce", "ranked"), "rating": ("rating_regression", "rating")}


def get_config(arg=None):
    options, values = defaults.parse_arg(
        arg,
        options={*HEADS, *LAYOUTS, "smoke"},
        values={"size": int},
        exclusive=[HEADS, LAYOUTS],
        config_file="configs/reward_model.py",
    )
    c = defaults.reward_model_config()
    head = next(iter(options & set(HEADS)), "scalar")
    c.head.name = HEADS[head][0]
    c.head.kwargs = ml_collections.ConfigDict(HEADS[head][1])
    if "size" in values:
        if head not in SIZES:
            raise ValueError(
                f"configs/reward_model.py: size= needs a head with a size, one of {sorted(SIZES)} "
                f"(the {head!r} head has none), e.g. ensemble,size={values['size']}."
            )
        c.head.kwargs[SIZES[head]] = values["size"]
    for layout in options & set(LAYOUTS):
        c.loss.name, c.data.layout = LAYOUTS[layout]
    if "smoke" in options:
        defaults.smoke_overrides(c)
    return c
