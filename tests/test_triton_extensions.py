"""Triton's model configuration, statistics and repository extensions, read by Triton's own
clients (HTTP and gRPC) from a real rnnserve process, checked against what was sent and
against the Prometheus metrics."""

from __future__ import annotations

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from tests.conftest import DEFAULT_MODELS, copy_version
from tests.live_server import free_port, live_server

CLASSIFIER, DATES = "sst2-gru", "dates"
ADMIN = {"authorization": "Bearer adm1n"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repository = tmp_path_factory.mktemp("repository")
    for name in (CLASSIFIER, DATES):
        copy_version(DEFAULT_MODELS / name / "1", repository, name, 1)
    port = free_port()
    with live_server(
        repository, grpc_port=port, admin_api_key="adm1n", batching__max_batch_delay_ms="3"
    ) as url:
        url.grpc = f"127.0.0.1:{port}"
        yield url


@pytest.fixture(scope="module")
def http(server):
    return triton_http.InferenceServerClient(server.removeprefix("http://"))


@pytest.fixture(scope="module")
def rpc(server):
    with triton_grpc.InferenceServerClient(server.grpc) as client:
        yield client


def texts_in(module, texts: list[str]):
    text = module.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array(texts, dtype=object))
    return text


def test_the_server_lists_the_extensions(http, rpc):
    for extensions in (
        http.get_server_metadata()["extensions"],
        rpc.get_server_metadata().extensions,
    ):
        assert {"model_configuration", "statistics", "model_repository"} <= set(extensions)


def test_model_config_describes_tensors_and_batching_on_both_wires(http, rpc):
    config = http.get_model_config(CLASSIFIER)
    assert config["name"] == CLASSIFIER
    assert (config["platform"], config["backend"]) == ("onnxruntime_onnx", "onnxruntime")
    # A batch of texts is BYTES [-1]: no row shape, so the whole shape, as in the metadata.
    assert config["max_batch_size"] == 0
    assert config["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": [-1]}]
    outputs = {o["name"]: o for o in config["output"]}
    assert outputs["probabilities"] == {
        "name": "probabilities", "data_type": "TYPE_FP32", "dims": [-1, 2]
    }  # fmt: skip
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 3000
    assert config["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 512
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert "sequence_batching" not in config

    over_grpc = rpc.get_model_config(CLASSIFIER, as_json=True)["config"]
    assert over_grpc["name"] == CLASSIFIER
    assert "max_batch_size" not in over_grpc  # 0, the default, is left out of proto3 JSON
    assert over_grpc["input"][0]["data_type"] == "TYPE_STRING"
    assert [int(d) for d in over_grpc["input"][0]["dims"]] == [-1]
    queue_delay = over_grpc["dynamic_batching"]["max_queue_delay_microseconds"]
    assert int(queue_delay) == 3000


def test_model_config_of_an_unknown_model_is_not_found(http, rpc):
    with pytest.raises(InferenceServerException, match="not found"):
        http.get_model_config("no-such-model")
    with pytest.raises(InferenceServerException) as error:
        rpc.get_model_config("no-such-model")
    assert error.value.status() == "StatusCode.NOT_FOUND"


def metric(server, name: str, **labels: str) -> float:
    """One sample of the server's Prometheus text, by name and labels."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in httpx.get(f"{server}/metrics").text.splitlines():
        if line.startswith(f"{name}{{"):
            key, value = line.rsplit(" ", 1)
            given = key[len(name) + 1 : -1].split(",")
            if sorted(given) == wanted.split(","):
                return float(value)
    return 0.0


def test_statistics_count_what_was_sent_and_agree_with_the_metrics(server, http, rpc):
    sent = 0
    for i in range(6):  # one instance each, over both wires and both APIs
        http.infer(CLASSIFIER, [texts_in(triton_http, [f"a gripping film {i}"])])
        rpc.infer(CLASSIFIER, [texts_in(triton_grpc, [f"dull and long {i}"])])
        v1 = httpx.post(f"{server}/v1/models/{CLASSIFIER}:predict", json={"instances": ["fine"]})
        assert v1.json()["predictions"][0]["label"] in ("negative", "positive")
        sent += 3
    with pytest.raises(InferenceServerException, match="no words"):
        http.infer(CLASSIFIER, [texts_in(triton_http, [""])])

    (stats,) = http.get_inference_statistics(CLASSIFIER)["model_stats"]
    assert (stats["name"], stats["version"]) == (CLASSIFIER, "1")
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == sent
    assert inference["fail"]["count"] == 1
    assert stats["inference_count"] == sent == inference["queue"]["count"]
    assert inference["compute_infer"]["count"] == sent
    assert inference["compute_infer"]["ns"] > 0 and inference["success"]["ns"] > 0
    assert 1 <= stats["execution_count"] <= sent
    per_size = stats["batch_stats"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in per_size) == sent
    assert sum(b["compute_infer"]["count"] for b in per_size) == stats["execution_count"]
    assert stats["last_inference"] > 0

    labels = {"model": CLASSIFIER, "version": "1"}
    assert metric(server, "rnnserve_requests_total", status="200", **labels) == sent
    assert metric(server, "rnnserve_batch_size_count", **labels) == stats["execution_count"]
    assert metric(server, "rnnserve_queue_seconds_count", **labels) == sent

    over_grpc = rpc.get_inference_statistics(CLASSIFIER, "1", as_json=True)["model_stats"]
    assert int(over_grpc[0]["inference_stats"]["success"]["count"]) == sent
    assert int(over_grpc[0]["execution_count"]) == stats["execution_count"]


def test_statistics_of_a_seq2seq_model_count_sequences_not_decode_steps(http):
    for text in ("3 March 2021", "12/05/1999", "1 janvier 2000"):
        result = http.infer(DATES, [texts_in(triton_http, [text])])
        assert len(result.as_numpy("output")[0]) == 10  # an ISO date
    (stats,) = http.get_inference_statistics(DATES)["model_stats"]
    assert stats["inference_stats"]["success"]["count"] == 3
    assert stats["inference_count"] == 3
    assert stats["execution_count"] >= 10  # one per decoder step


def test_statistics_of_every_model_and_errors(http, rpc):
    names = {s["name"] for s in http.get_inference_statistics()["model_stats"]}
    assert names == {CLASSIFIER, DATES}
    assert {s.name for s in rpc.get_inference_statistics().model_stats} == names
    with pytest.raises(InferenceServerException, match="no version 7"):
        http.get_inference_statistics(CLASSIFIER, "7")
    with pytest.raises(InferenceServerException) as error:
        rpc.get_inference_statistics("no-such-model")
    assert error.value.status() == "StatusCode.NOT_FOUND"


def test_repository_extension_over_grpc_needs_the_admin_key(rpc):
    with pytest.raises(InferenceServerException) as error:
        rpc.get_model_repository_index()
    assert error.value.status() == "StatusCode.UNAUTHENTICATED"
    index = rpc.get_model_repository_index(headers=ADMIN, as_json=True)["models"]
    assert {(m["name"], m["version"], m["state"]) for m in index} == {
        (CLASSIFIER, "1", "READY"),
        (DATES, "1", "READY"),
    }


def test_unload_and_load_over_grpc(rpc):
    rpc.unload_model(DATES, headers=ADMIN)
    assert not rpc.is_model_ready(DATES)
    index = rpc.get_model_repository_index(headers=ADMIN, as_json=True)["models"]
    assert {"name": DATES, "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"} in index
    rpc.load_model(DATES, headers=ADMIN)
    assert rpc.is_model_ready(DATES)
    result = rpc.infer(DATES, [texts_in(triton_grpc, ["3 March 2021"])])
    assert result.as_numpy("output")[0] == b"2021-03-03"
    with pytest.raises(InferenceServerException) as error:
        rpc.load_model("no-such-model", headers=ADMIN)
    assert error.value.status() == "StatusCode.NOT_FOUND"
    assert grpc.StatusCode.NOT_FOUND.name in error.value.status()
