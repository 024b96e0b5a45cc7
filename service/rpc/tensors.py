"""Tensors in gRPC inference messages <-> numpy: typed contents and raw (little-endian) bytes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service.codecs import NUMPY, OutputTensor, bytes_from_elements, check_shape, from_raw
from service.errors import BadRequest, PayloadTooLarge
from service.rpc import inference_pb2 as pb

# The InferTensorContents field that carries each datatype (FP16 travels raw only).
CONTENTS = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}  # fmt: skip
DATATYPES = frozenset(NUMPY) | {"BYTES"}


def parameters(fields: Any) -> dict[str, Any]:
    """A protobuf parameter map as a plain dict of Python values."""
    values = {}
    for key, value in fields.items():
        which = value.WhichOneof("parameter_choice")
        if which is not None:
            values[key] = getattr(value, which)
    return values


def inputs_from_message(
    request: pb.ModelInferRequest, max_tensor_bytes: int
) -> dict[str, np.ndarray]:
    """Each input as an array of its declared shape; BYTES inputs as arrays of str."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs"
        )
    if not request.inputs:
        raise BadRequest("the request has no inputs")
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
        if name in arrays:
            raise BadRequest(f"input {name!r} is given twice")
        if datatype not in DATATYPES:
            raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}")
        check_shape(name, shape)
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"input {name!r} has both contents and raw_input_contents")
            data = raw[i]
            if len(data) > max_tensor_bytes:
                raise PayloadTooLarge(
                    f"input {name!r}: {len(data)} bytes; at most {max_tensor_bytes} per tensor"
                )
            arrays[name] = from_raw(name, datatype, shape, data, what="raw data")
        else:
            arrays[name] = _from_contents(name, datatype, shape, tensor.contents)
    return arrays


def _from_contents(
    name: str, datatype: str, shape: list[int], contents: pb.InferTensorContents
) -> np.ndarray:
    count = math.prod(shape)
    field = CONTENTS.get(datatype)
    if field is None:
        raise BadRequest(f"input {name!r}: {datatype} travels in raw_input_contents only")
    values = getattr(contents, field)
    if len(values) != count:
        raise BadRequest(
            f"input {name!r}: shape {shape} needs {count} values, {field} has {len(values)}"
        )
    if datatype == "BYTES":
        try:
            return np.array([v.decode("utf-8") for v in values], dtype=object).reshape(shape)
        except UnicodeDecodeError:
            raise BadRequest(f"input {name!r}: BYTES are not UTF-8 text") from None
    try:
        return np.array(values, dtype=NUMPY[datatype]).reshape(shape)
    except OverflowError:
        raise BadRequest(f"input {name!r}: a value does not fit {datatype}") from None


def outputs_into_message(
    response: pb.ModelInferResponse, outputs: list[OutputTensor], raw: bool
) -> None:
    """Fill `response` with the outputs, as raw_output_contents or as typed contents (raw all
    the same when a datatype has no typed field: the two forms cannot be mixed)."""
    raw = raw or any(out.datatype not in CONTENTS for out in outputs)
    for out in outputs:
        tensor = response.outputs.add(name=out.name, datatype=out.datatype)
        tensor.shape.extend(out.array.shape)
        flat = out.array.reshape(-1)
        if out.datatype == "BYTES":
            if raw:
                response.raw_output_contents.append(bytes_from_elements(flat))
            else:
                tensor.contents.bytes_contents.extend(str(x).encode("utf-8") for x in flat)
        elif raw:
            kind = np.dtype(NUMPY[out.datatype]).newbyteorder("<")
            response.raw_output_contents.append(np.ascontiguousarray(flat, kind).tobytes())
        else:
            getattr(tensor.contents, CONTENTS[out.datatype]).extend(flat.tolist())
