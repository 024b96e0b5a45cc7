"""Streaming session routes: the server keeps a forecaster's state between a client's steps.

    POST   /v1/models/{name}/sessions               -> {"session_id": ...}
    POST   /v1/models/{name}/sessions/{id}:step     {"values": [...]} -> the next k values
    GET    /v1/models/{name}/sessions/{id}          -> steps seen, last use, expiry
    DELETE /v1/models/{name}/sessions/{id}

A session is bound to the version that was the default when it was created. Its steps queue
in that version's batcher like any request, so steps of different sessions run as one batch;
steps of one session are serialised by the store (a lock in memory, a compare-and-set on the
step count in Redis) and only a step that succeeds replaces the session's state.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.body import parse_body
from service.api.inference import infer
from service.api.responses import FastJSONResponse
from service.api.routing import add_lean_post
from service.errors import Conflict, Overloaded, Unprocessable, Unsupported
from service.registry import ModelVersion
from service.repository import ModelRepository
from service.schemas import ErrorBody
from service.sessions import MemorySessions, Session, SessionBackend, SessionSettings, SessionStore
from service.tasks.base import parse_parameters
from service.tasks.forecast import ForecastParameters, ForecastTask

MAX_TURNS = 32  # steps that lost a compare-and-set to another step of the same session, in a row
ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 409, 410, 413, 422, 501, 503, 504)}
router = APIRouter(prefix="/v1/models/{name}/sessions", tags=["sessions"], responses=ERRORS)


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: list[Any] = Field(
        description="one or more new observations, oldest first (finite numbers)"
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    expect_steps: int | None = Field(
        None,
        ge=0,
        description="the step count the client last saw: the step applies only if the session is "
        "still there (else 409), and a retry of a step whose answer was lost gets that answer "
        "back instead of feeding the values twice",
    )


class SessionCreated(BaseModel):
    session_id: str
    model_name: str
    model_version: str
    ttl_s: float
    max_values: int = Field(description="most values one step may send")
    horizon: int = Field(description="future values each step forecasts")


class StepResponse(BaseModel):
    session_id: str
    model_name: str
    model_version: str
    steps: int = Field(description="observations the session has seen")
    forecast: list[float]
    attention: list[float] | None = Field(
        None, description="weight of each of the most recent values, oldest first"
    )


class SessionInfo(BaseModel):
    session_id: str
    model_name: str
    model_version: str
    steps: int
    created_at: str
    last_used_at: str
    expires_in_s: float
    state_bytes: int


def store_of(request: Request) -> SessionBackend:
    """The app's session store, made on first use from the server's settings."""
    state = request.app.state
    store = getattr(state, "sessions", None)
    if store is None:
        settings = state.settings
        limits = SessionSettings(
            session_ttl_s=settings.session_ttl_s, max_sessions=settings.max_sessions
        )
        if settings.session_store == "memory" and settings.workers > 1:
            raise Unsupported(
                f"streaming sessions are off: this server runs {settings.workers} worker "
                "processes and keeps sessions in memory, where a step reaching another worker "
                "would not find its session (the operator sets RNNSERVE_SESSION_STORE=redis://...)"
            )
        if settings.session_store == "memory":
            store = MemorySessions(SessionStore(limits, registry=state.metrics.registry))
        else:
            from service.redis_sessions import RedisSessions

            store = RedisSessions(settings.session_store, limits, state.metrics.registry)
        state.sessions = store
    return store


def _forecaster(mv: ModelVersion) -> ForecastTask:
    if not isinstance(mv.task, ForecastTask):
        task = mv.manifest.task if mv.manifest else "unknown"
        raise Unprocessable(f"model {mv.name!r} ({task}) does not keep streaming sessions")
    return mv.task


async def _serving(request: Request, session: Session, store: SessionBackend) -> None:
    """The session's version must still be served; otherwise the session is gone."""
    repository: ModelRepository = request.app.state.repository
    mv = repository.models.get(session.model, {}).get(session.version)
    if mv is None or mv.state not in ("ready", "loading"):
        await store.unserved(session)


@router.post("", status_code=201, response_model=SessionCreated)
async def open_session(name: str, request: Request) -> SessionCreated:
    repository: ModelRepository = request.app.state.repository
    mv = repository.get(name)
    task = _forecaster(mv)
    store = store_of(request)
    session = await store.create(mv.name, mv.version, task.new_state(), task.state_bytes)
    return SessionCreated(
        session_id=session.id,
        model_name=mv.name,
        model_version=str(mv.version),
        ttl_s=store.ttl_s,
        max_values=task.max_values,
        horizon=task.horizon,
    )


async def step(request: Request, name: str, session_id: str) -> FastJSONResponse:
    """Feed new observations to a session; the forecast for the next k steps."""
    store = store_of(request)
    session = await store.get(name, session_id)
    body = await parse_body(request, StepRequest)
    params = parse_parameters(ForecastParameters, body.parameters)
    await _serving(request, session, store)
    timeout = request.app.state.settings.request_timeout_s

    async def work(mv: ModelVersion) -> tuple[dict[str, Any], int]:
        nonlocal session
        task = _forecaster(mv)
        values = task.check(body.values)  # validated in full before it can touch the state
        digest = hashlib.blake2b(values.tobytes(), digest_size=16).digest()
        for _ in range(MAX_TURNS):
            async with store.turn(session) as now:
                if body.expect_steps is not None and body.expect_steps != now.steps:
                    return _replay(now, body.expect_steps, len(values), digest), now.steps
                prediction, state = await task.step(now.state, values, params.attention, timeout)
                last = LAST.pack(now.steps, digest) + orjson.dumps(prediction)
                steps = await store.commit(now, state, len(values), last)
            if steps is not None:
                return prediction, steps
            session = await store.get(name, session_id)  # another step came first: read again
        raise Overloaded(
            f"session {session_id!r} is being stepped by {MAX_TURNS} other requests at once; "
            "send one step at a time"
        )

    mv, (prediction, steps) = await infer(request, name, session.version, work)
    return FastJSONResponse(
        {
            "session_id": session.id,
            "model_name": mv.name,
            "model_version": str(mv.version),
            "steps": steps,
            **prediction,
        }
    )


LAST = struct.Struct("<q16s")  # a session's last step: the count before it, its values' digest


def _replay(session: Session, expect: int, added: int, digest: bytes) -> dict[str, Any]:
    """The answer to a retried step that was applied already, or 409 if it is not one."""
    last = session.last or bytes(LAST.size)
    if session.steps == expect + added and LAST.unpack_from(last) == (expect, digest):
        return orjson.loads(last[LAST.size :])
    raise Conflict(
        f"session {session.id!r} has seen {session.steps} values, not {expect}: another "
        "client steps it, or the values differ from the step being retried"
    )


# A step is the hot path: a lean route (no dependency solving), as for :predict.
add_lean_post(router, "/{session_id}:step", step, StepRequest, response_model=StepResponse)


@router.get("/{session_id}", response_model=SessionInfo)
async def describe_session(name: str, session_id: str, request: Request) -> dict[str, Any]:
    return await store_of(request).describe(name, session_id)


@router.delete("/{session_id}", status_code=204)
async def delete_session(name: str, session_id: str, request: Request) -> Response:
    await store_of(request).delete(name, session_id)
    return Response(status_code=204)
