"""Export a streaming forecaster: a step module with explicit state in and out (ours from a
checkpoint, `ForecastExporter.from_checkpoint`, or a user's).

The contract: `initial_state(batch) -> tuple of tensors` (batch first, zeros: the service opens
each session with zeros), and `forward(values: float32[B, T], lengths: int64[B], *state) ->
(forecast float32[B, k], *next_state)` or `(forecast, attention float32[B, W], *next_state)`,
each next state of its state's shape and dtype. Which of the two is told by the number of state
tensors `initial_state` gives. The attention is the weight of each of the last W values, oldest
first, 0 on slots before the first value (the service answers the weights of the values seen).
Values are the series scaled as the manifest says ((x - mean) / std; 0 and 1 by default),
right-padded to the longest chunk; a row's answer and next state must not depend on that
padding, and feeding a series in chunks (carrying the state) must equal feeding it whole: that
is what lets the service batch the chunks of many streaming sessions together.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from contract.checkpoint import CheckpointError
from contract.dtypes import TYPES
from contract.manifest import GraphSpec, SeriesPreprocessing, TensorSpec
from contract.series import scale
from export.common import OPSET, architecture, cpu_session
from export.driver import Exporter, Parity, Trained
from export.user_module import ContractError, call_forward, describe, export_onnx

GRAPH_FILE = "step.onnx"
SIGNATURE = (
    "(values: float32[B, T], lengths: int64[B], *state) -> "
    "(forecast [B, k], [attention [B, W],] *next_state)"
)
DTYPES = {getattr(torch, t.dtype): t.dtype for t in TYPES if hasattr(torch, t.dtype)}
SINE = np.sin(np.arange(96) / 5).astype(np.float32)  # scaled values to check a module on

# A step run outside the exporter (PyTorch or onnxruntime): values, lengths, state -> outputs.
Runner = Callable[[np.ndarray, np.ndarray, list[np.ndarray]], list[np.ndarray]]


class ForecastExporter(Exporter):
    """The forecast task's exporter for a step module: state, padding, chunk parity."""

    def __init__(
        self,
        step: nn.Module,
        mean: float = 0.0,
        std: float = 1.0,
        max_values: int = 1024,
        series: np.ndarray = SINE,
        *,
        details: dict[str, Any] | None = None,
        trained: Trained | None = None,
    ) -> None:
        """`series`: scaled values the contract and parity are checked on; `details`: what
        the manifest says of the series besides its scaling (its unit, its period...)."""
        if not callable(getattr(step, "initial_state", None)):
            raise ContractError(
                f"expected {type(step).__name__} to have initial_state(batch) -> tuple of state "
                "tensors (batch first)"
            )
        self.step, self.series = step.eval(), np.asarray(series, np.float32)
        self.states = self._initial(1)
        self.horizon = self._check_contract()  # and self.window, the attention's width
        self.trained = trained
        self.preprocessing = SeriesPreprocessing(
            mean=mean,
            std=std,
            window=self.window or max_values,
            horizon=self.horizon,
            max_values=max_values,
            details=details or {"state": "the step graph's own state tensors, batch first"},
        )

    @classmethod
    def from_checkpoint(cls, path: Path) -> ForecastExporter:
        """Our trained forecaster, exported as a user's step module is, with its training
        facts, architecture and scaling; checked on its held-out weeks."""
        from model_src.train_forecast import TRAINER

        model, checkpoint = TRAINER.load_checkpoint(path)
        prep, config = checkpoint.preprocessing, checkpoint.config
        details = {
            "input": "first differences of the scaled series",
            "diff_scale": config["diff_scale"],
            "attention_memory": "sliding window of the last `window` top-layer states",
        }
        trained = Trained(
            architecture(config, embedding_dim=0, bidirectional=False, details=details),
            checkpoint.training,
        )
        heldout = scale(np.array(checkpoint.heldout.values), prep.mean, prep.std)
        exporter = cls(model, prep.mean, prep.std, prep.max_values, series=heldout,
                       details=prep.details, trained=trained)  # fmt: skip
        if exporter.preprocessing != prep:
            raise CheckpointError(
                f"{path}: the checkpoint's series facts {prep.model_dump()} disagree with its "
                f"model's {exporter.preprocessing.model_dump()}"
            )
        return exporter

    @property
    def first_state(self) -> int:
        """The index of the first next state among a step's outputs."""
        return 1 if self.window is None else 2

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
            if bool(tensor.any()):
                raise ContractError(
                    f"expected initial_state({batch}) to give zeros (the service opens each "
                    f"session with zeros), got state {i} with other values"
                )
        return state

    def _call(self, values: np.ndarray, lengths: list[int], state: list[torch.Tensor]) -> Any:
        args = (torch.from_numpy(values), torch.tensor(lengths, dtype=torch.long), *state)
        return call_forward(self.step, args, SIGNATURE)

    def torch_step(self, values: np.ndarray, lengths: np.ndarray, state: list) -> list[np.ndarray]:
        """The module's step in PyTorch, on and to numpy arrays (a `Runner`)."""
        tensors = [torch.from_numpy(np.asarray(s)) for s in state]
        return [t.numpy() for t in self._call(values, [int(n) for n in lengths], tensors)]

    def onnx_step(self, graph: Path) -> Runner:
        """The exported step graph in onnxruntime (a `Runner`)."""
        session = cpu_session(graph)
        names = [t.name for t in self.specs()[0]]

        def run(values: np.ndarray, lengths: np.ndarray, state: list) -> list[np.ndarray]:
            feed = [values, np.asarray(lengths, np.int64), *state]
            return session.run(None, dict(zip(names, feed, strict=True)))

        return run

    def feed(self, run: Runner, series: np.ndarray, sizes: list[int]) -> list[list[np.ndarray]]:
        """One series fed in chunks of `sizes` from a fresh state: the outputs of each step."""
        state = [t.numpy() for t in self._initial(1)]
        steps, start = [], 0
        for size in sizes:
            out = run(series[None, start : start + size], np.array([size], np.int64), state)
            steps.append(out)
            state, start = out[self.first_state :], start + size
        return steps

    def _check_contract(self) -> int:
        """The forecast's horizon; sets `window`, the attention's width (None: no attention)."""
        initial = self._initial(3)
        out = self._call(self.series[None, :7].repeat(3, 0), [7, 4, 1], initial)
        n = len(initial)
        if not isinstance(out, tuple | list) or len(out) not in (1 + n, 2 + n):
            raise ContractError(
                f"expected (forecast, {n} next state tensors) or (forecast, attention, {n} next "
                f"state tensors), got {describe(out)}"
            )
        forecast, states = out[0], out[len(out) - n :]
        if not forecast.is_floating_point() or forecast.dim() != 2 or len(forecast) != 3:
            raise ContractError(
                f"expected a float forecast of shape [3, k], got {describe(forecast)}"
            )
        window = None
        if len(out) == 2 + n:
            attention = out[1]
            if not attention.is_floating_point() or attention.dim() != 2 or len(attention) != 3:
                raise ContractError(
                    f"expected a float attention of shape [3, W], got {describe(attention)}"
                )
            window = int(attention.shape[1])
        for i, (before, after) in enumerate(zip(initial, states, strict=True)):
            if not isinstance(after, torch.Tensor) or (after.shape, after.dtype) != (
                before.shape,
                before.dtype,
            ):
                raise ContractError(
                    f"expected next state {i} as its state: {describe(before)}, "
                    f"got {describe(after)}"
                )
        self.window = window  # `feed` reads from it where the next state starts
        whole = self.feed(self.torch_step, self.series, [len(self.series)])[-1]
        sizes = random_sizes(len(self.series), np.random.default_rng(0), largest=16)
        diff = _diff(whole, self.feed(self.torch_step, self.series, sizes)[-1])
        if diff > 1e-4:
            raise ContractError(
                f"expected a series fed in chunks (carrying the state) to give what it gives fed "
                f"whole, got a difference of {diff:.3g}"
            )
        for row, n_values in enumerate([7, 4, 1]):
            alone = self.feed(self.torch_step, self.series[:n_values], [n_values])[-1]
            if _diff(alone, [o[row : row + 1].numpy() for o in out]) > 1e-4:
                raise ContractError(
                    f"expected a row's forecast and state not to depend on the padding after its "
                    f"{n_values} values (the service batches chunks of different lengths); mask "
                    "with `lengths`"
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
        outputs = [TensorSpec(name="forecast", dtype="float32", shape=["batch", self.horizon])]
        if self.window is not None:
            outputs.append(
                TensorSpec(name="attention", dtype="float32", shape=["batch", self.window])
            )
        outputs += [s.model_copy(update={"name": f"{s.name}_out"}) for s in state]
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
        onnx_step = self.onnx_step(folder / GRAPH_FILE)
        series = self.series
        reference = self.feed(self.torch_step, series, [len(series)])[-1]
        sizes = random_sizes(len(series), np.random.default_rng(1), largest=16)
        diff = max(
            _diff(reference, self.feed(onnx_step, series, s)[-1]) for s in ([len(series)], sizes)
        )
        batch = np.zeros((3, 9), np.float32)
        for row, n in enumerate([9, 5, 1]):
            batch[row, :n] = series[:n]
        together = onnx_step(batch, np.array([9, 5, 1]), [t.numpy() for t in self._initial(3)])
        for row, n in enumerate([9, 5, 1]):
            alone = self.feed(self.torch_step, series[:n], [n])[-1]
            diff = max(diff, _diff(alone, [o[row : row + 1] for o in together]))
        return Parity(diff, what="onnxruntime (whole, chunked or batched) differs from PyTorch")

    def manifest_parts(self) -> dict[str, Any]:
        return {**self.provenance(), "preprocessing": self.preprocessing}


def random_sizes(total: int, rng: np.random.Generator, largest: int = 64) -> list[int]:
    """Chunk sizes adding up to `total`, each 1..largest."""
    sizes = []
    while total > 0:
        sizes.append(int(min(total, rng.integers(1, largest + 1))))
        total -= sizes[-1]
    return sizes


def _diff(expected: list, got: list) -> float:
    return max(
        float(np.abs(np.asarray(e, np.float64) - np.asarray(g, np.float64)).max())
        for e, g in zip(expected, got, strict=True)
    )
