"""JSON responses rendered with orjson (numpy-aware, several times faster than json)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import JSONResponse


class FastJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error_response(
    status_code: int, message: str, headers: dict[str, str] | None = None
) -> FastJSONResponse:
    return FastJSONResponse({"error": message}, status_code=status_code, headers=headers)
