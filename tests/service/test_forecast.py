"""The forecast task in-process: stateless V1 predict and V2 infer, and their bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import wait_ready
from tests.forecast_helpers import HORIZON, MAX_VALUES, WINDOW, tiny_forecast_repository

URL = "/v1/models/tiny-forecast:predict"


@pytest.fixture(scope="module")
def forecast_client():
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings(model_repository=tiny_forecast_repository(), providers="cpu"))
    with TestClient(app) as client:
        wait_ready(client)
        yield client


def co2_like(n: int, seed: int = 0) -> list[float]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return (315 + 0.03 * t + 3 * np.sin(2 * np.pi * t / 52) + rng.normal(0, 0.3, n)).tolist()


def test_predict_gives_horizon_values_near_the_series(forecast_client):
    response = forecast_client.post(URL, json={"instances": [co2_like(30), co2_like(5, 1)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "tiny-forecast"
    for prediction in body["predictions"]:
        assert len(prediction["forecast"]) == HORIZON
        assert "attention" not in prediction
        assert all(280 < v < 350 for v in prediction["forecast"])


def test_attention_covers_the_most_recent_values_and_sums_to_one(forecast_client):
    response = forecast_client.post(
        URL,
        json={"instances": [co2_like(40), co2_like(3)], "parameters": {"attention": True}},
    )
    long, short = response.json()["predictions"]
    assert len(long["attention"]) == WINDOW and len(short["attention"]) == 3
    for p in (long, short):
        assert sum(p["attention"]) == pytest.approx(1.0, abs=1e-5)


def test_a_batch_answers_each_instance_as_alone(forecast_client):
    series = [co2_like(n, n) for n in (1, 7, 33, MAX_VALUES)]
    together = forecast_client.post(URL, json={"instances": series}).json()["predictions"]
    for s, p in zip(series, together, strict=True):
        alone = forecast_client.post(URL, json={"instances": [s]}).json()["predictions"][0]
        np.testing.assert_allclose(p["forecast"], alone["forecast"], rtol=1e-6)


@pytest.mark.parametrize(
    ("instance", "message"),
    [
        ([], "empty"),
        (list(range(MAX_VALUES + 1)), f"at most {MAX_VALUES}"),
        ([1.0, "2"], "must be a number"),
        ([1.0, True], "must be a number"),
        ("1, 2, 3", "list of numbers"),
        ([1e308, -1e308], "too large"),
    ],
)
def test_bad_instances_are_refused_with_422(forecast_client, instance, message):
    response = forecast_client.post(URL, json={"instances": [co2_like(4), instance]})
    assert response.status_code == 422
    assert message in response.json()["error"]


def test_non_finite_values_are_refused(forecast_client):
    for literal in (b"NaN", b"Infinity", b"1e999"):
        response = forecast_client.post(
            URL,
            content=b'{"instances": [[1.0, ' + literal + b"]]}",
            headers={"content-type": "application/json"},
        )
        assert 400 <= response.status_code < 500, literal
        assert "error" in response.json()


def test_unknown_parameter_is_refused(forecast_client):
    response = forecast_client.post(
        URL, json={"instances": [co2_like(4)], "parameters": {"truncate": True}}
    )
    assert response.status_code == 422


def test_v2_infer_matches_v1(forecast_client):
    series = co2_like(20)
    v1 = forecast_client.post(URL, json={"instances": [series]}).json()["predictions"][0]
    body = {"inputs": [{"name": "values", "datatype": "FP32", "shape": [1, 20], "data": series}]}
    response = forecast_client.post("/v2/models/tiny-forecast/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["forecast"]["shape"] == [1, HORIZON]
    assert outputs["attention"]["shape"] == [1, WINDOW]
    np.testing.assert_allclose(outputs["forecast"]["data"], v1["forecast"], rtol=1e-5)


def test_v2_lengths_and_bad_tensors(forecast_client):
    series = co2_like(10)
    padded = [*series[:6], 0.0, 0.0, 0.0, 0.0, *series]
    body = {
        "inputs": [
            {"name": "values", "datatype": "FP32", "shape": [2, 10], "data": padded},
            {"name": "lengths", "datatype": "INT64", "shape": [2], "data": [6, 10]},
        ]
    }
    response = forecast_client.post("/v2/models/tiny-forecast/infer", json=body)
    assert response.status_code == 200, response.text
    short = forecast_client.post(URL, json={"instances": [series[:6]]}).json()["predictions"][0]
    forecast = response.json()["outputs"][0]["data"]
    np.testing.assert_allclose(forecast[:HORIZON], short["forecast"], rtol=1e-5)
    bad = {"inputs": [{"name": "tokens", "datatype": "INT64", "shape": [1, 2], "data": [1, 2]}]}
    assert forecast_client.post("/v2/models/tiny-forecast/infer", json=bad).status_code == 400
    body["inputs"][1]["data"] = [0, 10]
    assert forecast_client.post("/v2/models/tiny-forecast/infer", json=body).status_code == 400


def test_model_is_listed_as_a_forecaster(forecast_client):
    detail = forecast_client.get("/v1/models/tiny-forecast").json()
    assert detail["task"] == "forecast"
    assert detail["manifest"]["preprocessing"]["kind"] == "series"


NO_TORCH = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import time
from fastapi.testclient import TestClient
from service.app import create_app
from service.settings import Settings

app = create_app(Settings(model_repository=sys.argv[1], providers="cpu"))
with TestClient(app) as client:
    deadline = time.monotonic() + 60
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "not ready within 60 s"
        time.sleep(0.05)
    model = "/v1/models/tiny-forecast"
    session = client.post(model + "/sessions").json()["session_id"]
    step = client.post(model + "/sessions/" + session + ":step", json={"values": [315.0, 316.0]})
    assert step.status_code == 200 and len(step.json()["forecast"]) == 4, step.text
    body = client.post(model + ":predict", json={"instances": [[315.0, 316.0]]}).json()
    assert body["predictions"][0]["forecast"] == step.json()["forecast"], body
assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules
               if sys.modules[name] is not None)
print("served without torch")
"""


def test_forecasts_and_sessions_are_served_without_torch():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", NO_TORCH, str(tiny_forecast_repository())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "served without torch" in result.stdout
