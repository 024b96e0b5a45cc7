"""Streaming sessions in Redis, so that any worker or replica can step any session.

Layout (one Redis database, keys under a prefix):

    <prefix>s:<id>     hash: model, version, steps, state (bytes), state_bytes, created, used
                       expires after the idle TTL (Redis key expiry), refreshed by each step
    <prefix>gone:<id>  "<model>\\n<reason>": why an id no longer answers, kept a while after
    <prefix>lru        sorted set of live ids by last use: the session limit evicts its head

Two steps on one session are serialised by a compare-and-set on the step count: a step reads
the session, runs the model, and a Lua script writes the new state only if the count is still
the one it read (else the step reads again and runs again). No lock is held while the model
runs, so a replica that dies mid-step leaves nothing behind to expire; a client steps its own
session one step at a time, so a conflict (one wasted model run) is the rare case, and the
common case costs two round trips.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as redis
from prometheus_client import CollectorRegistry, Counter, Gauge
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.errors import Gone, NotFound, Unavailable
from service.sessions import Session, SessionSettings, _iso, why

log = logging.getLogger("rnnserve")
PREFIX = "rnnserve:"
REMEMBER_S = 3600.0  # how long a gone id is told apart from one never issued, past its TTL

# KEYS: lru. ARGV: prefix, id, model, version, state, state_bytes, ttl_ms, max, remember_ms.
# Returns {sessions it evicted, sessions open now}.
CREATE = """
local lru, prefix, ttl, remember = KEYS[1], ARGV[1], tonumber(ARGV[7]), tonumber(ARGV[9])
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local used = t[1] * 1000000 + t[2]  -- the LRU order in microseconds: ties are rare
redis.call('ZREMRANGEBYSCORE', lru, '-inf', used - ttl * 1000)
local key = prefix .. 's:' .. ARGV[2]
redis.call('DEL', key)  -- a sequence restarted: nothing of its last run stays
redis.call('ZREM', lru, ARGV[2])
local evicted = 0
while redis.call('ZCARD', lru) >= tonumber(ARGV[8]) do
  local id = redis.call('ZPOPMIN', lru)[1]
  local model = redis.call('HGET', prefix .. 's:' .. id, 'model')
  if model then
    redis.call('DEL', prefix .. 's:' .. id)
    redis.call('SET', prefix .. 'gone:' .. id, model .. '\\nevicted', 'PX', remember)
    evicted = evicted + 1
  end
end
redis.call('HSET', key, 'model', ARGV[3], 'version', ARGV[4], 'steps', 0, 'state', ARGV[5],
  'state_bytes', ARGV[6], 'created', now, 'used', now)
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', lru, used, ARGV[2])
redis.call('SET', prefix .. 'gone:' .. ARGV[2], ARGV[3] .. '\\nexpired', 'PX', ttl + remember)
return {evicted, redis.call('ZCARD', lru)}
"""

# KEYS: lru. ARGV: prefix, id, steps read, values added, state, last, ttl_ms, remember_ms.
# Returns the new step count, -1 if the session is gone, -2 if another step came first.
COMMIT = """
local lru, prefix, ttl = KEYS[1], ARGV[1], tonumber(ARGV[7])
local key = prefix .. 's:' .. ARGV[2]
local steps = redis.call('HGET', key, 'steps')
if not steps then return -1 end
if tonumber(steps) ~= tonumber(ARGV[3]) then return -2 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local used = t[1] * 1000000 + t[2]
local new = tonumber(steps) + tonumber(ARGV[4])
redis.call('HSET', key, 'steps', new, 'state', ARGV[5], 'last', ARGV[6], 'used', now)
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', lru, used, ARGV[2])
redis.call('PEXPIRE', prefix .. 'gone:' .. ARGV[2], ttl + tonumber(ARGV[8]))
return new
"""

# KEYS: lru. ARGV: prefix, id, model, reason, remember_ms. Returns 1 if it closed the session.
CLOSE = """
local key = KEYS[1]
local prefix = ARGV[1]
local skey = prefix .. 's:' .. ARGV[2]
if redis.call('HGET', skey, 'model') ~= ARGV[3] then return 0 end
redis.call('DEL', skey)
redis.call('ZREM', key, ARGV[2])
redis.call('SET', prefix .. 'gone:' .. ARGV[2], ARGV[3] .. '\\n' .. ARGV[4], 'PX', ARGV[5])
return 1
"""


class SessionStoreUnavailable(Unavailable):
    """Redis does not answer: sessions wait for it, predictions do not need it."""


class RedisSessions:
    """`SessionBackend` on Redis: the same answers whichever process holds the request."""

    def __init__(
        self,
        url: str,
        settings: SessionSettings | None = None,
        registry: CollectorRegistry | None = None,
        prefix: str = PREFIX,
        timeout_s: float = 1.0,
    ) -> None:
        self.settings = settings or SessionSettings()
        self.prefix = prefix
        self.lru = f"{prefix}lru"
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry_on_timeout=False
        )
        self._create = self.client.register_script(CREATE)
        self._commit = self.client.register_script(COMMIT)
        self._close = self.client.register_script(CLOSE)
        self._closed: Counter | None = None
        self._open: Gauge | None = None
        if registry is not None:
            self._closed = Counter(
                "rnnserve_sessions_closed",
                "Sessions closed, by reason.",
                ("reason",),
                registry=registry,
            )
            self._open = Gauge(
                "rnnserve_sessions",
                "Open streaming sessions in the shared store (as of this process's last create).",
                registry=registry,
                multiprocess_mode="mostrecent",
            )
        self._registry = registry

    @property
    def ttl_s(self) -> float:
        return self.settings.session_ttl_s

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.settings.session_ttl_s * 1000))

    @property
    def _remember_ms(self) -> int:
        return round(max(REMEMBER_S, 4 * self.settings.session_ttl_s) * 1000)

    async def create(
        self, model: str, version: int, state: bytes, state_bytes: int, session_id: str = ""
    ) -> Session:
        session_id = session_id or secrets.token_urlsafe(16)
        session = Session(session_id, model, version, state, state_bytes)
        args = [self.prefix, session.id, model, version, state, state_bytes]
        args += [self._ttl_ms, self.settings.max_sessions, self._remember_ms]
        async with self._guard():
            evicted, count = await self._create(keys=[self.lru], args=args)
        if self._closed is not None and self._open is not None:
            self._closed.labels("evicted").inc(evicted)
            self._open.set(count)
        return session

    async def get(self, model: str, session_id: str) -> Session:
        """The session as stored now, or NotFound (never issued for this model) or Gone."""
        async with self._guard():
            fields = await self.client.hgetall(self._key(session_id))
            if not fields or fields[b"model"].decode() != model:
                await self._missing(model, session_id)
        session = Session(
            session_id,
            model,
            int(fields[b"version"]),
            fields[b"state"],
            int(fields[b"state_bytes"]),
            created_at=int(fields[b"created"]) / 1000,
            last_used_at=int(fields[b"used"]) / 1000,
            steps=int(fields[b"steps"]),
            last=fields.get(b"last", b""),
        )
        return session

    @asynccontextmanager
    async def turn(self, session: Session) -> AsyncIterator[Session]:
        yield session  # as read; no lock: `commit` checks that nobody stepped it since

    async def commit(self, session: Session, state: bytes, added: int, last: bytes) -> int | None:
        args = [self.prefix, session.id, session.steps, added, state, last]
        async with self._guard():
            steps = await self._commit(
                keys=[self.lru], args=[*args, self._ttl_ms, self._remember_ms]
            )
            if steps == -1:
                await self._missing(session.model, session.id)
        return None if steps == -2 else int(steps)

    async def describe(self, model: str, session_id: str) -> dict[str, Any]:
        session = await self.get(model, session_id)
        async with self._guard():
            pttl = await self.client.pttl(self._key(session_id))
        return {
            "session_id": session.id,
            "model_name": session.model,
            "model_version": str(session.version),
            "steps": session.steps,
            "created_at": _iso(session.created_at),
            "last_used_at": _iso(session.last_used_at),
            "expires_in_s": round(max(0, pttl) / 1000, 3),
            "state_bytes": session.state_bytes,
        }

    async def delete(self, model: str, session_id: str, reason: str = "deleted") -> None:
        await self._end(model, session_id, reason)

    async def unserved(self, session: Session) -> None:
        await self._end(session.model, session.id, "unserved")
        raise Gone(f"session {session.id!r} {why('unserved', self.settings)}", "unserved")

    async def close(self) -> None:
        await self.client.aclose()
        if self._registry is not None:
            for collector in (self._closed, self._open):
                self._registry.unregister(collector)

    async def _end(self, model: str, session_id: str, reason: str) -> None:
        args = [self.prefix, session_id, model, reason, self._remember_ms]
        async with self._guard():
            if not await self._close(keys=[self.lru], args=args):
                await self._missing(model, session_id)
        if self._closed is not None:
            self._closed.labels(reason).inc()

    async def _missing(self, model: str, session_id: str) -> None:
        """Raise Gone (and why) for an id this store issued for `model`, else NotFound."""
        gone = await self.client.get(f"{self.prefix}gone:{session_id}")
        if gone is not None:
            owner, reason = gone.decode().split("\n", 1)
            if owner == model:
                raise Gone(f"session {session_id!r} {why(reason, self.settings)}", reason)
        raise NotFound(f"model {model!r} has no session {session_id!r}")

    def _key(self, session_id: str) -> str:
        return f"{self.prefix}s:{session_id}"

    @asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise SessionStoreUnavailable(
                f"the session store does not answer ({type(error).__name__}); sessions are "
                "unavailable until it does, predictions are not affected; retry later"
            ) from None
        except RedisError as error:  # it answers, but refuses: out of memory, read-only...
            log.error("the session store refused a command: %s", error)
            raise SessionStoreUnavailable(
                "the session store refused the command (the server log says why); sessions are "
                "unavailable until it accepts them, predictions are not affected; retry later"
            ) from None
