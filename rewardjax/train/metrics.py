"""Metric writers: one JSON object per line in `<workdir>/metrics.jsonl` and TensorBoard events."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import jax
import tensorboardX

__all__ = ["MetricWriter", "read_jsonl"]


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
        self._tb = tensorboardX.SummaryWriter(self.tensorboard_dir)

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        """Writes `metrics` at `step`; non-finite values are written as JSON null."""
        if not self.active:
            return
        record = {"step": int(step)}
        for name, value in metrics.items():
            value = float(value)
            record[name] = value if math.isfinite(value) else None
            self._tb.add_scalar(name, value, int(step))
        self._jsonl.write(json.dumps(record) + "\n")
        self._jsonl.flush()
        self._tb.flush()

    def close(self) -> None:
        if not self.active:
            return
        self._jsonl.close()
        self._tb.close()


def read_jsonl(path: str) -> list[dict]:
    """The records of a metrics JSONL file, in order."""
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
