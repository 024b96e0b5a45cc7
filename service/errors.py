"""What can go wrong, in no wire's terms: each wire maps these to its status codes in one table
(`service.api.errors` for HTTP, `service.rpc.server.CODES` for gRPC)."""

from __future__ import annotations

from typing import ClassVar


class ServiceError(Exception):
    headers: ClassVar[dict[str, str] | None] = None  # sent with the error (HTTP headers, trailers)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InternalError(ServiceError):
    """A fault of the server or the model, not of the request."""


class BadRequest(ServiceError):
    """The message itself is malformed: not JSON, a header that does not fit the body."""


class InputError(ServiceError):
    """The request is well formed but its content cannot be taken: the one error a task raises
    about its input, whichever wire it came by. The message says where and what
    (`instances[2] has no words to classify`); `where` is that place for a program to read
    (`instances[2]`, `input 'text'`, `parameters.truncate`)."""

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


class NotFound(ServiceError):
    pass


class Gone(ServiceError):
    """It existed and no longer does (an expired, evicted or deleted session); `reason` says
    which, for a program to read (`expired`, `evicted`, `deleted`, `ended`...)."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class Conflict(ServiceError):
    """The request assumed a state the resource is no longer in."""


class NotOffered(ServiceError):
    """The server's configuration cannot offer this (and retrying will not change that)."""


class PayloadTooLarge(ServiceError):
    pass


class DoesNotFit(ServiceError):
    """A model version that no unloading can make room for (larger than the memory budget)."""


class ModelNotReady(ServiceError):
    pass


class Overloaded(ServiceError):
    """Refused at once so clients can back off (never an unbounded queue)."""

    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "1"}


class Unavailable(ServiceError):
    """Something the request needs (a shared store) does not answer; it may later."""

    headers: ClassVar[dict[str, str] | None] = {"Retry-After": "2"}


class DeadlineExceeded(ServiceError):
    pass


class ClientGone(ServiceError):
    """The client closed the connection before its answer; nobody will read this."""
