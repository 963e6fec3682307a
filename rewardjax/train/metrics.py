"""Metric writers: one JSON object per line in `<workdir>/metrics.jsonl` and TensorBoard events.

The event file is a TFRecord file of `tensorflow.Event` protocol buffers holding scalar summaries,
built with the `tensorboard` package's protocol buffers (`event_pb2`, `summary_pb2`) and record
writer (length, masked CRC-32C, payload, masked CRC-32C). The record writer is used on a plain file
rather than through `EventFileWriter`, which would import TensorFlow when it is installed; neither
TensorFlow nor PyTorch is imported (about 0.1 s of imports after jax).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import socket
import time
from collections.abc import Mapping

import jax
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

__all__ = ["MetricWriter", "read_jsonl"]

_FLOAT32_MAX = 3.4028234663852886e38


def _float32(value: float) -> float:
    """`value` as TensorBoard's float32 `simple_value`: beyond float32's range it is infinite."""
    if math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        return math.copysign(math.inf, value)
    return value


def _check_step(step: object) -> int:
    """The step as a Python int; a negative or non-integer step is a ValueError."""
    if isinstance(step, bool) or not float(step).is_integer() or int(step) < 0:
        raise ValueError(
            f"MetricWriter.write: step={step!r} is invalid: it must be an integer >= 0 (the "
            "optimiser step the metrics belong to)."
        )
    return int(step)


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
        self._events = RecordWriter(open(os.path.join(self.tensorboard_dir, name), "wb"))
        self._add_event(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _add_event(self, event: event_pb2.Event) -> None:
        self._events.write(event.SerializeToString())
        self._events.flush()

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Writes `metrics` at `step` (an integer >= 0, else ValueError); non-finite values are
        written as JSON null (TensorBoard keeps them as float32 NaN / ±inf)."""
        step = _check_step(step)
        if not self.active:
            return
        values = {name: float(value) for name, value in metrics.items()}
        record = {"step": step}
        record.update({k: v if math.isfinite(v) else None for k, v in values.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(tag=name, simple_value=_float32(value))
                for name, value in values.items()
            ]
        )
        self._add_event(event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        if not self.active:
            return
        self._jsonl.close()
        self._events.close()


def read_jsonl(path: str) -> list[dict]:
    """The records of a metrics JSONL file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
