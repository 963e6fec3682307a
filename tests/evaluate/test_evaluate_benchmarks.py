"""RewardBench 2, RM-Bench and JudgeBench evaluators against scores computed by hand.

Most tests score small fixture files (written in the public layouts) with a rule reward built from
a dict response -> score, so the expected numbers follow from the table below by hand. One test
runs the command line in a subprocess on a synthetic-task file scored by the gold reward.
"""

import json
import math
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import rewards
from rewardjax.data import ByteTokenizer, make_markov_task
from rewardjax.data import benchmarks as data_bench
from rewardjax.evaluate import benchmarks as bench
from rewardjax.models import RewardOutput


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def _dict_reward(table):
    """A reward function whose score of a response is table[response text]."""
    return rewards.RuleReward(lambda prompt, completion: table[completion])


# --------------------------------------------------------------------------- RewardBench 2


def test_best_of_n_result_by_hand():
    scores = [
        [3.0, 1.0, 2.0, 0.0],  # chosen strictly best: 1
        [2.0, 2.0, 1.0, 0.0],  # tied with one rejected at the top: 1/2
        [1.0, 3.0, 0.0, 0.0],  # beaten: 0
        [2.0, 2.0, 2.0, 1.0],  # three at the top: 1/3
        [np.nan, 1.0, 0.0, 0.0],  # NaN never wins: 0
        [5.0, 5.0, 5.0, 5.0],  # all tied: 1/4
    ]
    np.testing.assert_allclose(
        bench.best_of_n_result(np.asarray(scores)), [1, 0.5, 0, 1 / 3, 0, 0.25], rtol=1e-6
    )
    masked = bench.best_of_n_result(
        np.asarray([[1.0, 9.0, 0.0, 0.0]]), np.asarray([[True, False, True, True]])
    )
    np.testing.assert_allclose(masked, [1.0])


RB2_ITEMS = [
    ("0", "Factuality", ["f1c"], ["f1r1", "f1r2", "f1r3"]),
    ("1", "Factuality", ["f2c"], ["f2r1", "f2r2", "f2r3"]),
    ("2", "Math", ["m1c"], ["m1r1", "m1r2", "m1r3"]),
    ("ref:1", "Ties", ["t1c"], ["t1r1", "t1r2"]),
    ("tied:1", "Ties", ["u1c1", "u1c2", "u1c3"], ["u1r1"]),
    ("ref:2", "Ties", ["t2c"], ["t2r1"]),
    ("tied:2", "Ties", ["u2c1", "u2c2"], ["u2r1"]),
]
RB2_SCORES = {
    "f1c": 3, "f1r1": 1, "f1r2": 2, "f1r3": 0,  # result 1
    "f2c": 2, "f2r1": 2, "f2r2": 1, "f2r3": 0,  # result 1/2
    "m1c": 1, "m1r1": 3, "m1r2": 0, "m1r3": 0,  # result 0
    "t1c": 5, "t1r1": 4, "t1r2": 1,  # ref 1: gap 5 - 4 = 1, accurate
    "u1c1": 5, "u1c2": 4.5, "u1c3": 4.8, "u1r1": 3,  # tied 1: gap 4.5 - 3 = 1.5, spread 0.5
    "t2c": 2, "t2r1": 3,  # ref 2: gap -1, not accurate
    "u2c1": 2, "u2c2": 1, "u2r1": 0.5,  # tied 2: gap 0.5, spread 1
}  # fmt: skip


def _rb2_file(tmp_path):
    rows = [
        {"id": i, "prompt": f"prompt {i.split(':')[-1]}", "chosen": c, "rejected": r, "subset": s}
        for i, s, c, r in RB2_ITEMS
    ]
    return _jsonl(tmp_path / "rb2.jsonl", rows)


def test_rewardbench2_on_a_fixture_file(tmp_path):
    records = data_bench.read_rewardbench2(_rb2_file(tmp_path))
    result, notes = bench.evaluate_benchmark(
        "rewardbench2", records, _dict_reward(RB2_SCORES), tokenizer=ByteTokenizer(), batch_size=8
    )
    # Ties by hand: ref accuracy 1/2, tied accuracy 2/2; prompt 1: 1.5 > 0.5 and min(1, 1.5) > 0.5;
    # prompt 2: 0.5 > 1 false and min(-1, 0.5) > 1 false; margins tanh(1/0.5 - 1), tanh(-1/1 - 1).
    margin = (math.tanh(1.0) + math.tanh(-2.0)) / 2
    ties = 0.3 * 1.0 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * margin
    assert list(result.subsets) == ["Factuality", "Math", "Ties"]
    assert result.subsets["Factuality"] == pytest.approx(0.75)
    assert result.subsets["Math"] == pytest.approx(0.0)
    assert result.subsets["Ties"] == pytest.approx(ties, abs=1e-6)
    assert result.score == pytest.approx((0.75 + 0.0 + ties) / 3, abs=1e-6)
    t = result.ties
    assert (t.ref_accuracy, t.tied_accuracy, t.num_prompts) == (0.5, 1.0, 2)
    assert (t.correctness_preferred, t.correctness_preferred_hard) == (0.5, 0.5)
    assert t.margin_score == pytest.approx(margin, abs=1e-6)
    assert result.counts == {"Factuality": 2, "Math": 1, "Ties": 4}
    assert notes["responses scored"] == 4 + 4 + 4 + 3 + 4 + 2 + 3
    # The same numbers from precomputed scores in the order of benchmark_texts.
    _, texts = bench.benchmark_texts("rewardbench2", records)
    again, _ = bench.evaluate_benchmark(
        "rewardbench2", records, scores=[RB2_SCORES[t] for t in texts]
    )
    assert again.subsets == pytest.approx(result.subsets)


def test_ties_score_equal_correct_answers():
    # One prompt; the tied item's correct answers score the same (spread 0): the margin term is
    # tanh(+inf) = 1 when the gap is positive, 0 (0/0) when the gap is 0.
    positive = bench.ties_score([[2.0, 1.0], [3.0, 3.0, 1.0]], [1, 2], ["ref", "tied"], [0, 0])
    assert positive.score == pytest.approx(0.3 + 0.3 + 0.2 + 0.2 + 0.01)
    flat = bench.ties_score([[2.0, 2.0], [3.0, 3.0, 3.0]], [1, 2], ["ref", "tied"], [0, 0])
    # gap 0: not accurate; 0 > 0 false; margin 0/0 -> 0.
    assert (flat.ref_accuracy, flat.tied_accuracy, flat.margin_score, flat.score) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="two items are tied:0"):
        bench.ties_score([[3.0, 3.0, 1.0]] * 2, [2, 2], ["tied", "tied"], [0, 0])


# --------------------------------------------------------------------------- RM-Bench

RMB_SCORES = {
    "a_c0": 3, "a_c1": 2, "a_c2": 1, "a_r0": 2.5, "a_r1": 1.5, "a_r2": 0.5,
    "b_c0": 1, "b_c1": 1, "b_c2": 1, "b_r0": 1, "b_r1": 0, "b_r2": 2,
    "s_c0": 0, "s_c1": 0, "s_c2": 5, "s_r0": 1, "s_r1": -1, "s_r2": 4,
}  # fmt: skip


def test_rmbench_on_a_fixture_file(tmp_path):
    items = [("a", "chat"), ("b", "chat"), ("s", "safety-response")]
    rows = [
        {
            "id": k,
            "prompt": f"prompt {k}",
            "chosen": [f"{k}_c{i}" for i in range(3)],
            "rejected": [f"{k}_r{i}" for i in range(3)],
            "domain": d,
        }
        for k, d in items
    ]
    path = tmp_path / "total_dataset.json"
    path.write_text(json.dumps(rows, indent=4), encoding="utf-8")
    records = data_bench.read_rmbench(str(path))
    result, _ = bench.evaluate_benchmark(
        "rmbench", records, _dict_reward(RMB_SCORES), tokenizer=ByteTokenizer(), batch_size=5
    )
    # chat, item a: rows [1,1,1], [0,1,1], [0,0,1]; item b (ties are wrong): rows [0,1,0] x 3.
    chat = np.asarray([[0.5, 1.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.5, 0.5]])
    np.testing.assert_allclose(result.matrices["chat"], chat)
    assert result.domains["chat"] == pytest.approx(
        {"hard": 2 / 3, "normal": 2 / 3, "easy": 1 / 6, "avg": 0.5}
    )
    # safety: rows [0,1,0], [0,1,0], [1,1,1].
    assert result.domains["safety"] == pytest.approx(
        {"hard": 1 / 3, "normal": 2 / 3, "easy": 2 / 3, "avg": 5 / 9}
    )
    assert (result.hard, result.normal, result.easy) == pytest.approx((0.5, 2 / 3, 5 / 12))
    assert result.score == pytest.approx((0.5 + 5 / 9) / 2)
    assert result.counts == {"chat": 2, "safety": 1}


def test_rmbench_accuracy_of_a_matrix():
    m = np.arange(9.0).reshape(3, 3) / 10
    hard, normal, easy = np.asarray(bench.rmbench_accuracy(m))
    assert (hard, normal, easy) == pytest.approx(
        ((0.1 + 0.2 + 0.5) / 3, 0.4, (0.3 + 0.6 + 0.7) / 3)
    )


# --------------------------------------------------------------------------- JudgeBench


def _reference_correct(label: str, d1: str, d2_swapped: str) -> tuple[bool, bool]:
    """The authors' rule on verdict strings (utils/metrics.py), written here independently:
    (correct, inconsistent)."""
    flip = {"A>B": "B>A", "B>A": "A>B"}
    d2 = flip.get(d2_swapped, d2_swapped)
    counter = sum((d == label) - (d == flip[label]) for d in (d1, d2))
    return counter > 0, d1 != d2


def test_judge_outcomes_match_the_authors_rule_on_every_verdict_pair():
    as_str = {1: "A>B", -1: "B>A", 0: "A=B"}  # verdict in the order shown
    labels, v1, v2, expected = [], [], [], []
    for label in (1, -1):
        for a in (1, 0, -1):
            for b in (1, 0, -1):
                labels.append(label), v1.append(a), v2.append(b)
                expected.append(_reference_correct(as_str[label], as_str[a], as_str[b]))
    out = bench.judge_outcomes(np.asarray(labels), np.asarray(v1), np.asarray(v2))
    np.testing.assert_array_equal(out.correct, [float(c) for c, _ in expected])
    np.testing.assert_array_equal(out.inconsistent, [float(i) for _, i in expected])
    # label A>B: (+1, -1) right twice; (+1, +1) first position both times (one right, one wrong:
    # not correct); (+1, 0) one right and a tie: correct; (0, +1) a tie and one wrong: incorrect.
    first = dict(zip(zip(labels, v1, v2), zip(*(np.asarray(x) for x in out))))
    assert first[(1, 1, -1)][:2] == (1, 0) and first[(1, 1, 1)][:2] == (0, 0)
    assert first[(1, 1, 0)][:2] == (1, 0) and first[(1, 0, 1)][:2] == (0, 1)
    assert first[(1, 1, 1)][5] == 1 and first[(1, -1, -1)][6] == 1


JUDGEBENCH = [
    # source, label, score of A, score of B
    ("mmlu-pro-law", "A>B", 2.0, 1.0),  # A wins both orders: correct
    ("livebench-math", "B>A", 1.0, 1.0),  # a tie goes to the second shown: B, then A
    ("livecodebench", "B>A", 0.0, 3.0),  # correct
    ("livebench-reasoning", "A>B", 0.0, 1.0),  # wrong both orders
]


def _judgebench_records(tmp_path):
    rows = [
        {
            "pair_id": f"p{i}",
            "source": src,
            "question": f"question {i}",
            "response_A": f"A{i}",
            "response_B": f"B{i}",
            "label": label,
        }
        for i, (src, label, _, _) in enumerate(JUDGEBENCH)
    ]
    return data_bench.read_judgebench(_jsonl(tmp_path / "jb.jsonl", rows))


def test_judgebench_from_pointwise_scores(tmp_path):
    records = _judgebench_records(tmp_path)
    table = {
        f"{side}{i}": s for i, (*_, a, b) in enumerate(JUDGEBENCH) for side, s in zip("AB", (a, b))
    }
    reward, tok = _dict_reward(table), ByteTokenizer()
    result, _ = bench.evaluate_benchmark("judgebench", records, reward, tokenizer=tok)
    # Pair 1 (tie): verdicts B then A, one right one wrong -> not correct, inconsistent.
    assert result.categories == {
        "Knowledge": 1.0,
        "Reasoning": 0.0,
        "Math": 0.0,
        "Coding": 1.0,
        "Overall": 0.5,
    }
    assert result.consistency == pytest.approx(
        {
            "inconsistent": 0.25,
            "both_correct": 0.5,
            "both_incorrect": 0.25,
            "prefers_first": 0.0,
            "prefers_second": 0.25,
        }
    )
    single, _ = bench.evaluate_benchmark(
        "judgebench", records, reward, tokenizer=tok, single_game=True
    )
    # One order: the tied pair's verdict is B (second shown), which is its label.
    assert single.categories["Math"] == 1.0 and single.score == 0.75
    assert single.consistency == {}
    ties = bench.verdicts_from_scores(np.asarray([1.0, 1.0, 0.0]), np.asarray([0.0, 1.0, 1.0]))
    np.testing.assert_array_equal(ties, [1, -1, -1])
    ties = bench.verdicts_from_scores([1.0, 1.0, 0.0], [0.0, 1.0, 1.0], tie="tie")
    np.testing.assert_array_equal(ties, [1, 0, -1])


def test_judgebench_pairwise_judge_with_position_bias(tmp_path):
    records = _judgebench_records(tmp_path)
    calls = []

    def always_first(questions, first, second):
        calls.append(list(first))
        return np.full(len(first), 0.9) - 0.5  # P(first better) - 1/2

    result, notes = bench.evaluate_benchmark("judgebench", records, judge=always_first)
    assert calls == [["A0", "A1", "A2", "A3"], ["B0", "B1", "B2", "B3"]]
    assert result.score == 0.0 and notes["judge calls"] == 8
    assert result.consistency["prefers_first"] == 1.0 and result.consistency["inconsistent"] == 1.0
    single, _ = bench.evaluate_benchmark(
        "judgebench", records, judge=always_first, single_game=True
    )
    assert single.score == 0.5  # right exactly on the two A>B pairs


# --------------------------------------------------------------------------- scoring and report


class _SumModel:
    """A ScoringModel: reward = w * (sum of the completion's ids)."""

    def apply(self, params, tokens, mask, completion_mask):
        r = params["w"] * jnp.sum(tokens * completion_mask, axis=1).astype(jnp.float32)
        return RewardOutput(r, {})


def test_score_texts_with_a_scoring_model_batches_and_truncation():
    prompts = ["p", "p", "q", "p", "long prompt"]
    responses = ["ab", "c", "ab", "ab", "xyz"]
    tok = ByteTokenizer()
    out, truncated = bench.score_texts(
        _SumModel(), prompts, responses, tokenizer=tok, params={"w": 2.0}, prompt_format="plain",
        batch_size=2,
    )  # fmt: skip
    expected = [2.0 * sum(r.encode()) for r in responses]  # ByteTokenizer: id = byte, no EOS
    np.testing.assert_allclose(out, expected)
    assert truncated == 0
    # max_length 4: "long prompt" + "xyz" keeps 2 prompt bytes and "xy".
    out, truncated = bench.score_texts(
        _SumModel(), prompts, responses, tokenizer=tok, params={"w": 1.0}, prompt_format="plain",
        max_length=4,
    )  # fmt: skip
    assert truncated == 1 and out[4] == sum(b"xy")
    synthetic = bench.SyntheticTextTokenizer(8)
    assert synthetic.encode("3 0 7") == [4, 1, 8] and synthetic.decode([4, 1, 8, 0]) == "3 0 7"
    with pytest.raises(ValueError, match="'8' is not a token in \\[0, 8\\)"):
        synthetic.encode("3 8")
    with pytest.raises(ValueError, match="needs its params"):
        bench.score_texts(_SumModel(), prompts, responses, tokenizer=tok)


def test_report_tables(tmp_path):
    records = data_bench.read_rewardbench2(_rb2_file(tmp_path))
    _, texts = bench.benchmark_texts("rewardbench2", records)
    result, _ = bench.evaluate_benchmark(
        "rewardbench2", records, scores=[RB2_SCORES[t] for t in texts]
    )
    path = bench.write_benchmark_report(tmp_path / "out", result, notes={"reward": "dict"})
    text = open(path, encoding="utf-8").read()
    assert "| Factuality | Math | Ties | Avg |" in text
    assert "| 75.0 | 0.0 |" in text


# --------------------------------------------------------------------------- command line


def test_cli_gold_reward_on_a_synthetic_rewardbench2_file(tmp_path):
    """`python -m rewardjax.evaluate --reward=gold`: the default world of configs/reward_model.py
    (seed 0, V = 8, T = 8, prompt length 4); gold rewards computed here from the bigram table."""
    task = make_markov_task(0, vocab_size=8, length=8, prompt_length=4)
    rng = np.random.default_rng(0)
    gold = lambda y0, y: sum(task.bigram_reward[a, b] for a, b in zip([y0, *y[:-1]], y))
    rows, expected = [], []
    for i in range(6):
        prompt = rng.integers(0, 8, 4)
        responses = [rng.integers(0, 8, 8) for _ in range(4)]
        g = [gold(prompt[-1], y) for y in responses]
        if i % 2 == 0:  # put the gold-best response first: result 1 (no exact ties in floats)
            responses.insert(0, responses.pop(int(np.argmax(g))))
        g = [gold(prompt[-1], y) for y in responses]
        expected.append(1.0 if g[0] > max(g[1:]) else 0.0)
        text = lambda y: " ".join(map(str, y))
        rows.append(
            {
                "id": str(i),
                "prompt": text(prompt),
                "chosen": [text(responses[0])],
                "rejected": [text(y) for y in responses[1:]],
                "subset": "Math" if i < 3 else "Focus",
            }
        )
    path = _jsonl(tmp_path / "rb2.jsonl", rows)
    out = tmp_path / "out"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    cmd = [sys.executable, "-m", "rewardjax.evaluate", "--benchmark=rewardbench2"]
    cmd += [f"--path={path}", "--reward=gold", f"--out={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    math_, focus = np.mean(expected[:3]), np.mean(expected[3:])
    report = (out / "report.md").read_text()
    assert "| Math | Focus | Avg |" in report
    row = f"| {100 * math_:.1f} | {100 * focus:.1f} | {100 * (math_ + focus) / 2:.1f} |"
    assert row in report
