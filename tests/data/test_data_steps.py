"""Step-segmented records: canonical validation, PRM800K / Math-Shepherd / TRL adapters on small
files written in those layouts, and file:line:field errors."""

import json

import pytest

from rewardjax.data import steps as st
from rewardjax.data.records import Message, RecordError


def _write(tmp_path, rows, name="data.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return str(path)


# ---------------------------------------------------------------- canonical layout


def test_canonical_kinds_inference_and_targets(tmp_path):
    rows = [
        {"prompt": "2+2?", "steps": ["a", " b "], "labels": [1, 0], "outcome": False},
        {"prompt": "", "steps": ["a", "b", "c"], "labels": [1, 0, -1]},
        {"prompt": "q", "steps": ["a", "b"], "labels": [0.25, 1.0], "outcome": 0.5},
        {"prompt": "q", "steps": ["a"], "labels": [True]},
        {"prompt": "q", "steps": ["a", "b"], "labels": [1, 0], "label_kind": "ternary"},
    ]
    records, report = st.load_step_records(_write(tmp_path, rows))
    assert report.num_read == 5 and report.num_kept == 5 and report.num_skipped == 0
    kinds = [r.label_kind for r in records]
    assert kinds == ["binary", "ternary", "soft", "binary", "ternary"]
    assert records[0] == st.StepRecord("2+2?", ("a", "b"), (1.0, 0.0), "binary", 0.0)
    assert records[1].outcome is None and records[1].labels == (1.0, 0.0, -1.0)
    assert records[1].targets() == (1.0, 1.0, 0.0)
    assert records[1].targets(neutral=0.5) == (1.0, 0.5, 0.0)
    assert records[2].targets() == (0.25, 1.0)
    with pytest.raises(ValueError, match="neutral"):
        records[1].targets(neutral=2.0)


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        ({"prompt": "q", "labels": [1]}, "steps", "missing"),
        ({"prompt": "q", "steps": [], "labels": []}, "steps", "non-empty list"),
        ({"prompt": "q", "steps": ["a", "  "], "labels": [1, 1]}, "steps[1]", "non-empty"),
        ({"prompt": "q", "steps": ["a", "b"], "labels": [1]}, "labels", "2 labels, got 1"),
        ({"prompt": "q", "steps": ["a"], "labels": [2]}, "labels[0]", "fits no label kind"),
        ({"prompt": "q", "steps": ["a"], "labels": ["x"]}, "labels[0]", "fits no label kind"),
        (
            {"prompt": "q", "steps": ["a"], "labels": [0.5], "label_kind": "binary"},
            "labels[0]",
            "binary",
        ),
        (
            {"prompt": "q", "steps": ["a"], "labels": [1.5], "label_kind": "soft"},
            "labels[0]",
            "soft",
        ),
        ({"prompt": "q", "steps": ["a"], "labels": [1], "label_kind": "x"}, "label_kind", "x"),
        ({"prompt": "q", "steps": ["a"], "labels": [1], "outcome": 3}, "outcome", "[0, 1]"),
        ({"prompt": 5, "steps": ["a"], "labels": [1]}, "prompt", "wrong type"),
    ],
)
def test_canonical_errors_name_file_line_and_field(tmp_path, raw, field, problem):
    good = {"prompt": "q", "steps": ["a"], "labels": [1]}
    path = _write(tmp_path, [good, raw])
    with pytest.raises(RecordError) as e:
        st.load_step_records(path)
    assert e.value.source == path and e.value.location == "line 2" and e.value.field == field
    assert problem in str(e.value) and "Fix:" in str(e.value)
    # Skipping keeps the good row and counts the bad one by its top-level field.
    records, report = st.load_step_records(path, on_error="skip")
    assert len(records) == 1 and report.num_skipped == 1
    assert report.skipped == {field.split("[")[0]: 1}


def test_bad_json_line_is_named_and_skippable(tmp_path):
    good = {"prompt": "q", "steps": ["a"], "labels": [1]}
    path = _write(tmp_path, [good, "{not json", good])
    with pytest.raises(RecordError, match=r"line 2: field '<json>'"):
        st.load_step_records(path)
    records, report = st.load_step_records(path, on_error="skip")
    assert len(records) == 2 and report.skipped == {"<json>": 1}
    with pytest.raises(ValueError, match="unknown step layout"):
        st.load_step_records(path, layout="prm")


# ---------------------------------------------------------------- PRM800K


def _prm_step(*completions, chosen=0, human=None):
    return {
        "completions": [{"text": t, "rating": r, "flagged": None} for t, r in completions],
        "human_completion": human,
        "chosen_completion": chosen,
    }


def _prm_row(steps, finish_reason="found_error", problem="What is 1+1?"):
    return {
        "labeler": "x",
        "timestamp": "2023-01-22T04:34:27",
        "generation": 9,
        "is_quality_control_question": False,
        "is_initial_screening_question": False,
        "question": {"problem": problem, "ground_truth_answer": "2"},
        "label": {"steps": steps, "total_time": 1000, "finish_reason": finish_reason},
    }


def test_prm800k_trajectory_labels_outcome_and_filtering(tmp_path):
    rows = [
        # Phase 2, first error found at step 3: its step has no chosen completion.
        _prm_row(
            [
                _prm_step(("I want 1+1.", 0)),
                _prm_step(("One plus one.", 1)),
                _prm_step(("So it is 3.", -1), ("Or 2.", 1), chosen=None),
            ]
        ),
        # Phase 1: alternatives, a chosen index != 0, and a labeller-written step.
        _prm_row(
            [
                _prm_step(("Bad.", -1), ("Good.", 1), chosen=1),
                _prm_step(("Wrong.", -1), chosen=None, human={"text": "Mine.", "rating": None}),
                _prm_step(("# Answer\n\n2", 1)),
            ],
            finish_reason="solution",
        ),
        _prm_row([_prm_step(("x", 0))], finish_reason="give_up"),
        _prm_row([_prm_step(("x", 0))], finish_reason="bad_problem"),
    ]
    path = _write(tmp_path, rows)
    records, report = st.load_step_records(path, layout="prm800k")
    assert len(records) == 2
    first, second = records
    assert first.prompt == (Message("user", "What is 1+1?"),)
    assert first.steps == ("I want 1+1.", "One plus one.", "So it is 3.")
    assert first.labels == (0.0, 1.0, -1.0) and first.label_kind == "ternary"
    assert first.outcome == 0.0 and first.targets() == (1.0, 1.0, 0.0)
    assert second.steps == ("Good.", "Mine.", "# Answer\n\n2")
    assert second.labels == (1.0, 1.0, 1.0) and second.outcome == 1.0
    assert report.filtered == {"finish_reason=give_up": 1, "finish_reason=bad_problem": 1}
    assert report.num_skipped == 0 and report.num_read == 4
    assert report.ignored_alternatives == 1 + 1 + 1  # "Or 2.", "Bad.", "Wrong."
    assert "filtered" in report.summary() and "not kept" in report.summary()
    # Keeping every finish reason: a give-up row has no outcome.
    every = ("solution", "found_error", "give_up", "bad_problem")
    records, report = st.load_step_records(path, layout="prm800k", finish_reasons=every)
    assert len(records) == 4 and records[2].outcome is None and not report.filtered
    assert st.adapt_steps("prm800k", rows[2]) is None


@pytest.mark.parametrize(
    ("row", "field"),
    [
        (_prm_row([_prm_step(("a", 2))]), "label.steps[0].completions[0].rating"),
        (_prm_row([_prm_step(("a", None))]), "label.steps[0].completions[0].rating"),
        (_prm_row([_prm_step(("a", 1), chosen=3)]), "label.steps[0].chosen_completion"),
        (
            _prm_row([_prm_step(("a", 1), chosen=None), _prm_step(("b", 1))]),
            "label.steps[0].chosen_completion",
        ),
        (_prm_row([]), "label.steps"),
        ({"label": {"steps": [], "finish_reason": "solution"}}, "question"),
        (_prm_row([{"text": "no completions"}]), "label.steps[0]"),
    ],
)
def test_prm800k_errors_name_the_nested_field(tmp_path, row, field):
    path = _write(tmp_path, [_prm_row([_prm_step(("ok", 1))]), row])
    with pytest.raises(RecordError) as e:
        st.load_step_records(path, layout="prm800k")
    assert e.value.location == "line 2" and e.value.field == field


# ---------------------------------------------------------------- Math-Shepherd

PROBLEM = "Buzz has 78 slices and shares them 5:8. How many does the waiter eat?"
STEPS = [
    "Step 1: The total ratio is 5+8 = <<5+8=13>>13.",
    "Step 2: The waiter ate 13 x 8 / 13 = <<13*8/13=6>>6 slices.",
    "Step 3: The answer is: 6",
]


def _shepherd(marks, problem=PROBLEM, steps=STEPS):
    body = "\n".join(f"{s} {{}}" for s in steps)
    text = f"{problem} {body}"
    return {
        "input": text.format(*[st.MATH_SHEPHERD_TAG] * len(steps)),
        "label": text.format(*marks),
        "task": "GSM8K",
    }


def test_math_shepherd_steps_labels_and_outcome(tmp_path):
    path = _write(tmp_path, [_shepherd("++-"), _shepherd("+++")])
    records, report = st.load_step_records(path, layout="math_shepherd")
    assert report.num_kept == 2
    rec = records[0]
    assert rec.prompt == (Message("user", PROBLEM),)
    assert rec.steps == tuple(STEPS)
    assert rec.labels == (1.0, 1.0, 0.0) and rec.label_kind == "binary" and rec.outcome == 0.0
    assert records[1].outcome == 1.0
    # A step text that contains '+' or '-' itself is not mistaken for a label.
    tricky = [*STEPS[:2], "Step 3: 7 - 1 + 0 = 6. The answer is: 6"]
    (rec,) = st.load_step_records(
        _write(tmp_path, [_shepherd("+-+", steps=tricky)], "t.jsonl"), layout="math_shepherd"
    )[0]
    assert rec.labels == (1.0, 0.0, 1.0) and rec.steps[2] == tricky[2]


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda r: {**r, "label": r["label"][::-1].replace("+", "?", 1)[::-1]}, "got '?'"),
        (lambda r: {**r, "label": r["label"].replace("Buzz", "Bob")}, "differs from 'input'"),
        (lambda r: {**r, "label": r["label"] + " extra"}, "after the last tag"),
        (lambda r: {**r, "input": r["input"].replace(st.MATH_SHEPHERD_TAG, "")}, "no step tag"),
        (lambda r: {**r, "input": r["input"] + " trailing"}, "text after the last step tag"),
        (
            lambda r: {k: v.replace("Step 1:", "First:") for k, v in r.items()},
            "no 'Step 1:'",
        ),
        (lambda r: {"input": r["input"]}, "missing"),
    ],
)
def test_math_shepherd_errors(tmp_path, mutate, problem):
    path = _write(tmp_path, [_shepherd("+++"), mutate(_shepherd("+-+"))])
    with pytest.raises(RecordError, match=r"line 2: field '(input|label)'") as e:
        st.load_step_records(path, layout="math_shepherd")
    assert problem in str(e.value)


# ---------------------------------------------------------------- TRL stepwise


def test_trl_stepwise_layout(tmp_path):
    rows = [
        {
            "prompt": "Which is larger?",
            "completions": ["9.8 vs 9.11", "9.8"],
            "labels": [True, False],
        },
        {"prompt": "q", "completions": ["a"], "labels": [0.75]},
        {"prompt": "q", "completions": ["a", "b"], "labels": [True]},
    ]
    path = _write(tmp_path, rows)
    records, report = st.load_step_records(path, layout="trl_stepwise", on_error="skip")
    assert [r.label_kind for r in records] == ["binary", "soft"]
    assert records[0].labels == (1.0, 0.0) and records[0].steps == ("9.8 vs 9.11", "9.8")
    assert report.skipped == {"labels": 1}
