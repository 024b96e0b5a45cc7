"""gRPC status codes the real-server tests cannot provoke reliably: a full queue and a request
past its timeout, on in-process apps with tiny models."""

import asyncio
import threading

import numpy as np
import tritonclient.grpc.aio as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from service.app import create_app
from service.settings import BatchingSettings, Settings
from tests.conftest import wait_ready
from tests.live_server import free_port


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
            while sum(c.done() for c in calls) < until_refused:
                await asyncio.sleep(0.01)
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
    tight = BatchingSettings(max_queue_size=1, max_batch_size=1)
    app, address = grpc_app(tiny_repository, model_batching={"tiny-lstm": tight})
    with TestClient(app) as client:
        wait_ready(client)
        task = app.state.repository.get("tiny-lstm").task
        held = HeldSession(task.small_session)
        monkeypatch.setattr(task, "small_session", held)
        results = asyncio.run(many_calls(address, 8, until_refused=6, then=held.gate.set))
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert (len(refused), len(answered)) == (6, 2)
    assert {r.status() for r in refused} == {"StatusCode.UNAVAILABLE"}
    assert all("the queue is full" in r.message() for r in refused)
    assert all(a.as_numpy("probabilities").shape == (1, 2) for a in answered)


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
