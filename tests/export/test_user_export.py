"""A user's module or ONNX graph at export: each breach of the contract refused with its message,
and what a kept contract publishes (no server here; tests/test_user_models.py serves them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from contract.manifest import Manifest
from export.__main__ import main as export
from tests.conftest import ROOT

MODULES = ROOT / "tests" / "user_models" / "modules.py"
VOCAB = ["[UNK]", "a", "b", "c", "d", "e", " ", "[PAD]"]  # our ids 0 and 1 are not its specials


@pytest.fixture
def vocab_file(tmp_path) -> Path:
    path = tmp_path / "vocab.txt"
    path.write_text("".join(f"{t}\n" for t in VOCAB))
    return path


def export_module(tmp_path: Path, vocab_file: Path, kind: str, *extra: str) -> list[str]:
    config = tmp_path / f"{kind}.json"
    config.write_text(json.dumps({"kind": kind, "vocab_size": len(VOCAB), "pad_id": 7}))
    return [
        "--task", "classify", "--module", f"{MODULES}:build", "--config", str(config),
        "--vocab", str(vocab_file), "--tokenizer", "chars", "--pad-token", "[PAD]",
        "--unk-token", "[UNK]", "--labels", "negative,positive", "--name", "mine",
        "--repository", str(tmp_path / "models"), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("WrongClasses", "expected logits of shape [5, 2] (batch, one per label of "
                         "['negative', 'positive']), got a float32 tensor of shape [5, 4]"),
        ("IntegerLogits", "expected float logits, got a int64 tensor of shape [5, 2]"),
        ("NeedsMask", "expected forward(tokens: int64[B, T], lengths: int64[B]) -> logits [B, C] "
                      "or (logits, attention [B, T]); calling it so raised: NeedsMask.forward() "
                      "missing 1 required positional argument: 'mask'"),
        ("ReadsPadding", "expected a sequence's logits not to depend on the padding after it"),
        ("NotExportable", "NotExportable could not be exported to ONNX: UnsupportedOperatorError: "
                          "Exporting the operator 'aten::cummax' to ONNX opset version 17 is not "
                          "supported"),
    ],
)  # fmt: skip
def test_a_broken_contract_is_refused_with_one_line(tmp_path, vocab_file, capfd, kind, message):
    with pytest.raises(SystemExit) as exit_:
        export(export_module(tmp_path, vocab_file, kind))
    assert exit_.value.code == 1
    out, err = capfd.readouterr()
    assert err.startswith("rnnserve export: refused: ") and message in err
    assert len(err.strip().splitlines()) == 1  # no stack trace, no exporter IR dump
    assert "Traceback" not in out + err and "graph(" not in out + err
    published = tmp_path / "models" / "mine"
    assert not published.exists() or not [p for p in published.iterdir()]


def test_a_vocabulary_without_the_named_padding_token_is_refused(tmp_path, vocab_file, capfd):
    with pytest.raises(SystemExit):
        export([*export_module(tmp_path, vocab_file, "MaxPoolGRU"), "--pad-token", "<pad>"])
    err = capfd.readouterr().err
    assert "the padding token '<pad>' is not in the vocabulary" in err


def test_int8_needs_data_to_check_its_accuracy(tmp_path, vocab_file, capfd):
    with pytest.raises(SystemExit):
        export([*export_module(tmp_path, vocab_file, "MaxPoolGRU"), "--quantize", "int8"])
    assert "--quantize int8 needs --eval-data" in capfd.readouterr().err


def test_a_kept_contract_publishes_the_vocabularys_own_ids(tmp_path, vocab_file):
    folder = export(export_module(tmp_path, vocab_file, "AttentionLSTM", "--lowercase"))
    manifest = Manifest.read(folder)
    assert (manifest.origin, manifest.task, manifest.architecture, manifest.training) == (
        "module", "classify", None, None,
    )  # fmt: skip
    prep = manifest.preprocessing
    assert (prep.kind, prep.pad_id, prep.unk_id, prep.lowercase) == ("chars", 7, 0, True)
    assert [o.name for o in manifest.graphs["model"].outputs] == ["probabilities", "attention"]
    assert manifest.export.parity_max_abs_diff <= 1e-4
    assert (folder / "vocab.txt").read_text().splitlines()[7] == "[PAD]"
    again = export(export_module(tmp_path, vocab_file, "MaxPoolGRU"))
    assert again.name == "2"
    assert [o.name for o in Manifest.read(again).graphs["model"].outputs] == ["probabilities"]


def test_a_trained_models_manifest_stays_strict(tiny_repository):
    data = json.loads((tiny_repository / "tiny-lstm" / "1" / "manifest.json").read_text())
    for field in ("architecture", "training", "preprocessing"):
        broken = {k: v for k, v in data.items() if k != field}
        with pytest.raises(ValueError, match=f"a model of origin 'trained' needs {field}"):
            Manifest.model_validate(broken)
    with pytest.raises(ValueError, match="task 'tensor' is for ONNX graphs"):
        Manifest.model_validate({**data, "task": "tensor"})


def test_a_graph_with_non_tensor_outputs_is_refused(tmp_path, capfd):
    from skl2onnx import to_onnx
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(np.int64))
    graph = tmp_path / "zipmap.onnx"
    graph.write_bytes(to_onnx(model, x[:1]).SerializeToString())  # ZipMap: a sequence of maps
    with pytest.raises(SystemExit):
        export(["--task", "tensor", "--onnx", str(graph), "--name", "lr",
                "--repository", str(tmp_path / "models")])  # fmt: skip
    err = capfd.readouterr().err
    assert "expected tensor outputs, got output 'output_probability' of type sequence_type" in err
    assert "options={'zipmap': False}" in err


def test_a_graph_that_fails_to_run_is_refused(tmp_path, capfd):
    import onnx
    from onnx import TensorProto, helper

    # Reshape to a fixed 3 values: declared for any length, it runs on none but 3.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
        [helper.make_tensor("shape", TensorProto.INT64, [1], [3])],
    )
    path = tmp_path / "fixed.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(SystemExit):
        export(["--task", "tensor", "--onnx", str(path), "--name", "fixed",
                "--repository", str(tmp_path / "models")])  # fmt: skip
    err = capfd.readouterr().err
    assert "expected the graph to load in onnxruntime and run an example, got " in err


def test_a_seq2seq_decoder_without_attention_is_refused(tmp_path, capfd):
    from contract.chars import SPECIALS, CharVocabulary

    vocab = tmp_path / "vocab.txt"
    CharVocabulary((*SPECIALS, *"0123456789")).save(vocab)
    config = tmp_path / "s2s.json"
    config.write_text(json.dumps({"input_size": 14, "output_size": 14, "decoder": "NoAttention"}))
    with pytest.raises(SystemExit):
        export(["--task", "seq2seq", "--module", f"{ROOT / 'tests/user_models/seq2seq.py'}:build",
                "--config", str(config), "--input-vocab", str(vocab), "--output-vocab", str(vocab),
                "--name", "s2s", "--repository", str(tmp_path / "models")])  # fmt: skip
    err = capfd.readouterr().err
    assert "expected the decoder to return (logits, next_state, attention), got a tuple of 2" in err


def test_a_seq2seq_vocabulary_must_start_with_the_four_specials(tmp_path):
    from export.api import publish_seq2seq
    from export.user_module import ContractError, load_callable

    model = load_callable(f"{ROOT / 'tests/user_models/seq2seq.py'}:build")(
        input_size=5, output_size=5
    )
    with pytest.raises(
        ContractError, match="the input vocabulary: a character vocabulary must start"
    ):
        publish_seq2seq(model.encoder, model.decoder, input_vocab="abcde", output_vocab="abcde",
                        name="s2s", repository=tmp_path)  # fmt: skip


def test_int8_keeps_the_accuracy_it_measured(tmp_path, vocab_file):
    data = tmp_path / "eval.tsv"
    data.write_text("label\tsentence\n" + "".join(
        f"{['negative', 'positive'][i % 2]}\t{'abcde'[: 1 + i % 5]} {'edcba'[: 1 + i % 3]}\n"
        for i in range(40)
    ))  # fmt: skip
    folder = export([*export_module(tmp_path, vocab_file, "AttentionLSTM"), "--quantize", "int8",
                     "--eval-data", str(data), "--max-accuracy-drop", "1"])  # fmt: skip
    manifest = Manifest.read(folder)
    assert manifest.export.quantized == "int8"
    assert manifest.export.accuracy_change is not None
    assert manifest.export.parity_max_abs_diff is not None


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"kind": "Forgetful"}, "expected a series fed in chunks (carrying the state) to give "
                                "what it gives fed whole, got a difference of"),
        (None, "expected StepGRU to have initial_state(batch)"),
    ],
)  # fmt: skip
def test_a_forecaster_that_breaks_its_contract_is_refused(tmp_path, capfd, config, message):
    module = f"{ROOT / 'tests/user_models/forecast.py'}:build"
    if config is None:  # a plain module: its initial_state taken away
        from export.user_forecast import UserForecastExporter
        from export.user_module import ContractError, load_callable

        step = load_callable(module)()
        step.initial_state = None
        with pytest.raises(ContractError, match=re.escape(message)):
            UserForecastExporter(step)
        return
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(SystemExit):
        export(["--task", "forecast", "--module", module, "--config", str(path), "--name", "fc",
                "--repository", str(tmp_path / "models")])  # fmt: skip
    assert message in capfd.readouterr().err
