"""Any ONNX graph (task `tensor`): tensors in, tensors out, checked against the graph's specs.

Requests are batched along the first axis when every input's first axis is the same dynamic
axis and every output follows it; only requests whose other dimensions agree are stacked into
one run. V2 sends the graph's inputs by name; V1 sends `{"instances": [{input: row}, ...]}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.dtypes import V2_OF_DTYPE
from contract.manifest import TensorSpec
from service.batching import Batcher
from service.codecs import OutputTensor
from service.errors import InputError, InternalError
from service.protocol import MetadataTensor
from service.tasks.base import TaskContext


def v2_type(spec: TensorSpec) -> str:
    return V2_OF_DTYPE[spec.dtype]


def metadata(spec: TensorSpec) -> MetadataTensor:
    shape = [d if isinstance(d, int) else -1 for d in spec.shape]
    return MetadataTensor(name=spec.name, datatype=v2_type(spec), shape=shape)


def expected(spec: TensorSpec) -> str:
    """`x` FP32 [-1, 4] (batch, 4): what a request must send."""
    dims = ", ".join(str(d) for d in spec.shape)
    return f"{spec.name!r} {v2_type(spec)} {metadata(spec).shape} ({dims})"


def array_type(array: np.ndarray) -> str:
    return "BYTES" if array.dtype == object else V2_OF_DTYPE.get(array.dtype.name, array.dtype.name)


@dataclass(slots=True)
class Feed:
    """One request's inputs, and what decides which requests may be stacked with it."""

    arrays: dict[str, np.ndarray]
    rows: int
    key: tuple


class TensorTask:
    """An ONNX graph made elsewhere, served as its inputs and outputs say."""

    def __init__(self, ctx: TaskContext) -> None:
        graph = ctx.manifest.graphs["model"]
        self.input_specs, self.output_specs = graph.inputs, graph.outputs
        self.graph, self.provider = ctx.create_inference_session(ctx.folder / graph.file)
        firsts = {s.shape[0] if s.shape else None for s in self.input_specs}
        self.batched = (
            len(firsts) == 1
            and isinstance(next(iter(firsts)), str)
            and all(s.shape and isinstance(s.shape[0], str) for s in self.output_specs)
        )
        self.names = [s.name for s in self.output_specs]
        self.batcher = Batcher(self.run, ctx.limits, ctx.on_batch)
        self.inputs = [metadata(s) for s in self.input_specs]
        self.outputs = [metadata(s) for s in self.output_specs]

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    def warm_up(self) -> None:
        """One run of an example; a batched graph must give as many output rows as input."""
        feed = {}
        for spec in self.input_specs:
            shape = [d if isinstance(d, int) else 2 for d in spec.shape]
            if spec.dtype == "string":
                feed[spec.name] = np.full(shape, "", dtype=object)
            else:
                feed[spec.name] = np.zeros(shape, spec.dtype)
        (result,) = self.run([self.check(feed)])
        if self.batched and any(len(r) != 2 for r in result):
            self.batched = False  # its outputs do not follow the first axis: one run a request

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        (result,) = await self.batcher.submit([self.check(arrays)], timeout)
        return [
            OutputTensor(s.name, v2_type(s), r)
            for s, r in zip(self.output_specs, result, strict=True)
        ]

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        """V1: each instance a row of every input, by name; each prediction a row of every
        output (a graph without a batch axis takes each instance as its whole input)."""
        names = [s.name for s in self.input_specs]
        for i, instance in enumerate(instances):
            if not isinstance(instance, dict) or sorted(instance) != sorted(names):
                got = sorted(instance) if isinstance(instance, dict) else type(instance).__name__
                raise InputError(
                    f"instances[{i}] must be an object with the inputs {names}, got {got}"
                )
        if self.batched:
            feeds = [self.check(self._stack(instances, names))]
        else:
            feeds = [self.check(self._stack([x], names, row=False)) for x in instances]
        results = await self.batcher.submit(feeds, timeout)
        if self.batched:
            (result,) = results
            return [
                {n: r[i].tolist() for n, r in zip(self.names, result, strict=True)}
                for i in range(len(instances))
            ]
        return [
            {n: r.tolist() for n, r in zip(self.names, result, strict=True)} for result in results
        ]

    def _stack(self, instances: list[dict], names: list[str], row: bool = True) -> dict:
        arrays = {}
        for spec in self.input_specs:
            values = [x[spec.name] for x in instances]
            try:
                if spec.dtype == "string":
                    if not all(isinstance(v, str) for v in np.ravel(np.array(values, object))):
                        raise ValueError("expected strings")
                    array = np.array(values, dtype=object)
                else:
                    array = np.array(values, dtype=spec.dtype)
            except (ValueError, TypeError, OverflowError) as error:
                raise InputError(
                    f"input {spec.name!r}: {error}; expected {expected(spec)}"
                ) from None
            arrays[spec.name] = array if row else array[0]
        return arrays

    def check(self, arrays: dict[str, np.ndarray]) -> Feed:
        """Every input the graph takes, of its dtype and shape; nothing else."""
        wanted = [s.name for s in self.input_specs]
        if sorted(arrays) != sorted(wanted):
            raise InputError(
                f"inputs {sorted(arrays)}: this model takes "
                + ", ".join(expected(s) for s in self.input_specs)
            )
        rows = set()
        for spec in self.input_specs:
            array = arrays[spec.name]
            if array_type(array) != v2_type(spec):
                raise InputError(
                    f"input {spec.name!r} is {array_type(array)}; expected {expected(spec)}"
                )
            fits = array.ndim == len(spec.shape) and all(
                isinstance(d, str) or d == n for d, n in zip(spec.shape, array.shape, strict=False)
            )
            if not fits:
                raise InputError(
                    f"input {spec.name!r} has shape {list(array.shape)}; expected {expected(spec)}"
                )
            if self.batched:
                rows.add(array.shape[0])
        if len(rows) > 1:
            raise InputError(f"the inputs' first axes (the batch) differ: {sorted(rows)}")
        key = tuple(arrays[s.name].shape[1:] for s in self.input_specs)
        return Feed(arrays, rows.pop() if rows else 1, key)

    def run(self, feeds: list[Feed]) -> list[list[np.ndarray]]:
        """One batch from the batcher: requests of equal other dimensions stacked in one run."""
        results: list[list[np.ndarray] | None] = [None] * len(feeds)
        groups: dict[tuple, list[int]] = {}
        for i, feed in enumerate(feeds):
            groups.setdefault(feed.key if self.batched else (i,), []).append(i)
        for members in groups.values():
            if len(members) == 1:
                stacked = feeds[members[0]].arrays
            else:
                stacked = {
                    name: np.concatenate([feeds[i].arrays[name] for i in members])
                    for name in feeds[members[0]].arrays
                }
            outputs = self.graph.run(self.names, stacked)
            if len(members) == 1:
                results[members[0]] = outputs
                continue
            total = sum(feeds[i].rows for i in members)
            if any(len(o) != total for o in outputs):
                raise InternalError("the graph's outputs do not follow its inputs' first axis")
            start = 0
            for i in members:
                end = start + feeds[i].rows
                results[i] = [o[start:end] for o in outputs]
                start = end
        return results  # type: ignore[return-value]

    async def drain(self) -> None:
        await self.batcher.drain()

    def close(self) -> None:
        self.batcher.close()
