"""The live registry: the versions in memory, their states, and which one serves a request.

It lives on the event loop and nothing else mutates it. A version moves
loading -> ready | failed, and ready -> unloading -> (gone). A request takes a version with
`acquire` (no await between choosing and counting it), so a version being retired is closed
only after every request that chose it has finished.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from contract.manifest import MODEL_NAME, Manifest
from service.codecs import OutputTensor
from service.discovery import Fingerprint
from service.errors import ModelNotReady, NotFound
from service.statistics import Statistics
from service.tasks import ServingTask

State = Literal["loading", "ready", "failed", "unloading"]


@dataclass(eq=False)
class ModelVersion:
    name: str
    version: int
    folder: Path
    state: State = "loading"
    error: str | None = None
    fingerprint: Fingerprint = ()  # of the folder when it failed: retried once it changes
    manifest: Manifest | None = None
    task: ServingTask | None = None
    active: int = 0  # requests that chose this version and have not finished
    statistics: Statistics = field(default_factory=Statistics)
    _idle: asyncio.Event | None = field(default=None, repr=False)

    @property
    def provider(self) -> str | None:
        return self.task.provider if self.task is not None else None

    async def predict(
        self, instances: list[Any], parameters: dict[str, Any], timeout: float
    ) -> list[dict[str, Any]]:
        assert self.task is not None
        return await self.task.predict(instances, parameters, timeout)

    async def infer(
        self, arrays: dict[str, np.ndarray], parameters: dict[str, Any], timeout: float
    ) -> list[OutputTensor]:
        assert self.task is not None
        return await self.task.infer(arrays, parameters, timeout)

    def release(self) -> None:
        self.active -= 1
        if self.active == 0 and self._idle is not None:
            self._idle.set()

    async def retire(self) -> None:
        """Stop taking requests, let those in flight finish, then free the task."""
        self.state = "unloading"
        while self.active:
            self._idle = asyncio.Event()
            await self._idle.wait()
        if self.task is not None:
            await self.task.drain()
            self.task.close()
        self.task = None

    def describe(self) -> str:
        detail = f": {self.error}" if self.error else ""
        return f"{self.name} version {self.version} is {self.state}{detail}"


def default_version(versions: dict[int, ModelVersion]) -> ModelVersion | None:
    """The highest ready version: the one served when a request names none."""
    ready = [v for v, mv in versions.items() if mv.state == "ready"]
    return versions[max(ready)] if ready else None


class Registry:
    """name -> version -> ModelVersion, looked up in memory only."""

    def __init__(self) -> None:
        self.models: dict[str, dict[int, ModelVersion]] = {}

    def versions_of(self, name: str) -> dict[int, ModelVersion]:
        """A name from a request never reaches the filesystem."""
        versions = self.models.get(name) if MODEL_NAME.match(name) else None
        if not versions:
            raise NotFound(f"model {name!r} not found")
        return versions

    def shown(self, name: str, version: int | None = None) -> ModelVersion:
        """What metadata is about: the version named, else the default, else the newest."""
        versions = self.versions_of(name)
        if version is not None:
            if version not in versions:
                raise NotFound(f"model {name!r} has no version {version}")
            return versions[version]
        return default_version(versions) or versions[max(versions)]

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """The requested version, or the default; ModelNotReady if it does not serve."""
        versions = self.versions_of(name)
        if version is None:
            mv = default_version(versions)
            if mv is None:
                raise ModelNotReady(
                    f"model {name!r} has no version ready: "
                    + "; ".join(m.describe() for m in versions.values())
                )
            return mv
        mv = versions.get(version)
        if mv is None:
            raise NotFound(f"model {name!r} has no version {version}")
        if mv.state != "ready":
            raise ModelNotReady(mv.describe())
        return mv

    def acquire(self, name: str, version: int | None = None) -> ModelVersion:
        """`get`, counted as in flight until `release`: it cannot be closed under the request."""
        mv = self.get(name, version)
        mv.active += 1
        return mv
