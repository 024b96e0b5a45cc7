"""OpenTelemetry traces, only when an OTLP endpoint is set: otherwise this module imports
nothing of OpenTelemetry and every hook here is one `is None` test.

A request's trace: the server span (HTTP or gRPC, continuing a W3C `traceparent`), then
`parse`, `queue` (waiting in the batcher), `batch` (the session run it shared, with the batch
size, model and version) and `response`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from service import __version__
from service.logs import note, request_facts

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
_NOTHING = nullcontext()
tracer: Any = None  # an opentelemetry Tracer while tracing is on
_provider: Any = None


def enabled_by_environment() -> bool:
    return any(os.environ.get(name) for name in ENDPOINTS)


def start_from_environment() -> None:
    """Export spans over OTLP when the standard variables ask for it (protocol `grpc` or
    `http/protobuf`, the default; endpoint, headers and service name as OpenTelemetry reads
    them)."""
    if tracer is not None or not enabled_by_environment():
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    name = os.environ.get("OTEL_SERVICE_NAME", "rnnserve")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)


def install(provider: Any) -> None:
    """Trace with `provider` (an SDK TracerProvider), or stop tracing with None."""
    global tracer, _provider
    _provider = provider
    tracer = None if provider is None else provider.get_tracer("rnnserve", __version__)


def shutdown() -> None:
    """Flush what is buffered (at server exit)."""
    if _provider is not None:
        _provider.shutdown()


def span(name: str) -> AbstractContextManager[Any]:
    """A child span of the request's span, or nothing when tracing is off."""
    if tracer is None:
        return _NOTHING
    return tracer.start_as_current_span(name)


@contextmanager
def server_span(name: str, carrier: Mapping[str, str], kind: str = "SERVER") -> Iterator[Any]:
    """The request's own span, continuing the trace of a `traceparent` in `carrier`; its
    trace id goes into the access log beside the request id."""
    from opentelemetry.trace import SpanKind, format_trace_id
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    parent = TraceContextTextMapPropagator().extract(carrier)
    with tracer.start_as_current_span(name, context=parent, kind=SpanKind[kind]) as current:
        note(trace_id=format_trace_id(current.get_span_context().trace_id))
        yield current


def record_batch(model: str, version: int) -> None:
    """`queue` and `batch` spans for the batch this request's items ran in, from what the
    batcher measured (its durations exactly; placed so the run ends now)."""
    if tracer is None:
        return
    facts = request_facts.get() or {}
    if "batch_size" not in facts:
        return
    run_ns = int(facts["inference_ms"] * 1e6)
    end = time.time_ns()
    started = end - run_ns
    queued = started - int(facts["queue_ms"] * 1e6)
    tracer.start_span("queue", start_time=queued).end(end_time=started)
    batch = tracer.start_span(
        "batch",
        start_time=started,
        attributes={
            "rnnserve.batch_size": facts["batch_size"],
            "rnnserve.model": model,
            "rnnserve.model_version": str(version),
        },
    )
    batch.end(end_time=end)


class TraceRequests:
    """ASGI middleware (added only when tracing is on): one server span per HTTP request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope["headers"]
            if k in (b"traceparent", b"tracestate")
        }
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with server_span(f"{scope['method']} {scope['path']}", carrier) as current:
            try:
                await self.app(scope, receive, send_status)
            finally:
                route = scope.get("route")  # the path template, once routing has matched
                if route is not None:
                    current.update_name(f"{scope['method']} {route.path}")
                current.set_attribute("http.request.method", scope["method"])
                current.set_attribute("url.path", scope["path"])
                current.set_attribute("http.response.status_code", status)
                if status >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    current.set_status(Status(StatusCode.ERROR))
