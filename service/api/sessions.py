"""Streaming session routes: the server keeps a forecaster's state between a client's steps.

    POST   /v1/models/{name}/sessions               -> {"session_id": ...}
    POST   /v1/models/{name}/sessions/{id}:step     {"values": [...]} -> the next k values
    GET    /v1/models/{name}/sessions/{id}          -> steps seen, last use, expiry
    DELETE /v1/models/{name}/sessions/{id}

A session is bound to the version that was the default when it was created. Its steps queue
in that version's batcher like any request, so steps of different sessions run as one batch;
steps of one session wait for each other (its lock) and only a step that succeeds replaces the
session's state.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.body import parse_body
from service.api.inference import infer
from service.api.responses import FastJSONResponse
from service.api.routing import add_lean_post
from service.errors import Unprocessable
from service.registry import ModelVersion
from service.repository import ModelRepository
from service.schemas import ErrorBody
from service.sessions import Session, SessionSettings, SessionStore
from service.tasks.base import parse_parameters
from service.tasks.forecast import ForecastParameters, ForecastTask

ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 410, 413, 415, 422, 503, 504)}
router = APIRouter(prefix="/v1/models/{name}/sessions", tags=["sessions"], responses=ERRORS)


class StepRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: list[Any] = Field(
        description="one or more new observations, oldest first (finite numbers)"
    )
    parameters: dict[str, Any] = Field(default_factory=dict)


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


def store_of(request: Request) -> SessionStore:
    """The app's session store, made on first use with the server's session settings."""
    state = request.app.state
    store = getattr(state, "sessions", None)
    if store is None:
        limits = SessionSettings(
            session_ttl_s=state.settings.session_ttl_s, max_sessions=state.settings.max_sessions
        )
        store = state.sessions = SessionStore(limits, registry=state.metrics.registry)
    return store


def _forecaster(mv: ModelVersion) -> ForecastTask:
    if not isinstance(mv.task, ForecastTask):
        task = mv.manifest.task if mv.manifest else "unknown"
        raise Unprocessable(f"model {mv.name!r} ({task}) does not keep streaming sessions")
    return mv.task


def _serving(request: Request, session: Session, store: SessionStore) -> None:
    """The session's version must still be served; otherwise the session is gone."""
    repository: ModelRepository = request.app.state.repository
    mv = repository.models.get(session.model, {}).get(session.version)
    if mv is None or mv.state not in ("ready", "loading"):
        store.close_version(session.model, session.version)
        store.check_open(session)


@router.post("", status_code=201, response_model=SessionCreated)
async def open_session(name: str, request: Request) -> SessionCreated:
    repository: ModelRepository = request.app.state.repository
    mv = repository.get(name)
    task = _forecaster(mv)
    store = store_of(request)
    session = store.create(mv.name, mv.version, task.new_state(), task.state_bytes)
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
    session = store.get(name, session_id)
    body = await parse_body(request, StepRequest)
    params = parse_parameters(ForecastParameters, body.parameters)
    _serving(request, session, store)
    timeout = request.app.state.settings.request_timeout_s

    async def work(mv: ModelVersion) -> tuple[dict[str, Any], int]:
        task = _forecaster(mv)
        values = task.check(body.values)  # validated in full before it can touch the state
        async with session.lock:  # one step at a time per session, in arrival order
            store.check_open(session)
            prediction, state = await task.step(session.state, values, params.attention, timeout)
            session.state = state
            session.steps += len(values)
            store.touch(session)
            return prediction, session.steps

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


# A step is the hot path: a lean route (no dependency solving), as for :predict.
add_lean_post(router, "/{session_id}:step", step, StepRequest, response_model=StepResponse)


@router.get("/{session_id}", response_model=SessionInfo)
async def describe_session(name: str, session_id: str, request: Request) -> dict[str, Any]:
    store = store_of(request)
    return store.get(name, session_id).describe(store.ttl_s, store.clock())


@router.delete("/{session_id}", status_code=204)
async def delete_session(name: str, session_id: str, request: Request) -> Response:
    store_of(request).delete(name, session_id)
    return Response(status_code=204)
