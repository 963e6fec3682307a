"""Readers for local record files, and `load_records`: read, adapt, validate, count what is skipped.

Formats (by `format=` or guessed from the path):
- "jsonl": one JSON object per line (`*.jsonl`, `*.json`); locations are 1-based lines.
- "parquet": `*.parquet` via pyarrow; locations are 0-based rows.
- "hf_disk": a folder written by `datasets.Dataset.save_to_disk` (a `DatasetDict` needs `split=`).
- "tfds": a TFDS dataset folder in array_record format (the folder holding `dataset_info.json`),
  read through `tfds.builder_from_directory(...).as_data_source(split)`; no TensorFlow needed.
  A folder is read as "tfds" when it holds `features.json`, else as "hf_disk".
- "array_record": `*.array_record` files whose records are UTF-8 JSON objects.
Hugging Face data files (JSON lines, Parquet) are read by the first two readers directly.
"""

from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

from absl import logging

from rewardjax.data.adapters import adapt
from rewardjax.data.records import FieldError, Record, RecordError, parse_record

__all__ = ["FORMATS", "LoadReport", "load_records", "read_rows"]

FORMATS = ("jsonl", "parquet", "hf_disk", "tfds", "array_record")


def _bad_row(path: str, location: str, field: str, problem: str, fix: str) -> RecordError:
    """A row that could not be decoded, yielded in place of the row (not raised) so that
    `load_records` decides: raise it, or skip and count it and read on."""
    return RecordError(path, location, field, problem, fix)


def _decode_line(data: bytes, path: str, location: str) -> Any:
    """One JSONL line (bytes) as a JSON value, or the `RecordError` that says why it is not one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return _bad_row(
            path,
            location,
            "<utf-8>",
            f"not valid UTF-8 (byte 0x{data[e.start]:02x} at column {e.start + 1}: {e.reason})",
            "save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8` if it is Latin-1",
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        return _bad_row(
            path, location, "<json>", f"invalid JSON ({e})", "write one JSON object on the line"
        )


def _jsonl(path: str, split: str | None) -> Iterator[tuple[str, Any]]:
    del split
    # Bytes, decoded line by line: one bad line is named (and skippable), not the whole file.
    with open(path, "rb") as f:
        for i, line in enumerate(f, start=1):
            if i == 1 and line.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark
                line = line[3:]
            if not line.strip():
                continue
            yield f"line {i}", _decode_line(line, path, f"line {i}")


def _parquet(path: str, split: str | None) -> Iterator[tuple[str, Any]]:
    del split
    import pyarrow.parquet as pq

    for i, row in enumerate(pq.read_table(path).to_pylist()):
        yield f"row {i}", row


def _hf_disk(path: str, split: str | None) -> Iterator[tuple[str, Any]]:
    import datasets

    ds = datasets.load_from_disk(path)
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise ValueError(f"{path}: a DatasetDict; pass split= one of {sorted(ds)}")
        ds = ds[split]
    for i, row in enumerate(ds):
        yield f"row {i}", row


def _decode_bytes(value: Any) -> Any:
    """TFDS Text features come back as bytes; records want str."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, Mapping):
        return {k: _decode_bytes(v) for k, v in value.items()}
    if hasattr(value, "tolist"):  # numpy arrays/scalars of sequence features
        return _decode_bytes(value.tolist())
    if isinstance(value, list | tuple):
        return [_decode_bytes(v) for v in value]
    return value


def _tfds(path: str, split: str | None) -> Iterator[tuple[str, Any]]:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(path)
    if split is None:
        raise ValueError(
            f"{path}: a TFDS dataset; pass split= one of {sorted(builder.info.splits)}"
        )
    source = builder.as_data_source(split=split)
    for i in range(len(source)):
        yield f"row {i}", _decode_bytes(source[i])


def _array_record(path: str, split: str | None) -> Iterator[tuple[str, Any]]:
    del split
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(path)
    try:
        for i in range(reader.num_records()):
            try:
                yield f"row {i}", json.loads(reader.read([i])[0].decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                problem = f"not a UTF-8 JSON record ({e})"
                yield f"row {i}", _bad_row(path, f"row {i}", "<json>", problem, "write JSON")
    finally:
        reader.close()


_READERS = {
    "jsonl": _jsonl,
    "parquet": _parquet,
    "hf_disk": _hf_disk,
    "tfds": _tfds,
    "array_record": _array_record,
}


def _guess_format(path: str) -> str:
    if os.path.isdir(path):
        # TFDS writes features.json; save_to_disk writes state.json or dataset_dict.json.
        return "tfds" if os.path.exists(os.path.join(path, "features.json")) else "hf_disk"
    for suffix, fmt in ((".jsonl", "jsonl"), (".json", "jsonl"), (".parquet", "parquet")):
        if path.endswith(suffix):
            return fmt
    if ".array_record" in os.path.basename(path):
        return "array_record"
    raise ValueError(f"{path}: cannot tell the format from the name; pass format= one of {FORMATS}")


def _rows(path: str, format: str | None, split: str | None) -> Iterator[tuple[str, Any]]:
    """(location, raw row or the `RecordError` of a row that could not be decoded)."""
    fmt = format or _guess_format(path)
    if fmt not in _READERS:
        raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or folder")
    return _READERS[fmt](path, split)


def _raise_bad_rows(rows: Iterator[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
    for location, raw in rows:
        if isinstance(raw, RecordError):
            raise raw
        yield location, raw


def read_rows(
    path: str, *, format: str | None = None, split: str | None = None
) -> Iterator[tuple[str, Any]]:
    """Yields (location, raw row) from a local file or folder; location is "line i" or "row i".

    Raises:
      RecordError: at a row that is not valid UTF-8 or not JSON (JSONL, array_record), naming
        the file and line/row (`load_records(on_error="skip")` skips and counts such rows).
    """
    return _raise_bad_rows(_rows(path, format, split))


@dataclasses.dataclass(frozen=True)
class LoadReport:
    """What `load_records` read and skipped. `skipped` counts by field; `examples` are messages."""

    source: str
    num_read: int
    num_kept: int
    skipped: Mapping[str, int]
    examples: tuple[str, ...]

    @property
    def num_skipped(self) -> int:
        return self.num_read - self.num_kept

    def summary(self) -> str:
        by_field = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (
            f"{self.source}: read {self.num_read}, kept {self.num_kept}, "
            f"skipped {self.num_skipped} (by field: {by_field})"
        )


def load_records(
    path: str,
    *,
    layout: str = "pairwise",
    format: str | None = None,
    split: str | None = None,
    on_error: str = "raise",
    max_examples: int = 5,
) -> tuple[list[Record], LoadReport]:
    """Reads `path`, maps each row through the named `layout` adapter and validates it.

    Args:
      path: a local file or folder (see the module docstring for formats), or a glob pattern
        (e.g. the shards "data/train-*.parquet" of a Hugging Face dataset), read in sorted order.
      layout: a key of `adapters.ADAPTERS` ("hh", "ultrafeedback_binarized", "helpsteer2",
        "rewardbench", or a canonical kind: "pairwise", "ranked", "rating", "unpaired", "sft").
      format: one of `FORMATS`; guessed from the path when None.
      split: the split of a `DatasetDict` or TFDS folder.
      on_error: "raise" stops at the first malformed row with a `RecordError` naming file, line/row
        and field; "skip" drops it, counts it by field in the report and logs the summary. A line
        that is not valid UTF-8 counts under the field "<utf-8>", one that is not JSON "<json>".
      max_examples: how many skip messages the report keeps.

    Returns:
      (records, report).
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    files = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    if not files:
        raise FileNotFoundError(f"{path}: no file matches")
    records, skipped, examples, num_read = [], collections.Counter(), [], 0
    for file, (location, raw) in ((f, row) for f in files for row in _rows(f, format, split)):
        num_read += 1
        try:
            if isinstance(raw, RecordError):  # not UTF-8 or not JSON
                raise raw
            try:
                kind, canonical = adapt(layout, raw)
            except FieldError as e:
                raise RecordError(file, location, e.field, e.problem, e.fix) from None
            records.append(parse_record(kind, canonical, source=file, location=location))
        except RecordError as e:
            if on_error == "raise":
                raise
            skipped[e.field.split("[")[0].split(".")[0]] += 1
            if len(examples) < max_examples:
                examples.append(str(e))
    report = LoadReport(path, num_read, len(records), dict(skipped), tuple(examples))
    if num_read != len(records):
        logging.warning("%s; first: %s", report.summary(), examples[0])
    if not records:
        raise ValueError(f"{report.summary()}: no valid records")
    return records, report
