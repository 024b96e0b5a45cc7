"""The Open Inference Protocol over gRPC (`inference.GRPCInferenceService`) and the standard
`grpc.health.v1` service, served in the HTTP app's process from the same repository and
batchers: a gRPC request and an HTTP request can share one batch."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import nullcontext
from typing import Any, TypeVar

import grpc
from google.protobuf.json_format import ParseDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from service import errors as e
from service import tracing
from service.codecs import check_batch, select_outputs
from service.dataplane import DataPlane, parse_version
from service.errors import DeadlineExceeded, NotFound, ServiceError
from service.logs import REQUEST_ID, log_access, request_facts
from service.rpc import inference_pb2 as pb
from service.rpc.methods import SERVICE, STREAMS, add_to_server
from service.rpc.tensors import inputs_from_message, outputs_into_message, parameters
from service.security import presented
from service.settings import Settings

log = logging.getLogger("rnnserve.grpc")
Code = grpc.StatusCode
# As Triton maps its errors: bad input INVALID_ARGUMENT, unknown model or version NOT_FOUND,
# not ready or overloaded UNAVAILABLE (clients retry it), out of time DEADLINE_EXCEEDED.
# The gRPC wire's one table (what is not here is INTERNAL).
CODES: dict[type[e.ServiceError], grpc.StatusCode] = {
    e.BadRequest: Code.INVALID_ARGUMENT, e.InputError: Code.INVALID_ARGUMENT,
    e.NotFound: Code.NOT_FOUND, e.Gone: Code.NOT_FOUND, e.Conflict: Code.FAILED_PRECONDITION,
    e.PayloadTooLarge: Code.RESOURCE_EXHAUSTED, e.ClientGone: Code.CANCELLED,
    e.NotOffered: Code.UNIMPLEMENTED, e.ModelNotReady: Code.UNAVAILABLE,
    e.Overloaded: Code.UNAVAILABLE, e.Unavailable: Code.UNAVAILABLE,
    e.DeadlineExceeded: Code.DEADLINE_EXCEEDED, e.DoesNotFit: Code.RESOURCE_EXHAUSTED,
}  # fmt: skip
OPEN = frozenset(
    {f"/{SERVICE}/ServerLive", f"/{SERVICE}/ServerReady", "/grpc.health.v1.Health/Check",
     "/grpc.health.v1.Health/Watch"}
)  # fmt: skip
REPOSITORY = frozenset(
    f"/{SERVICE}/{method}"
    for method in ("RepositoryIndex", "RepositoryModelLoad", "RepositoryModelUnload")
)
# A stream's client may ask that the last answer to a request say so (Triton's decoupled models
# answer several times): each request here has one answer, the last.
FINAL_ASKED, FINAL = "triton_enable_empty_final_response", "triton_final_response"
STREAMING = frozenset(f"/{SERVICE}/{method}" for method in STREAMS)
T = TypeVar("T")
Counted = Callable[[e.ServiceError | None], str]


def code_of(error: e.ServiceError) -> grpc.StatusCode:
    """The code of `error`'s class, or of the nearest class above it in the table."""
    return next((CODES[k] for k in type(error).__mro__ if k in CODES), Code.INTERNAL)


class InferenceService:
    """Each method: the message decoded, one data plane call, the answer encoded."""

    def __init__(self, plane: DataPlane, counted: Counted) -> None:
        self.plane = plane
        self.settings = plane.settings
        self.counted = counted

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> Any:
        return await _answer("ServerLive", context, _given(pb.ServerLiveResponse(live=True)))

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> Any:
        ready = not self.plane.not_ready()
        return await _answer("ServerReady", context, _given(pb.ServerReadyResponse(ready=ready)))

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> Any:
        async def ready() -> pb.ModelReadyResponse:
            try:
                mv = self.plane.shown(request.name, request.version or None)
            except NotFound:  # as Triton answers: not ready, rather than an error
                return pb.ModelReadyResponse(ready=False)
            return pb.ModelReadyResponse(ready=mv.servable)

        return await _answer("ModelReady", context, ready)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Any) -> Any:
        given = self.plane.server_metadata()
        metadata = pb.ServerMetadataResponse(
            name=given.name, version=given.version, extensions=given.extensions
        )
        return await _answer("ServerMetadata", context, _given(metadata))

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> Any:
        async def metadata() -> pb.ModelMetadataResponse:
            given = await self.plane.model_metadata(request.name, request.version or None)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=given.name,
                versions=given.versions,
                platform=given.platform,
                inputs=[tensor(**t.model_dump()) for t in given.inputs],
                outputs=[tensor(**t.model_dump()) for t in given.outputs],
            )

        return await _answer("ModelMetadata", context, metadata)

    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> Any:
        async def config() -> pb.ModelConfigResponse:
            described = await self.plane.model_config(request.name, request.version or None)
            return pb.ModelConfigResponse(config=ParseDict(described, pb.ModelConfig()))

        return await _answer("ModelConfig", context, config)

    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> Any:
        async def statistics() -> pb.ModelStatisticsResponse:
            name = request.name or None
            stats = self.plane.model_statistics(name, request.version or None)
            return ParseDict({"model_stats": stats}, pb.ModelStatisticsResponse())

        return await _answer("ModelStatistics", context, statistics)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> Any:
        async def index() -> pb.RepositoryIndexResponse:
            entries = await self.plane.repository_index()
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
            await self.plane.load_model(request.model_name)
            return pb.RepositoryModelLoadResponse()

        return await _answer("RepositoryModelLoad", context, load)

    async def RepositoryModelUnload(
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> Any:
        async def unload() -> pb.RepositoryModelUnloadResponse:
            await self.plane.unload_model(request.model_name)
            return pb.RepositoryModelUnloadResponse()

        return await _answer("RepositoryModelUnload", context, unload)

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> Any:
        return await _answer("ModelInfer", context, lambda: self._infer(request, context))

    async def ModelStreamInfer(
        self, requests: AsyncIterator[pb.ModelInferRequest], context: Any
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        """Triton's bidirectional stream: each request is answered in the stream, a failed one
        by its error message (the stream goes on). The steps of one sequence run one after
        another, in the order sent; other requests run at once, so they share batches."""
        metadata = {key: value for key, value in context.invocation_metadata() or ()}
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        last: dict[tuple[str, Any], asyncio.Task] = {}  # each sequence's latest request

        async def answer(request: pb.ModelInferRequest, before: asyncio.Task | None) -> None:
            if before is not None:
                await asyncio.wait([before])
            request_id = _request_id(metadata)
            result, code, message, _ = await _run(
                "ModelStreamInfer", request_id, metadata, lambda: self._infer(request, context)
            )
            if code is Code.OK:
                asked = request.parameters.get(FINAL_ASKED)
                if asked is not None and asked.bool_param:  # one answer: it is the last
                    result.parameters[FINAL].bool_param = True
                await answers.put(pb.ModelStreamInferResponse(infer_response=result))
            else:
                failed = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
                await answers.put(
                    pb.ModelStreamInferResponse(error_message=message, infer_response=failed)
                )

        async def read() -> None:
            running: set[asyncio.Task] = set()
            try:
                async for request in requests:
                    sequence = request.parameters.get("sequence_id")
                    key = None if sequence is None else (request.model_name, str(sequence))
                    task = asyncio.create_task(answer(request, last.get(key)))
                    running.add(task)
                    task.add_done_callback(running.discard)
                    if key is not None:
                        last[key] = task
                        task.add_done_callback(lambda t, k=key: last.get(k) is t and last.pop(k))
                await asyncio.gather(*running)
            finally:
                await answers.put(None)

        reader = asyncio.create_task(read())
        try:
            while (response := await answers.get()) is not None:
                yield response
            await reader  # the client's half closed and every request answered
        finally:
            reader.cancel()

    async def _infer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:
        settings = self.settings
        with tracing.span("parse"):
            version = None
            if request.model_version:
                version = parse_version(request.model_name, request.model_version)
            arrays = inputs_from_message(request, settings.max_binary_tensor_bytes)
            check_batch(arrays, settings.max_instances)
            given = parameters(request.parameters)
        timeout = settings.request_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:
            if remaining <= 0:
                raise DeadlineExceeded("the call's deadline passed before it could run")
            timeout = min(timeout, remaining)
        version, work = await self.plane.tensor_work(request.model_name, version, arrays, given)
        mv, outputs = await self.plane.infer(
            request.model_name, version, timeout, work, self.counted
        )
        with tracing.span("response"):
            outputs = select_outputs(outputs, [o.name for o in request.outputs])
            response = pb.ModelInferResponse(
                model_name=mv.name, model_version=str(mv.version), id=request.id
            )
            # Raw in, raw out (what Triton's clients read); typed contents in, typed out.
            outputs_into_message(response, outputs, raw=bool(request.raw_input_contents))
        return response


def _given(value: T) -> Callable[[], Awaitable[T]]:
    async def given() -> T:
        return value

    return given


async def _answer(method: str, context: Any, handle: Callable[[], Awaitable[T]]) -> T:
    """Run one call; its errors abort it with their status code."""
    metadata = {key: value for key, value in context.invocation_metadata() or ()}
    request_id = _request_id(metadata)
    result, code, message, trailers = await _run(method, request_id, metadata, handle)
    context.set_trailing_metadata([("x-request-id", request_id), *trailers])
    if code is not Code.OK:
        await context.abort(code, message)
        raise AssertionError("abort returns only by raising")
    return result  # type: ignore[return-value]


def _request_id(metadata: dict[str, Any]) -> str:
    given = metadata.get("x-request-id", "")
    return given if isinstance(given, str) and REQUEST_ID.match(given) else uuid.uuid4().hex


async def _run(
    method: str, request_id: str, metadata: dict[str, Any], handle: Callable[[], Awaitable[T]]
) -> tuple[T | None, grpc.StatusCode, str, list[tuple[str, str]]]:
    """Run one request: its access log line, its span, its error as a status code, a message
    and trailers."""
    facts: dict[str, Any] = {}
    token = request_facts.set(facts)
    started = time.perf_counter()
    code, message, trailers = Code.INTERNAL, "internal error; the server log has the details", []
    result = None
    try:
        traced = tracing.tracer is not None
        with (
            tracing.server_span(f"{SERVICE}/{method}", metadata) if traced else nullcontext()
        ) as current:
            try:
                result = await handle()
                code = Code.OK
            except ServiceError as error:
                code = code_of(error)
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
        return result, code, message, trailers
    finally:
        request_facts.reset(token)
        log_access(request_id, "gRPC", f"/{SERVICE}/{method}", code.name, started, facts)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """The HTTP API keys, as call metadata (`authorization: Bearer <key>` or `x-api-key`):
    liveness, readiness and health stay open, and the repository methods take the admin key
    when one is set, as on HTTP."""

    def __init__(self, key: str | None, admin_key: str | None) -> None:
        self.key = key.encode() if key else None
        self.admin_key = admin_key.encode() if admin_key else None
        self.deny = {kind: _denial(kind) for kind in ("API key", "admin API key")}
        self.deny_stream = _denial("API key", stream=True)

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        needed = self.admin_key if details.method in REPOSITORY and self.admin_key else None
        needed = needed or self.key
        if needed is None or details.method in OPEN:
            return await continuation(details)
        metadata = ((k.encode(), v.encode() if isinstance(v, str) else v)
                    for k, v in details.invocation_metadata or ())  # fmt: skip
        if presented(metadata, needed):
            return await continuation(details)
        if details.method in STREAMING:
            return self.deny_stream
        return self.deny["admin API key" if needed is self.admin_key else "API key"]


def _denial(kind: str, stream: bool = False) -> Any:
    async def deny(request: Any, context: Any) -> None:
        await context.abort(
            Code.UNAUTHENTICATED,
            f"this call needs the {kind}: send 'authorization: Bearer <key>' or 'x-api-key'",
        )

    if stream:
        return grpc.stream_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


class Health(health_aio.HealthServicer):
    """`grpc.health.v1`: "" and the inference service are SERVING when the server is ready
    (what a Kubernetes gRPC readiness probe asks); "liveness" whenever the process answers."""

    def __init__(self, plane: DataPlane) -> None:
        super().__init__()
        self.plane = plane

    async def refresh(self) -> None:
        ready = not self.plane.not_ready()
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
    """The gRPC server of one app: started and stopped in the app's lifespan.

    grpc.aio asks its core for a server's next call only once the previous one has reached the
    event loop, a few loop turns later: one server accepts about 800 calls a second here,
    whatever the concurrency, while the loop has time to spare. So LISTENERS servers share the
    port (SO_REUSEPORT: the kernel spreads connections among them) and accept side by side;
    they serve the same methods, from the same data plane, in the same loop."""

    LISTENERS = 4

    def __init__(self, plane: DataPlane, counted: Counted) -> None:
        self.plane = plane
        self.settings = plane.settings
        self.counted = counted  # the status label its requests get in the metrics
        self.port = 0
        self._servers: list[Any] = []
        self._health: Health | None = None
        self._health_task: asyncio.Task | None = None
        self._stopping: asyncio.Future | None = None

    async def start(self) -> None:
        settings = self.settings
        key = settings.api_key.get_secret_value() if settings.api_key else None
        admin = settings.admin_api_key.get_secret_value() if settings.admin_api_key else None
        interceptors = [ApiKeyInterceptor(key, admin)] if key or admin else None
        options = [
            ("grpc.max_receive_message_length", settings.max_body_bytes),
            ("grpc.so_reuseport", 1),
            *connection_age(settings),
        ]
        service = InferenceService(self.plane, self.counted)
        self._health = health = Health(self.plane)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        port = settings.grpc_port
        if settings.workers == 1:  # the workers of one server share the port; another: in use
            refuse_a_taken_port(settings.host, host, port)
        for _ in range(self.LISTENERS):
            server = grpc.aio.server(interceptors=interceptors, options=options)
            add_to_server(service, server)
            health_pb2_grpc.add_HealthServicer_to_server(health, server)
            self._servers.append(server)
            port = server.add_insecure_port(f"{host}:{port}")  # port 0: the first one's port
            if not port:
                raise RuntimeError(f"gRPC could not listen on {host}:{settings.grpc_port}")
        self.port = port
        await asyncio.gather(*(server.start() for server in self._servers))
        self._health_task = asyncio.create_task(health.follow())
        log.info("gRPC listening on %s:%d", host, self.port)

    def begin_shutdown(self) -> None:
        """At SIGTERM, beside the HTTP drain rather than after it: health says NOT_SERVING at
        once, new calls are refused, those in flight have graceful_shutdown_s to finish."""
        if self._stopping is None and self._servers:
            self._stopping = asyncio.ensure_future(self._shut_down())

    async def _shut_down(self) -> None:
        if self._health_task is not None:
            self._health_task.cancel()
        if self._health is not None:
            await self._health.enter_graceful_shutdown()  # NOT_SERVING, and no more updates
        grace = self.settings.graceful_shutdown_s
        await asyncio.gather(*(server.stop(grace) for server in self._servers))

    async def stop(self) -> None:
        """Shut down, or wait for the shutdown SIGTERM began, to finish."""
        self.begin_shutdown()
        if self._stopping is not None:
            await self._stopping


def refuse_a_taken_port(host: str, shown: str, port: int) -> None:
    """RuntimeError when another process listens on the port, even one whose workers share it
    (SO_REUSEPORT, which the listeners of this server set too): a socket without that option
    cannot bind a port that anyone listens on."""
    if not port:
        return
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as error:
            raise RuntimeError(
                f"gRPC could not listen on {shown}:{port}: {error.strerror}"
            ) from None


def connection_age(settings: Settings) -> list[tuple[str, int]]:
    """Connections live at most grpc_max_connection_age_s, then GOAWAY: clients reconnect
    through the Service and reach replicas the autoscaler added since."""
    if not settings.grpc_max_connection_age_s:
        return []
    return [
        ("grpc.max_connection_age_ms", int(settings.grpc_max_connection_age_s * 1000)),
        ("grpc.max_connection_age_grace_ms", int(settings.grpc_max_connection_age_grace_s * 1000)),
    ]
