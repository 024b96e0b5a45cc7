"""Tensors in V2 messages <-> numpy: the JSON form and the binary tensor data extension."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from contract.dtypes import NUMERIC_V2, TYPES
from service.errors import BadRequest, PayloadTooLarge
from service.protocol import InferenceRequest, RequestInput

HEADER_LENGTH = "inference-header-content-length"
NUMPY = {t.datatype: np.dtype(t.dtype).type for t in TYPES if t.datatype in NUMERIC_V2}


@dataclass
class OutputTensor:
    name: str
    datatype: str
    array: np.ndarray  # object dtype of str for BYTES


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the raw tensor bytes after it (none without the header)."""
    if header_length is None:
        return body, b""
    if not (header_length.isascii() and header_length.isdigit()) or int(header_length) > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length!r} does not fit a "
            f"{len(body)}-byte body"
        )
    n = int(header_length)
    return body[:n], body[n:]


def decode_inputs(
    request: InferenceRequest, raw: bytes, max_tensor_bytes: int
) -> dict[str, np.ndarray]:
    """Each input as an array of its declared shape; BYTES inputs as arrays of str."""
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name in arrays:
            raise BadRequest(f"input {tensor.name!r} is given twice")
        check_shape(tensor.name, tensor.shape)
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if tensor.data is not None:
                raise BadRequest(f"input {tensor.name!r} has both data and binary_data_size")
            if isinstance(size, int) and size > max_tensor_bytes:
                raise PayloadTooLarge(
                    f"input {tensor.name!r}: {size} bytes of binary data; at most "
                    f"{max_tensor_bytes} per tensor"
                )
            if not isinstance(size, int) or size < 0 or offset + size > len(raw):
                raise BadRequest(
                    f"input {tensor.name!r}: binary_data_size {size!r} runs past the "
                    f"{len(raw)} bytes of binary data"
                )
            arrays[tensor.name] = from_raw(
                tensor.name, tensor.datatype, tensor.shape, raw[offset : offset + size]
            )
            offset += size
        elif tensor.data is not None:
            arrays[tensor.name] = _from_json(tensor)
        else:
            raise BadRequest(f"input {tensor.name!r} has no data")
    if offset != len(raw):
        raise BadRequest(f"{len(raw) - offset} bytes of binary data belong to no input")
    return arrays


def _from_json(tensor: RequestInput) -> np.ndarray:
    fast = _from_json_fast(tensor)
    if fast is not None:
        return fast
    flat = _flatten(tensor.data)
    count = math.prod(tensor.shape)
    if len(flat) != count:
        raise BadRequest(
            f"input {tensor.name!r}: shape {tensor.shape} needs {count} values, "
            f"data has {len(flat)}"
        )
    if tensor.datatype == "BYTES":
        if not all(isinstance(x, str) for x in flat):
            raise BadRequest(f"input {tensor.name!r}: BYTES data must be strings")
        return np.array(flat, dtype=object).reshape(tensor.shape)
    kind = NUMPY[tensor.datatype]
    valid = (
        _is_bool
        if tensor.datatype == "BOOL"
        else _is_float
        if tensor.datatype[:2] == "FP"
        else _is_int
    )
    if not all(valid(x) for x in flat):
        raise BadRequest(f"input {tensor.name!r}: data is not all {tensor.datatype}")
    try:
        return np.array(flat, dtype=kind).reshape(tensor.shape)
    except OverflowError:
        raise BadRequest(f"input {tensor.name!r}: a value does not fit {tensor.datatype}") from None


def _from_json_fast(tensor: RequestInput) -> np.ndarray | None:
    """The common case in one numpy conversion: numbers (flat or nested as the shape) whose
    inferred dtype is already right, or floats for FP32. None sends the data the slow way,
    which finds and names any problem. Python loops per value were the bulk of V2's cost."""
    kind = NUMPY.get(tensor.datatype)
    if kind is None:
        return None
    try:
        array = np.array(tensor.data)
    except (ValueError, OverflowError):  # ragged nesting, or no common numeric type
        return None
    inferred = array.dtype
    if inferred != kind and not (tensor.datatype[:2] == "FP" and inferred.kind in "if"):
        return None
    if inferred.kind != "b" and _has_bool(tensor.data, array.ndim):
        return None  # true/false among numbers: numpy would read them as 1/0
    if array.size != math.prod(tensor.shape):
        return None
    return array.astype(kind, copy=False).reshape(tensor.shape)


def _has_bool(data: list[Any], depth: int) -> bool:
    if depth == 1:
        return bool in map(type, data)
    if depth == 2:
        return any(bool in map(type, row) for row in data)
    return any(isinstance(x, bool) for x in _flatten(data))


def check_shape(name: str, shape: list[int]) -> None:
    """Every transport's tensors hold at least one value and no negative size."""
    if any(d < 0 for d in shape):
        raise BadRequest(f"input {name!r}: shape {shape} has a negative size")
    if 0 in shape:
        raise BadRequest(f"input {name!r}: shape {shape} holds no values; send at least one")


def from_raw(
    name: str, datatype: str, shape: list[int], data: bytes, what: str = "binary data"
) -> np.ndarray:
    """A tensor from its raw bytes: little-endian values, or length-prefixed BYTES elements."""
    count = math.prod(shape)
    if datatype == "BYTES":
        items = bytes_elements(name, data)
        if len(items) != count:
            raise BadRequest(
                f"input {name!r}: shape {shape} needs {count} elements, {what} has {len(items)}"
            )
        return np.array(items, dtype=object).reshape(shape)
    kind = np.dtype(NUMPY[datatype]).newbyteorder("<")
    if len(data) != count * kind.itemsize:
        raise BadRequest(
            f"input {name!r}: shape {shape} of {datatype} needs "
            f"{count * kind.itemsize} bytes, got {len(data)}"
        )
    return np.frombuffer(data, dtype=kind).reshape(shape)


def check_batch(arrays: dict[str, np.ndarray], max_instances: int) -> None:
    """The first dimension is the batch: at most `max_instances` per request."""
    batch = max((len(a) for a in arrays.values() if a.ndim), default=0)
    if batch > max_instances:
        raise PayloadTooLarge(f"a batch of {batch}; at most {max_instances} per request")


def select_outputs(outputs: list[OutputTensor], wanted: list[str]) -> list[OutputTensor]:
    """The outputs asked for, in the order asked (all of them when none is named)."""
    if not wanted:
        return outputs
    known = {o.name: o for o in outputs}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise BadRequest(f"unknown outputs {unknown}; this model has {sorted(known)}")
    return [known[name] for name in wanted]


def encode_outputs(
    outputs: list[OutputTensor], binary: set[str]
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """JSON descriptions of the outputs, and the raw bytes of those asked for in binary."""
    described, chunks = [], []
    for out in outputs:
        entry: dict[str, Any] = {
            "name": out.name,
            "datatype": out.datatype,
            "shape": list(out.array.shape),
        }
        if out.name in binary:
            chunk = _to_binary(out)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            entry["data"] = out.array.reshape(-1).tolist()
        described.append(entry)
    return described, chunks


def _to_binary(out: OutputTensor) -> bytes:
    if out.datatype == "BYTES":
        return bytes_from_elements(out.array.reshape(-1))
    return np.ascontiguousarray(
        out.array, dtype=np.dtype(NUMPY[out.datatype]).newbyteorder("<")
    ).tobytes()


def bytes_elements(name: str, data: bytes) -> list[str]:
    """BYTES elements in the binary form (each a 4-byte little-endian length, then the bytes)."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise BadRequest(f"input {name!r}: truncated BYTES element")
        (n,) = struct.unpack_from("<I", data, offset)
        item = data[offset + 4 : offset + 4 + n]
        if len(item) != n:
            raise BadRequest(f"input {name!r}: truncated BYTES element")
        try:
            items.append(item.decode("utf-8"))
        except UnicodeDecodeError:
            raise BadRequest(f"input {name!r}: BYTES are not UTF-8 text") from None
        offset += 4 + n
    return items


def bytes_from_elements(elements: Any) -> bytes:
    """The binary form of BYTES elements (str, or bytes as they are)."""
    parts = []
    for item in elements:
        encoded = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(struct.pack("<I", len(encoded)) + encoded)
    return b"".join(parts)


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            flat.append(x)
        else:
            stack.pop()
    return flat


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_float(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _is_bool(x: Any) -> bool:
    return isinstance(x, bool)
