"""Tuning of the server process, done by the app's lifespan rather than by the repository:
the garbage collector once the models have loaded, and the heap after a version retires."""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
from collections.abc import Callable

from service.repository import ModelRepository


async def freeze_when_loaded(repository: ModelRepository, every_s: float = 0.1) -> None:
    """What loading made lives as long as the server: take it out of the collector's walks,
    and collect less often (under load, full collections were the p99 stalls)."""
    while not repository.loaded or repository.scan_error is not None:
        await asyncio.sleep(every_s)
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)


def return_freed_memory() -> None:
    """Give the heap that a retired version's sessions used back to the system (glibc keeps
    freed memory in its arenas otherwise, and resident memory would only grow). Blocking."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None
