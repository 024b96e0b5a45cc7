"""The browser page at `/` (and `/ui`): plain HTML, CSS and JavaScript from `service/ui/`.

The page is a client of the public V1 API like any other; these routes only hand out its
files, and each task's presentation (`/ui/tasks/<task>.js`) where the task registry says it
is. A Content-Security-Policy lets the browser load nothing from any other origin.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import Response

from contract import registry
from service.errors import NotFound

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
JAVASCRIPT = "text/javascript; charset=utf-8"
ASSETS = {
    "app.js": JAVASCRIPT,
    "page.js": JAVASCRIPT,
    "style.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@cache
def _read(name: str) -> bytes:
    return (UI_DIR / name).read_bytes()


@router.get("/")
@router.get("/ui")
async def page() -> Response:
    """The page: lists the models and lets a person try each one."""
    return Response(_read("index.html"), media_type="text/html; charset=utf-8", headers=HEADERS)


@router.get("/ui/{asset}")
async def asset(asset: str) -> Response:
    if asset not in ASSETS:  # a fixed list: a request never names a path on disk
        raise NotFound(f"no file {asset!r} in the page; it has {', '.join(sorted(ASSETS))}")
    return Response(_read(asset), media_type=ASSETS[asset], headers=HEADERS)


@cache
def _presentation(task: str) -> bytes:
    """The task's page module, from the package the registry names ("package:file.js")."""
    try:
        page = registry.get(task).page
    except ValueError:
        page = None
    if page is None:
        raise NotFound(f"task {task!r} has no presentation on this page")
    package, _, file = page.partition(":")
    return resources.files(package).joinpath(file).read_bytes()


@router.get("/ui/tasks/{task}.js")
async def presentation(task: str) -> Response:
    return Response(_presentation(task), media_type=JAVASCRIPT, headers=HEADERS)
