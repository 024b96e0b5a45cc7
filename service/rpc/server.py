"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`) and the standard
`grpc.health.v1` service, served in the HTTP app's process from the same repository and
batchers: a gRPC request and an HTTP request can share one batch."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import ParseDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from service import __version__, tracing, workers
from service.api.inference import parse_version, run_inference
from service.api.v2 import EXTENSIONS, index_of, one_worker, shown_version, statistics_of
from service.codecs import check_batch, select_outputs
from service.errors import DeadlineExceeded, NotFound, ServiceError
from service.logs import REQUEST_ID, log_access, request_facts
from service.metrics import Metrics
from service.model_config import model_config
from service.repository import ModelRepository
from service.rpc import inference_pb2 as pb
from service.rpc.methods import SERVICE, add_to_server
from service.rpc.tensors import decode_inputs, encode_outputs, parameters
from service.security import presented
from service.settings import Settings

log = logging.getLogger("rnnserve.grpc")
Code = grpc.StatusCode
# As Triton maps its errors: bad input INVALID_ARGUMENT, unknown model or version NOT_FOUND,
# not ready or overloaded UNAVAILABLE (clients retry it), out of time DEADLINE_EXCEEDED.
CODES = {
    400: Code.INVALID_ARGUMENT, 404: Code.NOT_FOUND, 410: Code.NOT_FOUND,
    413: Code.RESOURCE_EXHAUSTED, 422: Code.INVALID_ARGUMENT, 499: Code.CANCELLED,
    503: Code.UNAVAILABLE, 504: Code.DEADLINE_EXCEEDED,
}  # fmt: skip
OPEN = frozenset(
    {f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady", "/grpc.health.v1.Health/Check",
     "/grpc.health.v1.Health/Watch"}
)  # fmt: skip
REPOSITORY = frozenset(
    f"/{SERVICE}/{method}"
    for method in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
)
T = TypeVar("T")


class InferenceService:
    def __init__(self, repository: ModelRepository, metrics: Metrics, settings: Settings) -> None:
        self.repository = repository
        self.metrics = metrics
        self.settings = settings

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        return await _answer("ServerLive", context, _given(pb.ServerLiveResponse(live=True)))

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        ready = not not_ready(self.repository, self.settings)
        return await _answer("ServerReady", context, _given(pb.ServerReadyResponse(ready=ready)))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        async def ready() -> pb.ModelReadyResponse:
            try:
                mv = shown_version(self.repository, request.name, request.version or None)
            except NotFound:  # as Triton answers: not ready, rather than an error
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=mv.state == "ready")

        return await _answer("ModelReady", context, ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        metadata = pb.ServerMetadataResponse(
            name="rnnserve", version=__version__, extensions=EXTENSIONS
        )
        return await _answer("ServerMetadata", context, _given(metadata))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        async def metadata() -> pb.ModelMetadataResponse:
            mv = shown_version(self.repository, request.name, request.version or None)
            versions = self.repository.versions_of(request.name)
            task = mv.task
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=request.name,
                versions=[str(v) for v, m in sorted(versions.items()) if m.state == "ready"],
                platform="onnxruntime_onnx",
                inputs=[tensor(**t.model_dump()) for t in (task.inputs if task else [])],
                outputs=[tensor(**t.model_dump()) for t in (task.outputs if task else [])],
            )

        return await _answer("ModelMetadata", context, metadata)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> Any:
        async def config() -> pb.ModelConfigResponse:
            mv = shown_version(self.repository, request.name, request.version or None)
            policy = self.repository.policy_for(request.name)
            described = model_config(mv, self.settings, policy)
            return pb.ModelConfigResponse(config=ParseDict(described, pb.ModelConfig()))

        return await _answer("ModelConfig", context, config)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> Any:
        async def statistics() -> pb.ModelStatisticsResponse:
            name, version = request.name or None, None
            if name is not None and request.version:
                version = parse_version(name, request.version)
            stats = statistics_of(self.repository, name, version)
            return ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())

        return await _answer("ModelStatistics", context, statistics)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> Any:
        async def index() -> pb.RepositoryIndexResponse:
            entries = await index_of(self.repository)
            model = pb.RepositoryIndexResponse.ModelIndex
            return pb.RepositoryIndexResponse(
                models=[
                    model(**entry.model_dump())
                    for entry in entries
                    if not request.ready or entry.state == "READY"
                ]
            )

        return await _answer("RepositoryIndex", context, index)

    async def RepositoryModelLoad(
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> Any:
        async def load() -> pb.RepositoryModelLoadResponse:
            one_worker(self.settings)
            await self.repository.load_model(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await _answer("RepositoryModelLoad", context, load)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> Any:
        async def unload() -> pb.RepositoryModelUnloadResponse:
            one_worker(self.settings)
            await self.repository.unload_model(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await _answer("RepositoryModelUnload", context, unload)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        return await _answer("ModelInfer", context, lambda: self._infer(request, context))

    async def _infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        settings = self.settings
        with tracing.span("parse"):
            version = None
            if request.model_version:
                version = parse_version(request.model_name, request.model_version)
            arrays = decode_inputs(request, settings.max_binary_tensor_bytes)
            check_batch(arrays, settings.max_instances)
            given = parameters(request.parameters)
        timeout = settings.request_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                raise DeadlineExceeded("the call's deadline passed before it could run")
            timeout = min(timeout, remaining)
        mv, outputs = await run_inference(
            self.repository,
            self.metrics,
            request.model_name,
            version,
            lambda mv: mv.infer(arrays, given, timeout),
        )
        with tracing.span("response"):
            outputs = select_outputs(outputs, [o.name for o in request.outputs])
            response = pb.ModelInferResponse(
                model_name=mv.name, model_version=str(mv.version), id=request.id
            )
            # Raw in, raw out (what Triton's clients read); typed contents in, typed out.
            encode_outputs(response, outputs, raw=bool(request.raw_input_contents))
        return response


def _given(value: T) -> Callable[[], Awaitable[T]]:
    async def given() -> T:
        return value

    return given


async def _answer(method: str, context: Any, handle: Callable[[], Awaitable[T]]) -> T:
    """Run one call: its request id and access log line, its span, its errors as status codes."""
    metadata = {key: value for key, value in context.invocation_metadata() or ()}
    given = metadata.get("x-request-id", "")
    request_id = given if isinstance(given, str) and REQUEST_ID.match(given) else uuid.uuid4().hex
    facts: dict[str, Any] = {}
    token = request_facts.set(facts)
    started = time.perf_counter()
    code, message, trailers = Code.INTERNAL, "internal error; the server log has the details", []
    try:
        traced = tracing.tracer is not None
        with (
            tracing.server_span(f"{SERVICE}/{method}", metadata) if traced else nullcontext()
        ) as current:
            try:
                result = await handle()
                code = Code.OK
                return result
            except ServiceError as error:
                code = CODES.get(error.status_code, Code.INTERNAL)
                message = error.message
                trailers = [(k.lower(), v) for k, v in (error.headers or {}).items()]
            except asyncio.CancelledError:
                code = Code.CANCELLED
                raise
            except Exception:
                log.exception("unhandled error in %s", method)
            finally:
                if current is not None:
                    current.set_attribute("rpc.grpc.status_code", code.value[0])
        context.set_trailing_metadata([("x-request-id", request_id), *trailers])
        await context.abort(code, message)
        raise AssertionError("abort returns only by raising")
    finally:
        request_facts.reset(token)
        if code is Code.OK:
            context.set_trailing_metadata([("x-request-id", request_id)])
        log_access(request_id, "gRPC", f"/{SERVICE}/{method}", code.name, started, facts)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """The HTTP API keys, as call metadata (`authorization: Bearer <key>` or `x-api-key`):
    liveness, readiness and health stay open, and the repository methods take the admin key
    when one is set, as on HTTP."""

    def __init__(self, key: str | None, admin_key: str | None) -> None:
        self.key = key.encode() if key else None
        self.admin_key = admin_key.encode() if admin_key else None
        self.deny = {kind: _denial(kind) for kind in ("API key", "admin API key")}

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        needed = self.admin_key if details.method in REPOSITORY and self.admin_key else None
        needed = needed or self.key
        if needed is None or details.method in OPEN:
            return await continuation(details)
        metadata = ((k.encode(), v.encode() if isinstance(v, str) else v)
                    for k, v in details.invocation_metadata or ())  # fmt: skip
        if presented(metadata, needed):
            return await continuation(details)
        return self.deny["admin API key" if needed is self.admin_key else "API key"]


def _denial(kind: str) -> Any:
    async def deny(request: Any, context: Any) -> None:
        await context.abort(
            Code.UNAUTHENTICATED,
            f"this call needs the {kind}: send 'authorization: Bearer <key>' or 'x-api-key'",
        )

    return grpc.unary_unary_rpc_method_handler(deny)


def not_ready(repository: ModelRepository, settings: Settings) -> list[str]:
    """Why the server is not ready, as /v2/health/ready sees it (every worker counted)."""
    return repository.not_ready() or workers.not_ready(settings)


class Health(health_aio.HealthServicer):
    """`grpc.health.v1`: "" and the inference service are SERVING when the server is ready
    (what a Kubernetes gRPC readiness probe asks); "liveness" whenever the process answers."""

    def __init__(self, repository: ModelRepository, settings: Settings) -> None:
        super().__init__()
        self.repository = repository
        self.settings = settings

    async def refresh(self) -> None:
        ready = not not_ready(self.repository, self.settings)
        status = health_pb2.HealthCheckResponse
        serving = status.SERVING if ready else status.NOT_SERVING
        for service in ("", SERVICE):
            await self.set(service, serving)
        await self.set("liveness", status.SERVING)

    async def Check(self, request: Any, context: Any) -> Any:
        await self.refresh()
        return await super().Check(request, context)

    async def follow(self, every_s: float = 1.0) -> None:
        """Keep Watch streams current as models load and unload."""
        while True:
            await self.refresh()
            await asyncio.sleep(every_s)


class GrpcServer:
    """The gRPC server of one app: started and stopped in the app's lifespan."""

    def __init__(self, repository: ModelRepository, metrics: Metrics, settings: Settings) -> None:
        self.repository = repository
        self.metrics = metrics
        self.settings = settings
        self.port = 0
        self._server: Any = None
        self._health: Health | None = None
        self._health_task: asyncio.Task | None = None
        self._stopping: asyncio.Future | None = None

    async def start(self) -> None:
        settings = self.settings
        key = settings.api_key.get_secret_value() if settings.api_key else None
        admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
        self._server = server = grpc.aio.server(
            interceptors=[ApiKeyInterceptor(key, admin)] if key or admin else None,
            options=[
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                # The workers of one server share the port; another server gets "in use".
                ("grpc.so_reuseport", int(settings.workers > 1)),
                *connection_age(settings),
            ],
        )
        add_to_server(InferenceService(self.repository, self.metrics, settings), server)
        self._health = health = Health(self.repository, settings)
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.port = server.add_insecure_port(f"{host}:{settings.grpc_port}")
        if not self.port:
            raise RuntimeError(f"gRPC could not listen on {host}:{settings.grpc_port}")
        await server.start()
        self._health_task = asyncio.create_task(health.follow())
        log.info("gRPC listening on %s:%d", host, self.port)

    def begin_shutdown(self) -> None:
        """At SIGTERM, beside the HTTP drain rather than after it: health says NOT_SERVING at
        once, new calls are refused, those in flight have graceful_shutdown_s to finish."""
        if self._stopping is None and self._server is not None:
            self._stopping = asyncio.ensure_future(self._shut_down())

    async def _shut_down(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()  # NOT_SERVING, and no more updates
        await self._server.stop(self.settings.graceful_shutdown_s)

    async def stop(self) -> None:
        """Shut down, or wait for the shutdown SIGTERM began, to finish."""
        self.begin_shutdown()
        if self._stopping is not None:
            await self._stopping


def connection_age(settings: Settings) -> list[tuple[str, int]]:
    """Connections live at most grpc_max_connection_age_s, then GOAWAY: clients reconnect
    through the Service and reach replicas the autoscaler added since."""
    if not settings.grpc_max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.grpc_max_connection_age_grace_s * 1000)),
    ]
