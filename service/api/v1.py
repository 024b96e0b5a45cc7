"""KServe-V1-style routes: list models, describe one, predict with what a person has."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request

from service import tracing
from service.api.body import parse_body
from service.api.inference import infer
from service.api.routing import add_lean_post
from service.dataplane import parse_version
from service.errors import PayloadTooLarge
from service.repository import ModelRepository
from service.responses import FastJSONResponse
from service.schemas import (
    ErrorBody,
    ModelDetail,
    ModelList,
    ModelSummary,
    PredictRequest,
    PredictResponse,
    VersionStatus,
)
from service.versions import ModelVersion, default_version

ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 422, 503, 504, 507)}
router = APIRouter(prefix="/v1", tags=["v1"], responses=ERRORS)


def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository


def _summary(name: str, versions: dict[int, ModelVersion]) -> ModelSummary:
    default = default_version(versions)
    shown = default or versions[max(versions)]
    return ModelSummary(
        name=name,
        task=shown.manifest.task if shown.manifest else None,
        versions=sorted(v for v, mv in versions.items() if mv.servable),
        loaded=sorted(v for v, mv in versions.items() if mv.state == "ready"),
        default_version=default.version if default else None,
        ready=default is not None,
    )


@router.get("/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    repo = _repository(request)
    return ModelList(models=[_summary(n, v) for n, v in sorted(repo.models.items())])


@router.get("/models/{name}", response_model=ModelDetail)
async def describe_model(name: str, request: Request) -> ModelDetail:
    repository = _repository(request)
    versions = repository.live.versions_of(name)
    summary = _summary(name, versions)
    shown = repository.live.shown(name)
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
    return await _predict(request, name, parse_version(name, version))


def add_routes(app: FastAPI) -> None:
    """The predict routes go straight on the app, ahead of everything else: they are the hot
    path, and an included router costs a second round of matching on every request."""
    for path, endpoint in (
        ("/v1/models/{name}:predict", predict),
        ("/v1/models/{name}/versions/{version}:predict", predict_version),
    ):
        add_lean_post(
            app.router,
            path,
            endpoint,
            PredictRequest,
            tags=["v1"],
            responses=ERRORS,
            response_model=PredictResponse,
        )
    app.include_router(router)


async def _predict(request: Request, name: str, version: int | None) -> FastJSONResponse:
    with tracing.span("parse"):
        body = await parse_body(request, PredictRequest)
    settings = request.app.state.settings
    if len(body.instances) > settings.max_instances:
        raise PayloadTooLarge(
            f"{len(body.instances)} instances; at most {settings.max_instances} per request"
        )
    mv, predictions = await infer(
        request,
        name,
        version,
        lambda mv, timeout: mv.predict(body.instances, body.parameters, timeout),
    )
    with tracing.span("response"):
        return FastJSONResponse(
            {"model_name": mv.name, "model_version": str(mv.version), "predictions": predictions}
        )
