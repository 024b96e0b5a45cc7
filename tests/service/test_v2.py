"""Open Inference Protocol (V2) routes in-process: JSON and binary tensors, errors."""

import json
import struct

import numpy as np
import pytest

TEXTS = ["the film is a brilliant , moving film", "what a dull , tedious film"]


def infer(client, body, name="tiny-lstm", **kwargs):
    return client.post(f"/v2/models/{name}/infer", json=body, **kwargs)


def text_input(texts=TEXTS):
    return {"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}


def test_server_metadata_lists_extensions(client):
    body = client.get("/v2").json()
    assert body["name"] == "rnnserve"
    assert {"binary_tensor_data", "model_repository"} <= set(body["extensions"])


@pytest.mark.parametrize("path", ["/v2/models/tiny-gru", "/v2/models/tiny-gru/versions/1"])
def test_model_metadata_has_platform_versions_and_tensors(client, path):
    body = client.get(path).json()
    assert body["platform"] == "onnxruntime_onnx" and body["versions"] == ["1"]
    assert body["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
    assert {o["name"]: o["shape"] for o in body["outputs"]} == {
        "probabilities": [-1, 2],
        "label": [-1],
        "attention": [-1, -1],
    }
    assert body["state"] == "ready" and body["error"] is None


def test_model_ready(client):
    assert client.get("/v2/models/tiny-gru/ready").status_code == 200
    assert client.get("/v2/models/tiny-gru/versions/1/ready").status_code == 200
    assert client.get("/v2/models/tiny-gru/versions/5/ready").status_code == 404


def test_json_infer_matches_v1_and_echoes_the_id(client):
    response = infer(client, {"id": "req-7", "inputs": [text_input()]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["id"] == "req-7" and body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    assert outputs["label"]["data"] == ["positive", "negative"]
    v1 = client.post("/v1/models/tiny-lstm:predict", json={"instances": TEXTS}).json()
    expected = [list(p["probabilities"].values()) for p in v1["predictions"]]
    assert outputs["probabilities"]["shape"] == [2, 2]
    np.testing.assert_allclose(
        np.reshape(outputs["probabilities"]["data"], (2, 2)), expected, atol=1e-6
    )
    attention = np.reshape(outputs["attention"]["data"], outputs["attention"]["shape"])
    assert attention.shape == (2, 8)
    np.testing.assert_allclose(attention.sum(-1), [1, 1], atol=1e-5)
    assert np.all(attention[1, 6:] == 0)  # the shorter text is padded with zeros


def test_token_ids_can_be_sent_instead_of_text(client):
    vocab = client.get("/v1/models/tiny-lstm").json()  # ids come from the model's vocabulary
    assert vocab["ready"]
    tokens = {
        "name": "tokens",
        "shape": [2, 3],
        "datatype": "INT32",
        "data": [[2, 3, 4], [5, 6, 0]],
    }
    lengths = {"name": "lengths", "shape": [2], "datatype": "INT64", "data": [3, 2]}
    response = infer(client, {"inputs": [tokens, lengths], "outputs": [{"name": "attention"}]})
    assert response.status_code == 200, response.text
    attention = response.json()["outputs"][0]
    assert attention["name"] == "attention" and attention["shape"] == [2, 3]
    assert attention["data"][5] == 0


def test_token_ids_without_lengths_end_before_their_trailing_padding(client):
    """Padded as a batch is sent (the model's pad_id, 0 here, after the real ids): without
    `lengths` the padding is not read as tokens, so the answer is that of the real ids."""
    assert client.get("/v1/models/tiny-lstm").json()["manifest"]["preprocessing"]["pad_id"] == 0
    rows = [[2, 3, 4, 5], [6, 7, 0, 0]]

    def probabilities(inputs: list[dict]) -> np.ndarray:
        response = infer(client, {"inputs": inputs})
        assert response.status_code == 200, response.text
        outputs = {o["name"]: o for o in response.json()["outputs"]}
        return np.reshape(outputs["probabilities"]["data"], (2, 2))

    tokens = {"name": "tokens", "shape": [2, 4], "datatype": "INT64", "data": rows}
    lengths = {"name": "lengths", "shape": [2], "datatype": "INT64", "data": [4, 2]}
    np.testing.assert_allclose(probabilities([tokens]), probabilities([tokens, lengths]), atol=1e-6)
    all_padding = {"name": "tokens", "shape": [2, 2], "datatype": "INT64", "data": [1, 2, 0, 0]}
    response = infer(client, {"inputs": [all_padding]})
    assert response.status_code == 400
    assert response.json() == {"error": "tokens[1] is all padding (id 0)"}


def test_binary_inputs_and_outputs(client):
    encoded = b"".join(struct.pack("<I", len(t.encode())) + t.encode() for t in TEXTS)
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(encoded)},
                }
            ],
            "outputs": [
                {"name": "probabilities", "parameters": {"binary_data": True}},
                {"name": "label"},
            ],
        }
    ).encode()
    response = client.post(
        "/v2/models/tiny-lstm/infer",
        content=header + encoded,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert response.status_code == 200, response.text
    n = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:n])
    probabilities, label = head["outputs"]
    assert label["data"] == ["positive", "negative"]
    size = probabilities["parameters"]["binary_data_size"]
    assert size == 2 * 2 * 4 and len(response.content) == n + size
    values = np.frombuffer(response.content[n:], dtype="<f4").reshape(2, 2)
    np.testing.assert_allclose(values.sum(-1), [1, 1], atol=1e-6)


def test_binary_data_output_parameter_makes_every_output_binary(client):
    response = infer(client, {"inputs": [text_input()], "parameters": {"binary_data_output": True}})
    n = int(response.headers["inference-header-content-length"])
    head = json.loads(response.content[:n])
    assert all("data" not in o and o["parameters"]["binary_data_size"] > 0 for o in head["outputs"])


BAD = [
    ({"inputs": []}, "inputs: List should have at least 1 item"),
    (
        {"inputs": [{"name": "text", "shape": [3], "datatype": "BYTES", "data": ["a"]}]},
        "shape [3] needs 3 values, data has 1",
    ),
    (
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [5]}]},
        "BYTES data must be strings",
    ),
    (
        {"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1.5]}]},
        "must be BYTES of shape [batch]",
    ),
    (
        {"inputs": [{"name": "image", "shape": [1], "datatype": "FP32", "data": [1.0]}]},
        "this model takes 'text'",
    ),
    (
        {"inputs": [{"name": "text", "shape": [1], "datatype": "TEXT", "data": ["a"]}]},
        "inputs.0.datatype",
    ),
    ({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES"}]}, "has no data"),
    (
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [""]}]},
        "text[0] has no words",
    ),
    ({"inputs": [text_input()], "outputs": [{"name": "logits"}]}, "unknown outputs ['logits']"),
    (
        {"inputs": [{"name": "tokens", "shape": [1, 2], "datatype": "INT64", "data": [1, 99999]}]},
        "ids must be in 0..",
    ),
    (
        {"inputs": [{"name": "tokens", "shape": [1, 2], "datatype": "INT64", "data": [1.5, 2]}]},
        "data is not all INT64",
    ),
    (
        {"inputs": [{"name": "text", "shape": [0], "datatype": "BYTES", "data": []}]},
        "shape [0] holds no values",
    ),
    (
        {"inputs": [{"name": "tokens", "shape": [2, 0], "datatype": "INT64", "data": []}]},
        "shape [2, 0] holds no values",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_v2_requests_get_400_with_the_reason(client, body, message):
    response = infer(client, body)
    assert response.status_code == 400
    assert message in response.json()["error"]


def test_a_header_length_past_the_body_is_a_400(client):
    response = client.post(
        "/v2/models/tiny-lstm/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "50"},
    )
    assert response.status_code == 400
    assert "does not fit" in response.json()["error"]


def test_binary_sizes_that_do_not_add_up_are_a_400(client):
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 100},
                }
            ]
        }
    ).encode()
    response = client.post(
        "/v2/models/tiny-lstm/infer",
        content=header + b"\x01\x00",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 400
    assert "runs past" in response.json()["error"]


def test_unknown_model_is_a_404(client):
    response = infer(client, {"inputs": [text_input()]}, name="nope")
    assert response.status_code == 404 and "not found" in response.json()["error"]
    assert client.get("/v2/models/nope").status_code == 404


def test_a_binary_tensor_over_the_limit_is_a_413(tiny_repository):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings
    from tests.conftest import wait_ready

    app = create_app(
        Settings(
            model_repository=tiny_repository,
            providers="cpu",
            max_binary_tensor_bytes=16,
            repository_poll_s=0,
        )
    )
    data = struct.pack("<I", 20) + b"a great film, really"
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "text",
                    "shape": [1],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(data)},
                }
            ]
        }
    ).encode()
    with TestClient(app) as client:
        wait_ready(client)
        response = client.post(
            "/v2/models/tiny-lstm/infer",
            content=header + data,
            headers={"Inference-Header-Content-Length": str(len(header))},
        )
    assert response.status_code == 413
    assert "at most 16 per tensor" in response.json()["error"]


def test_a_header_length_that_is_not_ascii_digits_is_a_400(client):
    response = client.post(
        "/v2/models/tiny-lstm/infer",
        content=b"{}",
        headers={"Inference-Header-Content-Length": "\u00b3".encode("latin-1")},
    )
    assert response.status_code == 400
