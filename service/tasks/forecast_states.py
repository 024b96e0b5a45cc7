"""A user's streaming forecaster: the step graph's own state tensors carried per session.

Ours carries a fixed `StreamState`; a user's step graph names its states `state0..stateN`
(batch first) and returns `stateI_out`. The chunks of many sessions still run as one batch:
states are stacked along their first axis and each row's new state is cut back out.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.series import unscale
from service.batching import Batcher
from service.codecs import OutputTensor
from service.errors import BadRequest
from service.protocol import MetadataTensor
from service.tasks.base import NO_ATTENTION_OUTPUT, TaskContext, parse_parameters
from service.tasks.forecast import (
    LENGTHS,
    VALUES,
    Chunk,
    ForecastParameters,
    ForecastTask,
    StepResult,
    padded_chunks,
)

MAGIC = b"RST1"


@dataclass(frozen=True, slots=True)
class StateTensors:
    """One session's state: each state tensor's row, in the graph's order."""

    arrays: tuple[np.ndarray, ...]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    # For a shared store: magic, count, then per tensor its dtype and shape, then the data.
    def to_bytes(self) -> bytes:
        head = [MAGIC, struct.pack("<I", len(self.arrays))]
        for a in self.arrays:
            kind = a.dtype.str.encode()
            head.append(struct.pack(f"<B{len(kind)}sB{a.ndim}I", len(kind), kind, a.ndim, *a.shape))
        return b"".join(head) + b"".join(np.ascontiguousarray(a).tobytes() for a in self.arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> StateTensors:
        if data[:4] != MAGIC:
            raise ValueError(f"not a state of tensors (magic {data[:4]!r})")
        (count,), offset, specs = struct.unpack_from("<I", data, 4), 8, []
        for _ in range(count):
            (n,) = struct.unpack_from("<B", data, offset)
            kind = data[offset + 1 : offset + 1 + n].decode()
            offset += 1 + n
            (ndim,) = struct.unpack_from("<B", data, offset)
            shape = struct.unpack_from(f"<{ndim}I", data, offset + 1)
            offset += 1 + 4 * ndim
            specs.append((np.dtype(kind), shape))
        arrays = []
        for kind, shape in specs:
            size = kind.itemsize * int(np.prod(shape))
            arrays.append(
                np.frombuffer(data, kind, int(np.prod(shape)), offset).reshape(shape).copy()
            )
            offset += size
        if offset != len(data):
            raise ValueError(f"a state of tensors with {len(data) - offset} bytes left over")
        return cls(tuple(arrays))


class StateForecastTask(ForecastTask):
    """A user's forecaster (manifest origin `module`): forecasts, no attention."""

    def __init__(self, ctx: TaskContext) -> None:
        manifest, prep = ctx.manifest, ctx.manifest.preprocessing
        if prep is None or prep.kind != "series" or "step" not in manifest.graphs:
            raise ValueError("a forecaster needs series preprocessing and a 'step' graph")
        self.mean, self.std = prep.mean, prep.std
        self.window, self.horizon, self.max_values = prep.window, prep.horizon, prep.max_values
        graph = manifest.graphs["step"]
        self.state_specs = [t for t in graph.inputs if t.name not in (VALUES, LENGTHS)]
        self.session, self.provider = ctx.create_inference_session(ctx.folder / graph.file)
        self.max_waste = ctx.limits.max_padding_waste
        self.max_batch = ctx.limits.max_batch_size
        self.batcher = Batcher(self.run, ctx.limits, ctx.on_batch)
        self.inputs = [
            MetadataTensor(name=VALUES, datatype="FP32", shape=[-1, -1]),
            MetadataTensor(name=LENGTHS, datatype="INT64", shape=[-1]),
        ]
        self.outputs = [MetadataTensor(name="forecast", datatype="FP32", shape=[-1, self.horizon])]

    def new_state(self) -> StateTensors:  # type: ignore[override]
        return StateTensors(
            tuple(np.zeros([int(d) for d in t.shape[1:]], t.dtype) for t in self.state_specs)
        )

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        if parse_parameters(ForecastParameters, parameters).attention:
            raise BadRequest(NO_ATTENTION_OUTPUT)
        return await super().predict(instances, parameters, timeout)

    async def step(  # type: ignore[override]
        self, state: StateTensors, values: np.ndarray, attention: bool, timeout: float
    ) -> tuple[dict[str, Any], StateTensors]:
        if attention:
            raise BadRequest(NO_ATTENTION_OUTPUT)
        return await super().step(state, values, attention, timeout)  # type: ignore[arg-type]

    def respond(self, result: StepResult, attention: bool) -> dict[str, Any]:
        return {"forecast": result.forecast.tolist()}

    def run(self, items: list[Chunk]) -> list[StepResult]:
        results: list[StepResult | None] = [None] * len(items)
        for group, chunk, lengths in padded_chunks(items, self.max_batch, self.max_waste):
            feed = {VALUES: chunk, LENGTHS: lengths}
            for k, spec in enumerate(self.state_specs):
                feed[spec.name] = np.stack([items[i].state.arrays[k] for i in group])
            forecast, *states = self.session.run(None, feed)
            forecast = unscale(forecast, self.mean, self.std)
            for row, i in enumerate(group):
                new = StateTensors(tuple(s[row].copy() for s in states))
                results[i] = StepResult(forecast[row], None, new)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        parse_parameters(ForecastParameters, parameters, v2=True)
        results = await self.batcher.submit(self.prepare_tensors(arrays), timeout)
        forecast = np.stack([r.forecast for r in results]).astype(np.float32)
        return [OutputTensor("forecast", "FP32", forecast)]


def serving(ctx: TaskContext) -> ForecastTask:
    """The forecast task's serving class for a version: ours, or a user's step module's."""
    return StateForecastTask(ctx) if ctx.manifest.origin == "module" else ForecastTask(ctx)
