"""Tensor data types, once for every layer: each type's name in a manifest (numpy's), in the
Open Inference Protocol (V2) and in ONNX (`TensorProto.DataType`, a stable wire number).

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
    onnx: int  # onnx.TensorProto.DataType


TYPES = (
    TensorType("bool", "BOOL", 9),
    TensorType("uint8", "UINT8", 2),
    TensorType("uint16", "UINT16", 4),
    TensorType("uint32", "UINT32", 12),
    TensorType("uint64", "UINT64", 13),
    TensorType("int8", "INT8", 3),
    TensorType("int16", "INT16", 5),
    TensorType("int32", "INT32", 6),
    TensorType("int64", "INT64", 7),
    TensorType("float16", "FP16", 10),
    TensorType("float32", "FP32", 1),
    TensorType("float64", "FP64", 11),
    TensorType("string", "BYTES", 8),
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
