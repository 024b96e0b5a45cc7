"""Interactive API docs at `/docs`: Swagger UI from the `fastapi-offline` package's copy.

FastAPI's own `/docs` loads Swagger UI from a CDN, so without internet it is a blank page;
these routes hand out the files installed with the package instead (a fixed list: a request
never names a path on disk). The docs and the schema are open without the API key, like the
page: they describe the API, and "Authorize" then takes the key for "Try it out".
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from service.errors import NotFound

DOCS = "/docs"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}

router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    return (resources.files("fastapi_offline") / "static" / name).read_bytes()


@router.get(DOCS)
async def docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="rnnserve API",
        swagger_js_url=f"{DOCS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS}/favicon.png",
    )


@router.get(DOCS + "/{asset}")
async def asset(asset: str) -> Response:
    if asset not in ASSETS:
        raise NotFound(f"no file {asset!r} in the docs; they have {', '.join(sorted(ASSETS))}")
    return Response(
        _read(asset), media_type=ASSETS[asset], headers={"Cache-Control": "max-age=86400"}
    )


def document_api_key(app: FastAPI) -> None:
    """Tell the schema that routes take the API key, so Swagger UI's "Authorize" sends it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
            schema["security"] = [{"bearer": []}, {"apiKey": []}]
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
