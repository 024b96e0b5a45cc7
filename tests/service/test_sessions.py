"""Streaming sessions in-process: every route, bad input leaving the state alone, TTL expiry,
LRU eviction, serialised steps on one session and batching across sessions."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.errors import Gone, NotFound
from service.sessions import MemorySessions, SessionSettings, SessionStore
from tests.conftest import wait_ready
from tests.forecast_helpers import HORIZON, MAX_VALUES, WINDOW, tiny_forecast_repository
from tests.service.test_forecast import co2_like

MODEL = "/v1/models/tiny-forecast"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def app_client():
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    app = create_app(
        Settings(
            model_repository=tiny_forecast_repository(),
            providers="cpu",
            batching={"max_batch_delay_ms": 20},
        )
    )
    with TestClient(app) as client:
        wait_ready(client)
        yield app, client


@pytest.fixture
def client(app_client):
    """The app's own store (default settings, metrics registered), emptied for each test."""
    app, client = app_client
    app.state.dataplane.sessions.store._sessions.clear()
    return client


def new_session(client) -> str:
    response = client.post(f"{MODEL}/sessions")
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def step(client, session: str, values, **parameters):
    return client.post(
        f"{MODEL}/sessions/{session}:step", json={"values": values, "parameters": parameters}
    )


def predict(client, values) -> list[float]:
    response = client.post(f"{MODEL}:predict", json={"instances": [values]})
    return response.json()["predictions"][0]["forecast"]


# -- routes --------------------------------------------------------------------------------------


def test_create_step_describe_delete(client):
    response = client.post(f"{MODEL}/sessions")
    assert response.status_code == 201
    created = response.json()
    assert created["horizon"] == HORIZON and created["max_values"] == MAX_VALUES
    session = created["session_id"]
    series = co2_like(30)
    first = step(client, session, series[:10], attention=True).json()
    assert first["steps"] == 10 and len(first["forecast"]) == HORIZON
    assert len(first["attention"]) == 10
    second = step(client, session, series[10:]).json()
    assert second["steps"] == 30 and "attention" not in second
    info = client.get(f"{MODEL}/sessions/{session}").json()
    assert info["steps"] == 30 and info["model_version"] == "1"
    assert info["state_bytes"] > 0 and info["expires_in_s"] > 0 and info["last_used_at"]
    assert client.delete(f"{MODEL}/sessions/{session}").status_code == 204
    gone = step(client, session, [1.0])
    assert gone.status_code == 410 and "deleted" in gone.json()["error"]
    assert client.get(f"{MODEL}/sessions/{session}").status_code == 410


def test_steps_equal_predicting_the_whole_history(client):
    session = new_session(client)
    series = co2_like(60, seed=3)
    end = 0
    for size in (1, 9, 2, 30, 18):
        got = step(client, session, series[end : end + size]).json()["forecast"]
        end += size
        np.testing.assert_allclose(got, predict(client, series[:end]), rtol=1e-6)


def test_attention_grows_to_the_window_and_stays_there(client):
    session = new_session(client)
    lengths = []
    for chunk in (co2_like(5), co2_like(WINDOW), co2_like(3)):
        lengths.append(len(step(client, session, chunk, attention=True).json()["attention"]))
    assert lengths == [5, WINDOW, WINDOW]


def test_unknown_model_and_unknown_session_are_404(client):
    assert client.post("/v1/models/nope/sessions").status_code == 404
    assert step(client, "not-a-session", [1.0]).status_code == 404
    assert client.get(f"{MODEL}/sessions/not-a-session").status_code == 404
    assert client.delete(f"{MODEL}/sessions/not-a-session").status_code == 404
    session = new_session(client)
    other = client.post(f"/v1/models/other/sessions/{session}:step", json={"values": [1.0]})
    assert other.status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"values": []}', 422),
        (b'{"values": [1.0, NaN]}', None),
        (b'{"values": [1.0, Infinity]}', None),
        (b'{"values": [1e999]}', None),
        (b'{"values": [1e308]}', 422),
        (b'{"values": ' + str(list(range(MAX_VALUES + 1))).encode() + b"}", 422),
        (b'{"values": ["1.5"]}', 422),
        (b'{"values": [true]}', 422),
        (b'{"values": [[1.0]]}', 422),
        (b'{"values": "1.5"}', 422),
        (b'{"values": null}', 422),
        (b"{}", 422),
        (b'{"values": [1.0], "extra": 1}', 422),
        (b'{"values": [1.0], "parameters": {"attention": "maybe"}}', 422),
        (b'{"values": [1.0], "parameters": {"bogus": true}}', 422),
        (b'{"values": [1.0', 400),
    ],
)
def test_bad_input_is_4xx_and_leaves_the_state_unchanged(client, body, status):
    session = new_session(client)
    series = co2_like(12)
    step(client, session, series[:8])
    response = client.post(
        f"{MODEL}/sessions/{session}:step",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert 400 <= response.status_code < 500, response.text
    if status is not None:
        assert response.status_code == status, response.text
    assert response.json()["error"]
    assert client.get(f"{MODEL}/sessions/{session}").json()["steps"] == 8
    after = step(client, session, series[8:]).json()["forecast"]
    np.testing.assert_allclose(after, predict(client, series), rtol=1e-6)


def test_a_body_is_read_as_json_whatever_its_content_type(client):
    session = new_session(client)
    series = co2_like(4)
    sent = client.post(
        f"{MODEL}/sessions/{session}:step",
        content=json.dumps({"values": series}).encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert sent.status_code == 200, sent.text
    np.testing.assert_allclose(sent.json()["forecast"], predict(client, series), rtol=1e-6)
    csv = client.post(
        f"{MODEL}/sessions/{session}:step", content=b"1,2", headers={"content-type": "text/csv"}
    )
    assert csv.status_code == 400
    assert csv.json()["error"].startswith("the body is not valid JSON (sent as text/csv)")


def test_session_metrics_report_count_and_bounded_state(client):
    sessions = [new_session(client) for _ in range(3)]
    step(client, sessions[0], co2_like(MAX_VALUES))
    text = client.get("/metrics").text
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("rnnserve_session")
    }
    assert values["rnnserve_sessions"] == 3
    per_session = values["rnnserve_session_max_state_bytes"]
    assert values["rnnserve_session_state_bytes"] == 3 * per_session
    assert per_session < 4 * (WINDOW + 2) * 8 + 64  # window x hidden floats, whatever the history


# -- expiry and eviction -------------------------------------------------------------------------


def test_idle_sessions_expire_after_the_ttl(app_client):
    app, client = app_client
    clock = FakeClock()
    saved = app.state.dataplane.sessions
    app.state.dataplane.sessions = MemorySessions(
        SessionStore(SessionSettings(session_ttl_s=60), clock=clock)
    )
    try:
        idle, busy = new_session(client), new_session(client)
        clock.now += 40
        assert step(client, busy, [315.0]).status_code == 200
        clock.now += 30  # idle: 70 s without a step; busy: 30 s
        expired = step(client, idle, [315.0])
        assert expired.status_code == 410 and "expired" in expired.json()["error"]
        assert step(client, busy, [315.5]).status_code == 200
        assert client.get(f"{MODEL}/sessions/{idle}").status_code == 410
    finally:
        app.state.dataplane.sessions = saved


def test_the_least_recently_used_session_is_evicted(app_client):
    app, client = app_client
    saved = app.state.dataplane.sessions
    app.state.dataplane.sessions = MemorySessions(SessionStore(SessionSettings(max_sessions=2)))
    try:
        a, b = new_session(client), new_session(client)
        assert step(client, a, [315.0]).status_code == 200  # b is now the least recent
        c = new_session(client)
        evicted = step(client, b, [315.0])
        assert evicted.status_code == 410 and "evicted" in evicted.json()["error"]
        assert step(client, a, [316.0]).status_code == 200
        assert step(client, c, [316.0]).status_code == 200
        assert len(app.state.dataplane.sessions.store) == 2
    finally:
        app.state.dataplane.sessions = saved


def test_store_tells_gone_from_unknown_and_forgets_in_bounded_memory():
    clock = FakeClock()
    store = SessionStore(SessionSettings(session_ttl_s=10, max_sessions=1), clock=clock)
    first = store.create("m", 1, None, 100)
    second = store.create("m", 1, None, 100)  # evicts the first
    with pytest.raises(Gone, match="evicted"):
        store.get("m", first.id)
    with pytest.raises(NotFound):
        store.get("other", second.id)
    clock.now += 11
    with pytest.raises(Gone, match="expired"):
        store.get("m", second.id)
    for _ in range(20):
        store.create("m", 1, None, 100)
    assert len(store._gone) <= 4 and len(store) == 1


# -- concurrency -------------------------------------------------------------------------------


@pytest.fixture
def batch_sizes(app_client):
    """Record the size of every batch the forecaster runs, each run slowed a little so that
    steps arriving together queue up behind it."""
    app, _ = app_client
    batcher = app.state.repository.live.get("tiny-forecast").task.batcher
    original, sizes = batcher._run, []

    def run(items):
        sizes.append(len(items))
        time.sleep(0.02)
        return original(items)

    batcher._run = run
    yield sizes
    batcher._run = original


def test_concurrent_steps_on_one_session_are_serialised(client, batch_sizes):
    session = new_session(client)
    values = co2_like(12, seed=5)
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda v: step(client, session, [v]).json(), values))
    order = sorted(range(12), key=lambda i: responses[i]["steps"])
    assert [responses[i]["steps"] for i in order] == list(range(1, 13))  # never interleaved
    assert max(batch_sizes) == 1  # one session's steps never share a batch
    applied = [values[i] for i in order]
    for n, i in enumerate(order, start=1):
        np.testing.assert_allclose(
            responses[i]["forecast"], predict(client, applied[:n]), rtol=1e-6
        )


def test_steps_of_many_sessions_run_as_one_batch_and_each_gets_its_own_answer(client, batch_sizes):
    sessions = [new_session(client) for _ in range(8)]
    histories = {s: co2_like(40, seed=i) for i, s in enumerate(sessions)}
    chunks = {s: [3, 1, 12, 7, 17] if i % 2 else [10, 10, 10, 10] for i, s in enumerate(sessions)}
    start = threading.Barrier(len(sessions))

    def stream(session: str) -> list[list[float]]:
        start.wait()
        got, end = [], 0
        for size in chunks[session]:
            response = step(client, session, histories[session][end : end + size])
            assert response.status_code == 200, response.text
            got.append(response.json()["forecast"])
            end += size
        return got

    with ThreadPoolExecutor(len(sessions)) as pool:
        results = dict(zip(sessions, pool.map(stream, sessions), strict=True))
    assert max(batch_sizes) > 1  # steps of different sessions shared a run
    for session, forecasts in results.items():
        end = 0
        for size, got in zip(chunks[session], forecasts, strict=True):
            end += size
            np.testing.assert_allclose(got, predict(client, histories[session][:end]), rtol=1e-6)


def test_a_retried_step_is_answered_again_not_applied_twice(client):
    session = new_session(client)
    series = co2_like(12, seed=9)
    first = step_expecting(client, session, series[:8], 0)
    assert first.status_code == 200
    again = step_expecting(client, session, series[:8], 0)  # as if the first answer was lost
    assert again.json() == first.json()
    assert client.get(f"{MODEL}/sessions/{session}").json()["steps"] == 8
    stale = step_expecting(client, session, series[8:], 0)  # not that step: other values
    assert stale.status_code == 409 and "8 values" in stale.json()["error"]
    after = step_expecting(client, session, series[8:], 8).json()["forecast"]
    np.testing.assert_allclose(after, predict(client, series), rtol=1e-6)


def step_expecting(client, session: str, values, steps: int):
    return client.post(
        f"{MODEL}/sessions/{session}:step", json={"values": values, "expect_steps": steps}
    )


def test_a_step_of_any_json_numbers_is_answered_and_retried_alike(client):
    """An integer beyond 64 bits is still a number to the forecaster; a retry of that step
    (same values, same expected count) gets the same answer back."""
    session = new_session(client)
    path = f"{MODEL}/sessions/{session}:step"
    first = client.post(path, json={"values": [2**70], "expect_steps": 0})
    assert first.status_code == 200, first.text
    assert first.json()["steps"] == 1
    again = client.post(path, json={"values": [2**70], "expect_steps": 0})
    assert again.status_code == 200 and again.json() == first.json()
