"""gRPC status codes the real-server tests cannot provoke reliably: a full queue and a request
past its timeout, on in-process apps with tiny models."""

import asyncio

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


async def many_calls(address: str, n: int) -> list:
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array(["a brilliant film"], dtype=object))
    client = triton.InferenceServerClient(address)
    try:
        return await asyncio.gather(
            *(client.infer("tiny-lstm", [text]) for _ in range(n)), return_exceptions=True
        )
    finally:
        await client.close()


def test_a_full_queue_is_unavailable_with_retry_after(tiny_repository):
    tight = BatchingSettings(max_queue_size=1, max_batch_size=1)
    app, address = grpc_app(tiny_repository, model_batching={"tiny-lstm": tight})
    with TestClient(app) as client:
        wait_ready(client)
        results = asyncio.run(many_calls(address, 48))
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert refused and answered
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
