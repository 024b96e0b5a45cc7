"""Open Inference Protocol (KServe V2) routes, with Triton's binary tensor data and model
repository extensions. Inference goes through the same batcher as V1; a request with Triton's
`sequence_id` is a step of that sequence (see `service.streaming`)."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, FastAPI, Request, Response

from service import tracing
from service.api.body import validate_json
from service.api.inference import dataplane, infer
from service.api.routing import add_lean_post
from service.codecs import (
    HEADER_LENGTH,
    check_batch,
    decode_inputs,
    encode_outputs,
    select_outputs,
    split_body,
)
from service.dataplane import parse_version
from service.protocol import (
    InferenceRequest,
    InferenceResponse,
    ModelMetadata,
    RepositoryModel,
    ServerMetadata,
)
from service.responses import FastJSONResponse
from service.schemas import ErrorBody

ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 503, 504, 507)}
router = APIRouter(prefix="/v2", tags=["v2"], responses=ERRORS)


@router.get("", response_model=ServerMetadata)
async def server_metadata(request: Request) -> ServerMetadata:
    return dataplane(request).server_metadata()


@router.get("/models/stats")
@router.get("/models/{name}/stats")
@router.get("/models/{name}/versions/{version}/stats")
async def model_statistics(
    request: Request, name: str | None = None, version: str | None = None
) -> FastJSONResponse:
    """Triton's statistics extension: every ready version, of one model, or one version."""
    return FastJSONResponse({"model_stats": dataplane(request).model_statistics(name, version)})


@router.get("/models/{name}/config")
@router.get("/models/{name}/versions/{version}/config")
async def model_configuration(
    request: Request, name: str, version: str | None = None
) -> FastJSONResponse:
    """Triton's model configuration extension."""
    return FastJSONResponse(await dataplane(request).model_config(name, version))


@router.get("/models/{name}", response_model=ModelMetadata)
@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata)
async def model_metadata(request: Request, name: str, version: str | None = None) -> ModelMetadata:
    return await dataplane(request).model_metadata(name, version)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
    """200 when the model (version) serves, or loads on demand; 400 with the reason when not."""
    mv = dataplane(request).shown(name, version)
    if not mv.servable:
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
        body = validate_json(InferenceRequest, header)
        arrays = decode_inputs(body, raw, settings.max_binary_tensor_bytes)
        check_batch(arrays, settings.max_instances)
    parameters = body.parameters or {}
    version, work = await dataplane(request).tensor_work(name, version, arrays, parameters)
    mv, outputs = await infer(request, name, version, work)
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
    return await dataplane(request).repository_index()


@router.post("/repository/models/{name}/load")
async def repository_load(request: Request, name: str) -> FastJSONResponse:
    versions = await dataplane(request).load_model(name)
    return FastJSONResponse({"name": name, "versions": [str(v) for v in versions]})


@router.post("/repository/models/{name}/unload")
async def repository_unload(request: Request, name: str) -> FastJSONResponse:
    await dataplane(request).unload_model(name)
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
