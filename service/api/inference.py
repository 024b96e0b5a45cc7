"""What every inference route does around the model: choose a version, count it in flight,
watch for the client leaving, and record metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request

from contract.manifest import version_number
from service import tracing
from service.errors import ClientGone, NotFound, ServiceError
from service.logs import note
from service.metrics import Metrics
from service.registry import ModelVersion
from service.repository import ModelRepository

T = TypeVar("T")


async def infer(
    request: Request,
    name: str,
    version: int | None,
    work: Callable[[ModelVersion], Awaitable[T]],
) -> tuple[ModelVersion, T]:
    state = request.app.state
    return await run_inference(
        state.repository,
        state.metrics,
        name,
        version,
        lambda mv: _unless_disconnected(request, work(mv)),
    )


async def run_inference(
    repository: ModelRepository,
    metrics: Metrics,
    name: str,
    version: int | None,
    work: Callable[[ModelVersion], Awaitable[T]],
) -> tuple[ModelVersion, T]:
    """What HTTP and gRPC share: the version chosen and held, metrics, the batch's spans."""
    mv = repository.acquire(name, version)
    note(model=mv.name, version=mv.version)
    started = time.perf_counter()
    status = 500
    try:
        result = await work(mv)
        status = 200
        tracing.record_batch(mv.name, mv.version)
    except ServiceError as error:
        status = error.status_code
        if isinstance(error, ClientGone):
            metrics.disconnects.labels("waiting for the model").inc()
        raise
    finally:
        mv.release()
        labels, seconds = (mv.name, str(mv.version)), time.perf_counter() - started
        metrics.requests.labels(*labels, str(status)).inc()
        metrics.latency.labels(*labels).observe(seconds)
        mv.statistics.request(status == 200, seconds)
    return mv, result


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, but cancel it (dropping its queued sequences) if the client goes away."""
    handler = asyncio.current_task()
    assert handler is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        message = await request.receive()  # the body is read: this waits for the disconnect
        if message["type"] == "http.disconnect":
            gone = True
            handler.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            raise ClientGone("the client disconnected") from None
        raise
    finally:
        watcher.cancel()


def parse_version(name: str, version: str) -> int:
    """Versions are positive integers; anything else names no version."""
    number = version_number(version)
    if number is None:
        raise NotFound(f"model {name!r} has no version {version!r}")
    return number
