"""The model repository: keeps what is served in line with the disk and the version policy,
and takes explicit load and unload requests.

Scanning and loading run on worker threads (`discovery`, `loading`); their outcome is applied
on the event loop, the only place the live versions (`live`) change. A version that fails to load is
logged once, stays visible with its error while its folder is unchanged, and is tried again
only when the folder changes or on an explicit load. Retiring a version frees everything it
held: its task (sessions, batcher) and its metric series.

With a budget (`max_loaded_models`, `max_loaded_bytes`), models that are not pinned are only
registered (manifest read, listed) and load on their first request, which waits for the load
within its deadline; to make room, the least recently used idle version is unloaded (it stays
listed and loads again on its next request). No request is dropped for room: a version is
unloaded only while no request holds it, and a request that finds it unloading waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from contract.manifest import MODEL_NAME
from service.batching import BatchStats
from service.budget import Budget, least_recently_used
from service.discovery import Fingerprint, fingerprint, misplaced, select_versions
from service.errors import BadRequest, DeadlineExceeded, NotFound, Overloaded
from service.loading import LoadError, describe_version, load_version
from service.metrics import Metrics
from service.settings import Settings
from service.sources import open_source
from service.statistics import Statistics
from service.versions import WAKING, LiveVersions, ModelVersion

log = logging.getLogger("rnnserve.repository")
TRIM_EVERY_S = 5.0  # at most this often, memory freed by unloading for room goes back


class ModelRepository:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        after_retiring: Callable[[], None] = lambda: None,
    ) -> None:
        self.live = LiveVersions()  # what requests look up; changed only here
        self.after_retiring = after_retiring  # blocking, on a worker thread (see app.lifespan)
        self.settings = settings
        self.metrics = metrics
        self.root = settings.model_repository  # a folder, or an s3:// URL
        self.source = open_source(settings)  # that folder, or the store and a local cache
        self.unloaded: set[str] = set()  # unloaded by request: polling leaves them alone
        self.loaded = False  # a first scan has finished
        self.scan_error: str | None = None
        self.empty_reason = ""  # why the last scan found no model, if it found none
        self.was_ready = False  # once ready, what fails later never takes readiness back
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task] = set()  # retiring and unloading for room
        self._loading: set[asyncio.Task] = set()  # loads on demand
        self.budget = Budget(settings.max_loaded_models, settings.max_loaded_bytes)
        self._changed = Signal()  # a load or unload ended, or a version became idle
        self._trimmed = 0.0  # when heap freed by unloading for room was last given back
        metrics.watch_queues(self._queue_depths)

    @property
    def models(self) -> dict[str, dict[int, ModelVersion]]:
        return self.live.models

    def discover(self) -> dict[str, dict[int, Path]]:
        return self.source.discover()

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
        in_folder = isinstance(self.root, Path) and self.settings.model_name is None
        hint = misplaced(self.root) if in_folder else ""
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
        on_demand = self.settings.loads_on_demand(name)
        for version in wanted:
            if version not in current:
                current[version] = mv = ModelVersion(name, version, on_disk[version])
                await (self._register(mv) if on_demand else self._load(mv))
        serving = any(current[v].state == "ready" for v in wanted)
        for version, mv in list(current.items()):
            gone = version not in on_disk
            if mv.state == "ready" and version not in wanted and (serving or gone):
                self._retire(current, mv)
            elif mv.state == "unloaded" and version not in wanted:
                self._forget(current, mv)  # nothing in memory to wait for
        if not current:
            del self.models[name]

    async def _register(self, mv: ModelVersion) -> None:
        """Know a version that loads on demand: listed with its manifest, nothing loaded."""
        before = await asyncio.to_thread(fingerprint, mv.folder)
        try:
            mv.manifest, mv.size = await asyncio.to_thread(
                describe_version, mv.name, mv.version, mv.folder, self._named(mv)
            )
        except LoadError as error:
            self._failed(mv, error, before)
        else:
            mv.state, mv.on_demand = "unloaded", True
        self.metrics.ready.labels(mv.name, str(mv.version)).set(0)
        self._changed.fire()

    async def _load(self, mv: ModelVersion) -> None:
        mv.state = "loading"
        observer = _observer(self.metrics.batch_observer(mv.name, mv.version), mv.statistics)
        before = await asyncio.to_thread(fingerprint, mv.folder)
        verify = not before or before != mv.verified  # unchanged since it was hashed: trusted
        try:
            loaded = await asyncio.to_thread(
                load_version,
                *(mv.name, mv.version, mv.folder, self.settings, observer),
                *(self._named(mv), verify),
            )
        except LoadError as error:
            self._failed(mv, error, before)
            self.metrics.loads.labels(mv.name, "failed").inc()
        else:
            if not self._holds(mv):  # unloaded by request while it loaded
                loaded.task.close()
                return
            mv.manifest, mv.task, mv.size = loaded.manifest, loaded.task, loaded.size
            mv.verified = before
            mv.state, mv.last_used = "ready", time.monotonic()
            self.metrics.loads.labels(mv.name, "loaded").inc()
            log.info("loaded %s/%s on %s", mv.name, mv.version, mv.provider)
        finally:
            self._changed.fire()
        self.metrics.ready.labels(mv.name, str(mv.version)).set(mv.state == "ready")

    def _failed(self, mv: ModelVersion, error: LoadError, before: Fingerprint) -> None:
        mv.state, mv.error, mv.fingerprint = "failed", str(error), before
        log.error("could not load %s/%s: %s", mv.name, mv.version, mv.error)

    def _named(self, mv: ModelVersion) -> bool:
        """In a repository, a manifest must name its folders (else --model_name's folder)."""
        return mv.folder == self.source.folder / mv.name / str(mv.version)

    def _holds(self, mv: ModelVersion) -> bool:
        return self.models.get(mv.name, {}).get(mv.version) is mv

    def _forget(self, current: dict[int, ModelVersion], mv: ModelVersion) -> None:
        if current.get(mv.version) is mv:
            del current[mv.version]
        self.metrics.forget(mv.name, mv.version)
        self._changed.fire()  # what it held is free: a load waiting for room may start

    def _retire(self, current: dict[int, ModelVersion], mv: ModelVersion) -> None:
        mv.state, mv.on_demand = "unloading", False  # at once: no new request chooses it
        self.metrics.ready.labels(mv.name, str(mv.version)).set(0)

        async def retire() -> None:
            await mv.retire()
            self._forget(current, mv)
            await asyncio.to_thread(self.after_retiring)
            log.info("unloaded %s/%s", mv.name, mv.version)

        _spawn(retire(), self._retiring)

    # -- on demand ---------------------------------------------------------------------------

    async def acquire(self, name: str, version: int | None, timeout: float) -> ModelVersion:
        """The version a request runs on, counted in flight until `release` (so it cannot be
        closed under the request); one that loads on demand is loaded first, within `timeout`."""
        mv = self.live.get(name, version)
        if mv.state != "ready":
            mv = await self._wake(name, version, timeout)
        mv.active += 1  # no await since the version was seen ready
        mv.last_used = time.monotonic()
        return mv

    def release(self, mv: ModelVersion) -> None:
        mv.release()
        if mv.active == 0 and self._changed.waiting:
            self._changed.fire()  # an idle version: room for a load that waits

    async def loaded_version(self, name: str, version: int | None) -> ModelVersion:
        """The version, loaded on demand if need be: for what only a loaded version knows."""
        mv = await self.acquire(name, version, self.settings.request_timeout_s)
        self.release(mv)
        return mv

    async def _wake(self, name: str, version: int | None, timeout: float) -> ModelVersion:
        """Wait until the version serves, loading it once there is room."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            mv = self.live.get(name, version)  # again: it may have been retired meanwhile
            if mv.state == "ready":
                self.metrics.cold_start.observe(loop.time() - started)
                return mv
            if mv.state == "unloaded":
                self._load_when_room(mv)
            left = started + timeout - loop.time()
            if left <= 0:
                if mv.state == "unloaded":
                    raise Overloaded(
                        f"no room to load {name!r} version {mv.version} within {timeout:g} s: "
                        "every loaded model is busy; retry shortly"
                    )
                raise DeadlineExceeded(
                    f"{name!r} version {mv.version} did not load within {timeout:g} s"
                )
            await self._changed.wait(left)

    def _load_when_room(self, mv: ModelVersion) -> None:
        """Start loading `mv` if it fits, unloading idle versions (least recently used first)
        to make room; if they are all busy, a later call tries again."""
        held = list(self._versions())
        self.budget.check_fits(mv, held)
        while not self.budget.will_have_room(mv, held):
            victim = least_recently_used(held)
            if victim is None:
                return
            self._unload_for_room(victim)
        if self.budget.has_room(mv, held):  # else: wait for the unloads under way
            mv.state = "loading"
            _spawn(self._load(mv), self._loading)

    def _unload_for_room(self, mv: ModelVersion) -> None:
        mv.state = "unloading"  # at once: a request for it now waits, then loads it again
        self.metrics.ready.labels(mv.name, str(mv.version)).set(0)
        self.metrics.evictions.labels(mv.name).inc()

        async def unload() -> None:
            await mv.retire()
            mv.state = "unloaded"
            self._changed.fire()
            log.info("unloaded %s/%s to make room", mv.name, mv.version)
            # Not after every unload: a trim holds the allocator while loads run beside it.
            if time.monotonic() - self._trimmed >= TRIM_EVERY_S:
                self._trimmed = time.monotonic()
                await asyncio.to_thread(self.after_retiring)

        _spawn(unload(), self._retiring)

    def _versions(self) -> Iterator[ModelVersion]:
        for versions in self.models.values():
            yield from versions.values()

    async def poll(self) -> None:
        """The first scan, then one every `repository_poll_s` seconds (never, if 0).

        A scan that fails (the folder is missing or unreadable) is a readiness reason, logged
        once per distinct error; polling goes on, so the repository can appear later.
        """
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
        for mv in list(versions.values()):
            if mv.on_demand and mv.state in WAKING:
                await self.loaded_version(name, mv.version)
        ready = sorted(v for v, mv in versions.items() if mv.state == "ready")
        if not ready:
            raise BadRequest(
                f"model {name!r} failed to load: "
                + "; ".join(mv.describe() for mv in versions.values())
            )
        return ready

    async def unload_model(self, name: str) -> None:
        """Stop serving `name`; returns once its in-flight requests have finished."""
        versions = self.live.versions_of(name)
        self.unloaded.add(name)
        async with self._lock:
            for mv in list(versions.values()):
                if mv.state == "ready":
                    self._retire(versions, mv)
                else:  # failed, or on demand: not loaded, loading (closed when it ends)
                    self._forget(versions, mv)
            waiting = list(self._retiring)
        await asyncio.gather(*waiting)
        if not versions:
            self.models.pop(name, None)

    async def close(self) -> None:
        await asyncio.gather(*self._retiring, *self._loading, return_exceptions=True)
        for versions in self.models.values():
            for mv in versions.values():
                if mv.task is not None:
                    mv.task.close()

    # -- health ------------------------------------------------------------------------------

    def not_ready(self) -> list[str]:
        """Why the server is not ready; empty when it is.

        Readiness gates what this replica was asked to serve at start: the repository read, a
        model in it (unless allow_empty_repository), every model loaded and warmed up (strict
        readiness: with a ready version), except those that load on demand (a budget). Once
        ready, it stays ready: every replica shares the repository, so what fails later (a
        broken model or version published, the repository unreadable) is reported by
        `problems` without taking every replica out of the Service.
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
                holds = not self.settings.loads_on_demand(mv.name) and (
                    mv.state == "loading"
                    or (
                        mv.state == "failed"
                        and self.settings.strict_readiness
                        and not any(m.state == "ready" for m in versions.values())
                    )
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


class Signal:
    """Wakes every coroutine waiting on it; each then checks what it waits for."""

    def __init__(self) -> None:
        self._future: asyncio.Future | None = None

    @property
    def waiting(self) -> bool:
        return self._future is not None

    async def wait(self, timeout: float) -> None:
        if self._future is None:
            self._future = asyncio.get_running_loop().create_future()
        await asyncio.wait([self._future], timeout=timeout)

    def fire(self) -> None:
        future, self._future = self._future, None
        if future is not None and not future.done():
            future.set_result(None)


def _spawn(work: Coroutine[Any, Any, None], tasks: set[asyncio.Task]) -> None:
    """Run `work` on its own, kept in `tasks` until it ends (a request leaving does not stop
    a load or an unload that it started)."""
    task = asyncio.get_running_loop().create_task(work)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


def _observer(metrics: Callable[[BatchStats], None], statistics: Statistics) -> Callable:
    """Each batch feeds the metrics and the version's statistics (never the version itself,
    which holds the task that holds this callback)."""

    def observe(stats: BatchStats) -> None:
        metrics(stats)
        statistics.batch(stats)

    return observe
