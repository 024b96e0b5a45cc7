"""KServe-V1-style routes: list models, describe one, predict with what a person has."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import APIRouter, FastAPI, Request

from service.api.body import openapi_body, parse_body
from service.api.responses import FastJSONResponse
from service.api.routing import LeanRoute
from service.errors import ClientGone, NotFound, PayloadTooLarge, ServiceError
from service.repository import ModelRepository, ModelVersion
from service.schemas import (
    ErrorBody,
    ModelDetail,
    ModelList,
    ModelSummary,
    PredictRequest,
    PredictResponse,
    VersionStatus,
)

T = TypeVar("T")
ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503, 504)}
router = APIRouter(prefix="/v1", tags=["v1"], responses=ERRORS)


def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository


def _summary(name: str, versions: dict[int, ModelVersion]) -> ModelSummary:
    ready = sorted(v for v, mv in versions.items() if mv.state == "ready")
    default = versions[ready[-1]] if ready else versions[max(versions)]
    return ModelSummary(
        name=name,
        task=default.manifest.task if default.manifest else None,
        versions=ready,
        default_version=ready[-1] if ready else None,
        ready=bool(ready),
    )


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    repo = _repository(request)
    return ModelList(models=[_summary(n, v) for n, v in sorted(repo.models.items())])


@router.get("/models/{name}", response_model=ModelDetail)
async def describe_model(name: str, request: Request) -> ModelDetail:
    versions = _repository(request).versions_of(name)
    summary = _summary(name, versions)
    shown = versions[summary.default_version or max(versions)]
    return ModelDetail(
        **summary.model_dump(),
        status=[
            VersionStatus(version=v, state=mv.state, provider=mv.provider, error=mv.error)
            for v, mv in sorted(versions.items())
        ],
        manifest=shown.manifest.model_dump() if shown.manifest else None,
    )


async def predict(request: Request, name: str) -> FastJSONResponse:
    """Predict with the highest ready version."""
    return await _predict(request, name, None)


async def predict_version(request: Request, name: str, version: str) -> FastJSONResponse:
    """Predict with one version."""
    if not version.isdigit():
        raise NotFound(f"model {name!r} has no version {version!r}")
    return await _predict(request, name, int(version))


def add_routes(app: FastAPI) -> None:
    """The predict routes go straight on the app, ahead of everything else: they are the hot
    path, and an included router costs a second round of matching on every request."""
    for path, endpoint in (
        ("/v1/models/{name}:predict", predict),
        ("/v1/models/{name}/versions/{version}:predict", predict_version),
    ):
        app.router.add_api_route(
            path,
            endpoint,
            methods=["POST"],
            tags=["v1"],
            responses=ERRORS,
            response_model=PredictResponse,
            openapi_extra=openapi_body(PredictRequest),
            route_class_override=LeanRoute,
        )
    app.include_router(router)


async def _predict(request: Request, name: str, version: int | None) -> FastJSONResponse:
    body = await parse_body(request, PredictRequest)
    settings = request.app.state.settings
    metrics = request.app.state.metrics
    if len(body.instances) > settings.max_instances:
        raise PayloadTooLarge(
            f"{len(body.instances)} instances; at most {settings.max_instances} per request"
        )
    mv = _repository(request).get(name, version)
    labels = (mv.name, str(mv.version))
    started = time.perf_counter()
    status = 500
    try:
        predictions = await _unless_disconnected(
            request, mv.predict(body.instances, body.parameters, settings.request_timeout_s)
        )
        status = 200
    except ServiceError as error:
        status = error.status_code
        raise
    finally:
        metrics.requests.labels(*labels, str(status)).inc()
        metrics.latency.labels(*labels).observe(time.perf_counter() - started)
    return FastJSONResponse(
        {"model_name": mv.name, "model_version": str(mv.version), "predictions": predictions}
    )


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, but cancel it (dropping its queued sequences) if the client goes away."""
    handler = asyncio.current_task()
    assert handler is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        message = await request.receive()  # the body is read: this waits for the disconnect
        if message["type"] == "http.disconnect":
            gone = True
            handler.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if gone:
            raise ClientGone("the client disconnected") from None
        raise
    finally:
        watcher.cancel()
