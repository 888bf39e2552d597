"""The gateway: routes /api/<area> to the owning service, checks JWTs early, limits request rates,
gives every request an id, and serves one merged OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.openapi import MergedOpenAPI
from gateway.ratelimit import TokenBuckets, retry_after_header
from gateway.settings import GatewaySettings
from gateway.upstream import HOP_BY_HOP, AsgiUpstream, HttpUpstream, Upstream
from shopkit.auth import TokenVerifier, load_keys
from shopkit.observability import ReadinessCheck, RequestContextMiddleware, configure_logging, health_router
from shopkit.problems import (
    Problem,
    TooManyRequests,
    Unauthenticated,
    install_problem_handlers,
    problem_response,
)

# Path prefix → service. Anything else under /api is 404 here; /internal is never routed.
ROUTES: dict[str, str] = {
    "/api/auth": "auth",
    "/api/products": "catalog",
    "/api/orders": "orders",
    "/api/payments": "payments",
}
# Provider callbacks come from the provider or the customer's browser: never rate limited.
UNLIMITED_PREFIXES = ("/api/payments/webhooks/", "/api/payments/bkash/callback")


def route_for(path: str) -> str | None:
    for prefix, service in ROUTES.items():
        if path == prefix or path.startswith(prefix + "/"):
            return service
    return None


class Gateway:
    """Pure ASGI in front of the upstreams; a FastAPI app serves docs, health and metrics."""

    def __init__(
        self,
        settings: GatewaySettings,
        upstreams: Mapping[str, Upstream],
        *,
        extra_mounts: Mapping[str, ASGIApp] | None = None,
        readiness: Mapping[str, ReadinessCheck] | None = None,
    ) -> None:
        self.settings = settings
        self.readiness = dict(readiness or {})
        self.upstreams = dict(upstreams)
        self.extra_mounts = dict(extra_mounts or {})
        self.verifier = TokenVerifier(load_keys(settings), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        self.user_buckets = TokenBuckets(settings.rate_limit_user_rate, settings.rate_limit_user_burst)
        self.anon_buckets = TokenBuckets(settings.rate_limit_anon_rate, settings.rate_limit_anon_burst)
        self.openapi = MergedOpenAPI(list(self.upstreams.values()), cache_seconds=settings.openapi_cache_seconds)
        self.site = self._site()

    def _site(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
            yield
            for upstream in self.upstreams.values():
                await upstream.close()

        app = FastAPI(title="Shop gateway", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
        install_problem_handlers(app)

        async def ready() -> str | None:
            return None

        app.include_router(health_router({"gateway": ready, **self.readiness}))

        @app.get("/openapi.json", include_in_schema=False)
        async def openapi() -> JSONResponse:
            return JSONResponse(await self.openapi.document())

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title="Shop API")

        for prefix, mounted in self.extra_mounts.items():
            app.mount(prefix, mounted)
        return app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.site(scope, receive, send)
            return
        service = route_for(scope["path"])
        if service is None:
            if scope["path"].startswith(("/api/", "/internal")) or scope["path"] == "/api":
                await problem_response(404, "no such route")(scope, receive, send)
                return
            await self.site(scope, receive, send)
            return
        try:
            principal_key = self._authenticate(scope)
            self._limit(scope, principal_key)
            body = await _read_body(receive, self.settings.max_body_bytes)
        except Problem as problem:
            response = problem_response(problem.status, problem.detail, title=problem.title, headers=problem.headers)
            await response(scope, receive, send)
            return
        await self.upstreams[service].forward(scope, body, send, self._forward_headers(scope))

    def _authenticate(self, scope: Scope) -> str | None:
        """Refuse a bad token here, before it costs an upstream call; services verify again."""
        header = _header(scope, b"authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("expected 'Authorization: Bearer <token>'")
        return str(self.verifier.verify(token.strip()).user_id)

    def _limit(self, scope: Scope, user: str | None) -> None:
        if not self.settings.rate_limit_enabled or scope["path"].startswith(UNLIMITED_PREFIXES):
            return
        if user is not None:
            wait = self.user_buckets.take(user)
        else:
            wait = self.anon_buckets.take(self._client_ip(scope))
        if wait:
            raise TooManyRequests("too many requests; slow down", headers={"Retry-After": retry_after_header(wait)})

    def _client_ip(self, scope: Scope) -> str:
        if self.settings.trust_forwarded_for:
            forwarded = _header(scope, b"x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()
        client = scope.get("client")
        return client[0] if client else "unknown"

    def _forward_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        headers = [(k, v) for k, v in scope["headers"] if k not in HOP_BY_HOP and not k.startswith(b"x-forwarded-")]
        client_ip = self._client_ip(scope)
        previous = _header(scope, b"x-forwarded-for") if self.settings.trust_forwarded_for else None
        headers.append((b"x-forwarded-for", f"{previous}, {client_ip}".encode() if previous else client_ip.encode()))
        headers.append((b"x-forwarded-proto", scope.get("scheme", "http").encode()))
        host = _header(scope, b"host")
        if host:
            headers.append((b"x-forwarded-host", host.encode("latin-1")))
        return headers


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Problem("the request body is too large", status=413)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def http_upstreams(settings: GatewaySettings) -> dict[str, Upstream]:
    urls = {
        "auth": settings.auth_url,
        "catalog": settings.catalog_url,
        "orders": settings.orders_url,
        "payments": settings.payments_url,
    }
    return {name: HttpUpstream(name, url, timeout=settings.upstream_timeout) for name, url in urls.items()}


def asgi_upstreams(apps: Mapping[str, ASGIApp]) -> dict[str, Upstream]:
    return {name: AsgiUpstream(name, app) for name, app in apps.items()}


def create_app(
    settings: GatewaySettings | None = None,
    *,
    upstreams: Mapping[str, Upstream] | None = None,
    extra_mounts: Mapping[str, ASGIApp] | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
) -> ASGIApp:
    """`readiness`: extra checks for /readyz (the all-in-one mode adds every in-process service's)."""
    settings = settings or GatewaySettings()
    configure_logging(settings.log_level, settings.log_json)
    gateway = Gateway(settings, upstreams or http_upstreams(settings), extra_mounts=extra_mounts, readiness=readiness)
    return RequestContextMiddleware(gateway, service="gateway", max_body_bytes=settings.max_body_bytes)
