"""What a service's OpenAPI document says beyond FastAPI's defaults, derived from the routes
themselves so that it stays true as they change:

- every 4xx/5xx a route can give, as `application/problem+json` with the ProblemDetails schema
  (RFC 9457), Retry-After on 429 and 503, WWW-Authenticate on 401;
- 503 on every route (the service at capacity, its database busy or down);
- the statuses and the bearer security a route's dependencies imply (`current_principal`: 401 and a
  required bearer token; `require_admin`: 403 too; a service registers its own with `depends_on`);
  what only the use case knows, a route declares with `responses=problems(404, 409)`;
- 422 wherever FastAPI validates something, 413 wherever a body is read;
- a stable operationId, `<service>_<function>`, and the service's tag.

Request constraints are not touched here: they come from the same pydantic models that validate."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field

from shopkit.auth import current_principal, require_admin
from shopkit.problems import PROBLEM_JSON

BEARER = "bearerAuth"
PROBLEM_SCHEMA = "ProblemDetails"
PROBLEM_REF = {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}
BEARER_SCHEME = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "The access token from POST /api/auth/login (or /api/auth/refresh).",
}
RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}
WWW_AUTHENTICATE = {"description": "The scheme to authenticate with: Bearer.", "schema": {"type": "string"}}
# Statuses whose answer always carries a header; the problem handlers and the gateway keep this true.
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": WWW_AUTHENTICATE},
    429: {"Retry-After": RETRY_AFTER},
    503: {"Retry-After": RETRY_AFTER},
}
_BODY_METHODS = frozenset({"post", "put", "patch"})


class ValidationIssue(BaseModel):
    loc: list[str] = Field(description="Where the invalid value is: 'body', 'query', 'path' or 'header', then names.")
    msg: str
    type: str


class ProblemDetails(BaseModel):
    """Every error answer (RFC 9457). Some problems carry more members (e.g. `product_ids`)."""

    model_config = ConfigDict(extra="allow", title=PROBLEM_SCHEMA)

    type: str = Field("about:blank", description="A URI naming the kind of problem; 'about:blank': see status.")
    title: str = Field(description="The status's reason phrase.")
    status: int = Field(ge=100, le=599)
    detail: str = Field(description="What went wrong with this request, for a person to read.")
    errors: list[ValidationIssue] | None = Field(None, description="422 only: each invalid value.")


@dataclass(frozen=True)
class Implies:
    statuses: tuple[int, ...] = ()
    # "required": the route needs a bearer token; "optional": a token changes what it answers.
    bearer: str | None = None


_IMPLIED: dict[Callable[..., Any], Implies] = {
    current_principal: Implies((401,), "required"),
    require_admin: Implies((401, 403), "required"),
}


def depends_on(call: Callable[..., Any], *statuses: int, bearer: str | None = None) -> None:
    """Declare what a route that depends on `call` can answer (and whether it reads a bearer token)."""
    _IMPLIED[call] = Implies(tuple(statuses), bearer)


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the problems its use case can raise (documented as problem+json)."""
    return {status: {"description": HTTPStatus(status).phrase} for status in statuses}


def operation_id(service: str) -> Callable[[APIRoute], str]:
    def generate(route: APIRoute) -> str:
        return f"{service}_{route.name}"

    return generate


def install(app: FastAPI, service: str) -> None:
    """Replace `app.openapi` with the document described above (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app, service)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def build(app: FastAPI, service: str) -> dict[str, Any]:
    spec = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    components = spec.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(problem_schemas())
    for route in iter_route_contexts(app.routes):
        if not (isinstance(route.original_route, APIRoute) and route.include_in_schema):
            continue
        implied = [_IMPLIED[call] for call in _calls(route.dependant) if call in _IMPLIED]
        for method in route.methods or ():
            operation = spec["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            operation["tags"] = [service]
            # 503 on every route: past its SHOP_MAX_IN_FLIGHT a service refuses whatever is asked.
            statuses = {503, *(status for each in implied for status in each.statuses)}
            if method.lower() in _BODY_METHODS and route.body_field is not None:
                statuses.add(413)
            add_problems(operation, statuses)
            bearers = {each.bearer for each in implied if each.bearer}
            if "required" in bearers:
                operation["security"] = [{BEARER: []}]
            elif "optional" in bearers:
                operation["security"] = [{}, {BEARER: []}]
    if any("security" in op for item in spec["paths"].values() for op in item.values()):
        components.setdefault("securitySchemes", {})[BEARER] = BEARER_SCHEME
    return spec


def problem_schemas() -> dict[str, Any]:
    generated = ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = generated.pop("$defs", {})
    return {PROBLEM_SCHEMA: generated, **definitions}


def add_problems(operation: dict[str, Any], statuses: Iterable[int]) -> None:
    """Add `statuses` to the operation's responses, and make every 4xx/5xx of it a problem+json."""
    responses = operation.setdefault("responses", {})
    for status in statuses:
        responses.setdefault(str(status), {"description": HTTPStatus(status).phrase})
    for code, response in responses.items():
        if not code.isdigit() or int(code) < 400:
            continue
        status = int(code)
        if response.get("description") in (None, "", "Validation Error"):
            response["description"] = HTTPStatus(status).phrase
        response["content"] = {PROBLEM_JSON: {"schema": PROBLEM_REF}}
        if status in _HEADERS:
            response["headers"] = {**_HEADERS[status], **response.get("headers", {})}
    operation["responses"] = dict(sorted(responses.items()))


def _calls(dependant: Dependant) -> Iterator[Callable[..., Any]]:
    for dependency in dependant.dependencies:
        if dependency.call is not None:
            yield dependency.call
        yield from _calls(dependency)
