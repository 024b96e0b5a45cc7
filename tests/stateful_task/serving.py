"""The runningmean task's serving pipeline: a graph adds new values to a carried (total,
count) and answers the mean so far. Stateless predictions start from nothing."""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from service.batching import Batcher
from service.codecs import OutputTensor
from service.errors import InputError
from service.protocol import MetadataTensor
from service.tasks.base import TaskContext

STATE = struct.Struct("<dd")  # total, count: how the state travels to a shared store


class RunningMeanTask:
    """Numbers in, their mean (with what the session saw before) out."""

    def __init__(self, ctx: TaskContext) -> None:
        self.max_values = ctx.manifest.preprocessing.max_values
        graph = ctx.folder / ctx.manifest.graphs["step"].file
        self.graph, self.provider = ctx.create_inference_session(graph)
        self.batcher = Batcher(self.run, ctx.limits, ctx.on_batch)
        self.inputs = [MetadataTensor(name="values", datatype="FP32", shape=[1, -1])]
        self.outputs = [MetadataTensor(name="mean", datatype="FP32", shape=[1])]
        self.state_bytes = STATE.size
        self.session_facts = {"max_values": self.max_values}

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    # -- the streaming capability --------------------------------------------------------------

    def open_state(self) -> tuple[float, float]:
        return (0.0, 0.0)

    def encode_state(self, state: tuple[float, float]) -> bytes:
        return STATE.pack(*state)

    def decode_state(self, data: bytes) -> tuple[float, float]:
        return STATE.unpack(data)

    def check_step(self, values: list[Any], parameters: dict[str, Any]) -> np.ndarray:
        if parameters:
            raise InputError(f"parameters: this model takes none, got {sorted(parameters)}")
        return self.check(values, "values")

    async def step(
        self, state: tuple[float, float], checked: np.ndarray, timeout: float
    ) -> tuple[dict[str, Any], tuple[float, float]]:
        ((mean, total, count),) = await self.batcher.submit([(state, checked)], timeout)
        return {"mean": mean}, (total, count)

    # -- stateless ---------------------------------------------------------------------------

    def check(self, values: Any, where: str) -> np.ndarray:
        if not isinstance(values, list) or not 1 <= len(values) <= self.max_values:
            raise InputError(f"{where} must be a list of 1..{self.max_values} numbers", where)
        for i, x in enumerate(values):
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise InputError(f"{where}[{i}] must be a finite number, got {x!r}", where)
        return np.array(values, np.float32)

    def run(self, items: list[tuple[tuple[float, float], np.ndarray]]) -> list[tuple]:
        """One item at a time: steps of different lengths do not stack without padding."""
        results = []
        for (total, count), values in items:
            feed = {
                "total": np.array([total], np.float32),
                "count": np.array([count], np.float32),
                "values": values[None, :],
            }
            mean, new_total, new_count = self.graph.run(None, feed)
            results.append((float(mean[0]), float(new_total[0]), float(new_count[0])))
        return results

    def warm_up(self) -> None:
        self.run([(self.open_state(), np.ones(2, np.float32))])

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        items = [
            (self.open_state(), self.check(x, f"instances[{i}]")) for i, x in enumerate(instances)
        ]
        return [{"mean": r[0]} for r in await self.batcher.submit(items, timeout)]

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        if set(arrays) != {"values"} or arrays["values"].ndim != 2:
            raise InputError("this model takes one input, 'values' (FP32 [1, n])")
        items = [(self.open_state(), row.astype(np.float32)) for row in arrays["values"]]
        results = await self.batcher.submit(items, timeout)
        return [OutputTensor("mean", "FP32", np.array([r[0] for r in results], np.float32))]

    async def drain(self) -> None:
        await self.batcher.drain()

    def close(self) -> None:
        self.batcher.close()
