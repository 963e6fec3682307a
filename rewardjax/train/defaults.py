"""The config sections every experiment shares (model, optimizer, train loop, mesh).

`configs/<name>.py` starts from `base_config(task)` and adds its task's sections, so that a field
means the same thing in every config. Fields left `None` are filled in by the preset or derived
(e.g. `optimizer.decay_steps` defaults to the updates after warm-up).
"""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

__all__ = ["TASKS", "base_config", "reward_model_config", "smoke_overrides"]

TASKS = ("reward_model", "dpo", "sft")


def base_config(task: str) -> ml_collections.ConfigDict:
    """Shared sections for `task` (one of `TASKS`)."""
    if task not in TASKS:
        raise ValueError(f"task={task!r}: expected one of {TASKS}.")
    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0
    # Backbone: a preset from rewardjax.models.presets; set fields replace the preset's.
    c.model = ml_collections.ConfigDict()
    c.model.preset = "tiny"
    for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff"):
        c.model[name] = config_dict.placeholder(int)
    c.model.dtype = "float32"
    c.model.param_dtype = "float32"
    c.model.remat = False
    # Initial parameters: the work directory of an earlier run (e.g. SFT before DPO, or before a
    # reward model, which then takes the policy's transformer as its backbone); '' = random.
    c.init_from = ""

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.schedule = "cosine"
    c.optimizer.warmup_steps = 10
    c.optimizer.decay_steps = config_dict.placeholder(int)
    c.optimizer.end_learning_rate_factor = 0.1
    c.optimizer.b1 = 0.9
    c.optimizer.b2 = 0.999
    c.optimizer.eps = 1e-8
    c.optimizer.weight_decay = 0.0
    c.optimizer.momentum = 0.0
    c.optimizer.grad_clip_norm = 1.0
    c.optimizer.grad_accum_steps = 1

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 1000
    c.train.batch_size = 32
    c.train.log_every = 10
    c.train.checkpoint_every = 200
    c.train.max_to_keep = 3
    c.train.stop_at_step = 0
    c.train.eval_every = 0
    c.train.progress_bar = True

    # Data: the synthetic gold-reward Markov task, or local files in a named layout.
    c.data = ml_collections.ConfigDict()
    c.data.source = "synthetic"
    c.data.synthetic = ml_collections.ConfigDict()
    s = c.data.synthetic
    s.seed = 0
    s.vocab_size = 8
    s.length = 8
    s.prompt_length = 4
    s.concentration = 1.0
    s.memoryless = False
    s.reward = "bigram"
    s.reward_scale = 1.0
    s.pattern = ()
    s.pattern_bonus = 0.0
    s.num_train_pairs = 4096
    s.num_eval_pairs = 1024
    s.beta = 1.0  # inverse temperature of the Bradley–Terry labeller
    s.flip_rate = 0.0  # label noise
    c.data.train_path = ""
    c.data.eval_path = ""
    c.data.eval_fraction = 0.1  # held out of train_path when there is no eval_path
    c.data.layout = "pairwise"  # a key of rewardjax.data.ADAPTERS
    c.data.format = config_dict.placeholder(str)  # guessed from the path when None
    c.data.split = config_dict.placeholder(str)
    c.data.on_error = "raise"  # or "skip" (counted and reported)
    c.data.tokenizer = "byte"  # or the path of a tokenizer.json
    c.data.max_length = 512
    c.data.overlength = "truncate"  # or "drop"
    c.data.max_prompt_length = config_dict.placeholder(int)

    # Evaluation on the eval set every train.eval_every steps (0: only at the end).
    c.eval = ml_collections.ConfigDict()
    c.eval.enabled = True
    c.eval.batch_size = 256

    # Mesh: axis sizes (-1 = all remaining devices) for the (data, fsdp, tensor) axes.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1
    c.mesh.tensor = 1
    return c


def reward_model_config() -> ml_collections.ConfigDict:
    """`base_config("reward_model")` plus the head, loss and report sections."""
    c = base_config("reward_model")
    c.head = ml_collections.ConfigDict()
    c.head.name = "scalar"  # a key of rewardjax.models.HEADS
    c.head.kwargs = ml_collections.ConfigDict()
    # Ranked lists: score the K responses of a list in one row ("You Only Judge Once"), each
    # closed by this separator token id; None scores each response in its own row.
    c.head.separator = config_dict.placeholder(int)
    c.loss = ml_collections.ConfigDict()
    # A pairwise loss of rewardjax.losses (pairs, or every ordered pair of a ranked list), a
    # listwise one (plackett_luce, listwise_softmax: ranked lists), or on ratings rating_regression
    # or categorical_rating (the ordinal head's likelihood of the rated bin).
    c.loss.name = "bradley_terry"
    c.loss.kwargs = ml_collections.ConfigDict()
    c.loss.use_margin = False  # pass each record's margin (Llama 2) to the loss
    c.loss.center_coef = 0.0  # reward centring, 0.01 in Eisenstein et al. (arXiv:2312.09244)
    # Ratings: the rating the scalar reward (or the ordinal head) fits (index); None: every rating,
    # through a multi_attribute head (or the only rating). rewardjax.train.layouts: the layouts.
    c.loss.attribute = config_dict.placeholder(int)
    c.report = ml_collections.ConfigDict()
    c.report.enabled = False  # evaluate on the eval set and write report.md at the end
    c.report.bon_prompts = 32  # best-of-n curves on the synthetic task: prompts x samples
    c.report.bon_samples = 64
    return c


def smoke_overrides(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Shrinks `c` in place to a run of a few seconds on CPU (the `:smoke` variant)."""
    c.model.preset = "tiny"
    c.model.n_layers = 1
    c.model.d_model = 32
    c.model.d_ff = 64
    c.train.num_steps = 6
    c.train.batch_size = 4
    c.data.synthetic.num_train_pairs = 64
    c.data.synthetic.num_eval_pairs = 16
    c.eval.batch_size = 16
    c.train.log_every = 2
    c.train.checkpoint_every = 3
    c.train.progress_bar = False
    c.optimizer.warmup_steps = 2
    return c
