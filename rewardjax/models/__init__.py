"""Models: the transformer backbone, reward heads, reward models and implicit rewards.

Used functionally: `params = model.init(rng, ...)`, `model.apply(params, ...)`.
"""

from rewardjax.models import presets
from rewardjax.models.checkpoint import (
    config_from_hf,
    config_to_hf,
    load_hf,
    load_hf_sharded,
    save_hf,
)
from rewardjax.models.heads import (
    HEADS,
    EnsembleHead,
    MixtureHead,
    MultiAttributeHead,
    OrdinalHead,
    RewardOutput,
    ScalarHead,
    last_token_index,
    make_head,
    pool_last,
)
from rewardjax.models.implicit import EndogenousReward, ImplicitReward
from rewardjax.models.layers import RopeScaling
from rewardjax.models.prefix import (
    PackedRows,
    SharedRows,
    branch_logprobs,
    packed_logprobs,
    share_prefix,
    shared_length,
)
from rewardjax.models.presets import PRESETS, get_preset
from rewardjax.models.process import (
    ImplicitPRM,
    PrefixScores,
    ProcessRewardModel,
    fixed_step_ends,
    gather_steps,
    last_step,
    score_prefixes,
    separator_step_ends,
    step_ids_step_ends,
    with_lm_backbone,
)
from rewardjax.models.reward_model import (
    RewardEnsemble,
    RewardModel,
    RewardModelConfig,
    ScoringModel,
    score_packed,
    score_pairs,
)
from rewardjax.models.transformer import (
    CausalLM,
    KVCache,
    Transformer,
    TransformerConfig,
    branch_attention_mask,
    init_cache,
    segment_positions,
)
from rewardjax.models.value import ValueModel

__all__ = [
    "HEADS",
    "PRESETS",
    "CausalLM",
    "EndogenousReward",
    "EnsembleHead",
    "ImplicitPRM",
    "ImplicitReward",
    "KVCache",
    "MixtureHead",
    "MultiAttributeHead",
    "OrdinalHead",
    "PackedRows",
    "PrefixScores",
    "ProcessRewardModel",
    "RewardEnsemble",
    "RewardModel",
    "RewardModelConfig",
    "RewardOutput",
    "RopeScaling",
    "ScalarHead",
    "ScoringModel",
    "SharedRows",
    "Transformer",
    "TransformerConfig",
    "ValueModel",
    "branch_attention_mask",
    "branch_logprobs",
    "config_from_hf",
    "config_to_hf",
    "fixed_step_ends",
    "gather_steps",
    "get_preset",
    "init_cache",
    "last_step",
    "last_token_index",
    "load_hf",
    "load_hf_sharded",
    "make_head",
    "packed_logprobs",
    "pool_last",
    "presets",
    "save_hf",
    "score_packed",
    "score_pairs",
    "score_prefixes",
    "segment_positions",
    "separator_step_ends",
    "share_prefix",
    "shared_length",
    "step_ids_step_ends",
    "with_lm_backbone",
]
