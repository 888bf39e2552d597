"""The gateway: the shop's only public door. It routes /api/<area> to the owning service, checks JWTs
early, limits request rates, gives every request an id, and serves one merged OpenAPI document.

Every decision (routing, the token pre-check, which limit applies) is taken on one path, decoded once
from the raw request target (gateway.paths refuses every spelling that could be read another way
behind it), and the raw target is forwarded byte for byte."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.forwarding import Incoming, client_address
from gateway.internal import InternalPort
from gateway.limiter import RateLimiter
from gateway.openapi import MergedOpenAPI
from gateway.paths import check_query, normalise, raw_path_of
from gateway.ratelimit import Limit, retry_after_header
from gateway.routing import SITE_PATHS, is_mounted, is_provider_callback, route_for
from gateway.settings import GatewaySettings
from gateway.upstream import AsgiUpstream, HttpUpstream, Outbound, Upstream
from shopkit import tracing
from shopkit.auth import TokenVerifier, load_keys
from shopkit.observability import ReadinessCheck, RequestContextMiddleware, configure_logging, failed_checks
from shopkit.prefer import preferred_wait
from shopkit.problems import (
    NotFound,
    Problem,
    TooManyRequests,
    Unauthenticated,
    install_problem_handlers,
    problem_response,
)


class Gateway:
    """Pure ASGI in front of the upstreams; a FastAPI app serves docs and health."""

    def __init__(
        self,
        settings: GatewaySettings,
        upstreams: Mapping[str, Upstream],
        *,
        extra_mounts: Mapping[str, ASGIApp] | None = None,
        readiness: Mapping[str, ReadinessCheck] | None = None,
    ) -> None:
        self.settings = settings
        self.readiness: dict[str, ReadinessCheck] = {"gateway": _alive, **(readiness or {})}
        self.upstreams = dict(upstreams)
        self.extra_mounts = dict(extra_mounts or {})
        self.mounts = tuple(self.extra_mounts)
        self.trusted_proxies = settings.trusted_proxies
        self.verifier = TokenVerifier(load_keys(settings), issuer=settings.jwt_issuer, audience=settings.jwt_audience)
        self.user_limit = Limit("user", settings.rate_limit_user_rate, settings.rate_limit_user_burst)
        self.address_limit = Limit("address", settings.rate_limit_anon_rate, settings.rate_limit_anon_burst)
        self.callback_limit = Limit("callback", settings.rate_limit_callback_rate, settings.rate_limit_callback_burst)
        self.limiter = RateLimiter(
            (self.user_limit, self.address_limit, self.callback_limit),
            max_keys=settings.rate_limit_max_keys,
            redis_url=settings.rate_limit_redis_url,
            redis_prefix=settings.rate_limit_redis_prefix,
            redis_timeout=settings.rate_limit_redis_timeout,
        )
        self.internal = (
            InternalPort(settings.gateway_internal_host, settings.gateway_internal_port, ready=self.is_ready)
            if settings.gateway_internal_port
            else None
        )
        self.openapi = MergedOpenAPI(list(self.upstreams.values()), cache_seconds=settings.openapi_cache_seconds)
        self.site = self._site()

    async def is_ready(self) -> bool:
        return not await failed_checks(self.readiness)

    @asynccontextmanager
    async def _lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.limiter.connect()
        if self.internal is not None:
            await self.internal.start()
        yield
        if self.internal is not None:
            await self.internal.stop()
        await self.limiter.close()
        for upstream in self.upstreams.values():
            await upstream.close()

    def _site(self) -> FastAPI:
        app = FastAPI(title="Shop gateway", docs_url=None, redoc_url=None, openapi_url=None, lifespan=self._lifespan)
        install_problem_handlers(app)

        @app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/readyz", include_in_schema=False)
        async def readyz() -> JSONResponse:
            # Status only: what is down, and why, is in the logs, not in a public answer.
            if await self.is_ready():
                return JSONResponse({"status": "ok"})
            return JSONResponse({"status": "unavailable"}, status_code=503)

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
        try:
            raw_path = scope.get("raw_path") or raw_path_of(scope["path"])
            path = normalise(raw_path)
            service = route_for(path)
            if service is None:
                if path in SITE_PATHS or is_mounted(path, self.mounts):
                    await self.site(scope, receive, send)
                    return
                raise NotFound("no such route")
            request = await self._admit(scope, receive, path, raw_path)
        except Problem as problem:
            response = problem_response(problem.status, problem.detail, title=problem.title, headers=problem.headers)
            await response(scope, receive, send)
            return
        await self.upstreams[service].forward(scope, request, send)

    async def _admit(self, scope: Scope, receive: Receive, path: str, raw_path: bytes) -> Outbound:
        """The request as it goes upstream, once its token, its rate and its body have passed."""
        check_query(scope.get("query_string", b""))
        incoming = Incoming(scope["headers"])
        user = self._authenticate(incoming.authorization)
        client = client_address(scope.get("client"), incoming.forwarded_for, self.trusted_proxies)
        if self.settings.rate_limit_enabled:
            limit, key = self._limit_for(path, user, client)
            # Without Redis the decision is local and synchronous: no coroutine on the hot path.
            wait = await self.limiter.take(limit, key) if self.limiter.shared else self.limiter.take_local(limit, key)
            if wait:
                raise TooManyRequests("too many requests; slow down", headers={"Retry-After": retry_after_header(wait)})
        body = await _read_body(receive, self.settings.max_body_bytes)
        headers = incoming.passed_on
        headers.append((b"x-forwarded-for", client.encode("latin-1")))
        traceparent = tracing.current_traceparent()
        if traceparent:
            headers.append((b"traceparent", traceparent.encode("ascii")))
        headers.append((b"x-forwarded-proto", b"https" if scope.get("scheme") == "https" else b"http"))
        if incoming.host is not None:
            headers.append((b"x-forwarded-host", incoming.host))
        return Outbound(path, raw_path, client, headers, body, preferred_wait(incoming.prefer))

    def _authenticate(self, header: bytes | None) -> str | None:
        """Refuse a bad token here, before it costs an upstream call; services verify again."""
        if not header:
            return None
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("expected 'Authorization: Bearer <token>'")
        return str(self.verifier.verify(token.strip()).user_id)

    def _limit_for(self, path: str, user: str | None, client: str) -> tuple[Limit, str]:
        if is_provider_callback(path):
            return self.callback_limit, client
        if user is not None:
            return self.user_limit, user
        return self.address_limit, client


async def _alive() -> str | None:
    return None


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
    tracing.configure("gateway")
    gateway = Gateway(settings, upstreams or http_upstreams(settings), extra_mounts=extra_mounts, readiness=readiness)
    return RequestContextMiddleware(
        gateway, service="gateway", max_body_bytes=settings.max_body_bytes, access_log=settings.access_log
    )
