"""Export a user's streaming forecaster: a step module with explicit state in and out.

The contract: `initial_state(batch) -> tuple of tensors` (batch first), and
`forward(values: float32[B, T], lengths: int64[B], *state) -> (forecast float32[B, k],
*next_state)`, each next state of its state's shape and dtype. Values are the series scaled as
the manifest says ((x - mean) / std; 0 and 1 by default), right-padded to the longest chunk;
a row's answer and next state must not depend on that padding, and feeding a series in chunks
(carrying the state) must equal feeding it whole: that is what lets the service batch the
chunks of many streaming sessions together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.manifest import GraphSpec, SeriesPreprocessing, TensorSpec
from export.common import OPSET, cpu_session
from export.driver import Exporter, Parity
from export.forecast import random_sizes
from export.user_module import ContractError, call_forward, describe, export_onnx

GRAPH_FILE = "step.onnx"
SIGNATURE = "(values: float32[B, T], lengths: int64[B], *state) -> (forecast [B, k], *next_state)"
DTYPES = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64",
          torch.int32: "int32", torch.bool: "bool"}  # fmt: skip


class UserForecastExporter(Exporter):
    """The forecast task's exporter for a user's step module: state, padding, chunk parity."""

    def __init__(
        self, step: nn.Module, mean: float = 0.0, std: float = 1.0, max_values: int = 1024
    ) -> None:
        if not callable(getattr(step, "initial_state", None)):
            raise ContractError(
                f"expected {type(step).__name__} to have initial_state(batch) -> tuple of state "
                "tensors (batch first)"
            )
        self.step, self.mean, self.std, self.max_values = step.eval(), mean, std, max_values
        self.series = np.sin(np.arange(96) / 5).astype(np.float32)  # scaled values
        self.states = self._initial(1)
        self.horizon = self._check_contract()

    def _initial(self, batch: int) -> list[torch.Tensor]:
        state = self.step.initial_state(batch)
        state = list(state) if isinstance(state, tuple | list) else [state]
        for i, tensor in enumerate(state):
            if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0 or len(tensor) != batch:
                raise ContractError(
                    f"expected initial_state({batch}) to give tensors with the batch ({batch}) "
                    f"first, got state {i}: {describe(tensor)}"
                )
            if tensor.dtype not in DTYPES:
                raise ContractError(f"state {i} has dtype {tensor.dtype}, which is not served")
        return state

    def _run(self, values: np.ndarray, lengths: list[int], state: list[torch.Tensor]) -> list:
        args = (torch.from_numpy(values), torch.tensor(lengths, dtype=torch.long), *state)
        out = call_forward(self.step, args, SIGNATURE)
        if not isinstance(out, tuple | list) or len(out) != 1 + len(state):
            raise ContractError(
                f"expected (forecast, {len(state)} next state tensors), got {describe(out)}"
            )
        return list(out)

    def _feed(self, series: np.ndarray, sizes: list[int]) -> list[torch.Tensor]:
        state, start, out = self._initial(1), 0, []
        for size in sizes:
            out = self._run(series[None, start : start + size], [size], state)
            state, start = out[1:], start + size
        return out

    def _check_contract(self) -> int:
        out = self._run(self.series[None, :7].repeat(3, 0), [7, 4, 1], self._initial(3))
        forecast, states = out[0], out[1:]
        if not forecast.is_floating_point() or forecast.dim() != 2 or len(forecast) != 3:
            raise ContractError(
                f"expected a float forecast of shape [3, k], got {describe(forecast)}"
            )
        for i, (before, after) in enumerate(zip(self._initial(3), states, strict=True)):
            if not isinstance(after, torch.Tensor) or (after.shape, after.dtype) != (
                before.shape,
                before.dtype,
            ):
                raise ContractError(
                    f"expected next state {i} as its state: {describe(before)}, "
                    f"got {describe(after)}"
                )
        whole = self._feed(self.series, [len(self.series)])
        sizes = random_sizes(len(self.series), np.random.default_rng(0), largest=16)
        diff = _diff(whole, self._feed(self.series, sizes))
        if diff > 1e-4:
            raise ContractError(
                f"expected a series fed in chunks (carrying the state) to give what it gives fed "
                f"whole, got a difference of {diff:.3g}"
            )
        for row, n in enumerate([7, 4, 1]):
            alone = self._feed(self.series[:n], [n])
            if _diff(alone, [o[row : row + 1] for o in out]) > 1e-4:
                raise ContractError(
                    f"expected a row's forecast and state not to depend on the padding after its "
                    f"{n} values (the service batches chunks of different lengths); mask with "
                    "`lengths`"
                )
        return int(forecast.shape[1])

    def specs(self) -> tuple[list[TensorSpec], list[TensorSpec]]:
        state = [
            TensorSpec(name=f"state{i}", dtype=DTYPES[t.dtype], shape=["batch", *t.shape[1:]])
            for i, t in enumerate(self.states)
        ]
        inputs = [
            TensorSpec(name="values", dtype="float32", shape=["batch", "chunk"]),
            TensorSpec(name="lengths", dtype="int64", shape=["batch"]),
            *state,
        ]
        forecast = TensorSpec(name="forecast", dtype="float32", shape=["batch", self.horizon])
        outputs = [forecast, *(s.model_copy(update={"name": f"{s.name}_out"}) for s in state)]
        return inputs, outputs

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        inputs, outputs = self.specs()
        example = (torch.randn(2, 5), torch.tensor([5, 3]), *self._initial(2))
        axes = {t.name: {i: a for i, a in enumerate(t.shape) if isinstance(a, str)}
                for t in [*inputs, *outputs]}  # fmt: skip
        export_onnx(
            self.step,
            lambda: torch.onnx.export(
                self.step,
                example,
                str(folder / GRAPH_FILE),
                dynamo=False,
                opset_version=OPSET,
                input_names=[t.name for t in inputs],
                output_names=[t.name for t in outputs],
                dynamic_axes=axes,
            ),
        )
        return {"step": GraphSpec(file=GRAPH_FILE, inputs=inputs, outputs=outputs)}

    def parity(self, folder: Path) -> Parity:
        """onnxruntime whole, in chunks, and as a mixed-length batch, against PyTorch alone."""
        session = cpu_session(folder / GRAPH_FILE)
        names = [t.name for t in self.specs()[0]]

        def run(series: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
            state, start, out = [t.numpy() for t in self._initial(1)], 0, []
            for size in sizes:
                chunk = series[None, start : start + size]
                feed = [chunk, np.array([size], np.int64), *state]
                out = session.run(None, dict(zip(names, feed, strict=True)))
                state, start = out[1:], start + size
            return out

        reference = [t.numpy() for t in self._feed(self.series, [len(self.series)])]
        sizes = random_sizes(len(self.series), np.random.default_rng(1), largest=16)
        diff = max(_diff(reference, run(self.series, s)) for s in ([len(self.series)], sizes))
        batch = np.zeros((3, 9), np.float32)
        for row, n in enumerate([9, 5, 1]):
            batch[row, :n] = self.series[:n]
        initial = [t.numpy() for t in self._initial(3)]
        together = session.run(
            None, dict(zip(names, [batch, np.array([9, 5, 1]), *initial], strict=True))
        )
        for row, n in enumerate([9, 5, 1]):
            alone = [t.numpy() for t in self._feed(self.series[:n], [n])]
            diff = max(diff, _diff(alone, [o[row : row + 1] for o in together]))
        return Parity(diff, what="onnxruntime (whole, chunked or batched) differs from PyTorch")

    def manifest_parts(self) -> dict[str, Any]:
        return {
            "origin": "module",
            "preprocessing": SeriesPreprocessing(
                mean=self.mean,
                std=self.std,
                window=self.max_values,
                horizon=self.horizon,
                max_values=self.max_values,
                details={"state": "the step graph's own state tensors, batch first"},
            ),
        }


def _diff(expected: list, got: list) -> float:
    return max(
        float(np.abs(np.asarray(e, np.float64) - np.asarray(g, np.float64)).max())
        for e, g in zip(expected, got, strict=True)
    )
