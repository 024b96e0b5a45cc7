"""The official Triton HTTP client, unchanged, against a real rnnserve process."""

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import DEFAULT_MODELS
from tests.live_server import live_server
from tests.test_real_server import expected_probabilities, random_texts

MODEL = "sst2-gru"


@pytest.fixture(scope="module")
def client():
    with live_server(DEFAULT_MODELS) as url:
        yield triton.InferenceServerClient(url.removeprefix("http://"))


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata(MODEL)
    assert metadata["inputs"][0]["name"] == "text"


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_text_in_probabilities_out_match_in_process_results(client, binary):
    texts = random_texts(5, seed=11)
    text = triton.InferInput("text", [len(texts)], "BYTES")
    text.set_data_from_numpy(np.array(texts, dtype=object), binary_data=binary)
    outputs = [
        triton.InferRequestedOutput(n, binary_data=binary) for n in ("probabilities", "label")
    ]
    result = client.infer(MODEL, [text], outputs=outputs, request_id="r-1")
    assert result.get_response()["id"] == "r-1"
    probabilities = result.as_numpy("probabilities")
    expected = [expected_probabilities(MODEL, t) for t in texts]
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label")]
    assert labels == [["negative", "positive"][int(np.argmax(p))] for p in expected]


def test_default_outputs_come_back_in_binary(client):
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["a gripping film"], dtype=object))
    result = client.infer(MODEL, [text])  # the client asks for binary_data_output
    assert result.as_numpy("attention").shape == (1, 3)
    np.testing.assert_allclose(
        result.as_numpy("probabilities")[0],
        expected_probabilities(MODEL, "a gripping film"),
        atol=1e-5,
    )


def test_token_ids_in_binary(client):
    tokens = triton.InferInput("tokens", [2, 3], "INT64")
    tokens.set_data_from_numpy(np.array([[5, 6, 7], [8, 9, 0]], dtype=np.int64))
    lengths = triton.InferInput("lengths", [2], "INT64")
    lengths.set_data_from_numpy(np.array([3, 2], dtype=np.int64))
    probabilities = client.infer(MODEL, [tokens, lengths]).as_numpy("probabilities")
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(-1), [1, 1], atol=1e-6)


def test_errors_reach_the_client(client):
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([""], dtype=object))
    with pytest.raises(InferenceServerException, match="has no words"):
        client.infer(MODEL, [text])
    with pytest.raises(InferenceServerException, match="not found"):
        client.infer("nope", [text])
