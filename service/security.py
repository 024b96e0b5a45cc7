"""Optional API keys: every route but the health probes, metrics, the page and the API docs
needs one.

Keys are compared in constant time. Repository control (load, unload, index) takes the
admin key when one is set, so a client that may predict cannot change what is served.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from service.responses import error_response

OPEN = ("/v2/health/live", "/v2/health/ready", "/metrics", "/docs", "/openapi.json")
OPEN_PREFIXES = ("/ui", "/docs/")
ADMIN_PREFIX = "/v2/repository/"


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, api_key: str | None, admin_key: str | None) -> None:
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.admin_key = admin_key.encode() if admin_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        needed = self.admin_key if path.startswith(ADMIN_PREFIX) and self.admin_key else None
        needed = needed or self.api_key
        open_path = path == "/" or path in OPEN or path.startswith(OPEN_PREFIXES)
        if needed is None or open_path or presented(scope["headers"], needed):
            await self.app(scope, receive, send)
            return
        kind = "admin API key" if needed is self.admin_key else "API key"
        response = error_response(
            401,
            f"this route needs the {kind}: send 'Authorization: Bearer <key>' or 'X-API-Key'",
            {"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def presented(headers: Iterable[tuple[bytes, bytes]], key: bytes) -> bool:
    """`Authorization: Bearer <key>` or `X-API-Key: <key>` among the (lowercase) headers."""
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            if hmac.compare_digest(value[7:].strip(), key):
                return True
        elif name == b"x-api-key" and hmac.compare_digest(value.strip(), key):
            return True
    return False
