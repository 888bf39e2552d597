"""RFC 9457 problem responses for every error a client can meet, including validation and the
unexpected: no request gets a bare 500 page."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette._utils import get_route_path
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("shopkit.problems")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise from anywhere below the routes to answer with a problem document."""

    status = 400

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        self.title = title or HTTPStatus(self.status).phrase
        self.headers = headers
        self.extra = extra


class BadRequest(Problem):
    status = 400


class Unauthenticated(Problem):
    status = 401

    def __init__(self, detail: str = "missing or invalid credentials", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kwargs)


class Forbidden(Problem):
    status = 403


class NotFound(Problem):
    status = 404


class Conflict(Problem):
    status = 409


class Unprocessable(Problem):
    status = 422


class TooManyRequests(Problem):
    status = 429


class ServiceUnavailable(Problem):
    """Always with Retry-After (the document promises it): one second unless the caller knows better."""

    status = 503

    def __init__(self, detail: str, **kwargs: Any) -> None:
        headers = kwargs.pop("headers", None) or {}
        headers.setdefault("Retry-After", "1")
        super().__init__(detail, headers=headers, **kwargs)


def problem_response(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for error in exc.errors():
        errors.append(
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg", "")),
                "type": str(error.get("type", "")),
            }
        )
    return errors


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app declares for the request's path (HEAD with GET)."""
    path = get_route_path(request.scope)
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        regex, route_methods = getattr(route, "path_regex", None), route.methods
        if regex is not None and route_methods and regex.match(path):
            methods |= route_methods
    return sorted(methods)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, title=exc.title, headers=exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem_response(422, "the request body is not valid JSON", errors=errors)
        return problem_response(422, "the request is not valid", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            # Starlette names the methods of the first route that matched the path only (RFC 9110: all).
            allowed = allowed_methods(request)
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}"
        return problem_response(exc.status_code, detail, headers=headers)

    @app.exception_handler(PoolTimeout)
    async def _pool_exhausted(request: Request, exc: PoolTimeout) -> JSONResponse:
        # Overloaded: shed the request fast rather than queue it past its caller's patience.
        log.warning("no database connection free in time", extra={"path": request.url.path})
        return problem_response(503, "the service is busy; try again", headers={"Retry-After": "1"})

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated or isinstance(exc, OperationalError):
            log.warning("database unavailable", extra={"path": request.url.path, "error": str(exc.orig)[:200]})
            return problem_response(503, "the database is unavailable; try again", headers={"Retry-After": "1"})
        log.exception("database error", extra={"path": request.url.path})
        return problem_response(500, "an unexpected error occurred; it has been logged")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return problem_response(500, "an unexpected error occurred; it has been logged")
