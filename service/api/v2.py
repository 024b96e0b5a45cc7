"""Open Inference Protocol (KServe V2) routes, with Triton's binary tensor data and model
repository extensions. Inference goes through the same batcher as V1."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi import APIRouter, FastAPI, Request, Response

from service import __version__, tracing
from service.api.body import validate_json
from service.api.inference import infer, parse_version
from service.api.responses import FastJSONResponse
from service.api.routing import add_lean_post
from service.codecs import (
    HEADER_LENGTH,
    check_batch,
    decode_inputs,
    encode_outputs,
    select_outputs,
    split_body,
)
from service.errors import BadRequest, Conflict
from service.model_config import model_config
from service.protocol import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RepositoryModel,
    ServerMetadata,
)
from service.registry import ModelVersion
from service.repository import ModelRepository
from service.schemas import ErrorBody
from service.settings import Settings

ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 503, 504)}
EXTENSIONS = [
    "binary_tensor_data", "model_repository", "model_configuration", "statistics",
]  # fmt: skip
router = APIRouter(prefix="/v2", tags=["v2"], responses=ERRORS)


def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository


@router.get("", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    return ServerMetadata(name="rnnserve", version=__version__, extensions=EXTENSIONS)


def _shown(request: Request, name: str, version: str | None) -> ModelVersion:
    return shown_version(_repository(request), name, version)


def shown_version(repository: ModelRepository, name: str, version: str | None) -> ModelVersion:
    """The version a metadata call is about: the one named, else the default one."""
    number = None if version is None else parse_version(name, version)
    return repository.shown(name, number)


@router.get("/models/stats")
@router.get("/models/{name}/stats")
@router.get("/models/{name}/versions/{version}/stats")
async def model_statistics(
    request: Request, name: str | None = None, version: str | None = None
) -> FastJSONResponse:
    """Triton's statistics extension: every ready version, of one model, or one version."""
    number = None if version is None or name is None else parse_version(name, version)
    stats = statistics_of(_repository(request), name, number)
    return FastJSONResponse({"model_stats": stats})


@router.get("/models/{name}/config")
@router.get("/models/{name}/versions/{version}/config")
async def model_configuration(
    request: Request, name: str, version: str | None = None
) -> FastJSONResponse:
    """Triton's model configuration extension."""
    repository = _repository(request)
    mv = _shown(request, name, version)
    config = model_config(mv, request.app.state.settings, repository.policy_for(name))
    return FastJSONResponse(config)


def statistics_of(
    repository: ModelRepository, name: str | None, version: int | None
) -> list[dict[str, Any]]:
    """What Triton lists: the versions that serve (a failed or unloading one has none)."""
    if name is None:
        chosen = [mv for versions in repository.models.values() for mv in versions.values()]
    elif version is None:
        chosen = list(repository.versions_of(name).values())
    else:
        chosen = [repository.shown(name, version)]
    return [
        mv.statistics.as_dict(mv.name, mv.version)
        for mv in sorted(chosen, key=lambda mv: (mv.name, mv.version))
        if mv.state == "ready" or version is not None
    ]


@router.get("/models/{name}", response_model=ModelMetadata)
@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata)
async def model_metadata(request: Request, name: str, version: str | None = None) -> ModelMetadata:
    mv = _shown(request, name, version)
    versions = _repository(request).versions_of(name)
    return ModelMetadata(
        name=name,
        versions=[str(v) for v, m in sorted(versions.items()) if m.state == "ready"],
        platform="onnxruntime_onnx",
        inputs=mv.task.inputs if mv.task else [],
        outputs=mv.task.outputs if mv.task else [],
        state=mv.state,
        error=mv.error,
    )


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
    """200 when the model (version) serves; 400 with the reason when it does not."""
    mv = _shown(request, name, version)
    if mv.state != "ready":
        return FastJSONResponse({"error": mv.describe()}, status_code=400)
    return FastJSONResponse({"name": name, "ready": True})


async def model_infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


async def model_version_infer(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, parse_version(name, version))


async def _infer(request: Request, name: str, version: int | None) -> Response:
    data = await request.body()
    settings = request.app.state.settings
    with tracing.span("parse"):
        header, raw = split_body(data, request.headers.get(HEADER_LENGTH))
        body = validate_json(InferenceRequest, header, invalid=BadRequest)
        arrays = decode_inputs(body, raw, settings.max_binary_tensor_bytes)
        check_batch(arrays, settings.max_instances)
    parameters = body.parameters or {}
    mv, outputs = await infer(
        request,
        name,
        version,
        lambda mv: mv.infer(arrays, parameters, settings.request_timeout_s),
    )
    with tracing.span("response"):
        binary = set()
        if body.outputs is not None:
            outputs = select_outputs(outputs, [o.name for o in body.outputs])
            default = parameters.get("binary_data_output", False) is True
            for wanted in body.outputs:
                if (wanted.parameters or {}).get("binary_data", default) is True:
                    binary.add(wanted.name)
        elif parameters.get("binary_data_output") is True:
            binary = {o.name for o in outputs}
        described, chunks = encode_outputs(outputs, binary)
        response = {"model_name": mv.name, "model_version": str(mv.version), "outputs": described}
        if body.id is not None:
            response["id"] = body.id
        if not chunks:
            return FastJSONResponse(response)
        head = orjson.dumps(response)
        return Response(
            head + b"".join(chunks),
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(len(head))},
        )


@router.post("/repository/index", response_model=list[RepositoryModel])
async def repository_index(request: Request) -> list[RepositoryModel]:
    """Every version on disk or in memory, with its state (Triton's repository extension)."""
    return await index_of(_repository(request))


async def index_of(repository: ModelRepository) -> list[RepositoryModel]:
    states = {"ready": "READY", "loading": "LOADING", "failed": "UNAVAILABLE",
              "unloading": "UNLOADING"}  # fmt: skip
    index: dict[tuple[str, int], RepositoryModel] = {}
    for name, versions in (await asyncio.to_thread(repository.discover)).items():
        for version in versions:
            reason = "unloaded" if name in repository.unloaded else "not in the version policy"
            index[name, version] = RepositoryModel(
                name=name, version=str(version), state="UNAVAILABLE", reason=reason
            )
    for name, versions in repository.models.items():
        for version, mv in versions.items():
            index[name, version] = RepositoryModel(
                name=name, version=str(version), state=states[mv.state], reason=mv.error or ""
            )
    return [index[key] for key in sorted(index)]


def one_worker(settings: Settings) -> None:
    """Load and unload change the worker that answers, not its siblings: refused with several."""
    if settings.workers > 1:
        raise Conflict(
            f"this server runs {settings.workers} worker processes and a load or unload would "
            "change only the one that answers; change the model repository instead (every "
            "worker polls it), or run one worker per server"
        )


@router.post("/repository/models/{name}/load")
async def repository_load(request: Request, name: str) -> FastJSONResponse:
    one_worker(request.app.state.settings)
    versions = await _repository(request).load_model(name)
    return FastJSONResponse({"name": name, "versions": [str(v) for v in versions]})


@router.post("/repository/models/{name}/unload")
async def repository_unload(request: Request, name: str) -> FastJSONResponse:
    one_worker(request.app.state.settings)
    await _repository(request).unload_model(name)
    return FastJSONResponse({"name": name, "unloaded": True})


def add_routes(app: FastAPI) -> None:
    """Inference routes first, on the app itself (see v1.add_routes), then the rest."""
    for path, endpoint in (
        ("/v2/models/{name}/infer", model_infer),
        ("/v2/models/{name}/versions/{version}/infer", model_version_infer),
    ):
        add_lean_post(
            app.router,
            path,
            endpoint,
            InferenceRequest,
            tags=["v2"],
            responses=ERRORS,
            response_model=InferenceResponse,
        )
    app.include_router(router)
