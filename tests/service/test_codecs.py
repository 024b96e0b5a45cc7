"""V2 JSON tensors -> numpy: the one-conversion fast path accepts and refuses exactly what the
value-by-value path does."""

import numpy as np
import pytest

from service.codecs import decode_inputs
from service.errors import BadRequest
from service.protocol import InferenceRequest


def decode(datatype: str, shape: list[int], data: list) -> np.ndarray:
    body = InferenceRequest(
        inputs=[{"name": "x", "datatype": datatype, "shape": shape, "data": data}]
    )
    return decode_inputs(body, b"", 1 << 20)["x"]


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "expected"),
    [
        ("INT64", [2, 3], [[1, 2, 3], [4, 5, 6]], np.arange(1, 7).reshape(2, 3)),
        ("INT64", [2, 3], [1, 2, 3, 4, 5, 6], np.arange(1, 7).reshape(2, 3)),
        ("INT32", [3], [1, -2, 3], np.array([1, -2, 3], np.int32)),
        ("FP32", [1, 3], [[1, 2.5, -3]], np.array([[1, 2.5, -3]], np.float32)),
        ("BOOL", [2], [True, False], np.array([True, False])),
        ("INT64", [1, 2, 2], [[[1, 2], [3, 4]]], np.array([[[1, 2], [3, 4]]])),
    ],
)
def test_numbers_decode_to_their_dtype_and_shape(datatype, shape, data, expected):
    array = decode(datatype, shape, data)
    assert array.dtype == expected.dtype and array.shape == tuple(shape)
    np.testing.assert_array_equal(array, expected)


@pytest.mark.parametrize(
    ("datatype", "shape", "data", "says"),
    [
        ("INT64", [1, 2], [[1, True]], "not all INT64"),  # numpy alone would read 1
        ("INT64", [1, 2, 1], [[[1], [False]]], "not all INT64"),
        ("INT64", [2], [1.5, 2], "not all INT64"),
        ("INT64", [2], ["1", 2], "not all INT64"),
        ("FP32", [2], [1.0, True], "not all FP32"),
        ("BOOL", [2], [True, 1], "not all BOOL"),
        ("INT8", [2], [1, 300], "does not fit INT8"),
        ("INT64", [2, 2], [[1, 2], [3]], "needs 4 values, data has 3"),
        ("INT64", [3], [1, 2], "needs 3 values, data has 2"),
    ],
)
def test_what_the_slow_path_refuses_is_still_refused(datatype, shape, data, says):
    with pytest.raises(BadRequest, match=says):
        decode(datatype, shape, data)
