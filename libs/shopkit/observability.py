"""Request ids, structured JSON logs, Prometheus metrics, request-size limits, health endpoints."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopkit import tracing

log = logging.getLogger("shopkit.observability")
access = logging.getLogger("shop.access")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

REQUESTS = Counter("shop_http_requests_total", "HTTP requests", ["service", "method", "route", "status"])
SHED = Counter("shop_http_shed_total", "Requests refused with 503 because the service was at capacity", ["service"])
# Probes and metrics are answered whatever the load: an orchestrator must see a busy service as alive.
ALWAYS_ADMITTED = ("/healthz", "/readyz", "/metrics")
LATENCY = Histogram(
    "shop_http_request_seconds",
    "HTTP request latency",
    ["service", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        trace_id = tracing.current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO", json_logs: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: it costs a task per request). Gives every request an id
    (kept from X-Request-ID when the caller sent one), refuses oversized bodies with 413, counts."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        max_body_bytes: int = 1_000_000,
        access_log: bool = False,
        max_in_flight: int = 0,
        max_waiting: int = 0,
        always_admitted: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.max_in_flight = max_in_flight
        self.always_admitted = (*ALWAYS_ADMITTED, *always_admitted)
        self.in_flight = 0
        self.max_waiting = max_waiting
        self.waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id")
        if not request_id or len(request_id) > 200:
            request_id = str(uuid.uuid4())
            # Put it on the request too, so a proxied call carries the same id to the next service.
            headers = [(k, v) for k, v in scope.get("headers", []) if k != b"x-request-id"]
            scope = {**scope, "headers": [*headers, (b"x-request-id", request_id.encode())]}
        token = request_id_var.set(request_id)
        try:
            with tracing.span(
                f"HTTP {scope['method']}",
                service=self.service,
                parent=_header(scope, b"traceparent"),
                kind=tracing.SERVER,
                attributes={"url.path": scope.get("path", "")},
            ):
                await self._handle(scope, receive, send, request_id)
        finally:
            request_id_var.reset(token)

    async def _handle(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        started = time.perf_counter()
        status_holder = {"status": 500}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                status_holder["started"] = 1
                headers = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        declared = _header(scope, b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await _problem(413, "the request body is too large")(scope, receive, send_with_id)
            return
        if self._over_capacity(scope):
            # Waiting for a thread behind this many would outlast the caller's (the gateway's) patience:
            # an honest "come back in a second" now beats a 504 later, for the same lost request.
            SHED.labels(self.service).inc()
            await _problem(503, "the service is at capacity; try again in a moment", {"Retry-After": "1"})(
                scope, receive, send_with_id
            )
            return
        self.in_flight += 1
        admission = _admission.set(self)
        try:
            await self.app(scope, self._limited(receive), send_with_id)
        except BodyTooLarge:
            await _problem(413, "the request body is too large")(scope, receive, send_with_id)
        except Exception:
            # Starlette's catch-all handler sits outside this middleware and would answer without the
            # request id; answer here so even a 500 carries it (and the log line names the request).
            if status_holder.get("started"):
                raise
            log.exception("unhandled error", extra={"path": scope.get("path")})
            await _problem(500, "an unexpected error occurred; it has been logged")(scope, receive, send_with_id)
        finally:
            _admission.reset(admission)
            self.in_flight -= 1
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - started
            REQUESTS.labels(self.service, scope["method"], path, str(status_holder["status"])).inc()
            LATENCY.labels(self.service, path).observe(elapsed)
            if self.access_log:
                access.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope.get("path"),
                        "status": status_holder["status"],
                        "ms": round(elapsed * 1000, 1),
                    },
                )

    def _over_capacity(self, scope: Scope) -> bool:
        if not self.max_in_flight or self.in_flight < self.max_in_flight:
            return False
        path: str = scope.get("path", "")
        return not path.startswith(self.always_admitted)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge()
            return message

        return limited_receive


class BodyTooLarge(StarletteHTTPException):
    """An HTTPException, so FastAPI's body parsing lets it through (it turns any other error raised while
    reading the body into a 400) and the problem handlers answer 413."""

    def __init__(self) -> None:
        super().__init__(413, "the request body is too large")


def _problem(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    from shopkit.problems import problem_response

    return problem_response(status, detail, headers=headers)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


ReadinessCheck = Callable[[], Awaitable[str | None]]


async def failed_checks(checks: dict[str, ReadinessCheck]) -> dict[str, str]:
    """The readiness checks that fail, each with what its check says is wrong. A check that raises is
    logged with its exception and answered only as "unavailable": exception text names hosts, roles
    and ports, and a readiness answer may be read by anyone who can reach the port."""
    failures = {}
    for name, check in checks.items():
        try:
            problem = await check()
        except Exception:
            log.warning("readiness check %s failed", name, exc_info=True)
            problem = "unavailable"
        if problem:
            failures[name] = problem
    return failures


def health_router(checks: dict[str, ReadinessCheck], registry: CollectorRegistry = REGISTRY) -> APIRouter:
    """/healthz: the process is alive. /readyz: every dependency answers (each check returns None or
    what is wrong). /metrics: Prometheus text format."""
    router = APIRouter(include_in_schema=False)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        failures = await failed_checks(checks)
        if failures:
            return JSONResponse({"status": "unavailable", "checks": failures}, status_code=503)
        return JSONResponse({"status": "ok", "checks": {name: "ok" for name in checks}})

    @router.get("/metrics")
    def metrics() -> Response:  # sync: collectors query the database, keep that off the event loop
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


# The middleware that admitted the request being handled (its in-flight count), for waiting_aside.
_admission: contextvars.ContextVar[RequestContextMiddleware | None] = contextvars.ContextVar(
    "shop_admission", default=None
)


@contextmanager
def waiting_aside() -> Iterator[bool]:
    """Around a wait that holds no thread nor database connection (a long poll between its reads): the
    request is not in flight meanwhile, so that waiting customers do not turn the others away. Yields
    False, leaving the request in flight, when `max_waiting` requests wait already: the caller answers
    without waiting."""
    middleware = _admission.get()
    if middleware is None:
        yield True
        return
    if middleware.max_waiting and middleware.waiting >= middleware.max_waiting:
        yield False
        return
    middleware.in_flight -= 1
    middleware.waiting += 1
    try:
        yield True
    finally:
        middleware.waiting -= 1
        middleware.in_flight += 1


def add_request_context(
    app: FastAPI,
    *,
    service: str,
    max_body_bytes: int,
    max_in_flight: int = 0,
    max_waiting: int = 0,
    always_admitted: tuple[str, ...] = (),
) -> None:
    app.add_middleware(
        RequestContextMiddleware,
        service=service,
        max_body_bytes=max_body_bytes,
        max_in_flight=max_in_flight,
        max_waiting=max_waiting,
        always_admitted=always_admitted,
    )
