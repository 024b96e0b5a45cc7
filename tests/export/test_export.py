import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from contract.manifest import Manifest, sha256_of
from contract.words import Vocabulary, tokenize
from export.__main__ import main as export
from export.classifier import ClassifierExporter, max_abs_diff, pad_batch
from export.common import ParityError
from export.driver import Options, write_version
from export.publish import publish
from model_src.train import TRAINER


def test_export_publishes_a_valid_version(tiny_repository: Path):
    folder = tiny_repository / "tiny-lstm" / "1"
    manifest = Manifest.read(folder)
    assert manifest.task == "classify" and manifest.architecture.cell == "lstm"
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "vocab.txt"]
    for name, digest in manifest.files.items():
        assert sha256_of(folder / name) == digest
    assert manifest.export.parity_max_abs_diff <= manifest.export.parity_tolerance
    assert manifest.training.metrics["dev_accuracy"] >= 0.9
    onnx.checker.check_model(onnx.load(str(folder / "model.onnx")))


def test_graph_has_dynamic_batch_and_sequence_axes(tiny_repository: Path):
    session = ort.InferenceSession(str(tiny_repository / "tiny-gru" / "1" / "model.onnx"))
    assert [i.shape for i in session.get_inputs()] == [["batch", "sequence"], ["batch"]]
    assert [o.name for o in session.get_outputs()] == ["probabilities", "attention"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_onnxruntime_matches_pytorch_on_mixed_lengths(tiny_checkpoints, cell):
    model, checkpoint = TRAINER.load_checkpoint(tiny_checkpoints[cell])
    vocab = Vocabulary(tuple(checkpoint.vocab))
    texts = ["great", "the film is a dull film , what a bore", "moving .", "a " * 30]
    ids = [vocab.encode(tokenize(t)) for t in texts]
    graph = Path(checkpoint_dir := tiny_checkpoints[cell].parent) / "parity.onnx"
    from export.classifier import export_graph

    export_graph(model, graph)
    assert max_abs_diff(model, graph, ids) < 1e-5
    # Padding in the graph does not change a sequence's answer either.
    session = ort.InferenceSession(str(graph))
    batch = session.run(None, dict(zip(["tokens", "lengths"], pad_batch(ids), strict=True)))
    alone = session.run(None, dict(zip(["tokens", "lengths"], pad_batch(ids[2:3]), strict=True)))
    np.testing.assert_allclose(batch[0][2], alone[0][0], atol=1e-5)
    assert checkpoint_dir.exists()


def test_next_version_is_chosen_automatically_and_nothing_half_written_remains(
    tiny_checkpoints, tmp_path: Path
):
    for expected in (1, 2):
        folder = export(
            [str(tiny_checkpoints["gru"]), "--name", "auto", "--repository", str(tmp_path)]
        )
        assert folder == tmp_path / "auto" / str(expected)
        assert Manifest.read(folder).version == expected
    assert sorted(p.name for p in (tmp_path / "auto").iterdir()) == ["1", "2"]


def test_export_above_the_tolerance_is_refused(tiny_checkpoints, tmp_path: Path):
    exporter = ClassifierExporter(tiny_checkpoints["lstm"])
    with pytest.raises(ParityError, match="onnxruntime differs from PyTorch by"):
        publish(
            tmp_path,
            "strict",
            lambda folder, version: write_version(
                "classify", exporter, folder, "strict", version, Options(tolerance=-1.0)
            ),
        )
    assert list((tmp_path / "strict").iterdir()) == []  # the staging folder is gone


def test_manifest_rejects_paths_and_bad_names(tiny_repository: Path):
    data = json.loads((tiny_repository / "tiny-lstm" / "1" / "manifest.json").read_text())
    for field, value in (("name", "../evil"), ("name", "Upper")):
        with pytest.raises(ValueError):
            Manifest.model_validate({**data, field: value})
    with pytest.raises(ValueError):
        Manifest.model_validate({**data, "files": {"../model.onnx": "0"}})


def test_int8_export_records_the_accuracy_change(tiny_checkpoints, tmp_path: Path):
    folder = export(
        [
            str(tiny_checkpoints["lstm"]),
            "--name",
            "tiny-int8",
            "--repository",
            str(tmp_path),
            "--quantize",
            "int8",
            "--max-accuracy-drop",
            "1",
        ]
    )
    manifest = Manifest.read(folder)
    assert manifest.export.quantized == "int8"
    metrics = manifest.training.metrics
    assert manifest.export.accuracy_change == pytest.approx(
        metrics["dev_accuracy"] - metrics["dev_accuracy_fp32"], abs=1e-3
    )
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.onnx", "vocab.txt"]
    ops = {node.op_type for node in onnx.load(str(folder / "model.onnx")).graph.node}
    assert ops & {"DynamicQuantizeLSTM", "MatMulInteger"}


def test_only_plain_positive_numbers_are_versions(tmp_path: Path):
    from export.publish import existing_versions

    for name in ("1", "7", "0", "³", "two", ".staging-1"):
        (tmp_path / name).mkdir()
    assert existing_versions(tmp_path) == [1, 7]
