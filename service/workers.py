"""Several worker processes answer as one server: ready only once every worker is ready.

Each worker marks itself ready with a file in the folder the CLI sets up for multiprocess
metrics (PROMETHEUS_MULTIPROC_DIR) once its models have loaded; a readiness probe, whichever
worker it reaches, counts the marks of live workers. One worker: nothing to do.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from service.repository import ModelRepository
from service.settings import Settings

QUEUE_SAMPLE_S = 1.0


def _folder(settings: Settings) -> Path | None:
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(folder) if folder and settings.workers > 1 else None


async def announce(repository: ModelRepository, settings: Settings) -> None:
    """Mark this worker ready once its models are (the mark goes when the worker stops), then
    share its queue depths every QUEUE_SAMPLE_S seconds."""
    folder = _folder(settings)
    if folder is None:
        return
    mark = folder / f"ready-{os.getpid()}"
    try:
        while repository.not_ready():
            await asyncio.sleep(0.1)
        mark.touch()
        while True:  # until the lifespan ends and cancels this
            repository.metrics.share_queue_depths()
            await asyncio.sleep(QUEUE_SAMPLE_S)
    finally:
        mark.unlink(missing_ok=True)


def not_ready(settings: Settings) -> list[str]:
    """Why the server is not ready yet when some of its workers are not (empty if they are)."""
    folder = _folder(settings)
    if folder is None:
        return []
    ready = sum(1 for mark in folder.glob("ready-*") if _alive(int(mark.name[6:])))
    if ready < settings.workers:
        return [f"{ready} of {settings.workers} worker processes have loaded their models"]
    return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
