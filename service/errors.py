"""The service's error types; one handler maps each to a `{"error": ...}` response."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    status_code = 500
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InternalError(ServiceError):
    """A fault of the server or the model, not of the request."""

    status_code = 500


class BadRequest(ServiceError):
    status_code = 400


class Unprocessable(ServiceError):
    """Well-formed JSON whose content the model cannot take."""

    status_code = 422


class NotFound(ServiceError):
    status_code = 404


class Gone(ServiceError):
    """It existed and no longer does (an expired, evicted or deleted session)."""

    status_code = 410


class Conflict(ServiceError):
    """The request assumed a state the resource is no longer in."""

    status_code = 409


class Unsupported(ServiceError):
    """The server's configuration cannot offer this (and retrying will not change that)."""

    status_code = 501


class PayloadTooLarge(ServiceError):
    status_code = 413


class DoesNotFit(ServiceError):
    """A model version that no unloading can make room for (larger than the memory budget)."""

    status_code = 507


class ModelNotReady(ServiceError):
    status_code = 503


class Overloaded(ServiceError):
    """Refused at once so clients can back off (never an unbounded queue)."""

    status_code = 503
    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class DeadlineExceeded(ServiceError):
    status_code = 504


class ClientGone(ServiceError):
    """The client closed the connection before its answer; nobody will read this."""

    status_code = 499
