"""Streaming session routes: the server keeps a task's state between a client's steps, for any
task that implements `service.tasks.base.StreamingTask` (our forecasters, or a plugin's task).

    POST   /v1/models/{name}/sessions               -> {"session_id": ...}
    POST   /v1/models/{name}/sessions/{id}:step     {"values": [...]} -> the next k values
    GET    /v1/models/{name}/sessions/{id}          -> steps seen, last use, expiry
    DELETE /v1/models/{name}/sessions/{id}

A session is bound to the version that was the default when it was created. It is the same
thing as a Triton sequence on V2 infer, with an id the store issues: both are stepped by
`service.streaming` (steps of different sessions share batches, steps of one are serialised).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from service.api.body import parse_body
from service.api.inference import dataplane, infer
from service.api.routing import add_lean_post
from service.responses import FastJSONResponse
from service.schemas import ErrorBody
from service.sessions import SessionBackend

ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 409, 410, 413, 422, 501, 503, 504, 507)}
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
    """The app's session store, or why sessions are off."""
    return dataplane(request).session_store()


@router.post("", status_code=201, response_model=SessionCreated)
async def open_session(name: str, request: Request) -> FastJSONResponse:
    mv, session = await dataplane(request).open_session(name)
    created = {
        "session_id": session.id,
        "model_name": mv.name,
        "model_version": str(mv.version),
        "ttl_s": store_of(request).ttl_s,
        **mv.task.session_facts,  # type: ignore[union-attr]
    }
    return FastJSONResponse(created, status_code=201)


async def step(request: Request, name: str, session_id: str) -> FastJSONResponse:
    """Feed new observations to a session; the task's answer (a forecaster: the next k)."""
    plane = dataplane(request)
    session = await store_of(request).get(name, session_id)
    body = await parse_body(request, StepRequest)
    await plane.still_served(session)
    work = plane.session_step(session, body.values, body.parameters, body.expect_steps)
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


# A step is the hot path: a lean route (no dependency solving), as for :predict.
add_lean_post(router, "/{session_id}:step", step, StepRequest, response_model=StepResponse)


@router.get("/{session_id}", response_model=SessionInfo)
async def describe_session(name: str, session_id: str, request: Request) -> dict[str, Any]:
    return await store_of(request).describe(name, session_id)


@router.delete("/{session_id}", status_code=204)
async def delete_session(name: str, session_id: str, request: Request) -> Response:
    await store_of(request).delete(name, session_id)
    return Response(status_code=204)
