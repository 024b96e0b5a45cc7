"""A lean route class for the hot inference routes.

FastAPI's route handler solves dependencies, copies defaults and opens two exit stacks on
every request; the predict routes need none of it (they parse their own body with pydantic,
see `body.py`). `LeanRoute` keeps everything FastAPI derives from the declaration (OpenAPI,
docs, path matching) and calls the endpoint with the request and its path parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from service.api.body import openapi_body


class LeanRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            return await endpoint(request, **request.path_params)

        return handle


def add_lean_post(
    router: APIRouter,
    path: str,
    endpoint: Callable[..., Coroutine[Any, Any, Response]],
    body: type[BaseModel],
    **route: Any,
) -> None:
    """A hot POST route whose endpoint parses `body` itself, documented as if FastAPI did."""
    router.add_api_route(
        path,
        endpoint,
        methods=["POST"],
        openapi_extra=openapi_body(body),
        route_class_override=LeanRoute,
        **route,
    )
