"""A plugin task that implements the streaming protocol gets sessions and Triton's sequences,
in memory and in Redis, with nothing in `service/` knowing it: registered by an entry point,
served from a real graph.

The task (tests/stateful_task) keeps the running mean of a stream: a session's answer after
each step is the mean of every value it was sent, whichever store holds its state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from contract.manifest import (
    ExportInfo,
    GraphSpec,
    Manifest,
    SeriesPreprocessing,
    TensorSpec,
    sha256_of,
)
from tests.conftest import ROOT
from tests.scaleout import MISSING, have_redis, redis_server

SCRIPT = """
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
sys.path.insert(0, sys.argv[2])  # where the plugin's distribution metadata is installed
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

MODEL = "/v1/models/mean"
answers = {}
for store in sys.argv[3:]:
    settings = Settings(model_repository=sys.argv[1], providers="cpu", session_store=store)
    with TestClient(create_app(settings)) as a, TestClient(create_app(settings)) as b:
        wait_ready(a)
        wait_ready(b)
        opened = a.post(f"{MODEL}/sessions").json()
        sid = opened["session_id"]
        steps = [
            (a, [1.0, 2.0, 3.0]),
            (b if store != "memory" else a, [10.0]),  # a shared store: the other app steps it
            (a, [4.0, 5.0]),
        ]
        answers[store] = {
            "opened": opened,
            "steps": [
                client.post(f"{MODEL}/sessions/{sid}:step", json={"values": values}).json()
                for client, values in steps
            ],
            "bad": a.post(f"{MODEL}/sessions/{sid}:step", json={"values": [1, "x"]}).json(),
            "info": a.get(f"{MODEL}/sessions/{sid}").json(),
            "predict": a.post(f"{MODEL}:predict", json={"instances": [[2.0, 4.0]]}).json(),
            # The same stream as a Triton sequence on V2 infer, its steps on either app.
            "sequence": [
                client.post("/v2/models/mean/infer", json={
                    "inputs": [{"name": "values", "datatype": "FP32", "shape": [1, len(values)],
                                "data": values}],
                    "parameters": {"sequence_id": "s-1", "sequence_start": i == 0,
                                   "sequence_end": i == 2},
                }).json()
                for i, (client, values) in enumerate(steps)
            ],
        }
answers["imported"] = sorted(
    {n.split(".")[0] for n in sys.modules if sys.modules[n] is not None}
    & {"torch", "model_src", "export"}
)
print(json.dumps(answers))
"""


def running_mean_graph(path: Path) -> None:
    """(total [1], count [1], values [1, n]) -> (mean, total + sum, count + n)."""
    nodes = [
        helper.make_node(
            "Constant", [], ["axis"], value=helper.make_tensor("a", TensorProto.INT64, [1], [1])
        ),
        helper.make_node("ReduceSum", ["values", "axis"], ["sum"], keepdims=0),
        helper.make_node("Mul", ["values", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "one"], ["ones"]),
        helper.make_node("ReduceSum", ["ones", "axis"], ["n"], keepdims=0),
        helper.make_node("Add", ["total", "sum"], ["total_out"]),
        helper.make_node("Add", ["count", "n"], ["count_out"]),
        helper.make_node("Div", ["total_out", "count_out"], ["mean"]),
    ]
    scalar = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "running_mean",
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("count", TensorProto.FLOAT, [1]),
            helper.make_tensor_value_info("values", TensorProto.FLOAT, [1, "n"]),
        ],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, [1])
            for name in ("mean", "total_out", "count_out")
        ],
        initializer=scalar,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def publish_running_mean(repository: Path) -> None:
    folder = repository / "mean" / "1"
    folder.mkdir(parents=True)
    running_mean_graph(folder / "step.onnx")
    spec = TensorSpec(name="values", dtype="float32", shape=[1, "n"])
    Manifest(
        name="mean",
        version=1,
        task="runningmean",
        origin="module",
        created_at="2026-01-01T00:00:00+00:00",
        graphs={"step": GraphSpec(file="step.onnx", inputs=[spec], outputs=[])},
        preprocessing=SeriesPreprocessing(mean=0.0, std=1.0, window=1, horizon=1, max_values=64),
        files={"step.onnx": sha256_of(folder / "step.onnx")},
        export=ExportInfo(
            opset=17,
            torch_version="none",
            onnx_version=onnx.__version__,
            onnxruntime_version="any",
            parity_max_abs_diff=0.0,
            parity_tolerance=0.0,
        ),
    ).write(folder)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stateful")
    publish_running_mean(root / "models")
    dist = root / "site" / "rnnserve_runningmean-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: rnnserve-runningmean\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text(
        "[rnnserve.tasks]\nrunningmean = tests.stateful_task:TASK\n"
    )
    with ExitStack() as stack:
        stores = ["memory"]
        if have_redis():
            stores.append(stack.enter_context(redis_server()))
        result = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(root / "models"), str(root / "site"), *stores],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=180,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    answers["redis"] = next((answers[s] for s in stores[1:]), None)
    return answers


def check_store(answers: dict) -> None:
    assert answers["opened"]["max_values"] == 64
    means = [step["mean"] for step in answers["steps"]]
    assert means == pytest.approx([2.0, 4.0, 25 / 6], abs=1e-5)  # 6/3, 16/4, 25/6
    assert [step["steps"] for step in answers["steps"]] == [3, 4, 6]
    assert answers["bad"] == {"error": "values[1] must be a finite number, got 'x'"}
    assert answers["info"]["steps"] == 6 and answers["info"]["state_bytes"] == 16
    assert answers["predict"]["predictions"] == [{"mean": pytest.approx(3.0, abs=1e-6)}]
    # A step's answer as V2 tensors: each output the task declares, one row.
    outputs = [step["outputs"] for step in answers["sequence"]]
    assert [o[0]["name"] for o in outputs] == ["mean"] * 3
    assert [o[0]["shape"] for o in outputs] == [[1]] * 3
    assert [o[0]["data"][0] for o in outputs] == pytest.approx([2.0, 4.0, 25 / 6], abs=1e-5)


def test_the_memory_store_keeps_the_plugins_sessions(served):
    check_store(served["memory"])


@pytest.mark.skipif(not have_redis(), reason=f"needs {MISSING}")
def test_redis_keeps_the_plugins_sessions_across_apps(served):
    check_store(served["redis"])


def test_serving_the_stateful_plugin_imports_neither_torch_nor_training_code(served):
    assert served["imported"] == []
