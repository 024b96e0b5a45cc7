"""Streaming session routes: the server keeps a task's state between a client's steps, for any
task that implements `service.tasks.base.StreamingTask` (our forecasters, or a plugin's task).

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
from service.api.routing import add_lean_post
from service.errors import Conflict, InputError, NotOffered, Overloaded
from service.repository import ModelRepository
from service.responses import FastJSONResponse
from service.schemas import ErrorBody
from service.sessions import Session, SessionBackend
from service.tasks.base import StreamingTask
from service.versions import ModelVersion

MAX_TURNS = 32  # steps that lost a compare-and-set to another step of the same session, in a row
ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 409, 410, 413, 415, 422, 501, 503, 504)}
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
    model_config = ConfigDict(extra="allow")  # and what the task tells (`session_facts`)

    max_values: int | None = Field(None, description="a forecaster: most values one step sends")
    horizon: int | None = Field(None, description="a forecaster: future values each step gives")


class StepResponse(BaseModel):
    model_config = ConfigDict(extra="allow")  # a task's answer (a forecaster's shown here)

    session_id: str
    model_name: str
    model_version: str
    steps: int = Field(description="observations the session has seen")
    forecast: list[float] | None = None
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
    """The app's session store (built in its lifespan), or why sessions are off."""
    store = getattr(request.app.state, "sessions", None)
    if store is None:
        settings = request.app.state.settings
        raise NotOffered(
            f"streaming sessions are off: this server runs {settings.workers} worker "
            "processes and keeps sessions in memory, where a step reaching another worker "
            "would not find its session (the operator sets RNNSERVE_SESSION_STORE=redis://...)"
        )
    return store


def _streaming(mv: ModelVersion) -> StreamingTask:
    if not isinstance(mv.task, StreamingTask):
        task = mv.manifest.task if mv.manifest else "unknown"
        raise InputError(f"model {mv.name!r} ({task}) does not keep streaming sessions")
    return mv.task


async def _serving(request: Request, session: Session, store: SessionBackend) -> None:
    """The session's version must still be served; otherwise the session is gone."""
    repository: ModelRepository = request.app.state.repository
    mv = repository.models.get(session.model, {}).get(session.version)
    if mv is None or mv.state not in ("ready", "loading"):
        await store.unserved(session)


@router.post("", status_code=201, response_model=SessionCreated)
async def open_session(name: str, request: Request) -> FastJSONResponse:
    repository: ModelRepository = request.app.state.repository
    mv = repository.live.get(name)
    task = _streaming(mv)
    store = store_of(request)
    state = task.encode_state(task.open_state())
    session = await store.create(mv.name, mv.version, state, task.state_bytes)
    created = {
        "session_id": session.id,
        "model_name": mv.name,
        "model_version": str(mv.version),
        "ttl_s": store.ttl_s,
        **task.session_facts,
    }
    return FastJSONResponse(created, status_code=201)


async def step(request: Request, name: str, session_id: str) -> FastJSONResponse:
    """Feed new observations to a session; the task's answer (a forecaster: the next k)."""
    store = store_of(request)
    session = await store.get(name, session_id)
    body = await parse_body(request, StepRequest)
    await _serving(request, session, store)
    timeout = request.app.state.settings.request_timeout_s

    async def work(mv: ModelVersion) -> tuple[dict[str, Any], int]:
        nonlocal session
        task = _streaming(mv)
        checked = task.check_step(body.values, body.parameters)  # in full, before the state
        added = len(body.values)
        digest = _digest(body.values)
        for _ in range(MAX_TURNS):
            async with store.turn(session) as now:
                if body.expect_steps is not None and body.expect_steps != now.steps:
                    return _replay(now, body.expect_steps, added, digest), now.steps
                answer, state = await task.step(task.decode_state(now.state), checked, timeout)
                last = LAST.pack(now.steps, digest) + orjson.dumps(answer)
                steps = await store.commit(now, task.encode_state(state), added, last)
            if steps is not None:
                return answer, steps
            session = await store.get(name, session_id)  # another step came first: read again
        raise Overloaded(
            f"session {session_id!r} is being stepped by {MAX_TURNS} other requests at once; "
            "send one step at a time"
        )

    mv, (answer, steps) = await infer(request, name, session.version, work)
    return FastJSONResponse(
        {
            "session_id": session.id,
            "model_name": mv.name,
            "model_version": str(mv.version),
            "steps": steps,
            **answer,
        }
    )


def _digest(values: list[Any]) -> bytes:
    """A step's values as sent, to tell a retry of it from another step (any JSON numbers)."""
    try:
        data = orjson.dumps(values)
    except TypeError:  # an integer beyond 64 bits, which a task may still take as a number
        data = repr(values).encode()
    return hashlib.blake2b(data, digest_size=16).digest()


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
