"""One table of tensor data types (contract/dtypes.py): its type aliases, numpy, ONNX and the
page's JavaScript mirror all agree with it."""

import re
from typing import get_args

import numpy as np

from contract.dtypes import DTYPE_OF_ONNX, TYPES, Datatype, DType
from tests.conftest import ROOT


def test_the_type_aliases_list_the_table():
    assert get_args(DType) == tuple(t.dtype for t in TYPES)
    assert get_args(Datatype) == tuple(t.datatype for t in TYPES)


def test_numpy_and_onnx_name_each_type_as_the_table_does():
    import onnx

    for t in TYPES:
        if t.dtype != "string":
            assert np.dtype(t.dtype).name == t.dtype
        number = onnx.TensorProto.DataType.Value(t.onnx.upper())
        assert onnx.helper.tensor_dtype_to_np_dtype(number) == np.dtype(
            object if t.dtype == "string" else t.dtype
        )
    assert len(DTYPE_OF_ONNX) == len(TYPES)


def test_the_pages_mirror_is_the_table():
    script = (ROOT / "service" / "ui" / "tasks" / "tensor.js").read_text()
    block = re.search(r"const V2_TYPES = \{(.*?)\};", script, re.DOTALL)
    assert block, "tensor.js no longer declares V2_TYPES"
    mirror = dict(re.findall(r"(\w+): \"(\w+)\"", block.group(1)))
    assert mirror == {t.dtype: t.datatype for t in TYPES}
