"""The model repository: finds version folders, loads and retires them live, and answers which
version serves a request.

All bookkeeping runs on the event loop; only the slow parts (reading the disk, creating a
session, the warm-up run) go to a worker thread. A request takes a version with `acquire`
(no await between choosing and counting it), so a version being retired is closed only after
every request that chose it has finished.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from contract.manifest import MODEL_NAME, Manifest, sha256_of, version_number
from service.codecs import OutputTensor
from service.errors import BadRequest, ModelNotReady, NotFound
from service.metrics import Metrics
from service.runtime import create_inference_session
from service.settings import Settings
from service.tasks import ServingTask, TaskContext, build_task

log = logging.getLogger("rnnserve.repository")
State = Literal["loading", "ready", "failed", "unloading"]
POLICY = re.compile(r"^(all|latest(?::([1-9][0-9]*))?)$")


def select_versions(policy: str, versions: list[int]) -> list[int]:
    """`all`, or `latest:N` (the N highest; `latest` alone is `latest:1`)."""
    match = POLICY.match(policy)
    if match is None:
        raise ValueError(f"version policy {policy!r} is not 'all' or 'latest:N'")
    if match.group(1) == "all":
        return sorted(versions)
    return sorted(versions)[-int(match.group(2) or 1) :]


@dataclass(eq=False)
class ModelVersion:
    name: str
    version: int
    folder: Path
    state: State = "loading"
    error: str | None = None
    manifest: Manifest | None = None
    provider: str | None = None
    task: ServingTask | None = None
    active: int = 0  # requests that chose this version and have not finished
    _idle: asyncio.Event | None = field(default=None, repr=False)

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
        """Stop taking requests, let those in flight finish, then free the session."""
        self.state = "unloading"
        while self.active:
            self._idle = asyncio.Event()
            await self._idle.wait()
        if self.task is not None:
            await self.task.drain()
            self.task.close()
        self.task = None


class ModelRepository:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.root = settings.model_repository
        self.models: dict[str, dict[int, ModelVersion]] = {}
        self.unloaded: set[str] = set()  # unloaded by request: polling leaves them alone
        self.loaded = False  # the first scan has finished
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()

    # -- finding and loading ---------------------------------------------------------------

    def discover(self) -> dict[str, dict[int, Path]]:
        """Every <name>/<version>/ folder; anything else (hidden staging folders) is ignored."""
        if not self.root.is_dir():
            raise FileNotFoundError(f"model repository {self.root} is not a folder")
        found: dict[str, dict[int, Path]] = {}
        for model_dir in sorted(self.root.iterdir()):
            if not model_dir.is_dir() or not MODEL_NAME.match(model_dir.name):
                continue
            versions = {
                number: d
                for d in model_dir.iterdir()
                if d.is_dir() and (number := version_number(d.name)) is not None
            }
            if versions:
                found[model_dir.name] = versions
        return found

    def policy_for(self, name: str) -> str:
        return self.settings.model_version_policy.get(name, self.settings.version_policy)

    async def refresh(self, only: str | None = None, retry_failed: bool = False) -> None:
        """Bring what is served in line with the disk and the version policy.

        New versions are loaded first; a version leaving the policy is retired only once a
        wanted version is ready, so a broken new version never takes an old one down.
        """
        async with self._lock:
            found = await asyncio.to_thread(self.discover)
            names = [only] if only else sorted(set(found) | set(self.models))
            for name in names:
                if name in self.unloaded:
                    continue
                on_disk = found.get(name, {})
                current = self.models.setdefault(name, {})
                if retry_failed:
                    for version, mv in list(current.items()):
                        if mv.state == "failed":
                            del current[version]
                usable = [v for v in on_disk if not (v in current and current[v].state == "failed")]
                wanted = select_versions(self.policy_for(name), usable)
                for version in wanted:
                    if version not in current:
                        mv = current[version] = ModelVersion(name, version, on_disk[version])
                        await asyncio.to_thread(self.load, mv)
                serving = any(current[v].state == "ready" for v in wanted)
                for version, mv in list(current.items()):
                    gone = version not in on_disk
                    if mv.state == "failed" and (gone or version not in wanted):
                        del current[version]
                    elif mv.state == "ready" and version not in wanted and (serving or gone):
                        self._retire(current, mv)
                if not current:
                    del self.models[name]
            self.loaded = True

    def load(self, mv: ModelVersion) -> None:
        """Blocking (worker thread): validate, verify, create the session, warm up."""
        labels = (mv.name, str(mv.version))
        try:
            mv.manifest = manifest = Manifest.read(mv.folder)
            if (manifest.name, manifest.version) != (mv.name, mv.version):
                raise ValueError(f"the manifest describes {manifest.name}/{manifest.version}")
            for file, expected in manifest.files.items():
                if sha256_of(mv.folder / file) != expected:
                    raise ValueError(f"{file} does not match the sha256 in the manifest")
            mv.task = task = build_task(
                TaskContext(
                    manifest=manifest,
                    folder=mv.folder,
                    settings=self.settings,
                    limits=self.settings.batching_for(mv.name),
                    create_inference_session=lambda graph, threads=None: create_inference_session(
                        graph, self.settings, threads
                    ),
                    on_batch=self.metrics.batch_observer(*labels),
                )
            )
            mv.provider = task.provider
            task.warm_up()
            self.metrics.queue_depth.labels(*labels).set_function(lambda: task.queue_depth)
            mv.state = "ready"
            log.info("loaded %s/%s on %s", mv.name, mv.version, mv.provider)
        except Exception as error:  # a broken artifact is reported, never served
            mv.state = "failed"
            mv.error = _explain(error).replace(str(mv.folder), "<version>")
            log.error("could not load %s/%s: %s", mv.name, mv.version, mv.error)
        self.metrics.ready.labels(*labels).set(1 if mv.state == "ready" else 0)

    def _retire(self, current: dict[int, ModelVersion], mv: ModelVersion) -> None:
        mv.state = "unloading"  # at once: no new request chooses it
        self.metrics.ready.labels(mv.name, str(mv.version)).set(0)

        async def retire() -> None:
            await mv.retire()
            if current.get(mv.version) is mv:
                del current[mv.version]
            log.info("unloaded %s/%s", mv.name, mv.version)

        task = asyncio.get_running_loop().create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def poll(self) -> None:
        """The first scan, then one every `repository_poll_s` seconds (never, if 0)."""
        await self.refresh()
        # What loading made lives as long as the server: take it out of the collector's
        # walks, and collect less often. Under load, full collections were the p99 stalls.
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        while self.settings.repository_poll_s > 0:
            await asyncio.sleep(self.settings.repository_poll_s)
            try:
                await self.refresh()
            except Exception:
                log.exception("scanning the model repository failed")

    # -- explicit control ------------------------------------------------------------------

    async def load_model(self, name: str) -> list[int]:
        """Load `name` now (again, if it was unloaded or failed); its ready versions."""
        if not MODEL_NAME.match(name) or name not in await asyncio.to_thread(self.discover):
            raise NotFound(f"model {name!r} is not in the repository")
        self.unloaded.discard(name)
        await self.refresh(only=name, retry_failed=True)
        versions = self.models.get(name, {})
        ready = sorted(v for v, mv in versions.items() if mv.state == "ready")
        if not ready:
            raise BadRequest(
                f"model {name!r} failed to load: "
                + "; ".join(_describe(mv) for mv in versions.values())
            )
        return ready

    async def unload_model(self, name: str) -> None:
        """Stop serving `name`; returns once its in-flight requests have finished."""
        versions = self.versions_of(name)
        self.unloaded.add(name)
        async with self._lock:
            for mv in list(versions.values()):
                if mv.state == "ready":
                    self._retire(versions, mv)
                elif mv.state == "failed":
                    del versions[mv.version]
            waiting = list(self._retiring)
        await asyncio.gather(*waiting)
        if not versions:
            self.models.pop(name, None)

    async def close(self) -> None:
        await asyncio.gather(*self._retiring, return_exceptions=True)
        for versions in self.models.values():
            for mv in versions.values():
                if mv.task is not None:
                    mv.task.close()

    # -- serving -----------------------------------------------------------------------------

    def versions_of(self, name: str) -> dict[int, ModelVersion]:
        """Looked up in memory only: a name from a request never reaches the filesystem."""
        versions = self.models.get(name) if MODEL_NAME.match(name) else None
        if not versions:
            raise NotFound(f"model {name!r} not found")
        return versions

    def get(self, name: str, version: int | None = None) -> ModelVersion:
        """The requested version, or the highest ready one."""
        versions = self.versions_of(name)
        if version is None:
            ready = [v for v, mv in versions.items() if mv.state == "ready"]
            if not ready:
                raise ModelNotReady(
                    f"model {name!r} has no version ready: "
                    + "; ".join(_describe(mv) for mv in versions.values())
                )
            return versions[max(ready)]
        mv = versions.get(version)
        if mv is None:
            raise NotFound(f"model {name!r} has no version {version}")
        if mv.state != "ready":
            raise ModelNotReady(_describe(mv))
        return mv

    def acquire(self, name: str, version: int | None = None) -> ModelVersion:
        """`get`, counted as in flight until `release`: it cannot be closed under the request."""
        mv = self.get(name, version)
        mv.active += 1
        return mv

    def not_ready(self) -> list[str]:
        """Why the server is not ready; empty when it is."""
        if not self.loaded:
            return ["models are still loading"]
        holding = {"loading", "failed"} if self.settings.strict_readiness else {"loading"}
        return [
            _describe(mv)
            for versions in self.models.values()
            for mv in versions.values()
            if mv.state in holding
        ]


def _explain(error: Exception) -> str:
    if isinstance(error, ValidationError):
        problems = error.errors(include_url=False)
        where = [".".join(str(part) for part in p["loc"]) for p in problems]
        return "ValidationError: invalid manifest: " + "; ".join(
            f"{w}: {p['msg']}" for w, p in zip(where, problems, strict=True)
        )
    return f"{type(error).__name__}: {error}"


def _describe(mv: ModelVersion) -> str:
    detail = f": {mv.error}" if mv.error else ""
    return f"{mv.name} version {mv.version} is {mv.state}{detail}"
