"""A task registered by another distribution's entry point is served end to end, without torch.

The task lives only under tests/plugin_task; a `.dist-info` folder with a real
`entry_points.txt` (what `pip install` writes) is its whole registration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from contract.manifest import (
    Architecture,
    ExportInfo,
    GraphSpec,
    Manifest,
    TensorSpec,
    TextPreprocessing,
    TrainingInfo,
    sha256_of,
)
from contract.words import Vocabulary
from tests.conftest import ROOT

VOCAB = Vocabulary(("<pad>", "<unk>", "the", "film", "is", "great"))

SCRIPT = """
import json, sys, time
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.path.insert(0, sys.argv[2])  # where the plugin's distribution metadata is installed
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

with TestClient(create_app(Settings(model_repository=sys.argv[1], providers="cpu"))) as client:
    wait_ready(client)
    answers = {
        "listed": client.get("/v1/models").json(),
        "v1": client.post(
            "/v1/models/counter:predict",
            json={"instances": ["the film is great", "the plot is zzz and qqq"]},
        ).json(),
        "v2": client.post(
            "/v2/models/counter/infer",
            json={"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1], "data": ["zzz"]}]},
        ).json(),
        "bad": client.post("/v1/models/counter:predict", json={"instances": [7]}).json(),
    }
answers["imported"] = sorted(
    {n.split(".")[0] for n in sys.modules if sys.modules[n] is not None}
    & {"torch", "model_src", "export"}
)
print(json.dumps(answers))
"""


def unknown_counter_graph(path: Path) -> None:
    """tokens (batch, sequence) int64 -> unknown (batch,) float32: how many ids equal <unk>."""
    nodes = [
        helper.make_node(
            "Constant", [], ["unk"], value=helper.make_tensor("u", TensorProto.INT64, [], [1])
        ),
        helper.make_node("Equal", ["tokens", "unk"], ["is_unk"]),
        helper.make_node("Cast", ["is_unk"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node(
            "Constant", [], ["axis"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("ReduceSum", ["as_float", "axis"], ["unknown"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "unknown_counter",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("unknown", TensorProto.FLOAT, ["batch"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def publish_counter(repository: Path) -> None:
    folder = repository / "counter" / "1"
    folder.mkdir(parents=True)
    unknown_counter_graph(folder / "model.onnx")
    VOCAB.save(folder / "vocab.txt")
    Manifest(
        name="counter",
        version=1,
        task="wordcount",
        created_at="2026-01-01T00:00:00+00:00",
        architecture=Architecture(
            cell="gru",
            embedding_dim=0,
            hidden_size=0,
            num_layers=0,
            bidirectional=False,
            attention_size=0,
            dropout=0.0,
        ),
        graphs={
            "model": GraphSpec(
                file="model.onnx",
                inputs=[TensorSpec(name="tokens", dtype="int64", shape=["batch", "sequence"])],
                outputs=[TensorSpec(name="unknown", dtype="float32", shape=["batch"])],
            )
        },
        preprocessing=TextPreprocessing(
            vocab_file="vocab.txt", vocab_size=len(VOCAB), max_tokens=64
        ),
        files={f: sha256_of(folder / f) for f in ("model.onnx", "vocab.txt")},
        export=ExportInfo(
            opset=17,
            torch_version="none",
            onnx_version=onnx.__version__,
            onnxruntime_version="any",
            parity_max_abs_diff=0.0,
            parity_tolerance=0.0,
        ),
        training=TrainingInfo(
            dataset="none", source="built by hand", seed=0, epochs=0, examples={}, metrics={}
        ),
    ).write(folder)


def install_plugin_metadata(site: Path) -> None:
    """What `pip install rnnserve-wordcount` leaves: a dist-info folder naming the entry point."""
    dist = site / "rnnserve_wordcount-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rnnserve-wordcount\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text("[rnnserve.tasks]\nwordcount = tests.plugin_task:TASK\n")


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("plugin")
    publish_counter(root / "models")
    install_plugin_metadata(root / "site")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(root / "models"), str(root / "site")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_plugin_task_is_listed_under_its_own_name(served):
    assert {"name": "counter", "task": "wordcount"}.items() <= served["listed"]["models"][0].items()


def test_the_plugin_task_answers_v1_from_its_graph(served):
    assert served["v1"]["predictions"] == [
        {"words": 4, "unknown_words": 0},
        {"words": 6, "unknown_words": 4},  # plot, zzz, and, qqq
    ]
    assert served["bad"] == {"error": "instances[0] must be a text with words"}


def test_the_plugin_task_answers_v2(served):
    (output,) = served["v2"]["outputs"]
    assert output["name"] == "unknown" and output["data"] == [1.0]


def test_serving_a_plugin_task_imports_neither_torch_nor_training_code(served):
    assert served["imported"] == []


def test_without_its_distribution_the_task_is_unknown():
    from contract import registry

    assert "wordcount" not in registry.tasks()
    with pytest.raises(ValueError, match="task 'wordcount' is not served"):
        registry.get("wordcount")
