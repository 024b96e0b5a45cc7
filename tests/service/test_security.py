"""Optional API keys, request ids, and access logs."""

import json
import logging

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import wait_ready

BODY = {"instances": ["great"]}


@pytest.fixture(scope="module")
def secured(tiny_repository):
    app = create_app(
        Settings(
            model_repository=tiny_repository,
            providers="cpu",
            api_key="s3cret",
            admin_api_key="adm1n",
            repository_poll_s=0,
        )
    )
    with TestClient(app) as client:
        wait_ready(client)
        yield client


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"Authorization": "s3cret"}],
)
def test_predict_without_the_key_is_401(secured, headers):
    response = secured.post("/v1/models/tiny-lstm:predict", json=BODY, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "needs the API key" in response.json()["error"]


@pytest.mark.parametrize("headers", [{"Authorization": "Bearer s3cret"}, {"X-API-Key": "s3cret"}])
def test_either_header_carries_the_key(secured, headers):
    assert (
        secured.post("/v1/models/tiny-lstm:predict", json=BODY, headers=headers).status_code == 200
    )
    assert secured.get("/v2/models/tiny-lstm", headers=headers).status_code == 200


def test_health_metrics_and_page_need_no_key(secured):
    for path in ("/v2/health/live", "/v2/health/ready", "/metrics", "/"):
        assert secured.get(path).status_code == 200, path
    assert secured.get("/v1/models").status_code == 401


def test_repository_control_needs_the_admin_key(secured):
    user = {"X-API-Key": "s3cret"}
    response = secured.post("/v2/repository/index", headers=user)
    assert response.status_code == 401 and "admin API key" in response.json()["error"]
    assert secured.post("/v2/repository/index", headers={"X-API-Key": "adm1n"}).status_code == 200


def test_request_id_is_echoed_or_made(client):
    given = client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = client.get("/v2/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    assert len(made.headers["x-request-id"]) == 32


def test_access_log_has_request_id_model_batch_and_timings(client, caplog):
    with caplog.at_level(logging.INFO, logger="rnnserve.access"):
        client.post("/v1/models/tiny-gru:predict", json=BODY, headers={"X-Request-ID": "r-42"})
    fields = next(
        r.fields for r in caplog.records if getattr(r, "fields", {}).get("request_id") == "r-42"
    )
    assert fields["model"] == "tiny-gru" and fields["version"] == 1
    assert fields["status"] == 200 and fields["batch_size"] >= 1
    assert fields["queue_ms"] >= 0 and fields["inference_ms"] > 0


def test_log_lines_are_json(caplog):
    from service.logs import JsonFormatter

    record = logging.LogRecord("rnnserve.access", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"request_id": "x", "status": 200}
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == "x" and line["level"] == "info" and line["time"].endswith("Z")


def test_max_sequence_length_caps_the_manifests_limit(tiny_repository):
    app = create_app(
        Settings(
            model_repository=tiny_repository,
            providers="cpu",
            max_sequence_length=5,
            repository_poll_s=0,
        )
    )
    with TestClient(app) as client:
        wait_ready(client)
        response = client.post(
            "/v1/models/tiny-lstm:predict", json={"instances": ["a great film , really great"]}
        )
    assert response.status_code == 422
    assert "has 6 tokens; this model takes at most 5" in response.json()["error"]
