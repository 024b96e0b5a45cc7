"""What the real-server tests cannot provoke reliably, on in-process apps with tiny models: a
gRPC and an HTTP request in one batch, a full queue, a request past its timeout."""

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc as triton_sync
import tritonclient.grpc.aio as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.settings import BatchingSettings, Settings
from tests.conftest import wait_ready
from tests.live_server import free_port
from tests.waiting import wait_for, wait_for_async


def grpc_app(tiny_repository, **settings):
    port = free_port()
    app = create_app(
        Settings(model_repository=tiny_repository, providers="cpu", grpc_port=port, **settings)
    )
    return app, f"127.0.0.1:{port}"


async def many_calls(address: str, n: int, until_refused: int = 0, then=None) -> list:
    """`n` calls at once; once `until_refused` of them have failed, call `then()`."""
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["a brilliant film"], dtype=object))
    client = triton.InferenceServerClient(address)
    try:
        calls = [asyncio.ensure_future(client.infer("tiny-lstm", [text])) for _ in range(n)]
        if then is not None:
            await wait_for_async(lambda: sum(c.done() for c in calls) >= until_refused)
            then()
        return await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await client.close()


class HeldSession:
    """The real onnxruntime session, whose runs wait until the test lets them go."""

    def __init__(self, session) -> None:
        self.session = session
        self.gate = threading.Event()

    def run(self, *args):
        assert self.gate.wait(30)
        return self.session.run(*args)


def test_a_full_queue_is_refused_at_once_as_unavailable(tiny_repository, monkeypatch):
    """One batch runs (held), one request waits in a queue of one: the rest are refused."""
    tight = BatchingSettings(max_queue_size=1, max_batch_size=1, max_concurrent_batches=1)
    app, address = grpc_app(tiny_repository, model_batching={"tiny-lstm": tight})
    with TestClient(app) as client:
        wait_ready(client)
        task = app.state.repository.live.get("tiny-lstm").task
        held = HeldSession(task.graph)
        monkeypatch.setattr(task, "graph", held)
        results = asyncio.run(many_calls(address, 8, until_refused=6, then=held.gate.set))
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert (len(refused), len(answered)) == (6, 2)
    assert {r.status() for r in refused} == {"StatusCode.UNAVAILABLE"}
    assert all("the queue is full" in r.message() for r in refused)
    assert all(a.as_numpy("probabilities").shape == (1, 2) for a in answered)


def test_grpc_and_http_requests_share_one_batch(tiny_repository, monkeypatch, caplog):
    one_slot = BatchingSettings(max_concurrent_batches=1)  # the next batch waits for the first
    app, address = grpc_app(tiny_repository, model_batching={"tiny-lstm": one_slot})
    with TestClient(app) as client, ThreadPoolExecutor(4) as pool:
        wait_ready(client)
        task = app.state.repository.live.get("tiny-lstm").task
        held = HeldSession(task.graph)
        monkeypatch.setattr(task, "graph", held)

        def http(request_id: str):
            return client.post(
                "/v2/models/tiny-lstm/infer",
                json={"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES",
                                  "data": ["a moving film"]}]},
                headers={"x-request-id": request_id},
            )  # fmt: skip

        def grpc_call(request_id: str):
            text = triton_sync.InferInput("text", [1], "BYTES")
            text.set_data_from_numpy(np.array(["a dull film"], dtype=object))
            with triton_sync.InferenceServerClient(address) as grpc_client:
                return grpc_client.infer("tiny-lstm", [text], headers={"x-request-id": request_id})

        with caplog.at_level(logging.INFO, logger="rnnserve.access"):
            first = pool.submit(http, "first")  # runs alone, held
            wait_for(lambda: task.batcher.in_flight == 1 and task.queue_depth == 0)
            both = [pool.submit(grpc_call, "over-grpc"), pool.submit(http, "over-http")]
            wait_for(lambda: task.queue_depth == 2)  # waiting together for the next run
            held.gate.set()
            assert first.result(30).status_code == 200
            grpc_answer, http_answer = (f.result(30) for f in both)
        assert grpc_answer.as_numpy("probabilities").shape == (1, 2)
        assert http_answer.status_code == 200
    sizes = {
        r.fields["request_id"]: r.fields.get("batch_size")
        for r in caplog.records
        if getattr(r, "fields", {}).get("request_id") in ("first", "over-grpc", "over-http")
    }
    assert sizes == {"first": 1, "over-grpc": 2, "over-http": 2}


def test_past_the_request_timeout_is_deadline_exceeded(tiny_repository):
    app, address = grpc_app(tiny_repository, request_timeout_s=1e-6)
    with TestClient(app) as client:
        wait_ready(client)
        (result,) = asyncio.run(many_calls(address, 1))
    assert isinstance(result, InferenceServerException)
    assert result.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert "request timeout" in result.message()


def test_grpc_port_zero_starts_no_grpc_server(tiny_repository):
    app = create_app(Settings(model_repository=tiny_repository, providers="cpu", grpc_port=0))
    with TestClient(app) as client:
        wait_ready(client)
        assert not hasattr(app.state, "grpc")
