"""Publish any ONNX graph made elsewhere (task `tensor`): its manifest is read off the graph.

The inputs' and outputs' names, dtypes and shapes (dynamic axes by name) come from the graph
itself; the graph is checked by onnx.checker (in the driver) and by loading it in onnxruntime
and running one example. Only tensor inputs and outputs can be served.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from contract.graphs import GRAPH_FILE, tensor_spec
from contract.manifest import GraphSpec, TensorSpec
from export.common import cpu_session
from export.driver import Exporter
from export.user_module import ContractError

EXAMPLE_SIZE = 2  # each dynamic axis of the example run


def tensor_specs(values: Any, what: str) -> list[TensorSpec]:
    """Graph inputs or outputs as specs (contract.graphs names the dynamic axes)."""
    specs = []
    for value in values:
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            hint = " (skl2onnx: convert with options={'zipmap': False})" if kind else ""
            raise ContractError(
                f"expected tensor {what}s, got {what} {value.name!r} of type {kind}{hint}"
            )
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            raise ContractError(f"expected {what} {value.name!r} to declare its rank")
        dims = [
            int(dim.dim_value) if dim.HasField("dim_value") else dim.dim_param or None
            for dim in tensor.shape.dim
        ]
        onnx_type = onnx.TensorProto.DataType.Name(tensor.elem_type)
        try:
            specs.append(tensor_spec(value.name, onnx_type, dims, what))
        except ValueError as error:
            raise ContractError(str(error)) from None
    return specs


def example_feed(inputs: list[TensorSpec]) -> dict[str, np.ndarray]:
    """An input of every kind the graph takes, EXAMPLE_SIZE along each dynamic axis."""
    rng = np.random.default_rng(0)
    feed = {}
    for spec in inputs:
        shape = [d if isinstance(d, int) else EXAMPLE_SIZE for d in spec.shape]
        if spec.dtype == "string":
            feed[spec.name] = np.full(shape, "a", dtype=object)
        elif spec.dtype == "bool":
            feed[spec.name] = rng.integers(0, 2, size=shape).astype(bool)
        else:
            feed[spec.name] = rng.random(size=shape).astype(spec.dtype)
    return feed


class TensorExporter(Exporter):
    """The tensor task's exporter: copy the graph, read its specs, run it once."""

    checkpoint: dict[str, Any] = {"training": None}  # noqa: RUF012 (a graph: no training facts)

    def __init__(self, graph: Path) -> None:
        if not graph.is_file():
            raise ContractError(f"--onnx: {graph} is not a file")
        try:
            self.model = onnx.load(str(graph))
        except Exception as error:
            raise ContractError(f"{graph} is not an ONNX model: {error}") from None
        self.source = graph
        self.inputs = tensor_specs(
            [i for i in self.model.graph.input if i.name not in self._initializers()], "input"
        )
        self.outputs = tensor_specs(self.model.graph.output, "output")

    def _initializers(self) -> set[str]:
        return {init.name for init in self.model.graph.initializer}

    def export_graphs(self, folder: Path) -> dict[str, GraphSpec]:
        shutil.copyfile(self.source, folder / GRAPH_FILE)
        return {"model": GraphSpec(file=GRAPH_FILE, inputs=self.inputs, outputs=self.outputs)}

    def parity(self, folder: Path) -> None:
        """No PyTorch model to compare with: the graph must load and run one example."""
        try:
            session = cpu_session(folder / GRAPH_FILE)
            results = session.run(None, example_feed(self.inputs))
        except Exception as error:
            raise ContractError(
                f"expected the graph to load in onnxruntime and run an example, got "
                f"{type(error).__name__}: {str(error).splitlines()[0]}"
            ) from None
        for spec, result in zip(self.outputs, results, strict=True):
            if not isinstance(result, np.ndarray):
                raise ContractError(
                    f"expected output {spec.name!r} to be a tensor, got {type(result).__name__}"
                )
        return None

    def export_facts(self, folder: Path) -> dict[str, Any]:
        default = [o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")]
        return {"opset": default[0] if default else 0}

    def manifest_parts(self) -> dict[str, Any]:
        return {"origin": "onnx"}
