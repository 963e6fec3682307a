"""The reward function of an RL run, from `config.reward`.

Kinds: `gold` (the synthetic task's gold reward), `model` (a reward-model run), `bigram` (a
bigram reward table over the synthetic task's tokens, e.g. a fitted proxy: r(y_0, y) =
Σ_t W[y_{t-1}, y_t]), `rule` (a regex the decoded completion must contain), `verifiable` (RLVR:
the completion's answer checked against the reference answer of its prompt), `rubric` (a JSONL
file of rubrics, one per prompt), and `combined` ("[name=]kind[@source][:weight],..." of those,
through `rewardjax.transforms`; `source` is that component's reward-model run or bigram table).

Constrained rewards (`config.reward.constraints`, kind `combined` only): one threshold θ_k per
component and a Lagrange multiplier λ_k per component, kept by the trainer (`rl.constraints`;
Moskovitz et al. 2023, "Confronting Reward Model Overoptimization with Constrained RLHF",
arXiv 2310.04373). `constraint_spec` validates the section and gives the initial state.

The reference answers of `verifiable` are the data's own: the response of each prompt's rows in
`config.data.train_path` / `eval_path` (an SFT file of prompt and answer), decoded as the policy's
tokenizer decodes the prompts it is given, so the lookup key is exactly the text the rule sees.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
from typing import NamedTuple

import jax.numpy as jnp
import ml_collections
import numpy as np

from rewardjax import rewards
from rewardjax.rl import constraints as rl_constraints
from rewardjax.train.tasks import reward_model
from rewardjax.train.tasks.common import Context

__all__ = ["KINDS", "VERIFIERS", "ConstraintSpec", "constraint_spec", "reward_function"]

KINDS = ("gold", "model", "bigram", "rule", "verifiable", "rubric", "combined")
_TEXT_KINDS = ("rule", "verifiable", "rubric")
VERIFIERS = ("math", "exact_match", "choice", "format")
_EXTRACTORS = {"boxed": rewards.extract_boxed, "answer_tag": rewards.extract_tag, "none": None}


def reference_answers(ctx: Context) -> dict[str, list[str]]:
    """Decoded prompt -> the decoded responses (final stop token dropped) of its rows."""
    tokenizer, answers = ctx.data.tokenizer, collections.defaultdict(list)
    for dataset in (ctx.data.train, ctx.data.eval):
        for example in dataset.examples if dataset is not None else ():
            seq, p = example["seqs"][0].tolist(), example["prompt_len"]
            response = seq[p:]
            if response and response[-1] == tokenizer.eos_id:
                response = response[:-1]
            answers[tokenizer.decode(seq[:p])].append(tokenizer.decode(response))
    return dict(answers)


def _verifiable(ctx: Context) -> rewards.RewardFunction:
    c = ctx.config.reward
    if c.verifier not in VERIFIERS:
        raise ValueError(f"config.reward.verifier={c.verifier!r}: expected one of {VERIFIERS}.")
    if c.verifier == "format":
        return rewards.RuleReward(rewards.tag_format(), tokenizer=ctx.data.tokenizer)
    if c.extract not in _EXTRACTORS:
        raise ValueError(
            f"config.reward.extract={c.extract!r}: expected one of {tuple(_EXTRACTORS)}."
        )
    answers, extract = reference_answers(ctx), _EXTRACTORS[c.extract]
    if c.verifier == "math":
        rule = rewards.math_match(answers, extract=extract)
    elif c.verifier == "exact_match":
        rule = rewards.normalized_match(answers, extract=extract)
    else:
        rule = rewards.choice_match(answers)
    return rewards.RuleReward(rule, tokenizer=ctx.data.tokenizer)


def _rubric(ctx: Context) -> rewards.RewardFunction:
    c = ctx.config.reward
    if not c.rubrics_path:
        raise ValueError(
            "config.reward.kind='rubric' needs config.reward.rubrics_path, a JSONL file of "
            "rubrics (one per prompt; see rewardjax.rewards.load_rubrics)."
        )
    return rewards.RubricReward(
        rewards.load_rubrics(c.rubrics_path),
        tokenizer=ctx.data.tokenizer,
        hard_gate=c.hard_gate,
    )


def _bigram(ctx: Context, path: str, field: str) -> rewards.RewardFunction:
    """The synthetic task's reward with the bigram table saved at `path` (.npy, [V, V]) in place
    of the gold one (no pattern bonus): r(y_0, y) = Σ_t W[y_{t-1}, y_t]."""
    task = ctx.data.task
    if task is None:
        raise ValueError(
            f"{field}: kind 'bigram' scores the synthetic task's tokens; with "
            "config.data.source='files' use 'model', 'rule', 'verifiable' or 'rubric'."
        )
    if not path:
        raise ValueError(
            f"{field}: kind 'bigram' needs a .npy file of a [V, V] reward table: set "
            "config.reward.bigram_path (or give it per component as 'bigram@PATH')."
        )
    if not os.path.exists(path):
        raise ValueError(f"{field}: {path!r}: no such file (a .npy [V, V] bigram reward table).")
    table = np.load(path)
    v = task.vocab_size
    if table.shape != (v, v) or not np.all(np.isfinite(table)):
        raise ValueError(
            f"{field}: {path!r} holds an array of shape {table.shape}; expected a finite [{v}, "
            f"{v}] table (config.data.synthetic.vocab_size={v})."
        )
    proxy = dataclasses.replace(
        task, bigram_reward=np.asarray(table, np.float64), pattern=(), pattern_bonus=0.0
    )
    return rewards.GoldReward(proxy)


def _single(ctx: Context, kind: str, source: str = "") -> rewards.RewardFunction:
    c, task = ctx.config.reward, ctx.data.task
    if source and kind not in ("model", "bigram"):
        raise ValueError(
            f"config.reward.components={c.components!r}: {kind}@{source}: only 'model' and "
            "'bigram' components take a source (a reward-model run, a bigram table)."
        )
    if kind == "gold":
        if task is None:
            raise ValueError(
                "config.reward.kind='gold' is the synthetic task's gold reward; with "
                "config.data.source='files' use 'model', 'rule', 'verifiable' or 'rubric'."
            )
        return rewards.GoldReward(task)
    if kind == "model":
        workdir = source or c.model_workdir
        if not workdir:
            raise ValueError(
                "config.reward.kind='model' needs config.reward.model_workdir, the work "
                "directory of a reward-model run."
            )
        model, params = reward_model.load_trained(workdir, ctx.mesh, ctx.rules)
        return rewards.ModelReward(
            model, params, ensemble=c.ensemble, uncertainty_coef=c.uncertainty_coef
        )
    if kind == "bigram":
        field = "config.reward.components" if source else "config.reward.bigram_path"
        return _bigram(ctx, source or c.bigram_path, field)
    if kind not in _TEXT_KINDS:
        raise ValueError(f"config.reward.kind={kind!r}: expected one of {KINDS}.")
    if ctx.data.tokenizer is None:
        raise ValueError(
            f"config.reward.kind={kind!r} judges decoded text; the synthetic task has none. "
            "Use config.data.source='files' (its config.data.tokenizer decodes)."
        )
    if kind == "rule":
        return rewards.RuleReward(
            rewards.regex_format(c.pattern, mode="search"), tokenizer=ctx.data.tokenizer
        )
    return _verifiable(ctx) if kind == "verifiable" else _rubric(ctx)


def parse_components(components: str) -> list[tuple[str, str, str, float]]:
    """`config.reward.components` -> [(name, kind, source, weight)].

    Each comma-separated item is `[name=]kind[@source][:weight]`: the name defaults to the kind
    (names must differ: name two components of one kind), the source (a reward-model run for
    `model`, a .npy table for `bigram`) to the config's `model_workdir` / `bigram_path`, the
    weight to 1.
    """
    out = []
    for item in components.split(","):
        item = item.strip()
        name, rest = "", item
        if "=" in item.split("@")[0]:  # a name (an '=' inside the source is the source's)
            name, _, rest = item.partition("=")
        head, colon, tail = rest.rpartition(":")
        weight = 1.0
        if colon:
            try:
                weight = float(tail)
                rest = head
            except ValueError:
                pass  # a ':' inside the source
        kind, _, source = rest.partition("@")
        kind, name = kind.strip(), (name.strip() or kind.strip())
        if kind not in KINDS[:-1] or not math.isfinite(weight):
            raise ValueError(
                f"config.reward.components={components!r}: {item!r} is not "
                f"[name=]kind[@source][:weight] with kind one of {KINDS[:-1]} and a finite weight."
            )
        out.append((name, kind, source.strip(), weight))
    names = [n for n, *_ in out]
    if len(set(names)) != len(names):
        raise ValueError(
            f"config.reward.components={components!r}: component names {names} repeat; name "
            "them, e.g. 'a=bigram@a.npy,b=bigram@b.npy'."
        )
    return out


def reward_function(ctx: Context) -> rewards.RewardFunction:
    """`config.reward`: one source, or `combined` = "[name=]kind[@source][:weight],..." through
    a transform (a `rewards.CombinedReward` whose component names are those names)."""
    c: ml_collections.ConfigDict = ctx.config.reward
    if c.kind != "combined":
        return _single(ctx, c.kind)
    components = [
        (name, _single(ctx, kind, source), weight)
        for name, kind, source, weight in parse_components(c.components)
    ]
    return rewards.CombinedReward(components, transform=c.transform or None)


class ConstraintSpec(NamedTuple):
    """The validated `config.reward.constraints` of a combined reward.

    Attributes:
      names: the K component names (`rewards.CombinedReward.names`), in order.
      init: the initial `rl.constraints.ConstraintState` (multipliers `init`, the senses, the
        components' weights as the objective weights w_k).
      thresholds: θ_k, float32 [K].
      lr: the dual step size.
    """

    names: tuple[str, ...]
    init: rl_constraints.ConstraintState
    thresholds: jnp.ndarray
    lr: float


def constraint_spec(config: ml_collections.ConfigDict) -> ConstraintSpec | None:
    """`config.reward.constraints` validated, or None when it sets no thresholds.

    The combined reward is then Σ_k c_k r_k with c_k = w_k - λ_k ('at_most', 'equal') or
    w_k + λ_k ('at_least'), w_k the component's weight in `config.reward.components` and r_k
    its (transformed) reward; see `rewardjax.rl.constraints`.

    Raises:
      ValueError: naming the field and the fix (thresholds without kind 'combined', a count that
        is not the components', an unknown sense, lr <= 0, a negative initial multiplier).
    """
    c = config.reward
    k = c.get("constraints")
    if k is None or not tuple(k.thresholds):
        return None
    field = "config.reward.constraints"
    if c.kind != "combined":
        raise ValueError(
            f"{field}.thresholds={tuple(k.thresholds)}: constraints act on the components of "
            f"config.reward.kind='combined' (it is {c.kind!r}); set kind='combined' and "
            "config.reward.components, or thresholds=() for no constraints."
        )
    parsed = parse_components(c.components)
    names = tuple(n for n, *_ in parsed)
    thresholds = tuple(float(t) for t in k.thresholds)
    if len(thresholds) != len(names) or not all(math.isfinite(t) for t in thresholds):
        raise ValueError(
            f"{field}.thresholds={thresholds}: give one finite threshold per component of "
            f"config.reward.components ({len(names)}: {', '.join(names)}), in that order."
        )
    senses = [s.strip() for s in k.sense.split(",")]
    if len(senses) not in (1, len(names)) or any(s not in rl_constraints.SENSES for s in senses):
        raise ValueError(
            f"{field}.sense={k.sense!r}: give one of {rl_constraints.SENSES} for every "
            f"component, or {len(names)} of them comma-separated ({', '.join(names)})."
        )
    if not k.lr > 0:
        raise ValueError(f"{field}.lr={k.lr}: the dual step size must be > 0.")
    try:
        init = rl_constraints.constraints_init(
            len(names),
            init=float(k.init),
            sense=senses[0] if len(senses) == 1 else senses,
            objective_weights=[w for *_, w in parsed],
        )
    except ValueError as e:
        raise ValueError(f"{field}.init={k.init}: {e}") from None
    return ConstraintSpec(names, init, jnp.asarray(thresholds, jnp.float32), float(k.lr))
