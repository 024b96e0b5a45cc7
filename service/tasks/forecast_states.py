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

from contract.manifest import GraphSpec
from contract.series import unscale
from service.errors import InputError
from service.tasks.base import NO_ATTENTION_OUTPUT, TaskContext, parse_parameters
from service.tasks.forecast import (
    LENGTHS,
    VALUES,
    Chunk,
    ForecastParameters,
    ForecastTask,
    StepInput,
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

    def read_graph(self, graph: GraphSpec) -> None:
        self.state_specs = [t for t in graph.inputs if t.name not in (VALUES, LENGTHS)]

    def open_state(self) -> StateTensors:
        return StateTensors(
            tuple(np.zeros([int(d) for d in t.shape[1:]], t.dtype) for t in self.state_specs)
        )

    def decode_state(self, data: bytes) -> StateTensors:
        return StateTensors.from_bytes(data)

    def check_step(self, values: list[Any], parameters: dict[str, Any]) -> StepInput:
        """A user's step graph has no attention: asking for it is an error, not ignored."""
        checked = super().check_step(values, parameters)
        if checked.attention:
            raise InputError(NO_ATTENTION_OUTPUT)
        return checked

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        if parse_parameters(ForecastParameters, parameters).attention:
            raise InputError(NO_ATTENTION_OUTPUT)
        return await super().predict(instances, parameters, timeout)

    def run(self, items: list[Chunk]) -> list[StepResult]:
        results: list[StepResult | None] = [None] * len(items)
        for group, chunk, lengths in padded_chunks(items, self.max_batch, self.max_waste):
            feed = {VALUES: chunk, LENGTHS: lengths}
            for k, spec in enumerate(self.state_specs):
                feed[spec.name] = np.stack([items[i].state.arrays[k] for i in group])
            forecast, *states = self.graph.run(None, feed)
            forecast = unscale(forecast, self.mean, self.std)
            for row, i in enumerate(group):
                new = StateTensors(tuple(s[row].copy() for s in states))
                results[i] = StepResult(forecast[row], None, new)
        return results  # type: ignore[return-value]


def serving(ctx: TaskContext) -> ForecastTask:
    """The forecast task's serving class for a version: ours, or a user's step module's."""
    return StateForecastTask(ctx) if ctx.manifest.origin == "module" else ForecastTask(ctx)
