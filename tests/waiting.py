"""The one way tests (and the servers they start) wait: for a condition, polled, never for a
fixed time, since a slow machine is slow. No side effects on import (benchmarks use it too)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], what: str = "the condition", timeout: float = 60.0
) -> None:
    """Poll `condition()` every 10 ms; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.01)


async def wait_for_async(
    condition: Callable[[], object], what: str = "the condition", timeout: float = 60.0
) -> None:
    """`wait_for` inside an event loop: the loop runs between polls."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g} s")
        await asyncio.sleep(0.001)
