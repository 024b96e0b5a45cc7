"""More models than memory: with a budget, models are listed at once and load on their first
request; the least recently used idle one makes room; pinned ones stay; none drops a request."""

import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.settings import Settings
from tests.conftest import copy_version, wait_ready
from tests.live_server import free_port
from tests.service.test_grpc_inprocess import HeldSession
from tests.service.test_lifecycle import version_threads, wait_for

MODELS = ["m0", "m1", "m2", "m3"]
TEXT = {"instances": ["a moving and brilliant film"]}


@pytest.fixture(scope="module")
def fleet(tiny_repository: Path, tmp_path_factory) -> Path:
    """Four copies of tiny-lstm, a pinned one, and one whose manifest is broken."""
    repository = tmp_path_factory.mktemp("fleet")
    source = tiny_repository / "tiny-lstm" / "1"
    for name in [*MODELS, "pinned", "broken", "edited"]:
        copy_version(source, repository, name, 1)
    (repository / "broken" / "1" / "manifest.json").write_text("{not json")
    return repository


def app_over(repository: Path, **settings) -> TestClient:
    return TestClient(
        create_app(Settings(model_repository=repository, providers="cpu", **settings))
    )


@pytest.fixture(scope="module")
def reference(tiny_repository: Path) -> dict:
    """tiny-lstm's answer to TEXT, from a server that loads everything at start."""
    with app_over(tiny_repository) as client:
        wait_ready(client)
        return client.post("/v1/models/tiny-lstm:predict", json=TEXT).json()["predictions"][0]


@pytest.fixture
def budget_of_two(fleet: Path):
    """Room for two versions; `pinned` holds one of them."""
    port = free_port()
    app = create_app(
        Settings(
            model_repository=fleet,
            providers="cpu",
            max_loaded_models=2,
            pinned_models=["pinned"],
            grpc_port=port,
        )
    )
    with TestClient(app) as client:
        wait_ready(client)
        yield client, app.state.repository, f"127.0.0.1:{port}"


def predict(client: TestClient, name: str) -> dict:
    response = client.post(f"/v1/models/{name}:predict", json=TEXT)
    assert response.status_code == 200, response.text
    assert response.json()["model_name"] == name
    return response.json()["predictions"][0]


def loaded(client: TestClient) -> list[str]:
    models = client.get("/v1/models").json()["models"]
    return sorted(m["name"] for m in models if m["loaded"])


def metric(client: TestClient, name: str, **labels: str) -> float:
    """One series' value from /metrics (0 when the series does not exist)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + (f"{{{wanted}}}" if wanted else "")) + r" (\S+)"
    found = re.search(pattern, client.get("/metrics").text)
    return float(found.group(1)) if found else 0.0


def same_answer(got: dict, expected: dict) -> None:
    assert got["label"] == expected["label"]
    for label, p in expected["probabilities"].items():
        assert got["probabilities"][label] == pytest.approx(p, abs=1e-5)


def test_models_beyond_the_budget_are_listed_and_load_on_their_first_request(
    budget_of_two, reference
):
    client, _, _ = budget_of_two
    # Ready at once: only the pinned model loaded; the broken one is a problem, not a reason.
    ready = client.get("/v2/health/ready").json()
    assert ready["ready"] is True and "broken version 1 is failed" in ready["problems"][0]
    assert loaded(client) == ["pinned"]
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["m2"] == {
        "name": "m2", "task": "classify", "versions": [1], "loaded": [],
        "default_version": 1, "ready": True,
    }  # fmt: skip
    detail = client.get("/v1/models/m2").json()
    assert detail["status"][0]["state"] == "unloaded"
    assert detail["manifest"]["name"] == "m2" and detail["manifest"]["labels"]
    index = {m["name"]: m for m in client.post("/v2/repository/index").json()}
    assert index["m2"]["state"] == "UNAVAILABLE" and index["m2"]["reason"] == (
        "loads on its first request"
    )
    assert client.get("/v2/models/m2/ready").json() == {"name": "m2", "ready": True}

    same_answer(predict(client, "m2"), reference)
    assert loaded(client) == ["m2", "pinned"]
    assert metric(client, "rnnserve_model_loads_total", model="m2", outcome="loaded") == 1
    assert metric(client, "rnnserve_cold_start_seconds_count") == 1
    assert metric(client, "rnnserve_cold_start_seconds_sum") > 0
    predict(client, "m2")  # warm: no second load, no second cold start
    assert metric(client, "rnnserve_model_loads_total", model="m2", outcome="loaded") == 1
    assert metric(client, "rnnserve_cold_start_seconds_count") == 1


def test_the_least_recently_used_idle_model_makes_room_and_pinned_ones_stay(budget_of_two):
    client, repository, _ = budget_of_two
    predict(client, "m0")
    threads = version_threads()  # the first on-demand load has started the loop's helpers
    for name in ["m1", "m2", "m0", "m3"]:
        predict(client, name)
        assert len(loaded(client)) == 2 and "pinned" in loaded(client)
    assert loaded(client) == ["m3", "pinned"]
    wait_for(lambda: repository.models["m0"][1].state == "unloaded", what="m0 unloaded")
    assert [metric(client, "rnnserve_model_evictions_total", model=n) for n in MODELS] == [
        2, 1, 1, 0,
    ]  # fmt: skip
    assert metric(client, "rnnserve_model_evictions_total", model="pinned") == 0
    assert client.get("/v1/models/m0").json()["status"][0]["state"] == "unloaded"
    # Versions loaded and unloaded hold no thread of their own once they are gone.
    assert version_threads() <= threads


def test_v2_over_http_and_grpc_load_on_demand_too(budget_of_two, reference):
    client, _, address = budget_of_two
    metadata = client.get("/v2/models/m1").json()  # tensors are known once it is loaded
    assert [t["name"] for t in metadata["inputs"]] == ["text"] and metadata["state"] == "ready"
    predict(client, "m0")  # m1 is now the least recently used
    body = {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                        "data": TEXT["instances"]}]}  # fmt: skip
    answer = client.post("/v2/models/m2/infer", json=body).json()
    assert answer["model_name"] == "m2" and answer["outputs"][1]["data"] == [reference["label"]]
    assert loaded(client) == ["m2", "pinned"]

    grpc = triton.InferenceServerClient(address)
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(TEXT["instances"], dtype=object))
    result = grpc.infer("m3", [text])
    probabilities = result.as_numpy("probabilities")[0]
    assert probabilities.tolist() == pytest.approx(
        list(reference["probabilities"].values()), abs=1e-5
    )
    assert grpc.is_model_ready("m0") is True  # unloaded now, and serves on demand
    grpc.close()
    assert loaded(client) == ["m3", "pinned"]


def test_a_request_waits_for_room_while_every_loaded_model_is_busy(fleet):
    """Room for one: m0 runs a held batch; a request for m1 waits (it is not refused, and m0's
    request is not dropped); once m0's batch ends, m0 makes room and both answer."""
    with app_over(fleet, max_loaded_models=1) as client:
        wait_ready(client)
        repository = client.app.state.repository
        predict(client, "m0")
        task = repository.models["m0"][1].task
        held = task.graph = HeldSession(task.graph)
        answers: dict[str, dict] = {}
        first = threading.Thread(target=lambda: answers.update(m0=predict(client, "m0")))
        first.start()
        wait_for(lambda: repository.models["m0"][1].active == 1, what="m0 busy")
        second = threading.Thread(target=lambda: answers.update(m1=predict(client, "m1")))
        second.start()
        wait_for(lambda: repository._changed.waiting, what="m1 waiting for room")
        assert repository.models["m1"][1].state == "unloaded" and not answers
        held.gate.set()
        first.join(30)
        second.join(30)
        assert set(answers) == {"m0", "m1"}
        assert answers["m0"]["label"] == answers["m1"]["label"]
        assert repository.models["m0"][1].state == "unloaded"


def test_no_request_is_dropped_while_models_come_and_go(fleet, reference):
    with app_over(fleet, max_loaded_models=2) as client:
        wait_ready(client)
        names = [MODELS[i % 4] for i in (0, 1, 2, 3, 1, 0, 3, 2, 2, 0, 1, 3) * 2]

        def one(name: str) -> tuple[int, dict]:
            response = client.post(f"/v1/models/{name}:predict", json=TEXT)
            return response.status_code, response.json()

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(one, names))
        assert [status for status, _ in results] == [200] * len(names)
        for name, (_, body) in zip(names, results, strict=True):
            assert body["model_name"] == name
            same_answer(body["predictions"][0], reference)
        evictions = sum(metric(client, "rnnserve_model_evictions_total", model=n) for n in MODELS)
        assert evictions >= 2


def test_a_model_larger_than_the_memory_budget_is_a_clear_error(fleet):
    size = sum(
        (fleet / "m0" / "1" / file).stat().st_size
        for file in json.loads((fleet / "m0" / "1" / "manifest.json").read_text())["files"]
    )
    port = free_port()
    with app_over(fleet, max_loaded_bytes=size - 1, grpc_port=port) as client:
        wait_ready(client)
        response = client.post("/v1/models/m0:predict", json=TEXT)
        assert response.status_code == 507
        error = response.json()["error"]
        assert error.startswith("model 'm0' version 1 needs ")
        assert "RNNSERVE_MAX_LOADED_BYTES" in error
        assert client.get("/v2/health/ready").status_code == 200
        with triton.InferenceServerClient(f"127.0.0.1:{port}") as grpc:
            text = triton.InferInput("text", [1], "BYTES")
            text.set_data_from_numpy(np.array(TEXT["instances"], dtype=object))
            with pytest.raises(InferenceServerException) as refused:
                grpc.infer("m0", [text])
        assert refused.value.status() == "StatusCode.RESOURCE_EXHAUSTED"
        assert refused.value.message() == error


def test_a_version_edited_while_unloaded_is_verified_again_when_it_reloads(fleet):
    """Reloading an unchanged folder skips the sha256; a changed one is hashed and refused."""
    with app_over(fleet, max_loaded_models=1) as client:
        wait_ready(client)
        predict(client, "edited")
        predict(client, "m0")  # "edited" makes room
        wait_for(lambda: client.get("/v1/models/edited").json()["loaded"] == [])
        graph = fleet / "edited" / "1" / "model.onnx"
        data = bytearray(graph.read_bytes())
        data[-1] ^= 0xFF  # same size, other bytes
        graph.write_bytes(bytes(data))
        response = client.post("/v1/models/edited:predict", json=TEXT)
        assert response.status_code == 503
        assert "model.onnx does not match the sha256 in the manifest" in response.json()["error"]
        assert client.get("/v2/health/ready").status_code == 200
