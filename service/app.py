"""The FastAPI app factory: settings -> repository and data plane -> the HTTP routes (and the
gRPC server beside them), with the error handlers that answer every failure as JSON."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from service import __version__, draining, process, tracing, workers
from service.api import docs, health, sessions, ui, v1, v2
from service.api.body import add_schemas, invalid_body
from service.api.errors import V2, counted, status_of, table_for
from service.dataplane import DataPlane
from service.errors import ClientGone, ServiceError
from service.limits import BodySizeLimit
from service.logs import RequestLog, note
from service.metrics import Metrics
from service.protocol import InferenceRequest
from service.repository import ModelRepository
from service.responses import FastJSONResponse, error_response
from service.schemas import PredictRequest
from service.security import ApiKeyAuth
from service.sessions import MemorySessions, SessionBackend, SessionSettings, SessionStore
from service.settings import Settings

log = logging.getLogger("rnnserve")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    repository = ModelRepository(settings, metrics, after_retiring=process.return_freed_memory)
    plane = DataPlane(repository, metrics, settings)

    tracing.start_from_environment()  # OTLP traces when OTEL_EXPORTER_OTLP_ENDPOINT is set

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Models load in the background: /v2/health/live answers while they warm up.
        polling = asyncio.create_task(repository.poll())
        tuning = asyncio.create_task(process.freeze_when_loaded(repository))
        grpc_server = None
        announcing = asyncio.create_task(workers.announce(repository, settings))  # if several
        plane.sessions = sessions = _session_store(settings, metrics)
        try:
            if settings.grpc_port:  # the same repository and batchers over gRPC
                from service.rpc.server import GrpcServer

                grpc_server = app.state.grpc = GrpcServer(plane, counted(V2))
                await grpc_server.start()
                draining.on_exit_signal(grpc_server.begin_shutdown)
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop()
            for task in (polling, tuning, announcing):
                task.cancel()
            await asyncio.gather(polling, tuning, announcing, return_exceptions=True)
            await repository.close()
            if sessions is not None:
                await sessions.close()  # the session store's connections
            tracing.shutdown()

    app = FastAPI(
        title="rnnserve",
        summary="Recurrent sequence models (LSTM/GRU with attention) on onnxruntime.",
        version=__version__,
        lifespan=lifespan,
        default_response_class=FastJSONResponse,
        strict_content_type=False,  # a body is read as JSON whatever its Content-Type
        docs_url=None,  # service/api/docs.py: Swagger UI without a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.repository = repository
    app.state.dataplane = plane
    v1.add_routes(app)  # first: the hot routes are matched before the others
    v2.add_routes(app)
    app.include_router(health.router)
    app.include_router(ui.router)  # the page at / and /ui
    app.include_router(docs.router)  # /docs
    app.include_router(sessions.router)  # streaming forecast sessions
    add_schemas(app, [PredictRequest, InferenceRequest, sessions.StepRequest])
    if settings.api_key is not None:
        docs.document_api_key(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        ApiKeyAuth, api_key=_secret(settings.api_key), admin_key=_secret(settings.admin_api_key)
    )
    if tracing.tracer is not None:
        app.add_middleware(tracing.TraceRequests)
    app.add_middleware(RequestLog)  # outermost: every answer, 401 and 413 included, is logged
    _add_error_handlers(app)
    return app


def _session_store(settings: Settings, metrics: Metrics) -> SessionBackend | None:
    """`memory` for one process, a `redis://` URL for several workers or replicas; None (the
    session routes say why) when sessions cannot work: in memory with several workers."""
    limits = SessionSettings(
        session_ttl_s=settings.session_ttl_s, max_sessions=settings.max_sessions
    )
    if settings.session_store == "memory":
        if settings.workers > 1:
            return None
        return MemorySessions(SessionStore(limits, metrics.prometheus))
    from service.redis_sessions import RedisSessions  # redis-py loads OpenTelemetry's SDK

    return RedisSessions(settings.session_store, limits, metrics.prometheus)


def _secret(key: SecretStr | None) -> str | None:
    return key.get_secret_value() if key else None


def _add_error_handlers(app: FastAPI) -> None:
    """The service's errors by the HTTP table; FastAPI's own validation as the lean routes'
    parsing reports it; a client gone; Starlette's 404/405; and anything else as a bug."""

    @app.exception_handler(ServiceError)
    async def service_error(request: Request, error: ServiceError) -> FastJSONResponse:
        status = status_of(error, table_for(request.url.path))
        return error_response(status, error.message, error.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> FastJSONResponse:
        found = invalid_body(list(error.errors()), request.headers.get("content-type"))
        return await service_error(request, found)

    @app.exception_handler(ClientDisconnect)
    async def client_hung_up(request: Request, error: ClientDisconnect) -> FastJSONResponse:
        """Not a server fault: counted, and logged only as the request's access line."""
        request.app.state.metrics.disconnects.labels("reading the body").inc()
        note(disconnected="while sending its body")
        return await service_error(request, ClientGone("the client disconnected"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> FastJSONResponse:
        """A bug: logged with its traceback, answered without one (nor any path)."""
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal error; the server log has the details")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> FastJSONResponse:
        return error_response(error.status_code, str(error.detail), error.headers)
