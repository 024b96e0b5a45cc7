"""Forecasting: numbers -> scaled chunk + carried state -> batched step graph -> next k values.

One step graph serves both ways of asking: a stateless `:predict` is a fresh state fed the whole
window at once, and a session step is the session's state fed only the new values. Items carry
their own state, so chunks of many sessions (of any lengths) run as one batch: the states are
stacked into the batch's inputs and each row's new state is cut back out of its outputs.

The state is the step graph's own state tensors, whatever they are: each is stacked along the
axis its spec names "batch" (a user's are batch first; our first release kept the GRU's state
as [layers, batch, hidden]). The attention is answered where the graph has an "attention"
output, and asking for it of a graph without one is an input error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from contract.manifest import GraphSpec
from contract.series import check_values, scale, unscale
from service.batching import Batcher
from service.codecs import OutputTensor
from service.errors import InputError
from service.protocol import MetadataTensor
from service.tasks.base import NO_ATTENTION_OUTPUT, TaskContext, parse_parameters
from service.tasks.classify import length_groups
from service.tasks.forecast_states import StateLayout, StateTensors

VALUES, LENGTHS = "values", "lengths"


def padded_chunks(
    items: list[Chunk], max_batch: int, max_waste: float
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray]]:
    """The items' chunks grouped by length (bounded padding): each group's indices, its chunks
    padded into one (rows, longest) array, and their lengths."""
    lengths = [len(item.values) for item in items]
    for group in length_groups(lengths, max_batch, max_waste):
        chunk = np.zeros((len(group), lengths[group[-1]]), np.float32)
        for row, i in enumerate(group):
            chunk[row, : lengths[i]] = items[i].values
        yield group, chunk, np.array([lengths[i] for i in group], np.int64)


class ForecastParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attention: bool = Field(
        False, description="return the attention weight of each recent value (oldest first)"
    )


@dataclass(slots=True)
class Chunk:
    values: np.ndarray  # (T,) float32, scaled
    state: StateTensors


@dataclass(slots=True)
class StepResult:
    forecast: np.ndarray  # (k,) raw units
    attention: np.ndarray | None  # (W,) over the last W values, oldest first; 0 on empty slots
    state: StateTensors


@dataclass(frozen=True, slots=True)
class StepInput:
    """A session step's values, checked and scaled, and whether it wants attention."""

    values: np.ndarray
    attention: bool


class ForecastTask:
    """A streaming forecaster version: scale as in training, batch chunks with their states
    (the step graph's state tensors). A `StreamingTask`."""

    def __init__(self, ctx: TaskContext) -> None:
        manifest, prep = ctx.manifest, ctx.manifest.preprocessing
        if prep is None or prep.kind != "series" or "step" not in manifest.graphs:
            raise ValueError("a forecaster needs series preprocessing and a 'step' graph")
        self.mean, self.std = prep.mean, prep.std
        self.horizon = prep.horizon
        self.max_values = prep.max_values
        graph = manifest.graphs["step"]
        self.graph, self.provider = ctx.create_inference_session(ctx.folder / graph.file)
        self.max_waste = ctx.limits.max_padding_waste
        self.max_batch = ctx.limits.max_batch_size
        self.batcher = Batcher(self.run, ctx.limits, ctx.on_batch)
        self.inputs = [
            MetadataTensor(name=VALUES, datatype="FP32", shape=[-1, -1]),
            MetadataTensor(name=LENGTHS, datatype="INT64", shape=[-1]),
        ]
        self.outputs = [
            MetadataTensor(name="forecast", datatype="FP32", shape=[-1, self.horizon]),
        ]
        self.read_graph(graph)
        self.state_bytes = self.open_state().nbytes  # memory one session's state takes
        self.session_facts = {"max_values": self.max_values, "horizon": self.horizon}

    def read_graph(self, graph: GraphSpec) -> None:
        """The state tensors, each one's batch axis, and whether there is attention."""
        self.state_specs = [t for t in graph.inputs if t.name not in (VALUES, LENGTHS)]
        self.batch_axes = []
        for spec in self.state_specs:
            if spec.shape.count("batch") != 1 or any(
                not isinstance(d, int) for d in spec.shape if d != "batch"
            ):
                raise ValueError(
                    f"state input {spec.name!r} of shape {spec.shape} needs one 'batch' axis and "
                    "fixed others"
                )
            self.batch_axes.append(spec.shape.index("batch"))
        self.layout = StateLayout(
            [([d for d in t.shape if d != "batch"], t.dtype) for t in self.state_specs]
        )
        outputs = {t.name: t for t in graph.outputs}
        attention = outputs.get("attention")
        # The attention's width: the last W values it weighs (None: the graph has none).
        self.window = int(attention.shape[1]) if attention is not None else None
        names = ["forecast", *(["attention"] if attention is not None else [])]
        self.output_names = names + [f"{t.name}_out" for t in self.state_specs]
        if attention is not None:
            self.outputs.append(
                MetadataTensor(name="attention", datatype="FP32", shape=[-1, self.window])
            )

    @property
    def queue_depth(self) -> int:
        return self.batcher.queue_depth

    # -- the streaming capability (see service.tasks.base.StreamingTask) ---------------------

    def open_state(self) -> StateTensors:
        return self.layout.zeros()

    def encode_state(self, state: StateTensors) -> bytes:
        return state.to_bytes()

    def decode_state(self, data: bytes) -> StateTensors:
        return self.layout.decode(data)

    def check_step(self, values: list[Any], parameters: dict[str, Any]) -> StepInput:
        return StepInput(self.check(values), self.wants_attention(parameters))

    def wants_attention(self, parameters: dict[str, Any]) -> bool:
        """Whether a request asks for attention; asking a graph without it is an error."""
        attention = parse_parameters(ForecastParameters, parameters).attention
        if attention and self.window is None:
            raise InputError(NO_ATTENTION_OUTPUT)
        return attention

    async def step(
        self, state: StateTensors, checked: StepInput, timeout: float
    ) -> tuple[dict[str, Any], StateTensors]:
        """One session step: the prediction and the state to keep."""
        (result,) = await self.batcher.submit([Chunk(checked.values, state)], timeout)
        return self.respond(result, checked.attention), result.state

    def check(self, values: Any, where: str = "values") -> np.ndarray:
        """Raw numbers from a request -> a scaled chunk, or InputError saying what is wrong."""
        try:
            raw = check_values(values, self.max_values, where)
        except ValueError as error:
            raise InputError(str(error), where) from None
        scaled = scale(raw, self.mean, self.std)
        if not np.isfinite(scaled).all():
            raise InputError(f"{where} holds a value too large for this model", where)
        return scaled

    # -- V1 and sessions ---------------------------------------------------------------------

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        attention = self.wants_attention(parameters)
        fresh = self.open_state()
        items = [Chunk(self.check(v, f"instances[{i}]"), fresh) for i, v in enumerate(instances)]
        results = await self.batcher.submit(items, timeout)
        return [self.respond(r, attention) for r in results]

    def respond(self, result: StepResult, attention: bool) -> dict[str, Any]:
        """The forecast, and the weights of the (at most W) last values seen if asked."""
        prediction: dict[str, Any] = {"forecast": result.forecast.tolist()}
        if attention and result.attention is not None and self.window is not None:
            filled = min(result.state.seen, self.window)
            prediction["attention"] = result.attention[self.window - filled :].tolist()
        return prediction

    def warm_up(self) -> None:
        """A fresh state fed up to three values around the series' mean, within max_values."""
        values = [self.mean + k * self.std for k in range(min(3, self.max_values))]
        self.run([Chunk(self.check(values), self.open_state())])

    def run(self, items: list[Chunk]) -> list[StepResult]:
        """One batch from the batcher: grouped by chunk length, states stacked, run, scattered."""
        results: list[StepResult | None] = [None] * len(items)
        axes = self.batch_axes
        for group, chunk, lengths in padded_chunks(items, self.max_batch, self.max_waste):
            feed = {VALUES: chunk, LENGTHS: lengths}
            for k, (spec, axis) in enumerate(zip(self.state_specs, axes, strict=True)):
                feed[spec.name] = np.stack([items[i].state.arrays[k] for i in group], axis=axis)
            forecast, *outputs = self.graph.run(self.output_names, feed)
            weights = outputs.pop(0) if self.window is not None else None
            forecast = unscale(forecast, self.mean, self.std)
            for row, i in enumerate(group):
                # Copies (take's): a view would keep the whole batch's arrays alive in a session.
                arrays = tuple(
                    np.asarray(np.take(o, row, axis=a)) for o, a in zip(outputs, axes, strict=True)
                )
                new = StateTensors(arrays, items[i].state.seen + int(lengths[row]))
                results[i] = StepResult(
                    forecast[row], None if weights is None else weights[row], new
                )
        return results  # type: ignore[return-value]

    # -- V2 ------------------------------------------------------------------------------------

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        """V2: `values` (FP32 [batch, T]) with optional `lengths` (INT64 [batch]) in, each row
        read from a fresh state; `forecast` (FP32 [batch, k]) and, where the graph has it,
        `attention` (FP32 [batch, W], zero on slots before the first value) out."""
        parse_parameters(ForecastParameters, parameters, ignore_unknown=True)
        items = self.prepare_tensors(arrays)
        results = await self.batcher.submit(items, timeout)
        forecast = np.stack([r.forecast for r in results]).astype(np.float32)
        outputs = [OutputTensor("forecast", "FP32", forecast)]
        if results[0].attention is not None:
            attention = np.stack([r.attention for r in results])
            outputs.append(OutputTensor("attention", "FP32", attention))
        return outputs

    def prepare_tensors(self, arrays: dict[str, np.ndarray]) -> list[Chunk]:
        names = set(arrays)
        if names not in ({VALUES}, {VALUES, LENGTHS}):
            raise InputError(
                f"inputs {sorted(names)}: this model takes {VALUES!r} (FP32 [batch, values]) "
                f"with optional {LENGTHS!r} (INT64 [batch])"
            )
        values = arrays[VALUES]
        if values.ndim == 1:
            values = values[None, :]
        if values.ndim != 2 or values.dtype.kind != "f" or 0 in values.shape:
            raise InputError(f"input {VALUES!r} must be FP32 or FP64 of shape [batch, values]")
        lengths = arrays.get(LENGTHS)
        if lengths is None:
            lengths = np.full(len(values), values.shape[1])
        if lengths.shape != (len(values),) or lengths.dtype.kind not in "iu":
            raise InputError(f"input {LENGTHS!r} must be integers of shape [{len(values)}]")
        fresh, items = self.open_state(), []
        for row, n in enumerate(lengths.tolist()):
            if not 1 <= n <= values.shape[1]:
                raise InputError(f"{LENGTHS}[{row}] = {n} is not in 1..{values.shape[1]}")
            items.append(Chunk(self.check(values[row, :n].tolist(), f"{VALUES}[{row}]"), fresh))
        return items

    async def drain(self) -> None:
        await self.batcher.drain()

    def close(self) -> None:
        self.batcher.close()
