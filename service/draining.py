"""Drain both wires together: on SIGTERM (or SIGINT), tell the gRPC server at once, while
uvicorn's own handler begins the HTTP drain, rather than only in the lifespan's shutdown,
which uvicorn runs after its HTTP drain (Kubernetes' grace period would have to hold both)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_exit_signal(callback: Callable[[], None]) -> None:
    """Call `callback` on the running loop when an exit signal arrives, then whatever handler
    was there (uvicorn's). Only the main thread sets handlers: elsewhere (an app run in a
    test client's thread) nothing is hooked and the lifespan's shutdown does it all."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        previous = signal.getsignal(sig)

        def handler(signum: int, frame: FrameType | None, previous=previous) -> None:
            loop.call_soon_threadsafe(callback)
            if callable(previous):
                previous(signum, frame)
            else:  # the default action (or none): as if this handler had not been here
                signal.signal(signum, previous)
                signal.raise_signal(signum)

        signal.signal(sig, handler)
