"""In-process tests of every route and every class of bad input."""

import pytest

TEXT = "the film is a brilliant , moving film"


def predict(client, body, name="tiny-lstm", **kwargs):
    return client.post(f"/v1/models/{name}:predict", json=body, **kwargs)


def test_health_probes(client):
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_list_models_reports_task_versions_and_readiness(client):
    models = client.get("/v1/models").json()["models"]
    assert [m["name"] for m in models] == ["tiny-gru", "tiny-lstm"]
    for m in models:
        assert m["task"] == "classify" and m["versions"] == [1] and m["ready"] is True


def test_describe_model_shows_manifest_provider_and_status(client):
    body = client.get("/v1/models/tiny-gru").json()
    assert body["status"] == [
        {"version": 1, "state": "ready", "provider": "CPUExecutionProvider", "error": None}
    ]
    assert body["manifest"]["architecture"]["cell"] == "gru"
    assert body["manifest"]["training"]["metrics"]["dev_accuracy"] >= 0.9


@pytest.mark.parametrize("name", ["tiny-lstm", "tiny-gru"])
def test_predict_returns_label_and_probabilities(client, name):
    response = predict(client, {"instances": [TEXT, "what a dull , tedious film"]}, name)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["model_name"], body["model_version"]) == (name, "1")
    good, bad = body["predictions"]
    assert good["label"] == "positive" and bad["label"] == "negative"
    assert set(good["probabilities"]) == {"negative", "positive"}
    assert sum(good["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert "attention" not in good


def test_attention_pairs_each_token_with_its_weight(client):
    body = predict(
        client, {"instances": ["It's BRILLIANT!"], "parameters": {"attention": True}}
    ).json()
    attention = body["predictions"][0]["attention"]
    assert [token for token, _ in attention] == ["it", "'s", "brilliant", "!"]
    assert sum(w for _, w in attention) == pytest.approx(1, abs=1e-5)


def test_versioned_route_serves_that_version(client):
    response = client.post("/v1/models/tiny-lstm/versions/1:predict", json={"instances": [TEXT]})
    assert response.status_code == 200
    assert response.json()["model_version"] == "1"


def test_unknown_words_map_to_the_unknown_token(client):
    body = {"instances": ["zxqv blorp 🙂", "qwfp ☃ arst"], "parameters": {"attention": True}}
    unseen, other = predict(client, body).json()["predictions"]
    assert [token for token, _ in unseen["attention"]] == ["zxqv", "blorp", "🙂"]  # as typed
    # Both read as three <unk> ids: the same answer, the same weights, as the ids sent alone.
    assert other["probabilities"] == unseen["probabilities"]
    assert [w for _, w in other["attention"]] == [w for _, w in unseen["attention"]]
    unk = client.post(
        "/v2/models/tiny-lstm/infer",
        json={
            "inputs": [{"name": "tokens", "datatype": "INT64", "shape": [1, 3], "data": [1, 1, 1]}]
        },
    ).json()
    probabilities = next(o for o in unk["outputs"] if o["name"] == "probabilities")["data"]
    assert probabilities == pytest.approx(list(unseen["probabilities"].values()), abs=1e-6)


def test_long_text_is_refused_unless_truncation_is_asked(client):
    text = "great " * 40  # the tiny models take 32 tokens
    refused = predict(client, {"instances": [text]})
    assert refused.status_code == 422
    assert "has 40 tokens; this model takes at most 32" in refused.json()["error"]
    cut = predict(client, {"instances": [text], "parameters": {"truncate": True}})
    assert cut.status_code == 200 and cut.json()["predictions"][0]["truncated"] is True


BAD_INPUTS = [
    ({"instances": []}, 422, "instances: List should have at least 1 item"),
    ({"instances": [""]}, 422, "instances[0] has no words"),
    ({"instances": ["   "]}, 422, "instances[0] has no words"),
    ({"instances": ["fine", 7]}, 422, "instances[1] must be a string, got int"),
    ({"instances": [None]}, 422, "instances[0] must be a string, got NoneType"),
    ({"instances": "a text"}, 422, "instances: Input should be a valid array"),
    ({"texts": ["a"]}, 422, "instances: Field required"),
    ({"instances": ["a"], "parameters": {"attention": "maybe"}}, 422, "parameters.attention"),
    ({"instances": ["a"], "parameters": {"beam": 2}}, 422, "parameters.beam: Extra inputs"),
    ([{"instances": ["a"]}], 422, "the body must be a JSON object"),
    ({"instances": ["a"] * 9}, 413, "9 instances; at most 8 per request"),
]


@pytest.mark.parametrize(
    ("body", "status", "message"), BAD_INPUTS, ids=[m for _, _, m in BAD_INPUTS]
)
def test_bad_input_gets_a_clear_4xx_and_the_server_stays_ready(client, body, status, message):
    response = predict(client, body)
    assert response.status_code == status
    assert message in response.json()["error"]
    assert client.get("/v2/health/ready").status_code == 200


def test_malformed_json_is_a_400(client):
    response = client.post(
        "/v1/models/tiny-lstm:predict",
        content=b'{"instances": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"].startswith("the body is not valid JSON")


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/octet-stream"]
)
def test_a_json_body_is_read_as_json_whatever_its_content_type(client, content_type):
    """What `curl -d` sends without `-H 'Content-Type: application/json'` (Triton, KServe)."""
    response = client.post(
        "/v1/models/tiny-lstm:predict",
        content=b'{"instances": ["great"]}',
        headers={"content-type": content_type},
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "positive"


def test_a_body_that_is_not_json_says_so(client):
    response = client.post(
        "/v1/models/tiny-lstm:predict",
        content=b"instances=a",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(
        "the body is not valid JSON (sent as application/x-www-form-urlencoded): "
    ), error


def test_a_body_without_content_type_is_read_as_json(client):
    response = client.post("/v1/models/tiny-lstm:predict", content=b'{"instances": ["great"]}')
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "positive"


def test_an_oversized_body_is_refused_with_413(client):
    response = predict(client, {"instances": ["great " * 1000]})
    assert response.status_code == 413
    assert "larger than the 4096-byte limit" in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/models/nope:predict", "model 'nope' not found"),
        ("/v1/models/tiny-lstm/versions/9:predict", "model 'tiny-lstm' has no version 9"),
        ("/v1/models/tiny-lstm/versions/latest:predict", "has no version 'latest'"),
        ("/v1/models/..%2F..%2Fetc:predict", "not found"),
    ],
)
def test_unknown_model_or_version_is_a_404(client, path, message):
    response = client.post(path, json={"instances": ["great"]})
    assert response.status_code == 404
    assert message.lower() in response.json()["error"].lower()


def test_unknown_route_is_a_json_404(client):
    response = client.get("/v1/nothing/here")
    assert response.status_code == 404 and "error" in response.json()


def test_metrics_count_requests_by_model_version_and_status(client):
    predict(client, {"instances": ["great"]}, "tiny-gru")
    text = client.get("/metrics").text
    assert 'rnnserve_requests_total{model="tiny-gru",status="200",version="1"}' in text
    assert 'rnnserve_batch_size_count{model="tiny-gru",version="1"}' in text
    assert 'rnnserve_model_ready{model="tiny-lstm",version="1"} 1.0' in text


def test_openapi_and_docs_are_served(client):
    schema = client.get("/openapi.json").json()
    assert "/v1/models/{name}:predict" in schema["paths"]
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v2/models/..%2F..%2Fetc%2Fpasswd",
        "/v2/models/%2Fetc%2Fpasswd/ready",
        "/v1/models/..",
        "/v1/models/tiny-lstm%2F..%2F..",
        "/v2/models/tiny-lstm/versions/..%2F1",
    ],
)
def test_a_path_from_a_request_never_reaches_the_filesystem(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert "/etc" not in response.text


def test_repository_control_refuses_paths_as_names(client):
    for name in ("..%2Ftiny-lstm", "%2Ftmp", "tiny-lstm%2F1"):
        response = client.post(f"/v2/repository/models/{name}/load")
        assert response.status_code == 404, name


def test_an_unexpected_error_is_a_json_500_without_a_traceback(client, monkeypatch):
    live = client.app.state.repository.live

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail at /srv/models")

    monkeypatch.setattr(live, "get", broken)
    from fastapi.testclient import TestClient

    quiet = TestClient(client.app, raise_server_exceptions=False)  # as a real server answers
    response = quiet.post("/v1/models/tiny-lstm:predict", json={"instances": ["great"]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal error; the server log has the details"}


@pytest.mark.parametrize("version", ["³", "٣", "0", "01x"])
def test_versions_that_are_not_plain_positive_numbers_are_a_404(client, version):
    """Found by the schema fuzzer: '³'.isdigit() is True, int('³') raises."""
    response = client.post(
        f"/v1/models/tiny-lstm/versions/{version}:predict", json={"instances": ["great"]}
    )
    assert response.status_code == 404
