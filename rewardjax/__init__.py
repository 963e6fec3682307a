"""rewardjax: JAX-native reward modeling and alignment.

Layer 1 (pure math on plain arrays): `losses`, `transforms`, `kl`, `bon`, `theory`.
Layer 2: `models`, `sampling`, `data`, `parallel`. Layer 3: `train`, `evaluate`.
Import the submodule you need: `from rewardjax import losses`.
"""

__version__ = "0.1.0"

__all__ = [
    "bon",
    "data",
    "evaluate",
    "kl",
    "losses",
    "models",
    "parallel",
    "sampling",
    "theory",
    "train",
    "transforms",
]
