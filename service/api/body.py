"""Request bodies parsed and validated by pydantic in one pass (Rust JSON parser).

The hot routes read the body themselves instead of declaring a FastAPI body parameter: it
skips a `json.loads` and FastAPI's dependency machinery on every request. Their schemas still
reach the OpenAPI document through `openapi_body` and `add_schemas`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import FastAPI, Request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from service.errors import BadRequest, ServiceError, Unprocessable

Body = TypeVar("Body", bound=BaseModel)
REF = "#/components/schemas/{model}"


async def parse_body(request: Request, model: type[Body]) -> Body:
    """The body is read as JSON whatever its Content-Type says, as Triton and KServe do:
    `curl -d` sends `application/x-www-form-urlencoded` unless told otherwise."""
    return validate_json(
        model, await request.body(), content_type=request.headers.get("content-type")
    )


def validate_json(
    model: type[Body],
    data: bytes,
    invalid: type[ServiceError] = Unprocessable,
    content_type: str | None = None,
) -> Body:
    """Malformed JSON is a 400 (naming a Content-Type that was not JSON's); JSON the model
    does not accept raises `invalid`."""
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        if any(p["type"] == "json_invalid" for p in problems):
            sent = (
                f" (sent as {content_type})" if content_type and "json" not in content_type else ""
            )
            raise BadRequest(
                f"the body is not valid JSON{sent}: " + "; ".join(p["msg"] for p in problems)
            ) from None
        raise invalid("; ".join(describe(p) for p in problems)) from None


def describe(problem: Any) -> str:
    """`instances: List should have at least 1 item after validation, not 0`."""
    where = ".".join(str(part) for part in problem["loc"] if part != "body")
    if not where:
        return 'the body must be a JSON object such as {"instances": [...]}'
    return f"{where}: {problem['msg']}"


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that parses `model` itself."""
    schema = {"$ref": REF.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def add_schemas(app: FastAPI, models: list[type[BaseModel]]) -> None:
    """Put `models` (and what they reference) into the app's OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            _, defs = models_json_schema([(m, "validation") for m in models], ref_template=REF)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
