"""Streaming sessions: the store protocol the routes use, and the in-process store (no HTTP here).

A session belongs to one model version and holds that version's carried state as the bytes
its task encodes (`service.tasks.base.StreamingTask`): a store knows no task. Idle sessions
expire after `ttl_s`; past `max_sessions` the least recently used one is evicted. A step on an
expired, evicted or deleted session is told so (`Gone`) for as long as the store remembers its
id; an id it never issued is `NotFound`. Each session has a lock so its steps run one at a time,
in order.

`SessionBackend` is what the routes see: `MemorySessions` (one process) wraps `SessionStore`;
`service.redis_sessions.RedisSessions` keeps the same meaning across workers and replicas.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from pydantic import BaseModel, Field

from service.errors import Gone, NotFound


class SessionSettings(BaseModel):
    """The store's limits; the server takes them from its Settings (RNNSERVE_SESSION_TTL_S,
    RNNSERVE_MAX_SESSIONS)."""

    session_ttl_s: float = Field(600.0, gt=0, description="idle seconds before a session expires")
    max_sessions: int = Field(4096, ge=1, description="sessions kept; the least recent goes")


@dataclass(eq=False)
class Session:
    id: str
    model: str
    version: int
    state: bytes  # the task's carried state, encoded; replaced after each step
    state_bytes: int
    created_at: float = field(default_factory=time.time)
    last_used_at: float = field(default_factory=time.time)
    last_used: float = 0.0  # store clock
    steps: int = 0  # observations seen
    last: bytes = b""  # the last step's answer, for a retry of it (see `service.api.sessions`)
    closed: str | None = None  # why it is gone: expired, evicted, deleted
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def describe(self, ttl_s: float, now: float) -> dict[str, Any]:
        return {
            "session_id": self.id,
            "model_name": self.model,
            "model_version": str(self.version),
            "steps": self.steps,
            "created_at": _iso(self.created_at),
            "last_used_at": _iso(self.last_used_at),
            "expires_in_s": round(max(0.0, ttl_s - (now - self.last_used)), 3),
            "state_bytes": self.state_bytes,
        }


class SessionStore:
    def __init__(
        self,
        settings: SessionSettings | None = None,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or SessionSettings()
        self.clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()  # least recently used first
        self._gone: OrderedDict[str, str] = OrderedDict()  # id -> why, remembered (bounded)
        self._remember = 4 * self.settings.max_sessions
        self._closed: Counter | None = None
        self._collectors: list[Any] = []
        self._registry = registry
        if registry is not None:
            self._register(registry)

    def __len__(self) -> int:
        return len(self._sessions)

    @property
    def state_bytes(self) -> int:
        return sum(s.state_bytes for s in self._sessions.values())

    @property
    def ttl_s(self) -> float:
        return self.settings.session_ttl_s

    def create(
        self, model: str, version: int, state: bytes, state_bytes: int, session_id: str = ""
    ) -> Session:
        """A new session; one with the id given replaces the one open with that id."""
        self.sweep()
        if session_id in self._sessions:
            self._close(self._sessions.pop(session_id), "restarted")
        while len(self._sessions) >= self.settings.max_sessions:
            _, oldest = self._sessions.popitem(last=False)
            self._close(oldest, "evicted")
        session_id = session_id or secrets.token_urlsafe(16)
        session = Session(session_id, model, version, state, state_bytes)
        session.last_used = self.clock()
        self._sessions[session.id] = session
        return session

    def get(self, model: str, session_id: str) -> Session:
        """The live session, or NotFound (never issued for this model) or Gone (and why)."""
        self.sweep()
        session = self._sessions.get(session_id)
        if session is None or session.model != model:
            owner, _, reason = self._gone.get(session_id, "").partition("\n")
            if owner == model:
                raise Gone(f"session {session_id!r} {self._why(reason)}", reason)
            raise NotFound(f"model {model!r} has no session {session_id!r}")
        return session

    def check_open(self, session: Session) -> None:
        """After waiting for its lock: the session may have gone meanwhile."""
        if session.closed is not None:
            raise Gone(f"session {session.id!r} {self._why(session.closed)}", session.closed)

    def touch(self, session: Session) -> None:
        if session.closed is None:
            session.last_used = self.clock()
            session.last_used_at = time.time()
            self._sessions.move_to_end(session.id)

    def delete(self, model: str, session_id: str, reason: str = "deleted") -> None:
        session = self.get(model, session_id)
        del self._sessions[session.id]
        self._close(session, reason)

    def close_version(self, model: str, version: int) -> None:
        """The version a session runs on is no longer served: its sessions are gone."""
        for session in [
            s for s in self._sessions.values() if (s.model, s.version) == (model, version)
        ]:
            del self._sessions[session.id]
            self._close(session, "unserved")

    def sweep(self) -> None:
        """Expire idle sessions: the oldest are first, so this stops at the first live one."""
        deadline = self.clock() - self.settings.session_ttl_s
        while self._sessions:
            session = next(iter(self._sessions.values()))
            if session.last_used > deadline:
                break
            del self._sessions[session.id]
            self._close(session, "expired")

    def _close(self, session: Session, why: str) -> None:
        session.closed = why
        self._gone[session.id] = f"{session.model}\n{why}"
        while len(self._gone) > self._remember:
            self._gone.popitem(last=False)
        if self._closed is not None:
            self._closed.labels(why).inc()

    def _why(self, reason: str) -> str:
        return why(reason, self.settings)

    def _register(self, registry: CollectorRegistry) -> None:
        # Scrapes sweep too, so idle sessions leave the figures even when no request comes.
        gauges = {
            "rnnserve_sessions": ("Open streaming sessions.", self._count),
            "rnnserve_session_state_bytes": (
                "Bytes of carried model state held by all open sessions.",
                lambda: self.state_bytes,
            ),
            "rnnserve_session_max_state_bytes": (
                "Largest carried state of one open session (bounded by the model, not the "
                "history).",
                lambda: max((s.state_bytes for s in self._sessions.values()), default=0),
            ),
        }
        for name, (documentation, read) in gauges.items():
            gauge = Gauge(name, documentation, registry=registry)
            gauge.set_function(read)
            self._collectors.append(gauge)
        limit = Gauge("rnnserve_session_limit", "Most sessions kept.", registry=registry)
        limit.set(self.settings.max_sessions)
        self._closed = Counter(
            "rnnserve_sessions_closed",
            "Sessions closed, by reason.",
            ("reason",),
            registry=registry,
        )
        self._collectors += [limit, self._closed]
        self._registry = registry

    def _count(self) -> int:
        self.sweep()
        return len(self._sessions)

    def unregister(self) -> None:
        """Take this store's series out of the registry (the app's lifespan has ended)."""
        for collector in self._collectors:
            self._registry.unregister(collector)
        self._collectors = []


def why(reason: str, settings: SessionSettings) -> str:
    """What a client is told about a session that is gone, by reason."""
    return {
        "expired": f"expired after {settings.session_ttl_s:g} s idle; create a new one",
        "evicted": (
            f"was evicted (more than {settings.max_sessions} sessions, it was the "
            "least recently used); create a new one"
        ),
        "deleted": "was deleted",
        "ended": "ended (a request said sequence_end)",
        "restarted": "was restarted (a request said sequence_start)",
        "unserved": "belonged to a model version that is no longer served",
    }[reason]


class SessionBackend(Protocol):
    """What the session routes need from a store, wherever it keeps the sessions.

    A step is `get` -> `turn` (the session, up to date) -> run the model -> `commit` (the new
    state, only if nobody stepped the session since it was read; None means someone did: `get`
    it again and take a new turn).
    """

    @property
    def ttl_s(self) -> float: ...

    async def create(
        self, model: str, version: int, state: bytes, state_bytes: int, session_id: str = ""
    ) -> Session:
        """A new session: its id issued by the store, or the one given (a sequence's), which
        replaces a session open with that id."""

    async def get(self, model: str, session_id: str) -> Session: ...

    def turn(self, session: Session) -> AbstractAsyncContextManager[Session]: ...

    async def commit(
        self, session: Session, state: bytes, added: int, last: bytes
    ) -> int | None: ...

    async def describe(self, model: str, session_id: str) -> dict[str, Any]: ...

    async def delete(self, model: str, session_id: str, reason: str = "deleted") -> None: ...

    async def unserved(self, session: Session) -> None: ...

    async def close(self) -> None: ...


class MemorySessions:
    """The sessions of one process: a step holds the session's lock from turn to commit."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store

    @property
    def ttl_s(self) -> float:
        return self.store.ttl_s

    async def create(
        self, model: str, version: int, state: bytes, state_bytes: int, session_id: str = ""
    ) -> Session:
        return self.store.create(model, version, state, state_bytes, session_id)

    async def get(self, model: str, session_id: str) -> Session:
        return self.store.get(model, session_id)

    @asynccontextmanager
    async def turn(self, session: Session) -> AsyncIterator[Session]:
        async with session.lock:  # one step at a time per session, in arrival order
            self.store.check_open(session)
            yield session

    async def commit(self, session: Session, state: bytes, added: int, last: bytes) -> int | None:
        session.state = state
        session.steps += added
        session.last = last
        self.store.touch(session)
        return session.steps

    async def describe(self, model: str, session_id: str) -> dict[str, Any]:
        return self.store.get(model, session_id).describe(self.ttl_s, self.store.clock())

    async def delete(self, model: str, session_id: str, reason: str = "deleted") -> None:
        self.store.delete(model, session_id, reason)

    async def unserved(self, session: Session) -> None:
        self.store.close_version(session.model, session.version)
        self.store.check_open(session)

    async def close(self) -> None:
        self.store.unregister()


def _iso(seconds: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int(seconds % 1 * 1000):03d}Z"
    )
