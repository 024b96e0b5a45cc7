"""A folder holding only model.onnx gets its manifest from the graph at load (contract.graphs,
read through onnxruntime), agreeing with what the exporter reads off the same graph with onnx;
a folder that lacks only its manifest stays a broken version."""

import onnx
import pytest
from onnx import TensorProto, helper

from contract.graphs import onnx_opset, tensor_spec
from export.tensor import TensorExporter
from service.loading import read_manifest


def graph(path, opset: int = 17, dims=("n", None)) -> None:
    """Sums each row: x (n, m) -> total (n); the second axis unnamed."""
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["total"], keepdims=0)]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    total = helper.make_tensor_value_info("total", TensorProto.FLOAT, [dims[0]])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    model = helper.make_model(
        helper.make_graph(nodes, "row_sum", [x], [total], [axes]),
        opset_imports=[helper.make_opsetid("ai.onnx.ml", 3), helper.make_opsetid("", opset)],
    )
    onnx.save(model, path)


def test_the_derived_manifest_reads_as_the_exporter_reads_the_graph(tmp_path):
    graph(tmp_path / "model.onnx", opset=18)
    manifest = read_manifest("rowsum", 1, tmp_path)
    exporter = TensorExporter(tmp_path / "model.onnx")
    (spec,) = manifest.graphs.values()
    assert (spec.inputs, spec.outputs) == (exporter.inputs, exporter.outputs)
    assert spec.inputs[0].shape == ["n", "dim1"]
    assert (manifest.task, manifest.origin, manifest.name, manifest.version) == (
        "tensor",
        "onnx",
        "rowsum",
        1,
    )
    assert manifest.export.opset == 18 == exporter.export_facts(tmp_path)["opset"]
    assert manifest.export.onnx_version is None and manifest.export.torch_version is None
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.parametrize("opset", [13, 21])
def test_the_opset_is_read_off_the_graph_without_onnx(tmp_path, opset):
    graph(tmp_path / "model.onnx", opset=opset)
    assert onnx_opset(tmp_path / "model.onnx") == opset


def test_a_folder_missing_only_its_manifest_is_not_a_bare_graph(tmp_path):
    graph(tmp_path / "model.onnx")
    (tmp_path / "vocab.txt").write_text("a\nb\n")
    with pytest.raises(FileNotFoundError):
        read_manifest("rowsum", 1, tmp_path)


def test_an_unserved_dtype_is_named():
    with pytest.raises(ValueError, match="input 'x' has dtype COMPLEX64, which is not served"):
        tensor_spec("x", "complex64", ["n"], "input")
