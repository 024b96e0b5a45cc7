"""Sessions in a real redis-server: compact state, two apps sharing sessions, compare-and-set
on the step count, idle expiry, LRU eviction, retried steps, and 503 when Redis is away."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import redis

from service.errors import Gone, NotFound
from service.redis_sessions import PREFIX, RedisSessions, SessionStoreUnavailable
from service.sessions import SessionSettings
from service.tasks.forecast_states import StateTensors
from tests.conftest import ROOT, wait_ready
from tests.forecast_helpers import HORIZON, tiny_forecast_repository
from tests.live_server import free_port
from tests.scaleout import MISSING, have_redis, redis_server
from tests.service.test_forecast import co2_like
from tests.waiting import wait_for_async

pytestmark = pytest.mark.skipif(not have_redis(), reason=f"needs {MISSING}")
MODEL = "/v1/models/tiny-forecast"


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture
def db(redis_url):
    """A synchronous client on the test's Redis, emptied before each test."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


def make_app(store: str, **settings):
    from service.app import create_app
    from service.settings import Settings

    return create_app(
        Settings(
            **{"model_repository": tiny_forecast_repository(), **settings},
            providers="cpu",
            session_store=store,
            repository_poll_s=0,
        )
    )


@pytest.fixture(scope="module")
def two_apps(redis_url):
    """Two apps (as two replicas would be) on one Redis."""
    from fastapi.testclient import TestClient

    with TestClient(make_app(redis_url)) as a, TestClient(make_app(redis_url)) as b:
        wait_ready(a)
        wait_ready(b)
        yield a, b


def new_session(client) -> str:
    response = client.post(f"{MODEL}/sessions")
    assert response.status_code == 201, response.text
    return response.json()["session_id"]


def step(client, session: str, values, **extra):
    return client.post(f"{MODEL}/sessions/{session}:step", json={"values": values, **extra})


def predict(client, values) -> list[float]:
    response = client.post(f"{MODEL}:predict", json={"instances": [values]})
    return response.json()["predictions"][0]["forecast"]


def run(coroutine):
    return asyncio.run(coroutine)


# -- state ---------------------------------------------------------------------------------------


def test_state_is_stored_as_its_arrays_bytes_behind_a_small_header():
    rng = np.random.default_rng(0)
    state = StateTensors(
        (
            rng.normal(size=(2, 8)).astype(np.float32),
            rng.normal(size=(16, 8)).astype(np.float32),
            np.array(1.25, np.float32),
            np.array(7, np.int64),
        ),
        seen=7,
    )
    data = state.to_bytes()
    assert state.nbytes < len(data) < state.nbytes + 64  # the header is small
    back = StateTensors.from_bytes(data)
    for a, b in zip(back.arrays, state.arrays, strict=True):
        np.testing.assert_array_equal(a, b)
    assert back.seen == 7
    with pytest.raises(ValueError, match="truncated"):
        StateTensors.from_bytes(data[:-4])


def test_the_stored_session_holds_binary_state_not_json(two_apps, db):
    a, _ = two_apps
    session = new_session(a)
    step(a, session, co2_like(10))
    stored = db.hgetall(f"{PREFIX}s:{session}")
    assert int(stored[b"steps"]) == 10
    info = a.get(f"{MODEL}/sessions/{session}").json()
    kept = StateTensors.from_bytes(stored[b"state"])
    assert kept.nbytes == info["state_bytes"] < len(stored[b"state"]) < info["state_bytes"] + 128
    assert kept.seen == 10 and int(kept.arrays[-1]) == 10  # the graph's own count of filled slots
    new_session(a)
    metrics = a.get("/metrics").text
    assert "rnnserve_sessions 2.0" in metrics.splitlines()  # both, in the shared store


def test_a_session_kept_by_the_first_release_steps_on_after_an_upgrade(redis_url, db, tmp_path):
    """The committed co2-gru/1 graph's sessions were kept as the first release's fixed
    `RSS1` state; a replica of this release steps them on, attention and all."""
    import shutil
    import struct

    import onnxruntime as ort
    from fastapi.testclient import TestClient

    from contract.manifest import Manifest

    folder = ROOT / "models" / "co2-gru" / "1"
    shutil.copytree(folder.parent, tmp_path / "co2-gru")
    prep = Manifest.read(folder).preprocessing
    past, new = co2_like(30, seed=11), co2_like(50, seed=11)[30:]
    # What the first release kept after `past`: its step graph's state, packed as it packed it.
    graph = ort.InferenceSession(str(folder / "step.onnx"), providers=["CPUExecutionProvider"])
    scaled = ((np.array(past) - prep.mean) / prep.std).astype(np.float32)[None]
    _, _, state, memory, last, filled = graph.run(
        None,
        {
            "values": scaled,
            "lengths": np.array([30]),
            "state": np.zeros((1, 1, 64), np.float32),
            "memory": np.zeros((1, 104, 64), np.float32),
            "last": np.zeros(1, np.float32),
            "filled": np.zeros(1, np.int64),
        },
    )
    kept = struct.pack("<4sIIIIf", b"RSS1", 1, 64, 104, int(filled[0]), float(last[0]))
    kept += state[:, 0].tobytes() + memory[0].tobytes()
    app = make_app(redis_url, model_repository=tmp_path)
    with TestClient(app) as client:
        wait_ready(client)
        url = "/v1/models/co2-gru"
        session = client.post(f"{url}/sessions").json()["session_id"]
        db.hset(f"{PREFIX}s:{session}", mapping={"state": kept, "steps": 30})
        stepped = client.post(
            f"{url}/sessions/{session}:step",
            json={"values": new, "parameters": {"attention": True}},
        )
        assert stepped.status_code == 200, stepped.text
        whole = client.post(
            f"{url}:predict", json={"instances": [past + new], "parameters": {"attention": True}}
        ).json()["predictions"][0]
        answer = stepped.json()
        assert answer["steps"] == 50 and len(answer["attention"]) == 50
        np.testing.assert_allclose(answer["forecast"], whole["forecast"], rtol=1e-5)
        np.testing.assert_allclose(answer["attention"], whole["attention"], atol=1e-6)
        db.hset(f"{PREFIX}s:{session}", "state", b"XXXX")  # bytes no release wrote
        unreadable = client.post(f"{url}/sessions/{session}:step", json={"values": [1.0]})
        assert unreadable.status_code == 410 and "cannot read" in unreadable.json()["error"]


# -- shared between apps ---------------------------------------------------------------------------


def test_either_app_steps_a_session_and_gets_what_one_process_would(two_apps):
    a, b = two_apps
    session = new_session(a)
    series = co2_like(60, seed=3)
    end = 0
    for i, size in enumerate((1, 9, 2, 30, 18)):
        response = step((a, b)[i % 2], session, series[end : end + size])
        assert response.status_code == 200, response.text
        end += size
        assert response.json()["steps"] == end
        np.testing.assert_allclose(response.json()["forecast"], predict(a, series[:end]), rtol=1e-5)
    info = b.get(f"{MODEL}/sessions/{session}").json()
    assert info["steps"] == 60 and 0 < info["expires_in_s"] <= 600
    assert b.delete(f"{MODEL}/sessions/{session}").status_code == 204
    gone = step(a, session, [1.0])
    assert gone.status_code == 410 and "deleted" in gone.json()["error"]
    assert a.get(f"{MODEL}/sessions/not-a-session").status_code == 404
    assert (
        b.post(f"/v1/models/other/sessions/{new_session(a)}:step", json={"values": [1]}).status_code
        == 404
    )


def test_concurrent_steps_through_both_apps_are_applied_once_each_in_some_order(two_apps):
    a, b = two_apps
    session = new_session(a)
    values = co2_like(16, seed=5)
    start = threading.Barrier(16)

    def one(i: int) -> dict:
        start.wait()
        response = step((a, b)[i % 2], session, [values[i]])
        assert response.status_code == 200, response.text
        return response.json()

    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(one, range(16)))
    order = sorted(range(16), key=lambda i: responses[i]["steps"])
    assert [responses[i]["steps"] for i in order] == list(range(1, 17))  # never interleaved
    applied = [values[i] for i in order]
    for n, i in enumerate(order, start=1):
        np.testing.assert_allclose(responses[i]["forecast"], predict(a, applied[:n]), rtol=1e-5)


def test_a_retried_step_gets_its_first_answer_and_is_not_applied_twice(two_apps):
    a, b = two_apps
    session = new_session(a)
    series = co2_like(12, seed=9)
    first = step(a, session, series[:8], expect_steps=0).json()
    again = step(b, session, series[:8], expect_steps=0)  # as if the first answer was lost
    assert again.status_code == 200 and again.json() == first
    assert a.get(f"{MODEL}/sessions/{session}").json()["steps"] == 8
    other = step(b, session, series[8:], expect_steps=0)  # not a retry: other values
    assert other.status_code == 409 and "8 values" in other.json()["error"]
    after = step(b, session, series[8:], expect_steps=8).json()
    np.testing.assert_allclose(after["forecast"], predict(a, series), rtol=1e-5)


# -- the store alone ---------------------------------------------------------------------------


def test_a_stale_commit_loses_the_compare_and_set(redis_url, db):
    async def scenario():
        store = RedisSessions(redis_url)
        fresh = StateTensors((np.zeros((1, 2), np.float32), np.zeros(3, np.float32))).to_bytes()
        created = await store.create("m", 1, fresh, len(fresh))
        one, two = await store.get("m", created.id), await store.get("m", created.id)
        assert await store.commit(one, fresh, 5, b"") == 5
        assert await store.commit(two, fresh, 3, b"") is None  # read before the first commit
        assert (await store.get("m", created.id)).steps == 5
        await store.close()

    run(scenario())


def test_idle_sessions_expire_through_redis_key_expiry(redis_url, db):
    async def scenario():
        store = RedisSessions(redis_url, SessionSettings(session_ttl_s=1.0))
        fresh = StateTensors((np.zeros((1, 2), np.float32), np.zeros(3, np.float32))).to_bytes()
        idle, busy = [await store.create("m", 1, fresh, 1) for _ in range(2)]
        idle_key, busy_key = f"{PREFIX}s:{idle.id}", f"{PREFIX}s:{busy.id}"
        # Half the TTL on, a step renews the busy one's: it outlives the idle one by as much.
        await wait_for_async(lambda: 0 < db.pttl(idle_key) < 500, "half the TTL to pass")
        await store.commit(await store.get("m", busy.id), fresh, 1, b"")
        assert db.pttl(busy_key) > db.pttl(idle_key) + 400
        await wait_for_async(lambda: not db.exists(idle_key), "the idle session to expire")
        with pytest.raises(Gone, match="expired"):
            await store.get("m", idle.id)
        assert (await store.get("m", busy.id)).steps == 1
        with pytest.raises(NotFound):
            await store.get("other", idle.id)
        await store.close()

    run(scenario())


def test_past_the_limit_the_least_recently_used_session_is_evicted(redis_url, db):
    async def scenario():
        store = RedisSessions(redis_url, SessionSettings(max_sessions=2))
        fresh = StateTensors((np.zeros((1, 2), np.float32), np.zeros(3, np.float32))).to_bytes()
        a = await store.create("m", 1, fresh, 1)
        b = await store.create("m", 1, fresh, 1)
        await store.commit(await store.get("m", a.id), fresh, 1, b"")  # b is now the least recent
        c = await store.create("m", 1, fresh, 1)
        with pytest.raises(Gone, match="evicted"):
            await store.get("m", b.id)
        assert {(await store.get("m", s.id)).id for s in (a, c)} == {a.id, c.id}
        assert db.zcard(f"{PREFIX}lru") == 2
        await store.close()

    run(scenario())


def test_an_unreachable_store_is_503_with_retry_after_and_predictions_still_work():
    from fastapi.testclient import TestClient

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(make_app(nowhere)) as client:
        wait_ready(client)
        response = client.post(f"{MODEL}/sessions")
        assert response.status_code == 503 and response.headers["retry-after"]
        assert "session store" in response.json()["error"]
        assert step(client, "any", [1.0]).status_code == 503
        assert len(predict(client, co2_like(10))) == HORIZON

    async def direct():
        store = RedisSessions(nowhere)
        with pytest.raises(SessionStoreUnavailable):
            await store.get("m", "x")
        await store.close()

    run(direct())


def test_sessions_answer_again_once_redis_is_back():
    """Redis stops under a live app (503), then a new one listens on the same port (201)."""
    from fastapi.testclient import TestClient

    port = free_port()
    with TestClient(make_app(f"redis://127.0.0.1:{port}/0")) as client:
        wait_ready(client)
        with redis_server(port) as url:
            assert client.post(f"{MODEL}/sessions").status_code == 201
            redis.Redis.from_url(url).shutdown(nosave=True)
            down = client.post(f"{MODEL}/sessions")
            assert down.status_code == 503, down.text
        with redis_server(port):
            assert client.post(f"{MODEL}/sessions").status_code == 201


def test_a_store_that_refuses_writes_is_503_and_logged(two_apps, db, caplog):
    a, _ = two_apps
    db.execute_command("REPLICAOF", "127.0.0.1", str(free_port()))  # read-only: writes refused
    try:
        response = a.post(f"{MODEL}/sessions")
    finally:
        db.execute_command("REPLICAOF", "NO", "ONE")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "refused" in response.json()["error"]
    assert any("refused a command" in r.getMessage() for r in caplog.records)
    assert a.post(f"{MODEL}/sessions").status_code == 201
