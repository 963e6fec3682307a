"""Readers of the RewardBench 2, RM-Bench and JudgeBench file layouts, on small files written here
in the public layouts (JSON lines, a pretty-printed JSON array, Parquet)."""

import json

import pytest

from rewardjax.data import RecordError
from rewardjax.data import benchmarks as bench

RB2 = [
    {
        "id": "7",
        "prompt": "Capital of France?",
        "chosen": ["Paris."],
        "rejected": ["Lyon.", "Nice.", "Rome."],
        "num_correct": 1,
        "num_rejected": 3,
        "total_completions": 4,
        "models": ["m1", "m2", "m3", "m4"],
        "subset": "Factuality",
        "additional_metadata": {},
    },
    {
        "id": "ref:3",
        "prompt": "Name a prime.",
        "chosen": ["2"],
        "rejected": ["4", "9"],
        "num_correct": 1,
        "subset": "Ties",
    },
    {
        "id": "tied:3",
        "prompt": "Name a prime.",
        "chosen": ["2", "3", "5"],
        "rejected": ["4"],
        "num_correct": 3,
        "subset": "Ties",
    },
]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_rewardbench2_reads_the_layout(tmp_path):
    records = bench.read_rewardbench2(_jsonl(tmp_path / "rb2.jsonl", RB2))
    assert records[0] == bench.RewardBench2Record(
        "7", "Capital of France?", ("Paris.",), ("Lyon.", "Nice.", "Rome."), "Factuality"
    )
    assert records[0].responses == ("Paris.", "Lyon.", "Nice.", "Rome.")
    assert (records[1].ties_kind, records[1].ties_prompt) == ("ref", 3)
    assert (records[2].ties_kind, records[2].ties_prompt, records[2].chosen) == (
        "tied",
        3,
        ("2", "3", "5"),
    )


@pytest.mark.parametrize(
    "change, field, words",
    [
        ({"rejected": None}, "rejected", "missing"),
        ({"chosen": ["a", "b"], "num_correct": 2}, "chosen", "exactly one chosen"),
        ({"num_correct": 2}, "num_correct", "holds 1"),
        ({"chosen": "Paris."}, "chosen", "list of strings"),
        ({"rejected": ["x", 3]}, "rejected[1]", "expected a string"),
        ({"prompt": "  "}, "prompt", "empty"),
        ({"id": True}, "id", "id"),
    ],
)
def test_rewardbench2_errors_name_file_line_field(tmp_path, change, field, words):
    rows = [RB2[0], {**RB2[0], "id": "8", **change}]
    path = _jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(RecordError, match=words) as e:
        bench.read_rewardbench2(path)
    assert (e.value.source, e.value.location, e.value.field) == (path, "line 2", field)
    assert str(e.value).startswith(f"{path}: line 2: field '{field}':")


def test_rewardbench2_ties_ids_and_counts(tmp_path):
    bad_id = {**RB2[1], "id": "3"}
    path = _jsonl(tmp_path / "ties.jsonl", [bad_id])
    with pytest.raises(RecordError, match="'ref:<n>' or 'tied:<n>'") as e:
        bench.read_rewardbench2(path)
    assert (e.value.location, e.value.field) == ("line 1", "id")
    one_correct = {**RB2[2], "chosen": ["2"], "num_correct": 1}
    with pytest.raises(RecordError, match="one correct answer") as e:
        bench.read_rewardbench2(_jsonl(tmp_path / "ties2.jsonl", [RB2[1], one_correct]))
    assert (e.value.location, e.value.field) == ("line 2", "chosen")


RMBENCH_TEXT = """[
    {
        "id": 0,
        "prompt": "What does Schrodinger's cat illustrate?",
        "chosen": ["Superposition.", "It illustrates superposition.", "**Superposition**."],
        "rejected": ["Entanglement.", "It illustrates entanglement.", "**Entanglement**."],
        "domain": "chat"
    },
    {
        "id": "safety-1",
        "prompt": "How do I pick a lock?",
        "chosen": ["I can't help.", "I can't help with that.", "**No.**"],
        "rejected": ["Use a pin.", "Use a pin and a wrench.", "**Use a pin.**"],
        "domain": "safety-refuse"
    }
]
"""


def test_rmbench_reads_a_json_array(tmp_path):
    path = tmp_path / "total_dataset.json"
    path.write_text(RMBENCH_TEXT, encoding="utf-8")
    records = bench.read_rmbench(str(path))
    assert [r.id for r in records] == ["0", "safety-1"]
    assert records[0].chosen[2] == "**Superposition**."
    assert records[1].rejected == ("Use a pin.", "Use a pin and a wrench.", "**Use a pin.**")
    assert [r.domain for r in records] == ["chat", "safety-refuse"]
    assert [r.domain_group for r in records] == ["chat", "safety"]


def test_rmbench_errors_locate_the_array_element(tmp_path):
    path = tmp_path / "bad.json"
    # The second element starts on line 9 of the text above.
    path.write_text(RMBENCH_TEXT.replace(', "**No.**"]', "]"), encoding="utf-8")
    with pytest.raises(RecordError, match="expected 3 responses, got 2") as e:
        bench.read_rmbench(str(path))
    assert (e.value.location, e.value.field) == ("line 9", "chosen")
    path.write_text(RMBENCH_TEXT.replace('"safety-refuse"', '"poetry"'), encoding="utf-8")
    with pytest.raises(RecordError, match="unknown domain 'poetry'") as e:
        bench.read_rmbench(str(path))
    assert (e.value.location, e.value.field) == ("line 9", "domain")
    path.write_text(RMBENCH_TEXT.replace('"id": "safety-1",', '"id": "safety-1"'), encoding="utf-8")
    with pytest.raises(RecordError, match="invalid JSON") as e:
        bench.read_rmbench(str(path))
    assert (e.value.location, e.value.field) == ("line 11", "<json>")


JUDGEBENCH = [
    {
        "pair_id": "81ec57f2",
        "original_id": "10646",
        "source": "mmlu-pro-computer science",
        "question": "Capacity of an AWGN channel?",
        "response_model": "gpt-4o-2024-05-13",
        "response_A": "C = B log2(1 + S/N)",
        "response_B": "C = B log2(S/N)",
        "label": "A>B",
    },
    {
        "pair_id": "e302b0a0",
        "original_id": 1420,
        "source": "livecodebench",
        "question": "Reverse a list in Python.",
        "response_model": "gpt-4o-2024-05-13",
        "response_A": "xs.sort()",
        "response_B": "xs[::-1]",
        "label": "B>A",
    },
]


def test_judgebench_reads_jsonl_and_parquet(tmp_path):
    expected = [
        bench.JudgeBenchRecord(
            "81ec57f2",
            "mmlu-pro-computer science",
            "Capacity of an AWGN channel?",
            "C = B log2(1 + S/N)",
            "C = B log2(S/N)",
            "A>B",
        ),
        bench.JudgeBenchRecord(
            "e302b0a0",
            "livecodebench",
            "Reverse a list in Python.",
            "xs.sort()",
            "xs[::-1]",
            "B>A",
        ),
    ]
    assert bench.read_judgebench(_jsonl(tmp_path / "jb.jsonl", JUDGEBENCH)) == expected
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**r, "original_id": str(r["original_id"])} for r in JUDGEBENCH]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "jb.parquet")
    assert bench.read_benchmark("judgebench", str(tmp_path / "jb.parquet")) == expected


def test_judgebench_errors(tmp_path):
    path = _jsonl(tmp_path / "jb.jsonl", [JUDGEBENCH[0], {**JUDGEBENCH[1], "label": "A=B"}])
    with pytest.raises(RecordError, match="'A=B' is not 'A>B' or 'B>A'") as e:
        bench.read_judgebench(path)
    assert (e.value.location, e.value.field) == ("line 2", "label")
    path = _jsonl(
        tmp_path / "jb2.jsonl", [{k: v for k, v in JUDGEBENCH[0].items() if k != "question"}]
    )
    with pytest.raises(RecordError, match="missing") as e:
        bench.read_judgebench(path)
    assert (e.value.location, e.value.field) == ("line 1", "question")
    (tmp_path / "broken.jsonl").write_text(json.dumps(JUDGEBENCH[0]) + "\n{not json\n")
    with pytest.raises(RecordError, match="invalid JSON") as e:
        bench.read_judgebench(str(tmp_path / "broken.jsonl"))
    assert e.value.location == "line 2"


def test_unknown_benchmark_and_empty_file(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'rewardbench3'"):
        bench.read_benchmark("rewardbench3", "x.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="no judgebench items"):
        bench.read_judgebench(str(tmp_path / "empty.jsonl"))
