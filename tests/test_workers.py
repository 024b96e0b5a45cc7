"""A real server with two worker processes answers as one: metrics of both, the same models and
readiness, sessions in Redis, repository control refused; memory sessions refused, and why."""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

from tests.forecast_helpers import tiny_forecast_repository
from tests.live_server import live_server
from tests.scaleout import MISSING, have_redis, redis_server
from tests.service.test_forecast import co2_like

MODEL = "/v1/models/tiny-forecast"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Two workers; their metrics folder is given, holding leftovers of an earlier run: a
    series file that cannot be read and the ready mark of a live process (pid 1)."""
    if not have_redis():
        pytest.skip(f"needs {MISSING}")
    folder = tmp_path_factory.mktemp("multiproc")
    (folder / "counter_4242.db").write_bytes(b"not a series file")
    (folder / "ready-1").touch()
    saved = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(folder)
    try:
        with (
            redis_server() as store,
            live_server(tiny_forecast_repository(), workers="2", session_store=store) as url,
        ):
            url.folder = folder
            yield url
    finally:
        if saved is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR")
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = saved


def fresh(url: str, method: str, path: str, **kwargs) -> httpx.Response:
    """A request on a new connection, so that successive ones reach either worker."""
    with httpx.Client(base_url=url, timeout=10) as client:
        return client.request(method, path, **kwargs)


def samples(text: str, name: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name)
    }


def test_metrics_report_the_series_of_every_worker(server):
    before = sum(samples(fresh(server, "GET", "/metrics").text, "rnnserve_requests_total").values())
    for i in range(24):
        body = {"instances": [co2_like(8, seed=i)]}
        assert fresh(server, "POST", f"{MODEL}:predict", json=body).status_code == 200
    text = fresh(server, "GET", "/metrics").text
    after = sum(samples(text, "rnnserve_requests_total").values())
    assert after - before == 24  # counted whichever worker answered, summed across workers
    ready = samples(text, "rnnserve_model_ready")
    pids = {key.split('pid="')[1].split('"')[0] for key in ready}
    assert len(pids) == 2 and set(ready.values()) == {1.0}  # each worker's own gauge
    # Queue depths are sampled by each worker and summed over the live ones.
    assert samples(text, "rnnserve_queue_depth") == {
        'rnnserve_queue_depth{model="tiny-forecast",version="1"}': 0.0
    }


def test_leftovers_of_an_earlier_run_are_cleared_at_start(server):
    assert not (server.folder / "counter_4242.db").exists()  # else /metrics could not read it
    marks = sorted(p.name for p in server.folder.glob("ready-*"))
    assert len(marks) == 2 and "ready-1" not in marks  # one per live worker, none stale


def test_workers_agree_on_readiness_and_models(server):
    answers = {
        (
            fresh(server, "GET", "/v2/health/ready").status_code,
            fresh(server, "GET", "/v1/models").text,
        )
        for _ in range(20)
    }
    assert len(answers) == 1 and next(iter(answers))[0] == 200


def test_a_session_is_stepped_by_whichever_worker_answers(server):
    session = fresh(server, "POST", f"{MODEL}/sessions").json()["session_id"]
    series = co2_like(24, seed=4)
    for n in range(1, 25, 3):
        step = fresh(
            server,
            "POST",
            f"{MODEL}/sessions/{session}:step",
            json={"values": series[n - 1 : n + 2]},
        )
        assert step.status_code == 200, step.text
        whole = fresh(server, "POST", f"{MODEL}:predict", json={"instances": [series[: n + 2]]})
        expected = whole.json()["predictions"][0]["forecast"]
        np.testing.assert_allclose(step.json()["forecast"], expected, rtol=1e-5)


def test_repository_control_is_refused_with_the_reason(server):
    response = fresh(server, "POST", "/v2/repository/models/tiny-forecast/unload")
    assert response.status_code == 409
    assert "2 worker processes" in response.json()["error"]
    assert fresh(server, "GET", f"{MODEL}").status_code == 200  # still served


def test_several_workers_with_memory_sessions_serve_predictions_and_refuse_sessions():
    with live_server(tiny_forecast_repository(), workers="2") as url:
        refused = fresh(url, "POST", f"{MODEL}/sessions")
        assert refused.status_code == 501
        assert "RNNSERVE_SESSION_STORE=redis://" in refused.json()["error"]
        predicted = fresh(url, "POST", f"{MODEL}:predict", json={"instances": [co2_like(8)]})
        assert predicted.status_code == 200 and predicted.json()["predictions"][0]["forecast"]
