"""Rubrics: verifiers from specs, hard-gated weighted aggregation and criterion-wise votes against
brute-force loops written here, the judge hook, RubricReward on a batch of mixed rubrics, JSONL
files with file:line:field errors, and one CombinedReward of rubric, verifiable and length rewards.
"""

import json
import re

import jax
import numpy as np
import pytest

from rewardjax import data, rewards


def _text_inputs(prompts, completions, group_size=None):
    b = len(prompts)
    ones = np.ones((b, 1), np.int32)
    return rewards.RewardInputs(
        ones, ones, ones, ones, list(prompts), list(completions), group_size
    )


# ---------------------------------------------------------------------------------- verifiers


@pytest.mark.parametrize(
    "spec, completion, expected",
    [
        ({"type": "regex", "pattern": r"\d+ apples"}, "I have 3 apples.", True),
        ({"type": "regex", "pattern": r"\d+ apples", "mode": "fullmatch"}, "3 apples.", False),
        ({"type": "regex", "pattern": "^yes", "flags": "im"}, "no\nYES", True),
        ({"type": "regex", "pattern": "^yes", "flags": "i"}, "no\nYES", False),
        ({"type": "contains", "text": "Paris"}, "it is PARIS", True),
        ({"type": "contains", "text": "Paris", "case_sensitive": True}, "it is PARIS", False),
        ({"type": "contains", "text": "sorry", "negate": True}, "Sure, here it is", True),
        ({"type": "contains", "text": "sorry", "negate": True}, "Sorry, no", False),
        ({"type": "exact_match", "answer": "42"}, " 42. ", True),
        ({"type": "exact_match", "answer": ["x", "\u22121"]}, "-1", True),
        (
            {"type": "exact_match", "answer": "7", "extract": "answer_tag"},
            "<answer>7</answer>",
            True,
        ),
        ({"type": "math", "answer": "1/2"}, "so \\boxed{0.5}", True),
        ({"type": "math", "answer": "1/2"}, "0.5", False),  # no box
        ({"type": "math", "answer": "1/2", "extract": "none"}, "0.5", True),
        ({"type": "math", "answer": "3.14159", "abs_tol": 0.01}, "\\boxed{3.14}", True),
        ({"type": "max_length", "max": 5}, "hello", True),
        ({"type": "max_length", "max": 5}, "hello!", False),
        ({"type": "max_length", "max": 2, "unit": "words"}, " two  words ", True),
        ({"type": "max_length", "max": 2, "unit": "words"}, "three words here", False),
    ],
)
def test_verifier_specs(spec, completion, expected):
    assert rewards.make_verifier(spec)("prompt", completion) is expected


@pytest.mark.parametrize(
    "spec, field, problem",
    [
        ({"type": "regx", "pattern": "a"}, "verifier.type", "unknown verifier type 'regx'"),
        ({"pattern": "a"}, "verifier.type", "unknown verifier type None"),
        ({"type": "regex"}, "verifier.pattern", "missing"),
        ({"type": "regex", "pattern": "(a"}, "verifier.pattern", "not a regular expression"),
        ({"type": "regex", "pattern": "a", "flag": "i"}, "verifier.flag", "unknown key"),
        ({"type": "regex", "pattern": "a", "flags": "x"}, "verifier.flags", "'x'"),
        ({"type": "contains", "text": ""}, "verifier.text", "''"),
        ({"type": "contains", "text": "a", "negate": "yes"}, "verifier.negate", "not true/false"),
        ({"type": "exact_match", "answer": 3}, "verifier.answer", "not a string"),
        ({"type": "exact_match", "answer": "3", "extract": "last"}, "verifier.extract", "unknown"),
        ({"type": "math", "answer": "3", "rel_tol": -1}, "verifier.rel_tol", "-1"),
        ({"type": "max_length", "max": 2.5}, "verifier.max", "2.5"),
        ({"type": "max_length", "max": 2, "unit": "tokens"}, "verifier.unit", "'tokens'"),
        ("regex", "verifier", "is not an object"),
    ],
)
def test_verifier_spec_errors_name_the_key(spec, field, problem):
    with pytest.raises(
        data.FieldError, match=re.escape(f"field '{field}': ") + ".*" + re.escape(problem)
    ):
        rewards.make_verifier(spec)


def test_items_and_rubrics_validate():
    item = rewards.RubricItem("Is polite")
    assert item.verifier == rewards.JudgeQuestion("Is polite") and item.needs_judge
    judged = rewards.RubricItem("Is polite", verifier={"type": "judge", "question": "Polite?"})
    assert judged.verifier == rewards.JudgeQuestion("Polite?")
    assert rewards.RubricItem("x", verifier={"type": "judge"}).verifier.question == "x"
    for bad, field in [
        (dict(text=""), "text"),
        (dict(text="x", weight=0), "weight"),
        (dict(text="x", weight=-1.0), "weight"),
        (dict(text="x", weight=float("nan")), "weight"),
        (dict(text="x", weight=True), "weight"),
        (dict(text="x", kind="must"), "kind"),
        (dict(text="x", verifier=3), "verifier"),
        (dict(text="x", verifier={"type": "contains"}), "verifier.text"),
    ]:
        with pytest.raises(data.FieldError, match=re.escape(f"field '{field}'")):
            rewards.RubricItem(**bad)
    with pytest.raises(data.FieldError, match="field 'items'"):
        rewards.Rubric(())


# ---------------------------------------------------------------------------------- aggregation


def _brute_score(s, w, hard, *, gate, gate_reward, threshold):
    num = den = 0.0
    failed = False
    for sk, wk, hk in zip(s, w, hard):
        if wk == 0:
            continue
        num += wk * sk
        den += wk
        if hk and sk < threshold:
            failed = True
    return gate_reward if (gate and failed) else num / den


def _brute_votes(sa, sb, w):
    wins_a = wins_b = ties = 0.0
    for x, y, wk in zip(sa, sb, w):
        if x > y:
            wins_a += wk
        elif y > x:
            wins_b += wk
        else:
            ties += wk
    total = wins_a + wins_b + ties
    return wins_a / total, wins_b / total, ties / total


def test_rubric_scores_and_votes_against_loops():
    rng = np.random.default_rng(0)
    b, k = 64, 5
    # Binary satisfactions (ties are common) and judge-like probabilities.
    for s in (rng.integers(0, 2, (b, k)).astype(float), rng.uniform(size=(b, k))):
        w = rng.uniform(0.1, 3.0, (b, k)) * (rng.uniform(size=(b, k)) > 0.2)  # zeros: padding
        w[:, 0] = np.maximum(w[:, 0], 0.5)
        hard = rng.uniform(size=(b, k)) < 0.3
        for gate, gate_reward, threshold in [
            (True, 0.0, 0.5),
            (True, -1.0, 0.7),
            (False, 0.0, 0.5),
        ]:
            got = jax.jit(
                rewards.rubric_scores,
                static_argnames=("hard_gate", "gate_reward", "hard_threshold"),
            )(s, w, hard, hard_gate=gate, gate_reward=gate_reward, hard_threshold=threshold)
            expected = [
                _brute_score(
                    s[i], w[i], hard[i], gate=gate, gate_reward=gate_reward, threshold=threshold
                )
                for i in range(b)
            ]
            np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
        s2 = rng.integers(0, 2, (b, k)).astype(float) if s.max() == 1 else rng.uniform(size=(b, k))
        votes = jax.jit(rewards.rubric_votes)(s, s2, w)
        expected = np.asarray([_brute_votes(s[i], s2[i], w[i]) for i in range(b)])
        np.testing.assert_allclose(np.stack(votes, axis=1), expected, rtol=1e-6, atol=1e-6)
        swapped = rewards.rubric_votes(s2, s, w)
        np.testing.assert_allclose(swapped.a, votes.b, atol=1e-7)
    # A failed hard item gives the minimum even when every soft item is satisfied.
    assert float(rewards.rubric_scores([0.0, 1.0, 1.0], [1.0, 5.0, 5.0], [True, False, False])) == 0
    assert float(rewards.rubric_scores([1.0, 0.0, 0.0], [1.0, 5.0, 5.0], [True, False, False])) == (
        pytest.approx(1 / 11)
    )


def _judge(question, prompt, completion):
    """A stand-in judge: the probability is the fraction of the question's words in the
    completion; None ("cannot judge") when the completion says "???"."""
    if "???" in completion:
        return None
    words = question.lower().split()
    return sum(w in completion.lower() for w in words) / len(words)


RUBRIC_A = rewards.Rubric(
    (
        rewards.RubricItem(
            "Answer in a box", 1.0, "hard", {"type": "regex", "pattern": r"\\boxed"}
        ),
        rewards.RubricItem("Correct", 3.0, "soft", {"type": "math", "answer": "1/2"}),
        rewards.RubricItem("mentions fractions halves", 2.0, "soft"),  # judged
    )
)
RUBRIC_B = rewards.Rubric((rewards.RubricItem("Short", 1.0, "soft", lambda p, c: len(c) <= 10),))


def test_rubric_reward_batch_with_a_judge():
    prompts = ["half?", "half?", "half?", "short?", "half?"]
    completions = [
        "fractions: \\boxed{0.5}",  # all hard pass; correct; judge 1/2
        "fractions halves \\boxed{2}",  # wrong; judge 1
        "the answer is 1/2 fractions halves",  # no box: hard fails, math 0
        "tiny",
        "??? \\boxed{1/2}",  # the judge cannot judge
    ]
    by_prompt = {"half?": RUBRIC_A, "short?": RUBRIC_B}
    out = rewards.RubricReward(by_prompt, judge=_judge)(_text_inputs(prompts, completions))
    expected = [(1 + 3 + 2 * (1 / 3)) / 6, (1 + 0 + 2 * (2 / 3)) / 6, 0.0, 1.0, 0.0]
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-6)
    np.testing.assert_array_equal(out.aux["invalid"], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(out.aux["hard_failed"], [0, 0, 1, 0, 0])
    np.testing.assert_allclose(out.aux["satisfied_fraction"][2], (0 + 0 + 2 * (2 / 3)) / 6)
    assert np.isnan(out.aux["satisfied_fraction"][4])
    np.testing.assert_array_equal(out.aux["num_items"], [3, 3, 3, 1, 3])
    ungated = rewards.RubricReward(by_prompt, judge=_judge, hard_gate=False, invalid_reward=-1.0)
    got = ungated(_text_inputs(prompts, completions)).rewards
    np.testing.assert_allclose(got[2], (0 + 0 + 2 * (2 / 3)) / 6, rtol=1e-6)
    assert float(got[4]) == -1.0
    # Rubric.score / Rubric.votes on single completions.
    assert RUBRIC_A.score("half?", completions[0], judge=_judge) == pytest.approx(expected[0])
    votes = RUBRIC_A.votes("half?", completions[0], completions[1], judge=_judge)
    assert votes == pytest.approx(rewards.RubricVotes(3 / 6, 2 / 6, 1 / 6))


def test_rubric_reward_errors():
    with pytest.raises(ValueError, match=r"item 2 \('mentions fractions halves'\) for a judge"):
        rewards.RubricReward({"half?": RUBRIC_A})
    reward = rewards.RubricReward(lambda p: RUBRIC_A)  # a function: checked on call
    with pytest.raises(ValueError, match="asks a judge"):
        reward(_text_inputs(["half?"], ["x"]))
    with pytest.raises(ValueError, match="no rubric for prompt 'other'"):
        rewards.RubricReward({"short?": RUBRIC_B})(_text_inputs(["other"], ["x"]))
    with pytest.raises(ValueError, match="needs text"):
        rewards.RubricReward(RUBRIC_B)(_text_inputs(["a"], ["x"])._replace(prompt_text=None))
    bad = rewards.Rubric((rewards.RubricItem("x", verifier=lambda p, c: 2.0),))
    with pytest.raises(ValueError, match=r"rubric item 0 \('x'\): its verifier returned 2.0"):
        rewards.RubricReward(bad)(_text_inputs(["a"], ["x"]))


# ---------------------------------------------------------------------------------- files


def _write(tmp_path, lines, name="rubrics.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return str(path)


GOOD = {
    "prompt": "What is 1/2 as a decimal?",
    "id": "q1",  # other top-level keys are ignored
    "items": [
        {"text": "Boxed", "kind": "hard", "verifier": {"type": "regex", "pattern": "\\\\boxed"}},
        {"text": "Correct", "weight": 3, "verifier": {"type": "math", "answer": "0.5"}},
        "Explains the division",
    ],
}


def test_load_rubrics(tmp_path):
    second = {
        "prompt": "Say hi",
        "items": [{"text": "hi", "verifier": {"type": "contains", "text": "hi"}}],
    }
    path = _write(tmp_path, [GOOD, "", second])
    rubrics = rewards.load_rubrics(path)
    assert list(rubrics) == ["What is 1/2 as a decimal?", "Say hi"]
    r = rubrics["What is 1/2 as a decimal?"]
    np.testing.assert_array_equal(r.weights, [1, 3, 1])
    np.testing.assert_array_equal(r.hard, [True, False, False])
    assert r.items[2].verifier == rewards.JudgeQuestion("Explains the division")
    s = r.satisfaction("p", "\\boxed{1/2}", judge=lambda q, p, c: 0.25)
    np.testing.assert_allclose(s, [1.0, 1.0, 0.25])


@pytest.mark.parametrize(
    "bad, field, fix",
    [
        ({"items": GOOD["items"]}, "prompt", "give the prompt text"),
        ({"prompt": 3, "items": GOOD["items"]}, "prompt", "give the prompt text"),
        ({"prompt": "p"}, "items", "give a list of rubric items"),
        ({"prompt": "p", "items": []}, "items", "give a list of rubric items"),
        ({"prompt": "p", "items": [{"weight": 1}]}, "items[0].text", "say what the item asks for"),
        (
            {"prompt": "p", "items": ["a", {"text": "b", "weight": -2}]},
            "items[1].weight",
            "weight > 0",
        ),
        ({"prompt": "p", "items": ["a", {"text": "b", "kind": "must"}]}, "items[1].kind", "'hard'"),
        ({"prompt": "p", "items": [{"text": "b", "wieght": 2}]}, "items[0].wieght", "use only"),
        (
            {
                "prompt": "p",
                "items": ["a", "b", {"text": "c", "verifier": {"type": "regex", "pattern": "(x"}}],
            },
            "items[2].verifier.pattern",
            "fix the pattern",
        ),
        (
            {"prompt": "p", "items": [{"text": "c", "verifier": {"type": "oracle"}}]},
            "items[0].verifier.type",
            "use one of",
        ),
        ([1, 2], "<record>", "one JSON object per line"),
        ("{not json", "<json>", "write one JSON object"),
    ],
)
def test_load_rubrics_errors_name_file_line_field(tmp_path, bad, field, fix):
    path = _write(tmp_path, [GOOD, "", bad])
    with pytest.raises(data.RecordError) as e:
        rewards.load_rubrics(path)
    assert e.value.source == path and e.value.location == "line 3" and e.value.field == field
    assert str(e.value).startswith(f"{path}: line 3: field '{field}': ")
    assert "Fix: " in str(e.value) and fix in str(e.value)


def test_load_rubrics_duplicate_and_empty(tmp_path):
    path = _write(tmp_path, [GOOD, GOOD])
    with pytest.raises(
        data.RecordError, match=r"line 2: field 'prompt': .*already has a rubric \(line 1\)"
    ):
        rewards.load_rubrics(path)
    empty = _write(tmp_path, [""], name="empty.jsonl")
    with pytest.raises(data.RecordError, match="no rubric"):
        rewards.load_rubrics(empty)


# ---------------------------------------------------------------------------------- combined


def test_combined_rubric_verifiable_and_length():
    """R = 0.5·rubric + 1.0·math_match + 0.1·length penalty (chars beyond 12), by hand."""
    rubric = rewards.Rubric(
        (
            rewards.RubricItem("boxed", 1.0, "hard", {"type": "regex", "pattern": r"\\boxed"}),
            rewards.RubricItem("polite", 1.0, "soft", {"type": "contains", "text": "please"}),
        )
    )
    combined = rewards.CombinedReward(
        [
            ("rubric", rewards.RubricReward(rubric), 0.5),
            ("math", rewards.RuleReward(rewards.math_match({"q": "1/2"})), 1.0),
            ("length", rewards.LengthPenalty(12, unit="chars"), 0.1),
            ("format", rewards.RuleReward(rewards.tag_format()), 0.2),
        ]
    )
    completions = [
        "\\boxed{0.5}",  # 11 chars: rubric 1/2, correct, no penalty, no tags
        "please \\boxed{2/4}",  # 18 chars: rubric 1, correct, penalty 6
        "please 1/2",  # no box: rubric gated to 0, math 0
        "<think>ok</think><answer>\\boxed{1/2}</answer>",  # 45 chars: 1/2, 1, -33, 1
    ]
    out = combined(_text_inputs(["q"] * 4, completions))
    expected = [
        0.5 * 0.5 + 1.0,
        0.5 * 1.0 + 1.0 - 0.1 * 6,
        0.5 * 0.0 + 0.0,
        0.5 * 0.5 + 1.0 - 0.1 * 33 + 0.2,
    ]
    np.testing.assert_allclose(out.rewards, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(out.aux["rubric/hard_failed"], [0, 0, 1, 0])
    np.testing.assert_array_equal(out.aux["length/length"], [11, 18, 10, 45])
    assert isinstance(combined, rewards.RewardFunction)
