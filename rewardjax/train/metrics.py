"""Metric writers: one JSON object per line in `<workdir>/metrics.jsonl` and TensorBoard events.

The event file is written here directly: a TFRecord file (length, masked CRC-32C, payload,
masked CRC-32C) of `tensorflow.Event` protocol buffers holding scalar summaries, encoded by hand.
That is all TensorBoard needs for scalars, and it spares every run the import of a TensorBoard
writer library (tensorboardX imports PyTorch when it is installed: seconds per process).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import struct
import time
from collections.abc import Mapping

import jax

__all__ = ["MetricWriter", "read_jsonl"]


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli, reflected
        table.append(crc)
    return table


_CRC32C = _crc32c_table()


def _masked_crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings and sub-messages)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _event(wall_time: float, step: int, **what: bytes) -> bytes:
    """`tensorflow.Event`: wall_time = 1 (double), step = 2 (int64), file_version = 3 and
    summary = 5 (length-delimited)."""
    numbers = {"file_version": 3, "summary": 5}
    body = b"\x09" + struct.pack("<d", wall_time) + b"\x10" + _varint(step)
    return body + b"".join(_field(numbers[k], v) for k, v in what.items())


def _float32(value: float) -> bytes:
    if math.isfinite(value) and abs(value) > 3.4028234663852886e38:  # beyond float32: infinite
        value = math.copysign(math.inf, value)
    return struct.pack("<f", value)


def _scalars(metrics: Mapping[str, float]) -> bytes:
    """`tensorflow.Summary` of `Value`s with tag = 1 (string) and simple_value = 2 (float)."""
    return b"".join(
        _field(1, _field(1, name.encode()) + b"\x15" + _float32(value))
        for name, value in metrics.items()
    )


_FILE_IDS = itertools.count()


class MetricWriter:
    """Appends scalar metrics to `<workdir>/metrics.jsonl` and `<workdir>/tensorboard/`.

    Appending (not truncating) keeps the history of a resumed run in one file. In a multi-process
    run only process 0 writes; the writers of the other processes do nothing.
    """

    def __init__(self, workdir: str):
        self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
        self.tensorboard_dir = os.path.join(workdir, "tensorboard")
        self.active = jax.process_index() == 0
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        self._jsonl = open(self.jsonl_path, "a", encoding="utf-8")
        os.makedirs(self.tensorboard_dir, exist_ok=True)
        # TensorFlow's naming; the pid and a counter keep writers opened in one second apart.
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}"
        name += f".{os.getpid()}.{next(_FILE_IDS)}"
        self._events = open(os.path.join(self.tensorboard_dir, name), "wb")
        self._record(_event(time.time(), 0, file_version=b"brain.Event:2"))

    def _record(self, data: bytes) -> None:
        length = struct.pack("<Q", len(data))
        crcs = [struct.pack("<I", _masked_crc32c(part)) for part in (length, data)]
        self._events.write(length + crcs[0] + data + crcs[1])

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Writes `metrics` at `step`; non-finite values are written as JSON null."""
        if not self.active:
            return
        values = {name: float(value) for name, value in metrics.items()}
        record = {"step": int(step)}
        record.update({k: v if math.isfinite(v) else None for k, v in values.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._record(_event(time.time(), int(step), summary=_scalars(values)))
        self._events.flush()

    def close(self) -> None:
        if not self.active:
            return
        self._jsonl.close()
        self._events.close()


def read_jsonl(path: str) -> list[dict]:
    """The records of a metrics JSONL file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
