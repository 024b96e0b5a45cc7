"""The model repository: keeps what is served in line with the disk and the version policy,
and takes explicit load and unload requests.

Scanning and loading run on worker threads (`discovery`, `loading`); their outcome is applied
on the event loop, the only place the live `registry` changes. A version that fails to load is
logged once, stays visible with its error while its folder is unchanged, and is tried again
only when the folder changes or on an explicit load. Retiring a version frees everything it
held: its task (sessions, batcher thread) and its metric series.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import gc
import logging
from collections.abc import Callable
from pathlib import Path

from contract.manifest import MODEL_NAME
from service.batching import BatchStats
from service.discovery import Fingerprint, discover, fingerprint, misplaced, select_versions
from service.errors import BadRequest, NotFound
from service.loading import LoadError, load_version
from service.metrics import Metrics
from service.registry import ModelVersion, Registry
from service.settings import Settings
from service.statistics import Statistics

log = logging.getLogger("rnnserve.repository")


class ModelRepository(Registry):
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        super().__init__()
        self.settings = settings
        self.metrics = metrics
        self.root = settings.model_repository
        self.unloaded: set[str] = set()  # unloaded by request: polling leaves them alone
        self.loaded = False  # a first scan has finished
        self.scan_error: str | None = None
        self.empty_reason = ""  # why the last scan found no model, if it found none
        self.was_ready = False  # once ready, what fails later never takes readiness back
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()
        metrics.watch_queues(self._queue_depths)

    def discover(self) -> dict[str, dict[int, Path]]:
        return discover(self.root, self.settings.model_name)

    def policy_for(self, name: str) -> str:
        return self.settings.model_version_policy.get(name, self.settings.version_policy)

    # -- keeping up with the disk ------------------------------------------------------------

    async def refresh(self, only: str | None = None, retry_failed: bool = False) -> None:
        """Bring what is served in line with the disk and the version policy.

        New versions are loaded first; a version leaving the policy is retired only once a
        wanted version is ready, so a broken new version never takes an old one down.
        """
        async with self._lock:
            failed = [m for vs in self.models.values() for m in vs.values() if m.state == "failed"]
            found, prints = await asyncio.to_thread(self._scan, failed)
            if not only:
                self.empty_reason = "" if found else await asyncio.to_thread(self._empty, found)
            names = [only] if only else sorted(set(found) | set(self.models))
            for name in names:
                if name not in self.unloaded:
                    await self._refresh_model(name, found.get(name, {}), prints, retry_failed)
            self.loaded = True
            self.was_ready = self.was_ready or not self._reasons()

    def _empty(self, found: dict) -> str:
        """Blocking: why a scan found no model (an empty or misplaced repository)."""
        hint = misplaced(self.root) if self.settings.model_name is None else ""
        return hint or f"the model repository {self.root} holds no model"

    def _scan(self, failed: list[ModelVersion]) -> tuple[dict, dict[ModelVersion, Fingerprint]]:
        """Blocking: the folders on disk, and the fingerprints of the failed versions."""
        return self.discover(), {mv: fingerprint(mv.folder) for mv in failed}

    async def _refresh_model(
        self,
        name: str,
        on_disk: dict[int, Path],
        prints: dict[ModelVersion, Fingerprint],
        retry_failed: bool,
    ) -> None:
        current = self.models.setdefault(name, {})
        for version, mv in list(current.items()):
            changed = version not in on_disk or prints.get(mv, mv.fingerprint) != mv.fingerprint
            if mv.state == "failed" and (changed or retry_failed):
                self._forget(current, mv)
        usable = [v for v in on_disk if not (v in current and current[v].state == "failed")]
        wanted = select_versions(self.policy_for(name), usable)
        for version in wanted:
            if version not in current:
                await self._load(current, ModelVersion(name, version, on_disk[version]))
        serving = any(current[v].state == "ready" for v in wanted)
        for version, mv in list(current.items()):
            gone = version not in on_disk
            if mv.state == "ready" and version not in wanted and (serving or gone):
                self._retire(current, mv)
        if not current:
            del self.models[name]

    async def _load(self, current: dict[int, ModelVersion], mv: ModelVersion) -> None:
        current[mv.version] = mv
        observer = _observer(self.metrics.batch_observer(mv.name, mv.version), mv.statistics)
        before = await asyncio.to_thread(fingerprint, mv.folder)
        try:
            named = mv.folder == self.root / mv.name / str(mv.version)  # else --model_name's
            loaded = await asyncio.to_thread(
                load_version, mv.name, mv.version, mv.folder, self.settings, observer, named
            )
        except LoadError as error:
            mv.state, mv.error, mv.fingerprint = "failed", str(error), before
            log.error("could not load %s/%s: %s", mv.name, mv.version, mv.error)
        else:
            mv.manifest, mv.task, mv.state = loaded.manifest, loaded.task, "ready"
            log.info("loaded %s/%s on %s", mv.name, mv.version, mv.provider)
        self.metrics.ready.labels(mv.name, str(mv.version)).set(mv.state == "ready")

    def _forget(self, current: dict[int, ModelVersion], mv: ModelVersion) -> None:
        if current.get(mv.version) is mv:
            del current[mv.version]
        self.metrics.forget(mv.name, mv.version)

    def _retire(self, current: dict[int, ModelVersion], mv: ModelVersion) -> None:
        mv.state = "unloading"  # at once: no new request chooses it
        self.metrics.ready.labels(mv.name, str(mv.version)).set(0)

        async def retire() -> None:
            await mv.retire()
            self._forget(current, mv)
            await asyncio.to_thread(_return_freed_memory)
            log.info("unloaded %s/%s", mv.name, mv.version)

        task = asyncio.get_running_loop().create_task(retire())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def poll(self) -> None:
        """The first scan, then one every `repository_poll_s` seconds (never, if 0).

        A scan that fails (the folder is missing or unreadable) is a readiness reason, logged
        once per distinct error; polling goes on, so the repository can appear later.
        """
        frozen = False
        while True:
            try:
                await self.refresh()
            except Exception as error:
                reason = f"the model repository cannot be read: {error}"
                if reason != self.scan_error:
                    log.error("%s", reason)
                self.scan_error = reason
            else:
                if self.scan_error is not None:
                    log.info("the model repository can be read again")
                self.scan_error = None
                if not frozen:
                    # What loading made lives as long as the server: take it out of the
                    # collector's walks, and collect less often. Under load, full collections
                    # were the p99 stalls.
                    gc.freeze()
                    gc.set_threshold(20_000, 50, 100)
                    frozen = True
            if self.settings.repository_poll_s <= 0 and self.loaded:
                return
            await asyncio.sleep(self.settings.repository_poll_s or 1.0)

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
                + "; ".join(mv.describe() for mv in versions.values())
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
                    self._forget(versions, mv)
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

    # -- health ------------------------------------------------------------------------------

    def not_ready(self) -> list[str]:
        """Why the server is not ready; empty when it is.

        Readiness gates what this replica was asked to serve at start: the repository read, a
        model in it (unless allow_empty_repository), every model loaded and warmed up (strict
        readiness: with a ready version). Once ready, it stays ready: every replica shares the
        repository, so what fails later (a broken model or version published, the repository
        unreadable) is reported by `problems` without taking every replica out of the Service.
        """
        return [] if self.was_ready else self._reasons()

    def _reasons(self) -> list[str]:
        reasons = [self.scan_error] if self.scan_error else []
        if not self.loaded:
            return [*reasons, "models are still loading"]
        if not self.models and not self.settings.allow_empty_repository:
            reasons.append(self.empty_reason or f"the model repository {self.root} holds no model")
        for versions in self.models.values():
            for mv in versions.values():
                holds = mv.state == "loading" or (
                    mv.state == "failed"
                    and self.settings.strict_readiness
                    and not any(m.state == "ready" for m in versions.values())
                )
                if holds:
                    reasons.append(mv.describe())
        return reasons

    def problems(self) -> list[str]:
        """What fails without holding readiness back: versions that failed to load, and a
        repository that can no longer be read."""
        failed = [
            mv.describe()
            for versions in self.models.values()
            for mv in versions.values()
            if mv.state == "failed"
        ]
        return [self.scan_error, *failed] if self.scan_error and self.was_ready else failed

    def _queue_depths(self) -> list[tuple[str, str, int]]:
        return [
            (mv.name, str(mv.version), mv.task.queue_depth)
            for versions in self.models.values()
            for mv in versions.values()
            if mv.task is not None
        ]


def _return_freed_memory() -> None:
    """Give the heap that a retired version's sessions used back to the system (glibc keeps
    freed memory in its arenas otherwise, and resident memory would only grow)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


def _observer(metrics: Callable[[BatchStats], None], statistics: Statistics) -> Callable:
    """Each batch feeds the metrics and the version's statistics (never the version itself,
    which holds the task that holds this callback)."""

    def observe(stats: BatchStats) -> None:
        metrics(stats)
        statistics.batch(stats)

    return observe
