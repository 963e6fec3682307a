"""The reward function of an RL run, from `config.reward`.

Kinds: `gold` (the synthetic task's gold reward), `model` (a reward-model run), `rule` (a regex
the decoded completion must contain), `verifiable` (RLVR: the completion's answer checked against
the reference answer of its prompt), `rubric` (a JSONL file of rubrics, one per prompt), and
`combined` ("kind:weight,..." of those, through `rewardjax.transforms`).

The reference answers of `verifiable` are the data's own: the response of each prompt's rows in
`config.data.train_path` / `eval_path` (an SFT file of prompt and answer), decoded as the policy's
tokenizer decodes the prompts it is given, so the lookup key is exactly the text the rule sees.
"""

from __future__ import annotations

import collections

import ml_collections

from rewardjax import rewards
from rewardjax.train.tasks import reward_model
from rewardjax.train.tasks.common import Context

__all__ = ["KINDS", "VERIFIERS", "reward_function"]

KINDS = ("gold", "model", "rule", "verifiable", "rubric", "combined")
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


def _single(ctx: Context, kind: str) -> rewards.RewardFunction:
    c, task = ctx.config.reward, ctx.data.task
    if kind == "gold":
        if task is None:
            raise ValueError(
                "config.reward.kind='gold' is the synthetic task's gold reward; with "
                "config.data.source='files' use 'model', 'rule', 'verifiable' or 'rubric'."
            )
        return rewards.GoldReward(task)
    if kind == "model":
        if not c.model_workdir:
            raise ValueError(
                "config.reward.kind='model' needs config.reward.model_workdir, the work "
                "directory of a reward-model run."
            )
        model, params = reward_model.load_trained(c.model_workdir, ctx.mesh, ctx.rules)
        return rewards.ModelReward(
            model, params, ensemble=c.ensemble, uncertainty_coef=c.uncertainty_coef
        )
    if kind not in KINDS[2:-1]:
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


def reward_function(ctx: Context) -> rewards.RewardFunction:
    """`config.reward`: one source, or `combined` = "kind:weight,..." through a transform."""
    c: ml_collections.ConfigDict = ctx.config.reward
    if c.kind != "combined":
        return _single(ctx, c.kind)
    components = []
    for item in c.components.split(","):
        kind, _, weight = item.strip().partition(":")
        try:
            components.append((kind, _single(ctx, kind), float(weight or 1.0)))
        except ValueError as e:
            if kind in KINDS[:-1]:
                raise
            raise ValueError(
                f"config.reward.components={c.components!r}: {item.strip()!r} is not kind:weight "
                f"with kind one of {KINDS[:-1]}."
            ) from e
    return rewards.CombinedReward(components, transform=c.transform or None)
