"""What the HTTP inference routes add around the data plane: the client leaving cancels the
work (dropping its queued sequences)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from service.api.errors import V1, V2, counted
from service.dataplane import DataPlane, Work
from service.errors import ClientGone
from service.versions import ModelVersion

T = TypeVar("T")
COUNTED = {False: counted(V1), True: counted(V2)}  # by the path: /v2/... or not


def dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


async def infer(
    request: Request, name: str, version: int | None, work: Work[T]
) -> tuple[ModelVersion, T]:
    return await dataplane(request).infer(
        name,
        version,
        request.app.state.settings.request_timeout_s,
        lambda mv, timeout: _unless_disconnected(request, work(mv, timeout)),
        COUNTED[request.scope["path"].startswith("/v2/")],
    )


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
