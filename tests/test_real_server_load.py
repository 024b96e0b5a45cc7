"""A real server under load: correct answers for everyone, or a fast and clear refusal."""

import asyncio

import httpx
import numpy as np

from tests.conftest import DEFAULT_MODELS
from tests.live_server import live_server
from tests.test_real_server import expected_probabilities, random_texts
from tests.waiting import wait_for

MODEL = "sst2-lstm"
PATH = f"/v1/models/{MODEL}:predict"


async def post_all(url: str, texts: list[str], timeout: float = 60) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(texts), max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as client:
        return await asyncio.gather(*(client.post(PATH, json={"instances": [t]}) for t in texts))


def assert_correct(text: str, response: httpx.Response) -> None:
    got = list(response.json()["predictions"][0]["probabilities"].values())
    np.testing.assert_allclose(got, expected_probabilities(MODEL, text), atol=1e-5)


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(name) and f'model="{MODEL}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_500_concurrent_requests_each_get_their_own_answer():
    texts = random_texts(500, seed=500)
    with live_server(DEFAULT_MODELS) as url:
        responses = asyncio.run(post_all(url, texts))
        assert [r.status_code for r in responses] == [200] * 500
        for text, response in zip(texts, responses, strict=True):
            assert_correct(text, response)
        assert metric(url, "rnnserve_batch_size_count") < 500  # batching happened


def test_an_overloaded_small_queue_answers_correctly_or_refuses_with_retry_after():
    texts = random_texts(300, seed=300)
    with live_server(
        DEFAULT_MODELS, batching__max_queue_size="4", batching__max_batch_size="2"
    ) as url:
        responses = asyncio.run(post_all(url, texts))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}
        assert statuses.count(503) > 0 and statuses.count(200) > 0
        for text, response in zip(texts, responses, strict=True):
            if response.status_code == 200:
                assert_correct(text, response)
            else:
                assert response.headers["retry-after"] == "1"
                assert "queue is full" in response.json()["error"]
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200


def test_requests_past_their_timeout_get_504_and_are_not_run():
    texts = random_texts(100, seed=100)
    with live_server(
        DEFAULT_MODELS, request_timeout_s="0.003", batching__max_batch_size="1"
    ) as url:
        before = metric(url, "rnnserve_batch_size_sum")
        responses = asyncio.run(post_all(url, texts))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 504} and statuses.count(504) > 0
        for text, response in zip(texts, responses, strict=True):
            if response.status_code == 200:
                assert_correct(text, response)
            else:
                assert "request timeout" in response.json()["error"]
        ran = metric(url, "rnnserve_batch_size_sum") - before
        assert ran < len(texts)  # the ones that timed out in the queue never ran


def test_a_client_that_disconnects_has_its_queued_request_dropped():
    body = b'{"instances": ["' + b"a gripping film " * 20 + b'"]}'
    request = (
        b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: "
        b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    async def send_and_leave(port: int) -> None:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    with live_server(DEFAULT_MODELS, batching__max_batch_size="1") as url:
        port = int(url.rsplit(":", 1)[1])
        before = metric(url, "rnnserve_batch_size_sum")

        async def leave_all():
            await asyncio.gather(*(send_and_leave(port) for _ in range(300)))

        asyncio.run(leave_all())
        # Every request that got in has been run or dropped: nothing queued, nothing running.
        depth = 'rnnserve_queue_depth{model="sst2-lstm",version="1"} 0.0'
        wait_for(lambda: depth in httpx.get(f"{url}/metrics").text, "the queue to empty", 60)
        ran = metric(url, "rnnserve_batch_size_sum") - before
        assert ran < 300
        assert metric(url, 'rnnserve_requests_total{model="sst2-lstm",status="499"') > 0
        assert httpx.get(f"{url}/v2/health/ready").status_code == 200
