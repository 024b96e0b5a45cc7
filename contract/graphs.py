"""A manifest read off an ONNX graph made elsewhere (task `tensor`), defined once for the
exporter (which reads the graph with onnx) and the service (which completes a folder holding
only model.onnx, KServe's `onnx` format, reading the graph with onnxruntime).

Torch-free and onnx-free: each side passes what its library says about the graph, by the
ONNX type names both libraries use ("float", "int64", ...).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from contract.manifest import DType, ExportInfo, GraphSpec, Manifest, TensorSpec

GRAPH_FILE = "model.onnx"
ONNX_TYPES: dict[str, DType] = {
    "float": "float32", "double": "float64", "float16": "float16", "int64": "int64",
    "int32": "int32", "int16": "int16", "int8": "int8", "uint64": "uint64", "uint32": "uint32",
    "uint16": "uint16", "uint8": "uint8", "bool": "bool", "string": "string",
}  # fmt: skip


def tensor_spec(
    name: str, onnx_type: str, dims: Sequence[int | str | None], what: str
) -> TensorSpec:
    """One graph input or output; a dynamic axis keeps its name, or is named by position."""
    dtype = ONNX_TYPES.get(onnx_type.lower())
    if dtype is None:
        raise ValueError(f"{what} {name!r} has dtype {onnx_type.upper()}, which is not served")
    shape: list[int | str] = []
    for axis, dim in enumerate(dims):
        if isinstance(dim, int) and dim >= 0:
            shape.append(dim)
        else:  # named, or unnamed (None, "", -1)
            shape.append(dim if isinstance(dim, str) and dim else f"dim{axis}")
    return TensorSpec(name=name, dtype=dtype, shape=shape)


def graph_manifest(
    name: str,
    version: int,
    folder: Path,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    sha256: str,
    onnxruntime_version: str,
) -> Manifest:
    """The manifest of a folder holding only model.onnx, as the service derives it at load."""
    created = datetime.fromtimestamp((folder / GRAPH_FILE).stat().st_mtime, UTC)
    return Manifest(
        name=name,
        version=version,
        task="tensor",
        origin="onnx",
        description="derived from the graph at load: the folder holds no manifest.json",
        created_at=created.isoformat(timespec="seconds"),
        graphs={"model": GraphSpec(file=GRAPH_FILE, inputs=inputs, outputs=outputs)},
        files={GRAPH_FILE: sha256},
        export=ExportInfo(
            opset=onnx_opset(folder / GRAPH_FILE),
            torch_version=None,
            onnx_version=None,
            onnxruntime_version=onnxruntime_version,
            parity_max_abs_diff=None,
            parity_tolerance=None,
        ),
    )


def onnx_opset(graph: Path) -> int:
    """The default-domain opset a graph imports (0 if it says none), read off the top level of
    its ModelProto (field 8, opset_import) without onnx: the graph itself is skipped, not read."""
    opset = 0
    with graph.open("rb") as f:
        while tag := _varint(f):
            field, kind = tag >> 3, tag & 7
            if kind == 0:
                _varint(f)
            elif kind == 2:
                size = _varint(f)
                if field != 8:
                    f.seek(size, 1)
                    continue
                domain, version = _opset_entry(f.read(size))
                if domain in ("", "ai.onnx"):
                    opset = version
            else:  # fixed-size fields do not occur at the top level of a ModelProto
                f.seek({1: 8, 5: 4}.get(kind, 0), 1)
    return opset


def _opset_entry(data: bytes) -> tuple[str, int]:
    """OperatorSetIdProto: domain (1, string), version (2, varint)."""
    domain, version, f = "", 0, io.BytesIO(data)
    while tag := _varint(f):
        if tag == (1 << 3 | 2):
            domain = f.read(_varint(f)).decode()
        elif tag == (2 << 3 | 0):
            version = _varint(f)
        else:
            break
    return domain, version


def _varint(f) -> int:
    """A protobuf varint; 0 at the end of the data."""
    result = shift = 0
    while byte := f.read(1):
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7
    return result
