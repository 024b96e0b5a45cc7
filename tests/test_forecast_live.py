"""Streaming sessions on a real server: concurrent clients each get their own sequential run,
and the session settings are read from the environment."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from tests.forecast_helpers import tiny_forecast_repository
from tests.live_server import live_server
from tests.service.test_forecast import co2_like
from tests.waiting import wait_for

MODEL = "/v1/models/tiny-forecast"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server():
    with live_server(
        tiny_forecast_repository(), session_ttl_s="1.5", max_sessions="64", repository_poll_s="0"
    ) as url:
        yield url


def test_concurrent_sessions_each_match_their_own_sequential_run(server):
    clients, sizes = 12, [5, 1, 9, 2, 20, 3]

    async def stream(client: httpx.AsyncClient, seed: int) -> list[tuple[int, list[float]]]:
        series = co2_like(sum(sizes), seed)
        session = (await client.post(f"{MODEL}/sessions")).json()["session_id"]
        got, end = [], 0
        for size in sizes:
            reply = await client.post(
                f"{MODEL}/sessions/{session}:step", json={"values": series[end : end + size]}
            )
            assert reply.status_code == 200, reply.text
            end += size
            got.append((end, reply.json()["forecast"]))
        return got

    async def run_all():
        async with httpx.AsyncClient(base_url=server, timeout=30) as client:
            return await asyncio.gather(*(stream(client, seed) for seed in range(clients)))

    results = asyncio.run(run_all())
    for seed, steps in enumerate(results):
        series = co2_like(sum(sizes), seed)
        for end, forecast in steps:
            reply = httpx.post(f"{server}{MODEL}:predict", json={"instances": [series[:end]]})
            np.testing.assert_allclose(
                forecast, reply.json()["predictions"][0]["forecast"], rtol=1e-6
            )


def test_sessions_expire_after_the_ttl_from_the_environment(server):
    session = httpx.post(f"{server}{MODEL}/sessions").json()
    assert session["ttl_s"] == 1.5
    path = f"{server}{MODEL}/sessions/{session['session_id']}"
    assert httpx.post(f"{path}:step", json={"values": [315.0]}).status_code == 200
    # Reading a session does not keep it alive: poll until the TTL has passed, never sleep.
    wait_for(lambda: httpx.get(path).status_code == 410, "the session to expire", timeout=30)
    reply = httpx.post(f"{path}:step", json={"values": [315.5]})
    assert reply.status_code == 410 and "expired" in reply.json()["error"]
    metrics = httpx.get(f"{server}/metrics").text
    assert 'rnnserve_sessions_closed_total{reason="expired"}' in metrics
