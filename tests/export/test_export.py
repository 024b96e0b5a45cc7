import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from contract import registry
from contract.manifest import Manifest, sha256_of
from contract.words import Vocabulary, tokenize
from export.__main__ import main as export
from export.classifier import ClassifierExporter, ProbabilityHead, TextInput
from export.common import ParityError, pad_ids
from export.driver import Options, write_version
from export.publish import publish
from model_src.classifier import TextClassifier
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
def test_onnxruntime_matches_pytorch_on_mixed_lengths(tiny_checkpoints, cell, tmp_path: Path):
    exporter = ClassifierExporter.from_checkpoint(tiny_checkpoints[cell])
    exporter.export_graphs(tmp_path)
    assert exporter.parity(tmp_path).max_abs_diff < 1e-5
    texts = ["great", "the film is a dull film , what a bore", "moving .", "a " * 30]
    ids = [exporter.encoder.encode(t)[1] for t in texts]
    tokens, lengths = pad_ids(ids, exporter.encoder.pad_id)
    with torch.no_grad():
        expected = ProbabilityHead(exporter.module)(
            torch.from_numpy(tokens), torch.from_numpy(lengths)
        )
    session = ort.InferenceSession(str(tmp_path / "model.onnx"))
    batch = session.run(None, {"tokens": tokens, "lengths": lengths})
    for want, got in zip(expected, batch, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-5)
    # Padding in the graph does not change a sequence's answer either.
    alone = session.run(None, dict(zip(["tokens", "lengths"], pad_ids(ids[2:3], 0), strict=True)))
    np.testing.assert_allclose(batch[0][2], alone[0][0], atol=1e-5)


def test_our_checkpoint_is_exported_as_a_users_module_is(tiny_checkpoints, tiny_repository: Path):
    """Our model goes through the user's exporter: a user exporting it with its vocabulary and
    held-out split gets the same encoder, preprocessing, parity batch and accuracy; only the
    checkpoint's facts make it "trained" and name its accuracy after its split."""
    model, checkpoint = TRAINER.load_checkpoint(tiny_checkpoints["lstm"])
    text = TextInput(
        tokenizer="words",
        vocab=tuple(checkpoint.vocab),
        lowercase=True,
        max_tokens=checkpoint.max_tokens,
    )
    heldout = list(zip(checkpoint.heldout.texts, checkpoint.heldout.labels, strict=True))
    as_user = registry.load(registry.get("classify").exporter)(
        model, text, checkpoint.labels, heldout
    )
    ours = registry.load(registry.get("classify").exporter).from_checkpoint(
        tiny_checkpoints["lstm"]
    )
    assert type(ours) is type(as_user) is ClassifierExporter
    assert type(ours.module) is type(model) is TextClassifier
    sentence = "Didn't like it, zzqx!"  # clitic, punctuation, case and an unknown word
    tokens = tokenize(sentence)
    expected = (tokens, Vocabulary(tuple(checkpoint.vocab)).encode(tokens))
    assert ours.encoder.encode(sentence) == as_user.encoder.encode(sentence) == expected
    published = Manifest.read(tiny_repository / "tiny-lstm" / "1")
    assert published.origin == "trained" and published.architecture.cell == "lstm"
    assert published.preprocessing == as_user.manifest_parts()["preprocessing"]
    assert published.preprocessing.model_dump() == {
        "kind": "words",
        "lowercase": True,
        "vocab_file": "vocab.txt",
        "vocab_size": len(checkpoint.vocab),
        "pad_id": 0,
        "unk_id": 1,
        "max_tokens": checkpoint.max_tokens,
    }
    assert as_user.manifest_parts()["origin"] == "module" and as_user.training is None
    assert ours.batch == as_user.batch
    folder = tiny_repository / "tiny-lstm" / "1"
    dev, user = ours.quality(folder), as_user.quality(folder)
    assert (dev.metric, user.metric) == ("dev_accuracy", "eval_accuracy")
    assert (
        dev.value
        == user.value
        == pytest.approx(published.training.metrics["dev_accuracy"], abs=1e-4)
    )


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
    exporter = ClassifierExporter.from_checkpoint(tiny_checkpoints["lstm"])
    with pytest.raises(ParityError, match="differs from PyTorch on a mixed-length batch by"):
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
