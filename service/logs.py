"""Structured (JSON) logs: one access line per request, with its request id (and trace id),
model, version, batch size, queue and inference time."""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What the request path learns about a request (model, version, batch...), for its log line.
request_facts: ContextVar[dict[str, Any] | None] = ContextVar("request_facts", default=None)
access_log = logging.getLogger("rnnserve.access")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
TRACEPARENT = re.compile(rb"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def note(**facts: Any) -> None:
    """Add facts to the current request's access log line (a no-op outside a request)."""
    current = request_facts.get()
    if current is not None:
        current.update(facts)


def log_access(
    request_id: str, method: str, path: str, status: int | str, started: float, facts: dict
) -> None:
    """The one access line of a request (HTTP or gRPC), with what its path noted."""
    if access_log.isEnabledFor(logging.INFO):
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        fields = {"request_id": request_id, "method": method, "path": path, "status": status}
        access_log.info(
            "request", extra={"fields": {**fields, "duration_ms": duration_ms, **facts}}
        )


class RequestLog:
    """Takes `X-Request-ID` (or makes one), echoes it, and logs the request when it ends."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given, traceparent = b"", b""
        for key, value in scope["headers"]:
            if key == b"x-request-id":
                given = value
            elif key == b"traceparent":
                traceparent = value
        request_id = given.decode("latin-1")
        if not REQUEST_ID.match(request_id):
            request_id = uuid.uuid4().hex
        facts: dict[str, Any] = {}
        if traceparent:  # the caller's trace id, when tracing here is off (else the span's)
            match = TRACEPARENT.match(traceparent)
            if match:
                facts["trace_id"] = match.group(1).decode()
        token = request_facts.set(facts)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_facts.reset(token)
            log_access(request_id, scope["method"], scope["path"], status, started, facts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_config(level: str, json_format: bool) -> dict[str, Any]:
    """A logging dictConfig for uvicorn and rnnserve: JSON lines (or plain text) on stderr."""
    formatter = (
        {"()": JsonFormatter}
        if json_format
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "rnnserve": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }
