"""Tensor data types, once for every layer: each type's name in a manifest (numpy's), in the
Open Inference Protocol (V2) and in ONNX (`TensorProto.DataType`'s name, lowercase, as both
onnx and onnxruntime spell it).

Torch-free and numpy-free: the exporters, the service's codecs and tasks, and the page's
mirror (`service/ui/tasks/tensor.js`, checked by a test) all read this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class TensorType:
    dtype: str  # in manifests: numpy's name
    datatype: str  # in V2 requests and responses
    onnx: str  # onnx.TensorProto.DataType.Name(...).lower(); onnxruntime's "tensor(<this>)"


TYPES = (
    TensorType("bool", "BOOL", "bool"),
    TensorType("uint8", "UINT8", "uint8"),
    TensorType("uint16", "UINT16", "uint16"),
    TensorType("uint32", "UINT32", "uint32"),
    TensorType("uint64", "UINT64", "uint64"),
    TensorType("int8", "INT8", "int8"),
    TensorType("int16", "INT16", "int16"),
    TensorType("int32", "INT32", "int32"),
    TensorType("int64", "INT64", "int64"),
    TensorType("float16", "FP16", "float16"),
    TensorType("float32", "FP32", "float"),
    TensorType("float64", "FP64", "double"),
    TensorType("string", "BYTES", "string"),
)
DType = Literal[
    "bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
    "float16", "float32", "float64", "string",
]  # fmt: skip
Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip
V2_OF_DTYPE = {t.dtype: t.datatype for t in TYPES}
DTYPE_OF_V2 = {t.datatype: t.dtype for t in TYPES}
DTYPE_OF_ONNX = {t.onnx: t.dtype for t in TYPES}
NUMERIC_V2 = tuple(t.datatype for t in TYPES if t.dtype != "string")  # all but BYTES
