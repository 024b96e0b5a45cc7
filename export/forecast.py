"""Export the streaming forecaster's step graph (explicit state in and out), verify that chunked
runs equal whole runs in onnxruntime and PyTorch, and describe it in a manifest."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contract.manifest import GraphSpec, TensorSpec
from contract.series import scale
from export.common import architecture, cpu_session, to_onnx
from export.driver import Exporter, Parity
from model_src.forecast import Forecaster, StepGraph

GRAPH_FILE = "step.onnx"
STATE_NAMES = ("state", "memory", "last", "filled")


def tensor_specs(model: Forecaster) -> tuple[list[TensorSpec], list[TensorSpec]]:
    c = model.config
    layers, hidden, window = c.num_layers, c.hidden_size, c.window
    state = [
        TensorSpec(name="state", dtype="float32", shape=[layers, "batch", hidden]),
        TensorSpec(name="memory", dtype="float32", shape=["batch", window, hidden]),
        TensorSpec(name="last", dtype="float32", shape=["batch"]),
        TensorSpec(name="filled", dtype="int64", shape=["batch"]),
    ]
    inputs = [
        TensorSpec(name="values", dtype="float32", shape=["batch", "chunk"]),
        TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
        *state,
    ]
    outputs = [
        TensorSpec(name="forecast", dtype="float32", shape=["batch", c.horizon]),
        TensorSpec(name="attention", dtype="float32", shape=["batch", window]),
        *(t.model_copy(update={"name": f"{t.name}_out"}) for t in state),
    ]
    return inputs, outputs


def initial_state(model: Forecaster, batch: int) -> list[np.ndarray]:
    return [t.numpy() for t in model.initial_state(batch)]


def export_graph(model: Forecaster, path: Path) -> None:
    inputs, outputs = tensor_specs(model)
    values = torch.randn(2, 5)
    lengths = torch.tensor([5, 3])
    example = (values, lengths, *model.initial_state(2))
    dynamic = {t.name: {i: a for i, a in enumerate(t.shape) if isinstance(a, str)} for t in inputs}
    dynamic |= {
        t.name: {i: a for i, a in enumerate(t.shape) if isinstance(a, str)} for t in outputs
    }
    to_onnx(
        StepGraph(model).eval(),
        example,
        path,
        input_names=[t.name for t in inputs],
        output_names=[t.name for t in outputs],
        dynamic_axes=dynamic,
    )


def torch_runner(model: Forecaster) -> Callable[..., list[np.ndarray]]:
    def run(values, lengths, state, memory, last, filled) -> list[np.ndarray]:
        with torch.no_grad():
            out = model.step(
                *(torch.from_numpy(np.asarray(a)) for a in (values, lengths)),
                *(torch.from_numpy(a) for a in (state, memory, last, filled)),
            )
        return [t.numpy() for t in out]

    return run


def onnx_runner(graph: Path) -> Callable[..., list[np.ndarray]]:
    session = cpu_session(graph)
    names = ["values", "lengths", *STATE_NAMES]

    def run(*arrays) -> list[np.ndarray]:
        return session.run(None, dict(zip(names, arrays, strict=True)))

    return run


def run_chunks(
    run: Callable[..., list[np.ndarray]],
    model: Forecaster,
    series: np.ndarray,
    sizes: Sequence[int],
) -> list[list[np.ndarray]]:
    """Feed one scaled series (T,) in chunks of `sizes`, carrying the state: each output."""
    state = initial_state(model, 1)
    steps, start = [], 0
    for size in sizes:
        chunk = series[start : start + size][None, :].astype(np.float32)
        out = run(chunk, np.array([chunk.shape[1]], np.int64), *state)
        steps.append(out)
        state = out[2:]
        start += size
    return steps


def random_sizes(total: int, rng: np.random.Generator, largest: int = 64) -> list[int]:
    sizes = []
    while total > 0:
        sizes.append(int(min(total, rng.integers(1, largest + 1))))
        total -= sizes[-1]
    return sizes


def max_chunk_diff(model: Forecaster, graph: Path, series: np.ndarray, seed: int = 0) -> float:
    """Largest difference over every output between: PyTorch whole, PyTorch in random chunks,
    onnxruntime whole, onnxruntime in random chunks, and a mixed-length batch in onnxruntime."""
    rng = np.random.default_rng(seed)
    sizes = random_sizes(len(series), rng)
    reference = run_chunks(torch_runner(model), model, series, [len(series)])[-1]
    onnx_run = onnx_runner(graph)
    candidates = [
        run_chunks(torch_runner(model), model, series, sizes)[-1],
        run_chunks(onnx_run, model, series, [len(series)])[-1],
        run_chunks(onnx_run, model, series, sizes)[-1],
    ]
    diff = max(_diff(reference, got) for got in candidates)
    # A batch of rows of different lengths (right-padded) gives each row its own answer.
    lengths = np.array([len(series), len(series) // 2, 1], np.int64)
    batch = np.zeros((3, len(series)), np.float32)
    for row, n in enumerate(lengths):
        batch[row, :n] = series[:n]
    got = onnx_run(batch, lengths, *initial_state(model, 3))
    for row, n in enumerate(lengths):
        alone = run_chunks(torch_runner(model), model, series[:n], [int(n)])[-1]
        diff = max(diff, _diff(alone, row_of(got, row)))
    return diff


def row_of(outputs: list[np.ndarray], row: int) -> list[np.ndarray]:
    """One row of a step's outputs, keeping the batch axis (axis 1 of `state`, else 0)."""
    return [o[:, row : row + 1] if i == 2 else o[row : row + 1] for i, o in enumerate(outputs)]


def _diff(expected: list[np.ndarray], got: list[np.ndarray]) -> float:
    return max(
        float(np.abs(e.astype(np.float64) - g.astype(np.float64)).max())
        for e, g in zip(expected, got, strict=True)
    )


class ForecastExporter(Exporter):
    """The forecast task's exporter: the step graph, parity of chunked against whole runs."""

    def __init__(self, checkpoint_path: Path) -> None:
        from model_src.train_forecast import TRAINER

        self.model, self.checkpoint = TRAINER.load_checkpoint(checkpoint_path)
        self.training = self.checkpoint.training
        self.preprocessing = self.checkpoint.preprocessing

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        export_graph(self.model, folder / GRAPH_FILE)
        inputs, outputs = tensor_specs(self.model)
        return {"step": GraphSpec(file=GRAPH_FILE, inputs=inputs, outputs=outputs)}

    def parity(self, folder: Path) -> Parity:
        prep = self.preprocessing
        series = scale(np.array(self.checkpoint.heldout.values), prep.mean, prep.std)
        diff = max_chunk_diff(self.model, folder / GRAPH_FILE, series)
        return Parity(diff, what="chunked or onnxruntime runs differ")

    def manifest_parts(self) -> dict[str, Any]:
        cfg = self.checkpoint.config
        return {
            "architecture": architecture(
                cfg,
                embedding_dim=0,
                bidirectional=False,
                details={
                    "input": "first differences of the scaled series",
                    "diff_scale": cfg["diff_scale"],
                    "attention_memory": "sliding window of the last `window` top-layer states",
                },
            ),
            "preprocessing": self.preprocessing,
        }
