"""The Open Inference Protocol over gRPC, spoken by the official Triton gRPC client (and by
Triton's own generated stubs) to a real rnnserve process, against its HTTP V2 answers."""

import contextlib
import queue

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from tests.conftest import DEFAULT_MODELS
from tests.live_server import free_port, live_server
from tests.test_real_server import expected_probabilities, random_texts

MODEL = "sst2-lstm"
KEY = "k3y"
HEADERS = {"authorization": f"Bearer {KEY}"}
MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def server():
    port = free_port()
    with live_server(
        DEFAULT_MODELS, grpc_port=port, api_key=KEY, max_body_bytes=MAX_BODY, max_instances=16
    ) as url:
        url.grpc = f"127.0.0.1:{port}"
        yield url


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.grpc) as client:
        yield client


def http_v2(server, body: dict) -> dict:
    response = httpx.post(
        f"{server}/v2/models/{MODEL}/infer", json=body, headers=HEADERS, timeout=10
    )
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def text_input(texts: list[str]) -> triton.InferInput:
    text = triton.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array(texts, dtype=object))
    return text


def test_health_and_metadata(client, server):
    assert client.is_server_live(headers=HEADERS) and client.is_server_ready(headers=HEADERS)
    assert client.is_model_ready(MODEL, headers=HEADERS)
    assert client.is_model_ready(MODEL, "1", headers=HEADERS)
    assert not client.is_model_ready("no-such-model", headers=HEADERS)
    assert client.get_server_metadata(headers=HEADERS).name == "rnnserve"
    metadata = client.get_model_metadata(MODEL, headers=HEADERS, as_json=True)
    over_http = httpx.get(f"{server}/v2/models/{MODEL}", headers=HEADERS).json()
    assert metadata["versions"] == over_http["versions"]
    for kind in ("inputs", "outputs"):
        assert [
            {"name": t["name"], "datatype": t["datatype"], "shape": [int(d) for d in t["shape"]]}
            for t in metadata[kind]
        ] == over_http[kind]


def test_texts_answer_as_over_http_v2_json(client, server):
    texts = random_texts(6, seed=5)
    result = client.infer(MODEL, [text_input(texts)], request_id="g-1", headers=HEADERS)
    assert result.get_response().id == "g-1"
    over_http = http_v2(
        server, {"inputs": [{"name": "text", "shape": [6], "datatype": "BYTES", "data": texts}]}
    )
    for name in ("probabilities", "attention"):
        np.testing.assert_allclose(
            result.as_numpy(name),
            np.array(over_http[name]["data"]).reshape(over_http[name]["shape"]),
            atol=1e-6,
        )
    assert [x.decode() for x in result.as_numpy("label")] == over_http["label"]["data"]
    np.testing.assert_allclose(
        result.as_numpy("probabilities"),
        [expected_probabilities(MODEL, t) for t in texts],
        atol=1e-5,
    )


def test_int64_tokens_in_raw_contents(client, server):
    ids = np.array([[5, 6, 7, 8], [9, 10, 0, 0]], dtype=np.int64)
    lengths = np.array([4, 2], dtype=np.int64)
    tokens = triton.InferInput("tokens", list(ids.shape), "INT64")
    tokens.set_data_from_numpy(ids)
    given = triton.InferInput("lengths", [2], "INT64")
    given.set_data_from_numpy(lengths)
    wanted = [triton.InferRequestedOutput("probabilities")]
    result = client.infer(MODEL, [tokens, given], outputs=wanted, headers=HEADERS)
    response = result.get_response()
    assert [o.name for o in response.outputs] == ["probabilities"]
    assert len(response.raw_output_contents) == 1  # raw in, raw out
    over_http = http_v2(
        server,
        {
            "inputs": [
                {"name": "tokens", "shape": [2, 4], "datatype": "INT64", "data": ids.tolist()},
                {"name": "lengths", "shape": [2], "datatype": "INT64", "data": [4, 2]},
            ],
            "outputs": [{"name": "probabilities"}],
        },
    )
    np.testing.assert_allclose(
        result.as_numpy("probabilities").reshape(-1),
        over_http["probabilities"]["data"],
        atol=1e-6,
    )


def test_typed_contents_in_typed_contents_out(server):
    """Triton's own generated stubs, no raw bytes: the typed fields both ways."""
    request = service_pb2.ModelInferRequest(model_name=MODEL, model_version="1", id="typed")
    tensor = request.inputs.add(name="text", datatype="BYTES", shape=[2])
    tensor.contents.bytes_contents.extend([b"a moving film", b"painful and dull"])
    with grpc.insecure_channel(server.grpc) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=[("x-api-key", KEY)], timeout=10)
    assert not response.raw_output_contents
    assert (response.model_name, response.model_version, response.id) == (MODEL, "1", "typed")
    outputs = {o.name: o for o in response.outputs}
    probabilities = np.array(outputs["probabilities"].contents.fp32_contents).reshape(2, 2)
    np.testing.assert_allclose(
        probabilities,
        [expected_probabilities(MODEL, t) for t in ("a moving film", "painful and dull")],
        atol=1e-5,
    )
    labels = [x.decode() for x in outputs["label"].contents.bytes_contents]
    assert labels == [["negative", "positive"][int(np.argmax(p))] for p in probabilities]


def code_of(call) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status(), raised.value.message()


@pytest.mark.parametrize(
    ("model", "version", "texts", "code", "says"),
    [
        ("no-such-model", "", ["fine"], "StatusCode.NOT_FOUND", "not found"),
        (MODEL, "99", ["fine"], "StatusCode.NOT_FOUND", "no version 99"),
        (MODEL, "", [""], "StatusCode.INVALID_ARGUMENT", "no words"),
        (MODEL, "", ["fine"] * 17, "StatusCode.RESOURCE_EXHAUSTED", "at most 16"),
        (MODEL, "", ["word " * 40_000], "StatusCode.RESOURCE_EXHAUSTED", "larger than max"),
    ],
    ids=["unknown-model", "unknown-version", "no-words", "too-many", "message-too-large"],
)
def test_errors_carry_triton_status_codes(client, model, version, texts, code, says):
    status, message = code_of(
        lambda: client.infer(model, [text_input(texts)], model_version=version, headers=HEADERS)
    )
    assert status == code
    assert says in message


def test_bad_tensors_are_invalid_arguments(client):
    tokens = triton.InferInput("tokens", [1, 3], "INT64")
    tokens.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.int64))
    tokens._raw_content = tokens._raw_content[:-8]  # one value short of its shape
    status, message = code_of(lambda: client.infer(MODEL, [tokens], headers=HEADERS))
    assert (status, "needs 24 bytes, got 16" in message) == ("StatusCode.INVALID_ARGUMENT", True)
    unknown = [triton.InferRequestedOutput("logits")]
    status, message = code_of(
        lambda: client.infer(MODEL, [text_input(["ok"])], outputs=unknown, headers=HEADERS)
    )
    assert (status, "unknown outputs ['logits']" in message) == (
        "StatusCode.INVALID_ARGUMENT",
        True,
    )
    empty = triton.InferInput("text", [0], "BYTES")
    empty.set_data_from_numpy(np.array([], dtype=object))
    status, message = code_of(lambda: client.infer(MODEL, [empty], headers=HEADERS))
    assert (status, "shape [0] holds no values" in message) == ("StatusCode.INVALID_ARGUMENT", True)


def test_the_api_key_is_call_metadata(client, server):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}):
        status, message = code_of(
            lambda h=headers: client.infer(MODEL, [text_input(["ok"])], headers=h)
        )
        assert status == "StatusCode.UNAUTHENTICATED" and "needs the API key" in message
        status, _ = code_of(lambda h=headers: client.get_model_metadata(MODEL, headers=h))
        assert status == "StatusCode.UNAUTHENTICATED"
    assert client.is_server_ready()  # probes stay open, as on HTTP
    answer = client.infer(MODEL, [text_input(["ok"])], headers={"x-api-key": KEY})
    assert answer.as_numpy("probabilities").shape == (1, 2)


def test_the_stream_takes_the_api_key_too(server):
    """ModelStreamInfer: refused as a whole without the key (the error reaches the stream's
    callback); with it, each request answered in the stream (a stateless one here)."""
    answers: queue.Queue = queue.Queue()

    def callback(result, error):
        answers.put((result, error))

    with triton.InferenceServerClient(server.grpc) as stream:
        stream.start_stream(callback)
        with contextlib.suppress(InferenceServerException):  # the stream may be closed already
            stream.async_stream_infer(MODEL, [text_input(["a fine film"])])
        result, error = answers.get(timeout=30)
        stream.stop_stream()
    assert result is None and error.status() == "StatusCode.UNAUTHENTICATED"
    with triton.InferenceServerClient(server.grpc) as stream:
        stream.start_stream(callback, headers={"x-api-key": KEY})
        stream.async_stream_infer(MODEL, [text_input(["a fine film"])], request_id="s-1")
        result, error = answers.get(timeout=30)
        stream.stop_stream()
    assert error is None and result.get_response().id == "s-1"
    assert result.as_numpy("probabilities").shape == (1, 2)


def test_standard_health_service(server):
    with grpc.insecure_channel(server.grpc) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        serving = health_pb2.HealthCheckResponse.SERVING
        for service in ("", "inference.GRPCInferenceService", "liveness"):
            check = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert check.status == serving
        with pytest.raises(grpc.RpcError) as raised:
            health.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
