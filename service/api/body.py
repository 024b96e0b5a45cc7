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

from service.errors import BadRequest, InputError, ServiceError

Body = TypeVar("Body", bound=BaseModel)
REF = "#/components/schemas/{model}"


async def parse_body(request: Request, model: type[Body]) -> Body:
    """The body is read as JSON whatever its Content-Type says, as Triton and KServe do:
    `curl -d` sends `application/x-www-form-urlencoded` unless told otherwise."""
    return validate_json(model, await request.body(), request.headers.get("content-type"))


def validate_json(model: type[Body], data: bytes, content_type: str | None = None) -> Body:
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        raise invalid_body(error.errors(include_url=False), content_type) from None


def invalid_body(problems: list[Any], content_type: str | None = None) -> ServiceError:
    """What pydantic found wrong with a body: not JSON (BadRequest, naming a Content-Type that
    was not JSON's), or JSON the schema does not accept (InputError), for the routes that
    parse their own body and FastAPI's alike."""
    if any(p["type"] == "json_invalid" for p in problems):
        sent = f" (sent as {content_type})" if content_type and "json" not in content_type else ""
        return BadRequest(
            f"the body is not valid JSON{sent}: "
            + "; ".join(p.get("ctx", {}).get("error", p["msg"]) for p in problems)
        )
    return InputError("; ".join(describe(p) for p in problems))


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
