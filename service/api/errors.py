"""The HTTP wire's one table: each service error's status code, V1 and V2.

Both REST protocols agree but on bad input: V1 (a person's instances) answers 422, the Open
Inference Protocol answers 400 as KServe and Triton do.
"""

from __future__ import annotations

from collections.abc import Callable

from service import errors as e

V1: dict[type[e.ServiceError], int] = {
    e.BadRequest: 400,
    e.InputError: 422,
    e.NotFound: 404,
    e.Conflict: 409,
    e.Gone: 410,
    e.PayloadTooLarge: 413,
    e.ClientGone: 499,
    e.InternalError: 500,
    e.NotOffered: 501,
    e.ModelNotReady: 503,
    e.Overloaded: 503,
    e.Unavailable: 503,
    e.DeadlineExceeded: 504,
    e.DoesNotFit: 507,
}
V2 = {**V1, e.InputError: 400}


def status_of(error: e.ServiceError, table: dict[type[e.ServiceError], int] = V1) -> int:
    """The status of `error`'s class, or of the nearest class above it in the table."""
    for kind in type(error).__mro__:
        status = table.get(kind)
        if status is not None:
            return status
    return 500


def table_for(path: str) -> dict[type[e.ServiceError], int]:
    return V2 if path.startswith("/v2/") else V1


def counted(table: dict[type[e.ServiceError], int]) -> Callable[[e.ServiceError | None], str]:
    """How the data plane counts a request: by HTTP's status number for what it answered,
    whichever wire (gRPC requests are counted as V2's, the protocol they share)."""

    def status(error: e.ServiceError | None) -> str:
        return "200" if error is None else str(status_of(error, table))

    return status
