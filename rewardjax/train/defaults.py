"""The config sections every experiment shares (model, optimizer, train loop, mesh).

`configs/<name>.py` starts from `base_config(task)` and adds its task's sections, so that a field
means the same thing in every config. Fields left `None` are filled in by the preset or derived
(e.g. `optimizer.decay_steps` defaults to the updates after warm-up).

Every config parses the argument after its file name (`--config=configs/<name>.py:ARG`) with
`parse_arg`: comma-separated options (`smoke`, a variant name) and `key=value` pairs with a type.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import ml_collections
from ml_collections import config_dict

from rewardjax import parallel

__all__ = [
    "TASKS",
    "ConfigArg",
    "base_config",
    "parse_arg",
    "reward_model_config",
    "smoke_overrides",
]

TASKS = ("reward_model", "dpo", "sft", "rl", "prm")


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
    c.model.attention = "einsum"  # or "dot_product": jax.nn.dot_product_attention (GPU/TPU)
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
    # Prefix sharing (arXiv 2410.20305): a pair is one row [prompt | chosen | rejected], the
    # prompt computed once; used by the pairwise reward-model and DPO-family steps, ignored else.
    c.train.prefix_sharing = True
    # Packing (rewardjax.data.packing): each batch's pairs, ranked lists or SFT examples laid out
    # prefix-shared and packed into rows of packing_length tokens (None: the longest example), so
    # a step computes about the real tokens; the same results as unpacked. Ignored for other data.
    c.train.packing = True
    c.train.packing_length = config_dict.placeholder(int)

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
    # Logical axis -> comma-separated mesh axes ("" = not split), e.g. `--config.sharding_rules.
    # embed=` turns FSDP off and `--config.sharding_rules.mlp=tensor,fsdp` splits the MLP over both.
    c.sharding_rules = ml_collections.ConfigDict(parallel.rules_as_strings())
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


class ConfigArg(NamedTuple):
    """A parsed config argument: the options given and the typed `key=value` pairs given."""

    options: frozenset[str]
    values: dict[str, Any]


_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")
_EXAMPLES = {bool: "true", int: "8", float: "0.1"}


def _convert(text: str, kind: type, key: str, where: str) -> Any:
    """`text` as a `kind`, or a ValueError naming `where`, the key and an example."""
    if kind is bool and text.lower() in _TRUE + _FALSE:
        return text.lower() in _TRUE
    if kind is not bool:
        try:
            return kind(text)
        except ValueError:
            pass
    example = f"{key}={_EXAMPLES.get(kind, 'text')}"
    raise ValueError(
        f"{where}: {key}={text!r} is not a valid {kind.__name__}; write e.g. {example}."
    )


def parse_arg(
    arg: str | None,
    *,
    options: Iterable[str] = (),
    values: Mapping[str, type] | None = None,
    exclusive: Iterable[Iterable[str]] = (),
    config_file: str,
) -> ConfigArg:
    """Parses a config's argument: `opt1,opt2,key=value,...` (the `ARG` of `--config=FILE:ARG`).

    Every config under configs/ calls this, so all of them read their argument the same way:
    items are separated by commas (blanks around them ignored); a bare item is an option and must
    be one of `options`; `key=value` must name a key of `values` and is converted to its type
    (`int`, `float`, `str`; `bool` takes true/false, 1/0, yes/no). Of each group in `exclusive`
    at most one option may be given (e.g. the algorithms of an RL config).

        parse_arg("grpo,smoke,n=8", options={"ppo", "grpo", "smoke"}, values={"n": int},
                  exclusive=[{"ppo", "grpo"}], config_file="configs/rl.py")
        # ConfigArg(options=frozenset({"grpo", "smoke"}), values={"n": 8})

    Args:
      arg: the argument; None or "" gives no options and no values.
      options: the allowed bare options.
      values: the allowed keys and the type of each value.
      exclusive: groups of options of which at most one may be given.
      config_file: the config's path as a user writes it, named in every error.

    Returns:
      `ConfigArg(options, values)`: the options given (a frozenset) and the values given, typed
      (keys not given are absent: the config supplies their defaults).

    Raises:
      ValueError: for an unknown option or key, a value that does not convert, a key given twice,
        or two options of one exclusive group; the message names `config_file`, the offending
        item and what is allowed.
    """
    allowed, types = frozenset(options), dict(values or {})
    where = f"{config_file}:{arg}"
    choices = ", ".join(sorted(allowed)) or "none"
    keys = ", ".join(f"{k}=<{t.__name__}>" for k, t in sorted(types.items())) or "none"
    given: set[str] = set()
    parsed: dict[str, Any] = {}
    for item in (arg or "").split(","):
        item = item.strip()
        if not item:
            continue
        key, eq, text = item.partition("=")
        key = key.strip()
        if eq:
            if key not in types:
                raise ValueError(
                    f"{where}: unknown key {key!r} in {item!r}; allowed keys: {keys} "
                    f"(options: {choices})."
                )
            if not text.strip():
                raise ValueError(f"{where}: {item!r} needs a value after '='.")
            if key in parsed:
                raise ValueError(f"{where}: {key}= is given twice; give it once.")
            parsed[key] = _convert(text.strip(), types[key], key, where)
        elif item in allowed:
            given.add(item)
        elif item in types:
            raise ValueError(f"{where}: {item!r} needs a value: {item}=<{types[item].__name__}>.")
        else:
            raise ValueError(
                f"{where}: unknown option {item!r}; allowed options: {choices} (keys: {keys})."
            )
    for group in exclusive:
        both = sorted(given & set(group))
        if len(both) > 1:
            raise ValueError(
                f"{where}: options {both} exclude each other; give one of {sorted(group)}."
            )
    return ConfigArg(frozenset(given), parsed)
