"""rewardjax: JAX-native reward modeling and alignment.

Layer 1 (pure math on plain arrays): `numerics`, `losses`, `transforms`, `kl`, `bon`, `theory`,
`rl`. Layer 2: `models`, `sampling`, `data`, `parallel`, `rewards`, `judges`, `search`. Layer 3:
`train`, `evaluate`, `lab` (the overoptimization studies' analysis).
Import the submodule you need: `from rewardjax import losses`.
"""

__version__ = "0.1.0"

__all__ = [
    "bon",
    "data",
    "evaluate",
    "judges",
    "kl",
    "lab",
    "losses",
    "models",
    "numerics",
    "parallel",
    "rewards",
    "rl",
    "sampling",
    "search",
    "theory",
    "train",
    "transforms",
]
