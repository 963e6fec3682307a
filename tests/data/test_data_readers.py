"""Readers, record validation and layout adapters on small files written by the tests."""

import json
import os

import pytest

from rewardjax import data
from rewardjax.data import Message, PairwiseRecord, RankedRecord, RatingRecord, SFTRecord

ROWS = [
    {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5", "subset": "math"},
    {"prompt": "Say hi", "chosen": "hi", "rejected": "no", "margin": 2.5},
    {
        "prompt": [{"role": "user", "content": "Name a colour"}],
        "chosen": [{"role": "assistant", "content": "blue"}],
        "rejected": [{"role": "assistant", "content": "seven"}],
    },
]
EXPECTED = [
    PairwiseRecord("What is 2+2?", "4", "5", 0.0, "math"),
    PairwiseRecord("Say hi", "hi", "no", 2.5, None),
    PairwiseRecord(
        (Message("user", "Name a colour"),),
        (Message("assistant", "blue"),),
        (Message("assistant", "seven"),),
    ),
]
# Columnar formats take their schema from the rows: give every row every column (None = absent).
TABLE_ROWS = [{**r, "margin": r.get("margin"), "subset": r.get("subset")} for r in ROWS[:2]]


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


def test_jsonl(tmp_path):
    records, report = data.load_records(write_jsonl(tmp_path / "p.jsonl", ROWS))
    assert records == EXPECTED
    assert (report.num_read, report.num_kept, report.num_skipped) == (3, 3, 0)


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "p.parquet")
    pq.write_table(pa.Table.from_pylist(TABLE_ROWS), path)
    records, _ = data.load_records(path)
    assert records == EXPECTED[:2]


def test_hf_save_to_disk(tmp_path):
    import datasets

    folder = str(tmp_path / "hf")
    datasets.DatasetDict({"train": datasets.Dataset.from_list(TABLE_ROWS)}).save_to_disk(folder)
    assert data.load_records(folder, split="train")[0] == EXPECTED[:2]
    with pytest.raises(ValueError, match="split="):
        data.load_records(folder)
    single = str(tmp_path / "hf1")
    datasets.Dataset.from_list(ROWS[2:]).save_to_disk(single)
    assert data.load_records(single)[0] == EXPECTED[2:]


def test_tfds_array_record(tmp_path):
    """A TFDS dataset folder (array_record shards + metadata), built and read without TensorFlow."""
    import tensorflow_datasets as tfds
    from array_record.python.array_record_module import ArrayRecordWriter

    folder = tmp_path / "prefs" / "1.0.0"
    folder.mkdir(parents=True)
    text = tfds.features.Text()
    features = tfds.features.FeaturesDict({"prompt": text, "chosen": text, "rejected": text})
    writer = ArrayRecordWriter(str(folder / "prefs-train.array_record-00000-of-00001"), "")
    for row in ROWS[:2]:
        writer.write(
            features.serialize_example({k: row[k] for k in ("prompt", "chosen", "rejected")})
        )
    writer.close()
    split = tfds.core.SplitInfo(name="train", shard_lengths=[2], num_bytes=0)
    tfds.folder_dataset.write_metadata(
        data_dir=str(folder), features=features, split_infos=[split], check_data=False
    )
    records, _ = data.load_records(str(folder), split="train")
    assert records == [PairwiseRecord(r.prompt, r.chosen, r.rejected) for r in EXPECTED[:2]]


def test_array_record_json(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    path = str(tmp_path / "p.array_record")
    writer = ArrayRecordWriter(path, "")
    for row in ROWS:
        writer.write(json.dumps(row).encode())
    writer.write(b"\xff not json")
    writer.close()
    with pytest.raises(data.RecordError, match=r"p\.array_record: row 3: field '<json>'"):
        data.load_records(path)


MALFORMED = [
    ({"prompt": "p", "chosen": "a"}, "rejected", "missing"),
    ({"prompt": "p", "chosen": 3, "rejected": "b"}, "chosen", "wrong type int"),
    ({"prompt": "p", "chosen": "  ", "rejected": "b"}, "chosen", "empty text"),
    ({"prompt": "p", "chosen": "same", "rejected": "same"}, "rejected", "identical"),
    ({"prompt": "p", "chosen": "a", "rejected": "b", "margin": "big"}, "margin", "finite number"),
    (
        {"prompt": [{"role": "bot", "content": "x"}], "chosen": "a", "rejected": "b"},
        "prompt[0].role",
        "",
    ),
]


@pytest.mark.parametrize(("bad", "field", "problem"), MALFORMED)
def test_malformed_jsonl_names_file_line_field(tmp_path, bad, field, problem):
    path = write_jsonl(tmp_path / "bad.jsonl", [ROWS[0], bad, ROWS[1]])
    with pytest.raises(data.RecordError) as info:
        data.load_records(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 2: field '{field}': ")
    assert problem in message and "Fix:" in message
    assert (info.value.location, info.value.field) == ("line 2", field)
    records, report = data.load_records(path, on_error="skip")
    assert records == EXPECTED[:2]
    assert report.num_skipped == 1 and report.skipped == {field.split("[")[0]: 1}
    assert report.examples == (message,)


def test_malformed_parquet_names_row(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = str(tmp_path / "bad.parquet")
    rows = [dict(ROWS[0]), {"prompt": "q", "chosen": "a", "rejected": "", "subset": None}]
    pq.write_table(pa.Table.from_pylist(rows), path)
    with pytest.raises(data.RecordError, match=r"bad\.parquet: row 1: field 'rejected': empty"):
        data.load_records(path)


def test_invalid_json_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n\n{oops\n" + json.dumps(ROWS[1]) + "\n[1, 2\n")
    with pytest.raises(data.RecordError, match=r"j\.jsonl: line 3: field '<json>': invalid JSON"):
        data.load_records(str(path))
    # Skip mode reads past both bad lines (3 and 5) and counts them, as it does a bad field.
    records, report = data.load_records(str(path), on_error="skip")
    assert records == EXPECTED[:2]
    assert (report.num_read, report.num_kept, report.skipped) == (4, 2, {"<json>": 2})
    assert report.examples[0].startswith(f"{path}: line 3: field '<json>': invalid JSON")
    assert report.examples[1].startswith(f"{path}: line 5: field '<json>': invalid JSON")
    assert "skipped 2 (by field: <json>: 2)" in report.summary()


def _write_bytes(path, lines):
    """A JSONL file from byte strings, one line each (for encodings json.dumps cannot write)."""
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return str(path)


def test_non_utf8_line_names_file_line_and_byte(tmp_path):
    good = [json.dumps(r).encode() for r in ROWS[:2]]
    latin1 = b'{"prompt": "p2", "chosen": "caf\xe9", "rejected": "b2"}'  # "café" in Latin-1
    path = _write_bytes(tmp_path / "enc.jsonl", [good[0], latin1, good[1], b"\xff\xfe"])
    with pytest.raises(data.RecordError) as info:
        data.load_records(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line 2: field '<utf-8>': not valid UTF-8")
    assert "byte 0xe9 at column 32" in message and "Fix:" in message
    assert latin1.index(b"\xe9") + 1 == 32  # the column the message names, counted independently
    with pytest.raises(data.RecordError, match=r"enc\.jsonl: line 2: field '<utf-8>'"):
        list(data.read_rows(path))
    records, report = data.load_records(path, on_error="skip")
    assert records == EXPECTED[:2]
    assert (report.num_read, report.num_kept, report.skipped) == (4, 2, {"<utf-8>": 2})
    assert report.examples[0] == message
    assert report.examples[1].startswith(f"{path}: line 4: field '<utf-8>': not valid UTF-8")


def test_utf8_text_crlf_and_byte_order_mark_are_read(tmp_path):
    rows = [{"prompt": "caf\u00e9 \u2615", "chosen": "s\u00ed", "rejected": "no"}, ROWS[1]]
    lines = [json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\r" for r in rows]
    path = _write_bytes(tmp_path / "u.jsonl", [b"\xef\xbb\xbf" + lines[0], lines[1]])
    records, _ = data.load_records(path)
    assert records == [PairwiseRecord("caf\u00e9 \u2615", "s\u00ed", "no"), EXPECTED[1]]


def test_skip_mode_counts_a_bad_array_record_row(tmp_path):
    from array_record.python.array_record_module import ArrayRecordWriter

    path = str(tmp_path / "s.array_record")
    writer = ArrayRecordWriter(path, "")
    for row in [ROWS[0], ROWS[1]]:
        writer.write(json.dumps(row).encode())
    writer.write(b"\xff not json")
    writer.close()
    records, report = data.load_records(path, on_error="skip")
    assert records == EXPECTED[:2] and report.skipped == {"<json>": 1}


def test_all_skipped_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "p"}])
    with pytest.raises(ValueError, match="no valid records"):
        data.load_records(path, on_error="skip")


def test_other_kinds_validate():
    ranked = data.parse_record(
        "ranked", {"prompt": "p", "responses": ["a", "b", "c"], "ranks": [1, 0, 2]}
    )
    assert ranked == RankedRecord("p", ("a", "b", "c"), (1, 0, 2))
    with pytest.raises(data.RecordError, match="field 'ranks'"):
        data.parse_record("ranked", {"prompt": "p", "responses": ["a", "b"], "ranks": [0]})
    with pytest.raises(data.RecordError, match=r"field 'ranks\[1\]'"):
        data.parse_record("ranked", {"prompt": "p", "responses": ["a", "b"], "ranks": [0, -1]})
    unpaired = data.parse_record("unpaired", {"prompt": "", "response": "r", "desirable": False})
    assert unpaired == data.UnpairedRecord("", "r", False)
    with pytest.raises(data.RecordError, match="field 'desirable'"):
        data.parse_record("unpaired", {"prompt": "", "response": "r", "desirable": "yes"})
    assert data.parse_record("sft", {"prompt": "p", "response": "r"}) == SFTRecord("p", "r")
    with pytest.raises(data.RecordError, match=r"field 'ratings\.a'"):
        data.parse_record("rating", {"prompt": "p", "response": "r", "ratings": {"a": None}})


def test_adapter_hh():
    raw = {
        "chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: Knock knock.",
        "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Joke?\n\nAssistant: No.",
    }
    kind, canonical = data.adapt("hh", raw)
    prompt = (Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Joke?"))
    assert data.parse_record(kind, canonical) == PairwiseRecord(prompt, "Knock knock.", "No.")
    raw["rejected"] = "\n\nHuman: Bye\n\nAssistant: No."
    with pytest.raises(data.FieldError, match="'rejected': does not share"):
        data.adapt("hh", raw)


def test_adapter_ultrafeedback_binarized():
    user = {"role": "user", "content": "Q"}
    raw = {
        "prompt": "Q",
        "chosen": [user, {"role": "assistant", "content": "good"}],
        "rejected": [user, {"role": "assistant", "content": "bad"}],
        "score_chosen": 9.0,
        "score_rejected": 4.5,
    }
    kind, canonical = data.adapt("ultrafeedback_binarized", raw)
    expected = PairwiseRecord(
        (Message("user", "Q"),),
        (Message("assistant", "good"),),
        (Message("assistant", "bad"),),
        4.5,
    )
    assert data.parse_record(kind, canonical) == expected


def test_adapter_helpsteer2():
    attrs = {"helpfulness": 3, "correctness": 4, "coherence": 4, "complexity": 1, "verbosity": 2}
    kind, canonical = data.adapt("helpsteer2", {"prompt": "Q", "response": "A", **attrs})
    expected = RatingRecord(
        (Message("user", "Q"),), "A", tuple(sorted((k, float(v)) for k, v in attrs.items()))
    )
    assert data.parse_record(kind, canonical) == expected
    with pytest.raises(data.FieldError, match="'verbosity': missing"):
        data.adapt("helpsteer2", {"prompt": "Q", "response": "A", **attrs, "verbosity": None})


def test_adapter_rewardbench_from_file(tmp_path):
    rows = [
        {"prompt": "Q1", "chosen": "A", "rejected": "B", "subset": "chat", "id": 1},
        {"prompt": "Q2", "chosen": "C", "rejected": "C", "subset": "safety", "id": 2},
    ]
    path = write_jsonl(tmp_path / "rb.jsonl", rows)
    with pytest.raises(data.RecordError, match=r"rb\.jsonl: line 2: field 'rejected': identical"):
        data.load_records(path, layout="rewardbench")
    records, report = data.load_records(path, layout="rewardbench", on_error="skip")
    assert records == [PairwiseRecord((Message("user", "Q1"),), "A", "B", 0.0, "chat")]
    assert report.skipped == {"rejected": 1}


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown data layout"):
        data.adapt("nope", {})
    with pytest.raises(ValueError, match="cannot tell the format"):
        list(data.read_rows(os.path.join("x", "file.csv")))


def test_glob_of_parquet_shards(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    for i, row in enumerate(TABLE_ROWS):
        pq.write_table(
            pa.Table.from_pylist([row]), str(tmp_path / f"train-{i:05d}-of-00002.parquet")
        )
    records, report = data.load_records(str(tmp_path / "train-*.parquet"))
    assert records == EXPECTED[:2] and report.num_read == 2
    with pytest.raises(FileNotFoundError, match="no file matches"):
        data.load_records(str(tmp_path / "test-*.parquet"))
